"""Fuzz every operation of the OpenAPI schema with schemathesis: no request may get a 5xx.

The app runs in-process (ASGI, SQLite in a temporary data dir, no network). Each operation is
fuzzed twice:

* as an admin API key of `default`, so that cases reach past authentication into the routes.
  Half of these cases (a Hypothesis draw) are steered onto data seeded beforehand: an existing
  prompt, its versions, environments, a member and a spare key, and a kernel with exactly one
  of `messages`/`template` (a rule the schema cannot express), so that they reach the logic
  behind the lookups instead of stopping at 404 or 422;
* with no credentials, where only the public operations may answer 2xx.

Cases come from Hypothesis, derandomized so that a run is reproducible. The property checked is
schemathesis's `not_a_server_error`; a failure names the request that got the 5xx and the
server's traceback ("Unhandled error on ..."). Response-schema conformance is not checked.

The number of requests sent is printed when the module finishes (shown with `-s`) and in
pytest's closing summary.
"""

from __future__ import annotations

import logging
import socket
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NOT_SET
from schemathesis.generation.case import Case

from promptloop.api.app import create_app
from promptloop.services import local
from promptloop.settings import Settings

# Hypothesis examples per operation and run. Schemathesis adds its own deterministic cases on top
# (boundary values, missing parameters, unexpected methods) as admin. Sized so that the module
# takes about a minute on a 2-core machine (some 2,400 requests).
MAX_EXAMPLES = 25

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
)

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

API = "/api/v1"
PUBLIC_OPERATIONS = {
    ("GET", f"{API}/health"),
    ("POST", f"{API}/auth/sign-in"),
    ("POST", f"{API}/auth/sign-in-link"),
}
SEED_PROMPT = "fuzz/seeded"
SEED_MEMBER = "member@fuzz.example"
ENVIRONMENTS = ("development", "staging", "production")

# The operations, from an app that is never started: known at collection, one test each. The
# config is explicit, so that no schemathesis.toml lying around changes the run.
_OPENAPI = create_app(Settings(data_dir=Path("unused"))).openapi()
# As admin: `@schema.given` (the steering draws) cannot be combined with the examples phase.
admin_schema = schemathesis.openapi.from_dict(
    _OPENAPI, config=SchemathesisConfig.from_dict({"phases": {"examples": {"enabled": False}}})
)
# Without credentials every request stops at authentication, so schemathesis's coverage phase
# (thousands of boundary cases, already sent as admin) would only add time.
anonymous_schema = schemathesis.openapi.from_dict(
    _OPENAPI, config=SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})
)

#: Requests sent by this module: per run ("admin", "anonymous") and per run and status class.
REQUESTS: Counter[str] = Counter()


class _WithoutLifespan:
    """The app as schemathesis reaches it: its lifespan is the fixture's, not started per test.

    (schemathesis's pytest plugin would start the app's lifespan for each operation and end it
    after, re-running start-up each time.)
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)


@dataclass
class _Fuzzed:
    """The running app, the seeded data the admin run aims at, and what the server logged."""

    settings: Settings
    target: _WithoutLifespan
    secret: str = ""
    key_id: int = 0
    spare_key_id: int = 0
    version_ids: list[str] = field(default_factory=list)
    logged: list[str] = field(default_factory=list, repr=False)

    def new_key(self) -> None:
        created = local.create_api_key(self.settings, project="default", role="admin", name="fuzz")
        self.secret, self.key_id = created.secret, created.key.id


class _ServerLog(logging.Handler):
    """Keeps what the app logs at ERROR, such as "Unhandled error on ...", with the traceback's
    frames in promptloop and the frame that raised."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(level=logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name} {record.levelname} {record.getMessage()}"
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            frames = traceback.extract_tb(error.__traceback__)
            ours = [f for f in frames[:-1] if "site-packages" not in f.filename]
            shown = traceback.format_list([*ours, frames[-1]]) if frames else []
            text += "\n" + "".join([*shown, *traceback.format_exception_only(error)])
        self.sink.append(text)


