"""`client.feedback`: feedback on logs through the SDK, and retention tracking.

As in test_sdk.py, `Client` sends through a Starlette TestClient and `AsyncClient` through
`httpx.ASGITransport` on the same app; calls go to tests/fakes.py's FakeProvider. Retention
checks run in the client's background thread with delays of tenths of a second; retries,
interpreter exit and fork use `httpx.MockTransport`, the last two in subprocesses.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from promptloop import (
    AsyncClient,
    BadRequestError,
    Client,
    ConflictError,
    Feedback,
    FeedbackKind,
    FeedbackStats,
    FeedbackToken,
    InternalServerError,
    Interval,
    KindStats,
    NotFoundError,
    retained_share,
)
from promptloop.api.app import create_app
from promptloop.core.access import SYSTEM
from promptloop.services import api_keys, projects
from promptloop.settings import Settings
from tests.fakes import FakeProvider, registered

URL = "http://testserver"
PATH = "support/answer"
CHAT = [{"role": "user", "content": "Answer {{ question }}."}]
INPUTS = {"question": "Where is my order?"}
ANSWER = "Your order left the warehouse on Monday and arrives on Thursday."


@pytest.fixture(autouse=True)
def _no_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROMPTLOOP_URL", "PROMPTLOOP_API_KEY", "PROMPTLOOP_PROJECT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with registered(FakeProvider()) as provider:
        yield provider


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, fake: FakeProvider) -> FastAPI:
    # After the fake registers, so the catalogue has its prices.
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("server")))


@pytest.fixture(scope="module")
def server(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:  # one server for the module: each test has a project
        yield test_client


@pytest.fixture
def project(server: TestClient, request: pytest.FixtureRequest) -> tuple[str, str]:
    """A new project for this test, and an admin API key of it."""
    name = "t-" + request.node.name.removeprefix("test_").replace("_", "-")[:50]
    with server.app.state.db.session(write=True) as session:  # type: ignore[attr-defined]
        found = projects.ensure_project(session, name=name)
        key = api_keys.create_key(session, actor=SYSTEM, project=found, name="sdk", role="admin")
    return name, key.secret


@pytest.fixture
def sdk(server: TestClient, project: tuple[str, str]) -> Iterator[Client]:
    name, key = project
    with Client(URL, http_client=server, api_key=key, project=name) as client:
        yield client


@pytest.fixture
async def async_sdk(app: FastAPI, project: tuple[str, str]) -> AsyncIterator[AsyncClient]:
    name, key = project
    transport = httpx.ASGITransport(app=app)
    async with AsyncClient(URL, transport=transport, api_key=key, project=name) as client:
        yield client


@pytest.fixture
def answered(sdk: Client, fake: FakeProvider) -> Callable[..., str]:
    """Calls the deployed prompt; the log id of its answer."""
    version = sdk.prompts.save(PATH, provider="fake", model="fake-1", messages=CHAT).id
    sdk.prompts.deploy(PATH, version, environment="production")

    def call(output: str = ANSWER, **options: Any) -> str:
        fake.queue(output)
        return sdk.prompts.call(PATH, INPUTS, **options).log_id

    return call


# --- feedback through the API ----------------------------------------------------------------


def test_each_kind_of_feedback_round_trips(sdk: Client, answered: Callable[..., str]) -> None:
    log_id = answered()
    down = sdk.feedback.vote(log_id, "down", end_user="u-1")
    assert isinstance(down, Feedback)
    assert (down.log_id, down.name, down.category, down.value, down.score) == (
        log_id,
        "rating",
        "vote",
        False,
        0.0,
    )
    assert (down.end_user, down.source, down.current) == ("u-1", "sdk", True)
    up = sdk.feedback.vote(log_id, True)
    assert (up.value, up.score, up.end_user, up.reviewer) == (True, 1.0, None, down.recorded_by)
    copied = sdk.feedback.action(log_id, "copied", delay_s=2.5)
    assert (copied.category, copied.value, copied.delay_s, copied.score) == (
        "action",
        None,
        2.5,
        1.0,
    )
    corrected = sdk.feedback.correct(log_id, ANSWER.replace("Thursday", "Friday"))
    assert corrected.similarity is not None and 0.8 < corrected.similarity < 1
    assert corrected.diff is not None and "+Your order" in corrected.diff
    commented = sdk.feedback.comment(log_id, "Wrong day.", end_user="u-1")
    assert (commented.name, commented.value) == ("comment", "Wrong day.")

    stars = sdk.feedback.declare(
        "stars", "vote", type="number", minimum=1, maximum=5, description="Five-star rating."
    )
    assert isinstance(stars, FeedbackKind)
    assert (stars.type, stars.minimum, stars.maximum, stars.higher_is_better) == (
        "number",
        1,
        5,
        True,
    )
    tone = sdk.feedback.declare("tone", "vote", type="choice", choices=["formal", "casual"])
    rated = sdk.feedback.vote(log_id, 4, name="stars")
    assert (rated.value, rated.score) == (4, 0.75)
    chose = sdk.feedback.give(log_id, "tone", "casual")
    assert (chose.value, chose.score) == ("casual", None)
    shared = sdk.feedback.give(log_id, "shared", 1, delay_s=30)
    assert (shared.value, shared.delay_s) == (1, 30)

    listed = sdk.feedback.list(log_id)
    assert all(isinstance(item, Feedback) for item in listed)
    assert [item.id for item in listed] == [
        item.id for item in (down, up, copied, corrected, commented, rated, chose, shared)
    ]
    assert all(item.created_at <= datetime.now(UTC) for item in listed)
    kinds = {kind.name: kind for kind in sdk.feedback.kinds()}
    assert {"rating", "copied", "retained", "correction", "comment"} <= set(kinds)
    assert kinds["tone"] == tone and kinds["rejected"].higher_is_better is False


def test_errors_carry_the_servers_message(sdk: Client, answered: Callable[..., str]) -> None:
    log_id = answered()
    with pytest.raises(BadRequestError) as unknown:
        sdk.feedback.give(log_id, "thumbs", "up")
    assert "no feedback kind 'thumbs'" in str(unknown.value)
    assert "POST /api/v1/feedback-kinds" in unknown.value.message
    with pytest.raises(BadRequestError, match="takes 'up' or 'down'"):
        sdk.feedback.vote(log_id, "sideways")
    with pytest.raises(NotFoundError, match="No log 'no-such-log'"):
        sdk.feedback.vote("no-such-log", "up")
    with pytest.raises(NotFoundError):
        sdk.feedback.list("no-such-log")
    with pytest.raises(ConflictError, match="already has a feedback kind 'rating'"):
        sdk.feedback.declare("rating", "vote")
    assert sdk.feedback.list(log_id) == []


def test_a_token_lets_a_browser_give_feedback_without_a_key(
    sdk: Client, server: TestClient, answered: Callable[..., str]
) -> None:
    log_id = answered(end_user="u-3")
    token = sdk.feedback.token(log_id)
    assert isinstance(token, FeedbackToken) and token.log_id == log_id
    assert token.expires_at > datetime.now(UTC)
    with httpx.Client(transport=_through(server), base_url=URL) as browser:  # no API key
        response = browser.post(
            "/api/v1/feedback", json={"token": token.token, "name": "rating", "value": "up"}
        )
        assert response.status_code == 201, response.text
        refused = browser.post(f"/api/v1/logs/{log_id}/feedback", json={"name": "rating"})
        assert refused.status_code == 401
    [given] = sdk.feedback.list(log_id)
    assert (given.source, given.end_user, given.value) == ("browser", "u-3", True)


def test_calls_return_tokens_and_carry_consent(
    sdk: Client, answered: Callable[..., str], fake: FakeProvider
) -> None:
    fake.queue(ANSWER)
    result = sdk.prompts.call(PATH, INPUTS, feedback_token=True, consent=True)
    assert result.feedback_token is not None
    fake.queue("streamed answer")
    with sdk.prompts.stream(PATH, INPUTS, feedback_token=True) as stream:
        assert "".join(stream).strip() == "streamed answer"
    assert stream.result.feedback_token is not None
    assert sdk.prompts.call(PATH, INPUTS).feedback_token is None
    log = sdk.logs.get(result.log_id)
    assert (log.consent, log.withheld, log.output) == (True, False, ANSWER)
    logged = sdk.logs.log(output="from my code", consent=False)
    assert sdk.logs.flush(timeout=10)
    assert sdk.logs.get(logged).consent is False


def test_stats_and_log_filters(sdk: Client, answered: Callable[..., str]) -> None:
    liked, disliked, copied, silent = (answered() for _ in range(4))
    sdk.feedback.vote(liked, "up")
    sdk.feedback.vote(disliked, "down")
    sdk.feedback.action(copied, "copied")

    assert [log.id for log in sdk.logs.list(feedback="down")] == [disliked]
    assert [log.id for log in sdk.logs.list(feedback=["any", "copied"])] == [copied]
    assert [log.id for log in sdk.logs.list(feedback="none")] == [silent]

    [group] = sdk.feedback.stats()
    assert isinstance(group, FeedbackStats)
    assert (group.prompt, group.logs) == (PATH, 4) and group.version is not None
    kinds = {kind.name: kind for kind in group.kinds}
    rating = kinds["rating"]
    assert isinstance(rating, KindStats) and isinstance(rating.rate, Interval)
    assert (rating.logs, rating.count, rating.up, rating.down) == (2, 2, 1, 1)
    assert (rating.rate.value, rating.rate.n) == (0.5, 4)
    assert rating.up_share is not None and rating.up_share.value == 0.5
    assert rating.rate.low is not None and rating.rate.low < 0.5 < (rating.rate.high or 0)
    [by_environment] = sdk.feedback.stats(by="environment", prompt=PATH)
    assert (by_environment.environment, by_environment.logs) == ("production", 4)
    assert sdk.feedback.stats(since=datetime.now(UTC) + timedelta(hours=1)) == []


async def test_the_async_client_gives_the_same_feedback(
    async_sdk: AsyncClient, sdk: Client, answered: Callable[..., str]
) -> None:
    log_id = answered()
    voted = await async_sdk.feedback.vote(log_id, "up")
    await async_sdk.feedback.action(log_id, "accepted", delay_s=1)
    assert [f.name for f in await async_sdk.feedback.list(log_id)] == ["rating", "accepted"]
    assert (await async_sdk.feedback.token(log_id)).log_id == log_id
    assert "copied" in {kind.name for kind in await async_sdk.feedback.kinds()}
    assert (await async_sdk.feedback.stats())[0].logs == 1
    assert voted.source == "sdk"
    tracker = async_sdk.feedback.track_retention(log_id, lambda: ANSWER, after=(0,))
    assert tracker.wait(timeout=5)  # sent from the retention thread, on a loop of its own
    assert tracker.results == [(0.0, 1.0)]

    def methods(obj: object) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(getattr(obj, name))
            for name in dir(obj)
            if not name.startswith("_") and callable(getattr(obj, name))
        }

    assert methods(sdk.feedback) == methods(async_sdk.feedback)
    assert sdk.feedback.vote.__qualname__ == "FeedbackResource.vote"
    assert sdk.feedback.track_retention.__doc__ == async_sdk.feedback.track_retention.__doc__


def test_logs_list_and_calls_send_the_new_fields() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/logs"):
            return httpx.Response(200, json={"data": [], "next_cursor": None})
        return httpx.Response(500)

    with Client(URL, transport=httpx.MockTransport(handler)) as client:
        assert list(client.logs.list(feedback=["up", "copied"])) == []
        assert list(client.logs.list(feedback="none")) == []
        with pytest.raises(InternalServerError):  # only the body sent matters
            client.prompts.call(PATH, consent=False, feedback_token=True)
    assert seen[0].url.params.get_list("feedback") == ["up", "copied"]
    assert seen[1].url.params.get_list("feedback") == ["none"]
    body = json.loads(seen[2].content)
    assert (body["consent"], body["feedback_token"]) == (False, True)


# --- retention tracking ----------------------------------------------------------------------


def test_retained_share_measures_what_survives() -> None:
    assert retained_share("", "anything") == 1.0
    assert retained_share("abcd", "abcd") == 1.0
    assert retained_share("abcd", "") == 0.0
    assert retained_share("abcdefgh", "xxabcdyy") == 0.5
    assert retained_share("hello world", "Hello, world!") == pytest.approx(10 / 11)
    # Long texts are compared by lines and sentences, quickly.
    generated = "".join(f"Sentence number {i} says something. " for i in range(3000))
    current = "An intro.\n" + generated[: len(generated) // 2] + "\nAn outro."
    started = time.perf_counter()
    assert retained_share(generated, current) == pytest.approx(0.5, abs=0.01)
    assert time.perf_counter() - started < 1.0


def test_retention_is_measured_in_the_background_while_the_host_is_busy(
    sdk: Client, answered: Callable[..., str]
) -> None:
    log_id = answered()
    text = {"now": ANSWER}
    started = time.monotonic()
    tracker = sdk.feedback.track_retention(
        log_id, lambda: text["now"], after=(0.5, 0.2), output=ANSWER
    )
    assert time.monotonic() - started < 0.1  # returns at once
    edited = False
    while time.monotonic() - started < 1.0:  # the host busy in pure Python, holding the GIL
        if not edited and time.monotonic() - started > 0.35:
            text["now"] = ANSWER[: len(ANSWER) // 2]  # the user deleted the rest
            edited = True
    assert tracker.wait(timeout=5)
    [(first, kept), (second, half)] = tracker.results
    assert (first, kept, second) == (0.2, 1.0, 0.5)
    assert half == pytest.approx(0.5, abs=0.02)
    recorded = [(f.name, f.delay_s, f.value) for f in sdk.feedback.list(log_id)]
    assert recorded == [("retained", 0.2, 1.0), ("retained", 0.5, half)]


def test_retention_reads_the_output_from_the_log_and_survives_host_errors(
    sdk: Client, answered: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    log_id = answered()
    calls: list[float] = []

    def read() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("editor closed")
        return "Intro. " + ANSWER

    with caplog.at_level(logging.WARNING, logger="promptloop"):
        tracker = sdk.feedback.track_retention(log_id, read, after=(0, 0.1))
        assert tracker.wait(timeout=5)
    assert tracker.results == [(0.1, 1.0)]  # the output came from the log
    [warning] = [r for r in caplog.records if r.name == "promptloop"]
    assert "read_current_text() raised" in warning.getMessage() and log_id in warning.getMessage()
    assert warning.exc_info is not None and "editor closed" in str(warning.exc_info[1])


def test_cancel_stops_further_checks(sdk: Client, answered: Callable[..., str]) -> None:
    log_id = answered()
    tracker = sdk.feedback.track_retention(log_id, lambda: ANSWER, after=(0, 0.3, 0.6))
    deadline = time.monotonic() + 5
    while not tracker.results and time.monotonic() < deadline:
        time.sleep(0.01)
    tracker.cancel()
    assert tracker.wait(timeout=1) and tracker.done
    time.sleep(0.4)
    assert tracker.results == [(0.0, 1.0)]
    assert [f.delay_s for f in sdk.feedback.list(log_id)] == [0.0]
    assert sdk._retention.pending == 0


def test_retention_stops_when_the_output_was_withheld_or_the_log_is_unknown(
    sdk: Client,
    server: TestClient,
    project: tuple[str, str],
    answered: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    name, key = project
    changed = server.patch(
        f"/api/v1/projects/{name}",
        json={"content_capture": "with_consent"},
        headers={"Authorization": f"Bearer {key}", "Promptloop-Project": name},
    )
    assert changed.status_code == 200, changed.text
    log_id = answered()  # no consent: the output is not stored
    assert sdk.logs.get(log_id).withheld
    with caplog.at_level(logging.WARNING, logger="promptloop"):
        withheld = sdk.feedback.track_retention(log_id, lambda: ANSWER, after=(0, 0.05))
        unknown = sdk.feedback.track_retention("no-such-log", lambda: ANSWER, after=(0, 0.05))
        assert withheld.wait(timeout=5) and unknown.wait(timeout=5)
    assert withheld.results == unknown.results == []
    messages = [r.getMessage() for r in caplog.records if r.name == "promptloop"]
    assert f"Stopped tracking the retention of log {log_id}: its content was withheld." in messages
    assert sum("no-such-log" in message for message in messages) == 1  # not asked again
    assert sdk.feedback.list(log_id) == []


def test_retention_retries_busy_servers_and_reports_refusals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = [
        httpx.Response(503, headers={"Retry-After": "0"}),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(201, json=_feedback_body()),
        httpx.Response(400, json={"error": {"code": "invalid_input", "message": "No."}}),
    ]
    posts: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posts.append(json.loads(request.content))
        return answers.pop(0)

    with (
        Client(URL, transport=httpx.MockTransport(handler)) as client,
        caplog.at_level(logging.INFO, logger="promptloop"),
    ):
        tracker = client.feedback.track_retention(
            "log-1", lambda: "ab", after=(0, 0), output="abcd"
        )
        assert tracker.wait(timeout=5)
    assert tracker.results == [(0.0, 0.5)]
    assert posts == [{"name": "retained", "value": 0.5, "delay_s": 0.0, "source": "sdk"}] * 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Recording the 0 s retention of log log-1 failed (HTTP 400 invalid_input: No.)."
    ]
    with pytest.raises(ValueError, match="after must list delays"):
        Client(URL).feedback.track_retention("log-1", lambda: "", after=(-1,))


def _feedback_body() -> dict[str, Any]:
    return {
        "id": "f1",
        "log_id": "log-1",
        "name": "retained",
        "category": "action",
        "value": 0.5,
        "score": 1.0,
        "delay_s": 0.0,
        "recorded_by": "key:t",
        "source": "sdk",
        "created_at": datetime.now(UTC).isoformat(),
    }


def _through(server: TestClient) -> httpx.MockTransport:
    """A plain httpx transport that hands requests to the in-process server."""

    def forward(request: httpx.Request) -> httpx.Response:
        response = server.request(
            request.method, str(request.url), headers=request.headers, content=request.content
        )
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )

    return httpx.MockTransport(forward)


# --- interpreter exit and fork, in subprocesses ----------------------------------------------

PRELUDE = """
import json, logging, os, sys, threading, time
from datetime import UTC, datetime
import httpx
from promptloop import Client

logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(message)s")
for noisy in ("httpx", "httpcore"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
posts = []

def handler(request):
    body = json.loads(request.content)
    posts.append((os.getpid(), body["delay_s"]))
    return httpx.Response(201, json={
        "id": "f", "log_id": "l", "name": "retained", "category": "action", "value": 1.0,
        "recorded_by": "k", "source": "sdk", "created_at": datetime.now(UTC).isoformat(),
    })

client = Client("http://sdk.test", transport=httpx.MockTransport(handler))
"""


def _run(script: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(PRELUDE) + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)


def test_pending_checks_are_dropped_at_exit() -> None:
    started = time.monotonic()
    result = _run(
        """
        tracker = client.feedback.track_retention("l", lambda: "x", after=(0, 60, 120), output="x")
        assert tracker.wait(timeout=0.01) is False
        time.sleep(0.2)
        print(tracker.results)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[(0.0, 1.0)]"
    assert "DEBUG Dropped 2 pending retention checks." in result.stderr
    assert time.monotonic() - started < 10


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_without_the_parents_checks() -> None:
    result = _run(
        """
        parent = client.feedback.track_retention("l", lambda: "x", after=(0.3,), output="x")
        pid = os.fork()
        if pid == 0:
            ok = parent.done and client._retention.pending == 0
            mine = client.feedback.track_retention("l", lambda: "x", after=(0.1,), output="x")
            ok = ok and mine.wait(timeout=5) and mine.results == [(0.1, 1.0)]
            ok = ok and posts == [(os.getpid(), 0.1)]
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert parent.wait(timeout=5), "the parent's check ran"
        print(os.waitstatus_to_exitcode(status), parent.results, [d for _, d in posts])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 [(0.3, 1.0)] [0.3]"
