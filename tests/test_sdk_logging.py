"""`client.logs.log`: logs queued in memory and sent in batches by a background thread.

The queue must never hurt its host: `log()` returns at once and never raises, whatever the
server does; what goes wrong is reported through the `promptloop` logger. Tests run against
the in-process server (through a transport that can fail requests before or after the server
saw them), against a recording transport, and, for interpreter exit and fork, in subprocesses
talking to a small recording HTTP server on 127.0.0.1. Nothing leaves the loopback interface.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from promptloop import AsyncClient, Client, Message
from promptloop.api.app import create_app
from promptloop.services import local
from promptloop.settings import Settings

URL = "http://testserver"
BATCH_PATH = "/api/v1/logs/batch"


@pytest.fixture(autouse=True)
def _no_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROMPTLOOP_URL", "PROMPTLOOP_API_KEY", "PROMPTLOOP_PROJECT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def server(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def admin_key(server: TestClient, settings: Settings) -> str:
    return local.create_api_key(settings, project="default", role="admin", name="t").secret


class Flaky:
    """A transport handler in front of the in-process server: the first batch posts get the
    planned failures, the rest (and every other request) reach the server.

    A failure is an HTTP status, a response, or an exception to raise; `after_server=True`
    lets the server store the batch first, as when its answer is lost on the way back.
    """

    def __init__(
        self,
        server: TestClient,
        *failures: int | httpx.Response | Exception,
        after_server: bool = False,
    ) -> None:
        self.server = server
        self.failures = list(failures)
        self.after_server = after_server
        self.batch_posts: list[float] = []  # when each arrived

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != BATCH_PATH:
            return self._forward(request)
        self.batch_posts.append(time.monotonic())
        if not self.failures:
            return self._forward(request)
        failure = self.failures.pop(0)
        if self.after_server:
            self._forward(request)
        if isinstance(failure, Exception):
            raise failure
        if isinstance(failure, int):
            return httpx.Response(failure, json={"error": {"code": "c", "message": "Failed."}})
        return failure

    def _forward(self, request: httpx.Request) -> httpx.Response:
        response = self.server.request(
            request.method, str(request.url), headers=request.headers, content=request.content
        )
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )


class Batches:
    """A transport handler that answers batch posts as the server does and records them;
    with `gate`, each post waits until the gate opens (a server that hangs)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.bodies: list[list[dict[str, Any]]] = []
        self.sizes: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.gate is not None:
            self.gate.wait(timeout=30)
        logs = json.loads(request.content)["logs"]
        self.bodies.append(logs)
        self.sizes.append(len(request.content))
        return httpx.Response(201, json={"ids": [log["id"] for log in logs]})

    @property
    def ids(self) -> list[str]:
        return [log["id"] for body in self.bodies for log in body]


def via(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> Client:
    return Client(URL, transport=httpx.MockTransport(handler), **kwargs)


def dropped(caplog: pytest.LogCaptureFixture, reason: str) -> int:
    """How many logs the `promptloop` logger reported dropped for `reason`."""
    return sum(
        int(record.args[0])  # type: ignore[index,arg-type]
        for record in caplog.records
        if record.name == "promptloop" and reason in record.getMessage()
    )


# --- delivery to the in-process server ----------------------------------------------------


def test_logs_arrive_after_flush_with_their_client_side_ids(
    server: TestClient, admin_key: str
) -> None:
    with Client(URL, http_client=server, api_key=admin_key) as client:
        saved = client.prompts.save(
            "support/answer",
            provider="openai",
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Hi {{ name }}"}],
        )
        when = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
        linked = client.logs.log(
            prompt="support/answer",
            version=saved.id,
            environment="production",
            inputs={"name": "Ada"},
            messages=[
                Message(role="user", content="Hi Ada"),
                {"role": "assistant", "content": "Hey"},
            ],
            output="Hey",
            prompt_tokens=3,
            output_tokens=1,
            latency_ms=12.5,
            end_user="u-1",
            metadata={"team": "eu", "at": when},
            trace_id="trace-1",
            created_at=when,
        )
        plain = client.logs.log(output="plain", error="Timeout")
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in (linked, plain))
        assert client.logs.flush(timeout=30) is True
        log = client.logs.get(linked)
        assert (log.id, log.source, log.prompt, log.version, log.model) == (
            linked,
            "sdk",
            "support/answer",
            saved.id,
            "gpt-4o-mini",  # from the linked version
        )
        assert log.messages == [
            {"role": "user", "content": "Hi Ada"},
            {"role": "assistant", "content": "Hey"},
        ]
        assert log.metadata == {"team": "eu", "at": "2025-05-01T12:00:00+00:00"}
        assert (log.created_at, log.latency_ms, log.trace_id) == (when, 12.5, "trace-1")
        assert client.logs.get(plain).error == "Timeout"
        assert {entry.id for entry in client.logs.list(source="sdk")} == {linked, plain}