class _Summary:
    """A pytest plugin that puts the request count in the closing summary."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("-", "schemathesis fuzz")
        terminalreporter.write_line(summary_line())


def summary_line() -> str:
    total = sum(n for label, n in REQUESTS.items() if "/" not in label)
    by_status = ", ".join(f"{label} {n}" for label, n in sorted(REQUESTS.items()) if "/" in label)
    return f"fuzz: {total} requests sent ({by_status})"


def _no_network(_socket: socket.socket, address: Any) -> NoReturn:
    raise OSError(f"test_fuzz allows no network: connect({address!r})")


def _seed(client: TestClient, fuzzed: _Fuzzed) -> None:
    """A prompt with two versions deployed to staging, a member and a spare key."""
    for content in ("Answer {{ question }}.", "Answer {{ question }} politely."):
        # No installed provider: a call of this prompt must not reach a real model.
        body = {"provider": "no-such-provider", "model": "m-1", "template": content}
        saved = client.post(f"{API}/prompts/{SEED_PROMPT}/-/versions", json=body)
        assert saved.status_code == 201, saved.text
        version = saved.json()["id"]
        fuzzed.version_ids.append(version)
        deployed = client.put(
            f"{API}/prompts/{SEED_PROMPT}/-/deployments/staging", json={"version": version}
        )
        assert deployed.status_code == 200, deployed.text
    member = client.post(f"{API}/members", json={"email": SEED_MEMBER, "role": "member"})
    assert member.status_code == 201, member.text
    spare = client.post(f"{API}/api-keys", json={"name": "spare", "role": "viewer"})
    assert spare.status_code == 201, spare.text
    fuzzed.spare_key_id = spare.json()["id"]


@pytest.fixture(scope="module")
def fuzzed(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[_Fuzzed]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    app_settings = Settings(
        data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'promptloop.db'}"
    )
    app = create_app(app_settings)
    state = _Fuzzed(settings=app_settings, target=_WithoutLifespan(app))
    handler = _ServerLog(state.logged)
    logger = logging.getLogger("promptloop.api")
    logger.addHandler(handler)
    request.config.pluginmanager.register(_Summary(), "promptloop-fuzz-summary")
    try:
        with pytest.MonkeyPatch.context() as patch, TestClient(app) as client:
            # No network: nothing the fuzzer sends may reach out (e.g. to a model provider).
            patch.setattr(socket.socket, "connect", _no_network)
            patch.setattr(socket.socket, "connect_ex", _no_network)
            # The TestClient runs the lifespan (migrations, the default project).
            state.new_key()
            client.headers["Authorization"] = f"Bearer {state.secret}"
            _seed(client, state)
            yield state
    finally:
        logger.removeHandler(handler)
        print(f"\n{summary_line()}")


def _send(case: Case, fuzzed: _Fuzzed, *, run: str, headers: dict[str, str]) -> Any:
    """Send `case` and count it; on a 5xx, fail with the request and the server's traceback."""
    logged_before = len(fuzzed.logged)
    REQUESTS[run] += 1
    try:
        response = case.call(headers=headers, app=fuzzed.target)
    except Exception as exc:
        # Starlette answers an unhandled error with 500, then re-raises it to the server: here.
        REQUESTS[f"{run}/5xx"] += 1
        _fail(case, fuzzed, logged_before, f"500 (the app raised {type(exc).__name__}: {exc})")
    REQUESTS[f"{run}/{response.status_code // 100}xx"] += 1
    try:
        case.validate_response(response, checks=[not_a_server_error])
    except (AssertionError, BaseExceptionGroup):
        _fail(case, fuzzed, logged_before, f"{response.status_code}: {response.text[:500]}")
    if response.status_code >= 500:  # e.g. a content-type probe whose control request failed too
        _fail(case, fuzzed, logged_before, f"{response.status_code}: {response.text[:500]}")
    return response


