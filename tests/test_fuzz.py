"""Fuzz every operation of the OpenAPI schema with schemathesis: no request may get a 5xx.

The app runs in-process (ASGI, SQLite in a temporary data dir, no network). Each operation is
fuzzed twice: as an admin API key of `default` (so cases reach past authentication into the
routes) and with no credentials at all. Cases come from Hypothesis, derandomized so a CI run
is reproducible. The property checked is schemathesis's `not_a_server_error`; on a failure the
message holds the request that failed and the server's traceback ("Unhandled error on ...").

The number of requests sent is printed at the end of the module (run with `-s` to see it
inline) and in pytest's closing summary.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.case import Case
from schemathesis.python import asgi

from promptloop.api.app import create_app
from promptloop.services import local
from promptloop.settings import Settings

# Cases per operation and credentials (Hypothesis's fuzzing phase; schemathesis adds its own
# deterministic boundary cases on top). Sized so the module runs in about a minute on 2 cores.
MAX_EXAMPLES = 25

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
)

# The schema, from an app that is never started: the operations are known at collection time.
schema = schemathesis.openapi.from_dict(create_app(Settings(data_dir=Path("unused"))).openapi())

#: Requests sent by this module, by credentials and by status class ("2xx", "4xx", ...).
REQUESTS: Counter[str] = Counter()


@dataclass
class _Fuzzed:
    """The running app, the admin key the authenticated run sends, and the server's errors."""

    settings: Settings
    app: FastAPI
    secret: str = ""
    key_id: int = 0
    errors: list[str] = field(default_factory=list)

    def new_key(self) -> None:
        created = local.create_api_key(self.settings, project="default", role="admin", name="fuzz")
        self.secret, self.key_id = created.secret, created.key.id


class _ServerErrors(logging.Handler):
    """Keeps each "Unhandled error on ..." the app logs, with its traceback."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(level=logging.ERROR)
        self.sink = sink
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))


class _Summary:
    """A pytest plugin that reports the request count in the closing summary."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("-", "schemathesis fuzz")
        terminalreporter.write_line(_summary_line())


def _summary_line() -> str:
    total = sum(n for label, n in REQUESTS.items() if "/" not in label)
    details = ", ".join(f"{label}: {n}" for label, n in sorted(REQUESTS.items()) if "/" in label)
    return f"fuzz: {total} requests sent ({details})"


@pytest.fixture(scope="module")
def fuzzed(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[_Fuzzed]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz") / "data"
    app_settings = Settings(
        data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'promptloop.db'}"
    )
    app = create_app(app_settings)
    # Loading the schema through the app starts its lifespan (migrations, default project) in
    # schemathesis's ASGI client, which keeps it running for every case sent to `app`.
    served = schemathesis.openapi.from_asgi("/openapi.json", app)
    assert served.raw_schema == schema.raw_schema
    state = _Fuzzed(settings=app_settings, app=app)
    state.new_key()
    handler = _ServerErrors(state.errors)
    logger = logging.getLogger("promptloop.api")
    logger.addHandler(handler)
    request.config.pluginmanager.register(_Summary(), "promptloop-fuzz-summary")
    try:
        yield state
    finally:
        logger.removeHandler(handler)
        asgi.shutdown_lifespans()
        print(f"\n{_summary_line()}")


def _send(case: Case, fuzzed: _Fuzzed, *, credentials: str, headers: dict[str, str]) -> None:
    """Send `case`, count it, and fail with the request and server traceback on a 5xx."""
    errors_before = len(fuzzed.errors)
    response = case.call(headers=headers, app=fuzzed.app)
    REQUESTS[credentials] += 1
    REQUESTS[f"{credentials}/{response.status_code // 100}xx"] += 1
    try:
        case.validate_response(response, checks=[not_a_server_error])
    except AssertionError as exc:
        sent = response.request
        body = sent.body.decode(errors="replace") if isinstance(sent.body, bytes) else sent.body
        logged = "\n".join(fuzzed.errors[errors_before:]) or "(nothing logged)"
        raise AssertionError(
            f"{response.status_code} on {sent.method} {sent.url}\n"
            f"headers: {dict(sent.headers)}\nbody: {body!r}\n"
            f"response: {response.text[:500]}\nserver log:\n{logged}\n\n{exc}"
        ) from None
    return response


@schema.parametrize()
@FUZZ_SETTINGS
def test_no_server_error_as_admin(case: Case, fuzzed: _Fuzzed) -> None:
    response = _send(
        case, fuzzed, credentials="admin", headers={"Authorization": f"Bearer {fuzzed.secret}"}
    )
    if (
        case.method == "DELETE"
        and case.path == "/api/v1/api-keys/{key_id}"
        and response.status_code == 200
        and response.json().get("id") == fuzzed.key_id
    ):
        fuzzed.new_key()  # the fuzzer revoked the key it authenticates with


@schema.parametrize()
@FUZZ_SETTINGS
def test_no_server_error_without_credentials(case: Case, fuzzed: _Fuzzed) -> None:
    if case.headers:
        case.headers.pop("authorization", None)
    _send(case, fuzzed, credentials="anonymous", headers={})