def test_server_errors_are_retried_and_the_logs_stored_once(
    server: TestClient, admin_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="promptloop")
    flaky = Flaky(server, 500, 500, after_server=True)  # stored, but the answer says 500
    with via(flaky, api_key=admin_key) as client:
        ids = [client.logs.log(output=f"o{i}") for i in range(3)]
        assert client.logs.flush(timeout=30)
        stored = [log.id for log in client.logs.list()]
    assert len(flaky.batch_posts) == 3
    assert sorted(stored) == sorted(ids)  # the same ids sent three times, stored once
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2 and "HTTP 500" in retries[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_connection_errors_and_429_are_retried_honouring_retry_after(
    server: TestClient, admin_key: str
) -> None:
    slow_down = httpx.Response(429, headers={"Retry-After": "1"}, json={})
    flaky = Flaky(server, httpx.ConnectError("connection refused"), slow_down)
    with via(flaky, api_key=admin_key) as client:
        log_id = client.logs.log(output="eventually")
        assert client.logs.flush(timeout=30)
        assert client.logs.get(log_id).output == "eventually"
    _refused, second, third = flaky.batch_posts
    assert third - second >= 0.95  # waited as the server asked


def test_retries_are_bounded_then_the_batch_is_dropped_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    posts: list[httpx.Request] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        body = {"error": {"code": "unavailable", "message": "Down for maintenance."}}
        return httpx.Response(503, headers={"Retry-After": "0"}, json=body)

    with via(unavailable) as client:
        client.logs.log(output="lost")
        assert client.logs.flush(timeout=30)
    assert len(posts) == 5
    [record] = [r for r in caplog.records if r.name == "promptloop"]
    assert record.levelno == logging.ERROR
    assert "Dropped 1 log after 5 attempts: HTTP 503 unavailable" in record.getMessage()


@pytest.mark.parametrize(("status", "count"), [(400, 1), (401, 3), (403, 3), (409, 3)])
def test_other_client_errors_are_not_retried_and_are_reported(
    status: int, count: int, caplog: pytest.LogCaptureFixture
) -> None:
    posts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        return httpx.Response(status, json={"error": {"code": "no", "message": "Not so."}})

    with via(refuse) as client:
        for i in range(count):
            client.logs.log(output=str(i))
        assert client.logs.flush(timeout=30)
    assert len(posts) == 1  # not retried; nor split, as the key, not a log, is the cause
    [record] = [r for r in caplog.records if r.name == "promptloop"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"Dropped {count} log{'s' if count > 1 else ''}: the server refused them "
        f"(HTTP {status} no: Not so.)."
    )


def test_a_refused_log_does_not_take_its_batch_down(
    server: TestClient, admin_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = Flaky(server)
    with via(flaky, api_key=admin_key) as client:
        good = [client.logs.log(output=f"good {i}") for i in range(6)]
        unknown = client.logs.log(output="x", prompt="no/such/prompt")  # 404
        negative = client.logs.log(output="y", prompt_tokens=-1)  # 422
        good.append(client.logs.log(output="good 6"))
        assert client.logs.flush(timeout=30)
        stored = {log.id for log in client.logs.list()}
    assert stored == set(good)
    refused = [r.getMessage() for r in caplog.records if r.name == "promptloop"]
    assert len(refused) == 2
    assert any("Dropped 1 log: the server refused them (HTTP 404 not_found" in m for m in refused)
    assert any("HTTP 422 validation_error" in m for m in refused)
    assert unknown != negative


# --- the host is never hurt ----------------------------------------------------------------


def test_a_full_queue_drops_new_logs_with_a_warning_and_never_blocks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()
    batches = Batches(gate)
    client = via(batches, max_queue=10, flush_at=1)
    try:
        ids, slowest = [], 0.0
        for i in range(100):
            started = time.perf_counter()
            ids.append(client.logs.log(output=str(i)))
            slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 0.1  # the server hangs; logging does not
        assert client.logs.flush(timeout=0.2) is False  # gives up as told
        warnings = [r for r in caplog.records if "the queue is full" in r.getMessage()]
        assert warnings and all(r.levelno == logging.WARNING for r in warnings)
        assert "max_queue=10" in warnings[0].getMessage()
    finally:
        gate.set()
    assert client.logs.flush(timeout=30) is True
    client.close()
    sent = batches.ids
    assert 10 <= len(sent) <= 11  # what the queue held, plus the one being sent
    assert sent[:10] == ids[:10]  # the oldest are kept, the newest dropped
    assert sent == sorted(sent, key=ids.index)  # in order
    assert dropped(caplog, "the queue is full") == 100 - len(sent)


def test_a_value_that_is_not_json_drops_only_its_log(caplog: pytest.LogCaptureFixture) -> None:
    batches = Batches()
    with via(batches) as client:
        before = client.logs.log(output="fine")
        opaque = client.logs.log(output="x", metadata={"handle": object()})
        nan = client.logs.log(output="y", cost=float("nan"))
        cycle: dict[str, Any] = {}
        cycle["self"] = cycle
        circular = client.logs.log(output="z", inputs=cycle)
        after = client.logs.log(output="fine too", metadata={"day": datetime(2025, 1, 1).date()})
        assert client.logs.flush(timeout=30)
    assert batches.ids == [before, after]
    assert batches.bodies[0][1]["metadata"] == {"day": "2025-01-01"}
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 3
    assert messages[0].startswith(f"Dropped log {opaque}: its metadata cannot be sent as JSON")
    assert messages[1].startswith(f"Dropped log {nan}: its cost cannot")
    assert messages[2].startswith(f"Dropped log {circular}: its inputs cannot")


def test_ten_thousand_logs_take_well_under_a_second_of_the_callers_time() -> None:
    batches = Batches()
    with via(batches) as client:
        started = time.perf_counter()
        for i in range(10_000):
            client.logs.log(
                prompt="support/answer",
                output=f"answer {i}",
                prompt_tokens=10,
                output_tokens=20,
                metadata={"i": i},
            )
        elapsed = time.perf_counter() - started
        assert client.logs.flush(timeout=60)
    assert elapsed < 2.0, f"10,000 log() calls took {elapsed:.2f} s"
    assert len(set(batches.ids)) == 10_000
    assert max(len(body) for body in batches.bodies) <= 100


def test_batches_leave_by_count_by_size_and_by_interval() -> None:
    batches = Batches()
    with via(batches, flush_at=10, flush_interval=60) as client:
        for i in range(25):
            client.logs.log(output=str(i))
        assert client.logs.flush(timeout=30)
        assert [len(body) for body in batches.bodies] == [10, 10, 5]
        batches.bodies.clear()
        batches.sizes.clear()
        for _ in range(5):
            client.logs.log(output="x" * 400_000)
        assert client.logs.flush(timeout=30)
    assert [len(body) for body in batches.bodies] == [2, 2, 1]  # about 1 MB each at most
    assert max(batches.sizes) <= 1_000_000
    timed = Batches()
    with via(timed, flush_interval=0.05) as client:
        log_id = client.logs.log(output="soon")
        deadline = time.monotonic() + 10
        while not timed.ids and time.monotonic() < deadline:
            time.sleep(0.01)
        assert timed.ids == [log_id]  # sent without a flush


def test_close_sends_what_is_queued_and_later_logs_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batches = Batches()
    client = via(batches, flush_interval=60)
    ids = [client.logs.log(output=str(i)) for i in range(3)]
    client.close()
    assert batches.ids == ids
    late = client.logs.log(output="late")  # still an id, never an exception
    assert isinstance(late, str)
    assert client.logs.flush(timeout=5)
    assert batches.ids == ids
    assert dropped(caplog, "the client is closed") == 1


def test_nothing_is_started_before_the_first_log() -> None:
    before = {t.ident for t in threading.enumerate()}
    with via(Batches()) as client:
        client.logs.flush()
        assert {t.ident for t in threading.enumerate()} == before


# --- the async client ---------------------------------------------------------------------


@pytest.fixture
async def async_sdk(server: TestClient, app: FastAPI, admin_key: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        URL, transport=httpx.ASGITransport(app=app), api_key=admin_key
    ) as client:
        yield client


async def test_async_client_logs_through_its_async_transport(async_sdk: AsyncClient) -> None:
    log_id = async_sdk.logs.log(output="from asyncio", end_user="u-a")  # not awaited: it queues
    assert await async_sdk.logs.flush(timeout=30)
    assert (await async_sdk.logs.get(log_id)).output == "from asyncio"
    assert [log.id async for log in async_sdk.logs.list(end_user="u-a")] == [log_id]


def test_async_client_logs_without_a_running_event_loop() -> None:
    batches = Batches()
    client = AsyncClient(transport=httpx.MockTransport(batches), flush_interval=60)
    log_id = client.logs.log(output="no loop here")
    assert asyncio.run(client.logs.flush(timeout=30)) is True
    assert batches.ids == [log_id]
    asyncio.run(client.close())


# --- interpreter exit and fork, in subprocesses ---------------------------------------------


class RecordingServer(ThreadingHTTPServer):
    """Answers POST /api/v1/logs/batch as promptloop does, remembering every log received."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _RecordingHandler(BaseHTTPRequestHandler):
    server: RecordingServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        logs = json.loads(body)["logs"] if self.path == BATCH_PATH else []
        with self.server.lock:
            self.server.received.extend(logs)
        reply = json.dumps({"ids": [log["id"] for log in logs]}).encode()
        self.send_response(201 if self.path == BATCH_PATH else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[RecordingServer]:
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_python(script: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env = {k: v for k, v in env.items() if not k.startswith("PROMPTLOOP_")}
    code = textwrap.dedent(script).replace("URL", repr(url))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )


def test_logs_still_queued_are_sent_when_the_interpreter_exits(
    recorder: RecordingServer,
) -> None:
    result = run_python(
        """
        import promptloop

        client = promptloop.Client(URL, flush_interval=60)  # no batch leaves on its own
        print(" ".join(client.logs.log(output=f"exit {i}") for i in range(3)))
        """,
        recorder.url,
    )
    assert result.returncode == 0, result.stderr
    assert [log["id"] for log in recorder.received] == result.stdout.split()
    assert [log["output"] for log in recorder.received] == ["exit 0", "exit 1", "exit 2"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_logs_through_a_thread_of_its_own(recorder: RecordingServer) -> None:
    result = run_python(
        """
        import os, threading
        import promptloop

        client = promptloop.Client(URL, flush_interval=60)
        client.logs.log(output="parent before fork")  # the parent's thread holds it
        pid = os.fork()
        if pid == 0:
            for i in range(3):
                client.logs.log(output=f"child {i}")
            alive = [t.name for t in threading.enumerate() if t.name == "promptloop-logs"]
            sent = client.logs.flush(timeout=30)
            print("child", alive == ["promptloop-logs"], sent, flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        client.logs.log(output="parent after fork")
        print("parent", client.logs.flush(timeout=30), os.waitstatus_to_exitcode(status))
        """,
        recorder.url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["child True True", "parent True 0"]
    outputs = sorted(log["output"] for log in recorder.received)
    assert outputs == sorted(
        ["parent before fork", "child 0", "child 1", "child 2", "parent after fork"]
    )  # each once: the child did not resend what the parent had queued