def _fail(case: Case, fuzzed: _Fuzzed, logged_before: int, answer: str) -> NoReturn:
    body = "(none)" if case.body is NOT_SET else repr(case.body)
    logged = "\n".join(fuzzed.logged[logged_before:]) or "(nothing logged)"
    raise AssertionError(
        f"Server error on {case.method} {case.formatted_path}\n"
        f"query: {case.query}\nheaders: {_redacted(case.headers)}\nbody: {body[:2000]}\n"
        f"answer: {answer}\nreproduce (add the Authorization header): {case.as_curl_command()}\n"
        f"server log:\n{logged}"
    ) from None


def _redacted(headers: dict[str, Any] | None) -> dict[str, Any]:
    return {
        k: "[redacted]" if k.lower() == "authorization" else v for k, v in (headers or {}).items()
    }


def _steer(case: Case, data: st.DataObject, fuzzed: _Fuzzed) -> None:
    """Aim some cases at seeded data, so that they get past the lookups (see the docstring)."""
    headers = case.headers or {}
    for name in [n for n in headers if n.lower() == "promptloop-project"]:
        headers[name] = "default"  # random project names only ever get 404
    if not data.draw(st.booleans(), label="aim at seeded data"):
        return
    environment = st.sampled_from(ENVIRONMENTS)
    version = st.sampled_from(fuzzed.version_ids)
    aims: dict[str, st.SearchStrategy[Any]] = {
        "path": st.just(SEED_PROMPT),
        "environment": environment,
        "name": environment,
        "email": st.just(SEED_MEMBER),
        "key_id": st.just(fuzzed.spare_key_id),
        "version": version,
        "from": version,
        "to": version,
    }
    for parameters in (case.path_parameters, case.query):
        for name in list(parameters or {}):
            if name in aims:
                parameters[name] = data.draw(aims[name], label=name)
    body_aims = {"version": version, "environment": environment, "prompt": st.just(SEED_PROMPT)}
    body = case.body
    if isinstance(body, dict):
        for name in [n for n in body if n in body_aims]:
            body[name] = data.draw(body_aims[name], label=f"body {name}")
        kernel = case.path.endswith(("/-/versions", "/playground/call"))
        if kernel and ("messages" in body) == ("template" in body):
            # The schema cannot say "exactly one of messages or template".
            if "messages" in body:
                del body[data.draw(st.sampled_from(["messages", "template"]), label="drop")]
            else:
                body["template"] = data.draw(st.text(max_size=40), label="template")


@admin_schema.parametrize()
@admin_schema.given(data=st.data())
@FUZZ_SETTINGS
def test_no_server_error_as_admin(case: Case, data: st.DataObject, fuzzed: _Fuzzed) -> None:
    _steer(case, data, fuzzed)
    response = _send(
        case, fuzzed, run="admin", headers={"Authorization": f"Bearer {fuzzed.secret}"}
    )
    if (
        case.method == "DELETE"
        and case.path == f"{API}/api-keys/{{key_id}}"
        and response.status_code == 200
        and response.json().get("id") == fuzzed.key_id
    ):
        fuzzed.new_key()  # the fuzzer revoked the key that it authenticates with


@anonymous_schema.parametrize()
@FUZZ_SETTINGS
def test_no_server_error_without_credentials(case: Case, fuzzed: _Fuzzed) -> None:
    if case.headers:
        for name in [n for n in case.headers if n.lower() == "authorization"]:
            del case.headers[name]
    response = _send(case, fuzzed, run="anonymous", headers={})
    if (case.method, case.path) not in PUBLIC_OPERATIONS:
        assert response.status_code >= 400, (
            f"{response.status_code} without credentials on {case.method} {case.path}: "
            f"{response.text[:300]}"
        )
