"""`Client` and `AsyncClient`: the same calls, sent with httpx synchronously or with asyncio."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel

from promptloop.sdk._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    status_error,
)
from promptloop.sdk._log_queue import LogQueue
from promptloop.sdk._models import CallResult, Health
from promptloop.sdk._requests import Call, Page, Pages, health
from promptloop.sdk._resources import (
    AsyncDatasets,
    AsyncEnvironments,
    AsyncEvaluations,
    AsyncEvaluators,
    AsyncFeedbackResource,
    AsyncFineTunes,
    AsyncLogs,
    AsyncProjects,
    AsyncPrompts,
    Datasets,
    Environments,
    Evaluations,
    Evaluators,
    FeedbackResource,
    FineTunes,
    Logs,
    Projects,
    Prompts,
)
from promptloop.sdk._retention import RetentionScheduler
from promptloop.sdk._streams import Event, EventDecoder, ended_early, read_event

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"
PROJECT_HEADER = "Promptloop-Project"
Timeout = float | httpx.Timeout | None


class _Connection:
    """What both clients share: the server's address, the headers, and reading answers."""

    def __init__(self, url: str | None, api_key: str | None, project: str | None) -> None:
        from promptloop import __version__  # here: the package imports this module first

        self.url = (url or os.environ.get("PROMPTLOOP_URL") or DEFAULT_URL).rstrip("/")
        self.project = project or os.environ.get("PROMPTLOOP_PROJECT") or None
        api_key = api_key or os.environ.get("PROMPTLOOP_API_KEY") or None
        self.headers = {"User-Agent": f"promptloop-python/{__version__}"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        if self.project:
            self.headers[PROJECT_HEADER] = self.project

    def build(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        return http.build_request(
            call.method,
            self.url + API_PREFIX + call.path,
            params=call.params or None,
            json=call.json,
            files=call.files,
            data=call.form,
            headers=self.headers,
        )

    def read(self, call: Call[T], response: httpx.Response) -> T:
        """The call's result, or the error the response stands for."""
        if response.is_error:
            raise status_error(response)
        try:
            return call.read(response.content if call.raw else response.json())
        except ValueError as exc:  # bad JSON and pydantic's ValidationError alike
            raise APIResponseValidationError(
                f"The answer of {call.method} {response.request.url} is not what this SDK "
                f"expects; is {self.url} a promptloop server of a compatible version? ({exc})",
                response=response,
            ) from exc

    def log_request(self) -> tuple[str, dict[str, str]]:
        """Where the log thread posts batches of logs, and with which headers."""
        headers = {**self.headers, "Content-Type": "application/json"}
        return self.url + API_PREFIX + "/logs/batch", headers

    def __repr__(self) -> str:
        return f"url={self.url!r} project={self.project!r}"


@contextmanager
def _reaching(request: httpx.Request) -> Iterator[None]:
    """Turn httpx's network failures into the SDK's, with a hint at the likely cause."""
    server = f"{request.url.scheme}://{request.url.netloc.decode()}"
    try:
        yield
    except httpx.TimeoutException as exc:
        raise APITimeoutError(
            f"The promptloop server at {server} did not answer in time ({type(exc).__name__}); "
            "pass a larger timeout= to the client if the call is expected to be slow.",
            request=request,
        ) from exc
    except httpx.TransportError as exc:
        raise APIConnectionError(
            f"Could not reach the promptloop server at {server}: {str(exc) or type(exc).__name__}. "
            "Is it running (`promptloop serve`), and does PROMPTLOOP_URL point at it?",
            request=request,
        ) from exc


class _ThreadSender:
    """Sends from a background thread (batches of logs, retention checks) through a
    synchronous httpx client; closes it only when it is its own."""

    def __init__(self, connection: _Connection, http: httpx.Client, *, owned: bool) -> None:
        self._connection = connection
        self._url, self._headers = connection.log_request()
        self._http = http
        self._owned = owned

    def send(self, body: bytes) -> httpx.Response:
        return self._http.post(self._url, content=body, headers=self._headers)

    def request(self, call: Call[Any]) -> httpx.Response:
        return self._http.send(self._connection.build(self._http, call))

    def close(self) -> None:
        if self._owned:
            self._http.close()


class _LoopSender:
    """Sends from a background thread through an async-only transport (`httpx.ASGITransport`)
    on an event loop of the thread's own, so it never needs the application's loop."""

    def __init__(
        self, connection: _Connection, transport: httpx.AsyncBaseTransport, timeout: Timeout
    ) -> None:
        self._connection = connection
        self._url, self._headers = connection.log_request()
        self._loop = asyncio.new_event_loop()
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)

    def send(self, body: bytes) -> httpx.Response:
        posting = self._http.post(self._url, content=body, headers=self._headers)
        return self._loop.run_until_complete(posting)

    def request(self, call: Call[Any]) -> httpx.Response:
        sending = self._http.send(self._connection.build(self._http, call))
        return self._loop.run_until_complete(sending)

    def close(self) -> None:
        self._loop.close()  # not the transport: it is the client's


_Sender = _ThreadSender | _LoopSender
"""What the log thread (`send`) and the retention thread (`request`) open to reach the server."""


def _sync_sender(
    connection: _Connection,
    http_client: httpx.Client | None,
    transport: httpx.BaseTransport | None,
    timeout: Timeout,
) -> Callable[[], _Sender]:
    """How `Client`'s background threads send: through the given `http_client`, else through
    a client of their own (new in a forked child, unlike pooled connections inherited from the
    parent)."""

    def open_sender() -> _Sender:
        if http_client is not None:
            return _ThreadSender(connection, http_client, owned=False)
        http = httpx.Client(timeout=timeout, transport=transport)
        return _ThreadSender(connection, http, owned=transport is None)

    return open_sender


def _async_sender(
    connection: _Connection, transport: httpx.AsyncBaseTransport | None, timeout: Timeout
) -> Callable[[], _Sender]:
    """How `AsyncClient`'s background threads send: through `transport` (synchronously if it
    can), else through a synchronous client of their own. Network connections made on the
    application's event loop (those of `http_client`, or of an `httpx.AsyncHTTPTransport`)
    cannot serve another thread's loop, so they are not used."""

    def open_sender() -> _Sender:
        if transport is None or isinstance(transport, httpx.AsyncHTTPTransport):
            return _ThreadSender(connection, httpx.Client(timeout=timeout), owned=True)
        if isinstance(transport, httpx.BaseTransport):  # e.g. httpx.MockTransport
            http = httpx.Client(timeout=timeout, transport=transport)
            return _ThreadSender(connection, http, owned=False)
        return _LoopSender(connection, transport, timeout)

    return open_sender


def _check(transport: object, http_client: object) -> None:
    if transport is not None and http_client is not None:
        raise ValueError(
            "Give transport or http_client, not both: set the transport on the client."
        )


class Client:
    """A synchronous client of a promptloop server.

        from promptloop import Client

        with Client() as client:  # PROMPTLOOP_URL, PROMPTLOOP_API_KEY, PROMPTLOOP_PROJECT
            version = client.prompts.get("support/answer", environment="production")
            rendered = client.prompts.render("support/answer", {"question": "Hi?"})

    `url` defaults to `$PROMPTLOOP_URL`, else http://127.0.0.1:8000; `api_key` to
    `$PROMPTLOOP_API_KEY`; `project` to `$PROMPTLOOP_PROJECT`, else the server's default.
    `transport` replaces httpx's network layer (e.g. `httpx.MockTransport` in tests);
    `http_client` is an `httpx.Client` to send through instead (proxies, TLS settings), which
    the caller closes.

    `client.logs.log(...)` queues logs that a background thread sends in batches: at most
    `max_queue` wait (more are dropped, and reported through the `promptloop` logger); a batch
    leaves when `flush_at` logs wait or `flush_interval` seconds after the first. `close()`
    and the interpreter's exit send what is left. `client.feedback.track_retention(...)`
    schedules checks that another background thread runs.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        project: str | None = None,
        timeout: Timeout = 30.0,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        max_queue: int = 10_000,
        flush_at: int = 100,
        flush_interval: float = 0.5,
    ) -> None:
        _check(transport, http_client)
        self._connection = _Connection(url, api_key, project)
        open_sender = _sync_sender(self._connection, http_client, transport, timeout)
        self._log_queue = LogQueue(
            open_sender,
            max_queue=max_queue,
            flush_at=flush_at,
            flush_interval=flush_interval,
        )
        self._retention = RetentionScheduler(open_sender)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout, transport=transport)
        self.projects = Projects(self)
        self.environments = Environments(self)
        self.prompts = Prompts(self)
        self.logs = Logs(self)
        self.feedback = FeedbackResource(self)
        self.datasets = Datasets(self)
        self.evaluators = Evaluators(self)
        self.evaluations = Evaluations(self)
        self.fine_tunes = FineTunes(self)

    def health(self) -> Health:
        """Check that the server and its database answer."""
        return self._send(health())

    def close(self) -> None:
        """Send the logs still queued (waiting up to 10 s), drop the retention checks not run
        yet, then close the connections (not those of an `http_client` passed in)."""
        self._retention.close()
        self._log_queue.close()
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {self._connection!r}>"

    def _send(self, call: Call[T]) -> T:
        request = self._connection.build(self._http, call)
        with _reaching(request):
            response = self._http.send(request)
        return self._connection.read(call, response)

    def _iterate(self, pages: Pages[M]) -> Iterator[M]:
        call: Call[Page[M]] | None = pages.first()
        while call is not None:
            page = self._send(call)
            yield from page.items
            call = pages.after(page)

    def _stream(self, call: Call[CallResult]) -> Generator[Event, None, None]:
        request = self._connection.build(self._http, call)
        with _reaching(request):
            response = self._http.send(request, stream=True)
            try:
                if response.is_error:
                    response.read()
                    raise status_error(response)
                decoder = EventDecoder()
                for line in response.iter_lines():
                    if (event := decoder.feed(line)) is None:
                        continue
                    if (item := read_event(call, response, *event)) is not None:
                        yield item
                        if isinstance(item, CallResult):
                            return
                raise ended_early(response)
            finally:
                response.close()


class AsyncClient:
    """An asyncio client of a promptloop server; the methods of `Client`, awaitable.

        from promptloop import AsyncClient

        async with AsyncClient() as client:
            version = await client.prompts.get("support/answer", environment="production")
            async for old in client.prompts.versions("support/answer"):
                print(old.id, old.message)

    Arguments as for `Client`; `transport` is an async one (e.g. `httpx.ASGITransport`) and
    `http_client` an `httpx.AsyncClient`. Logs are sent by a thread, as `Client` sends them,
    so `client.logs.log(...)` needs no running event loop; that thread sends through an
    in-process `transport` (`httpx.ASGITransport`, `httpx.MockTransport`), else through a
    connection of its own (the application's event loop owns those of `http_client`).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        project: str | None = None,
        timeout: Timeout = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_queue: int = 10_000,
        flush_at: int = 100,
        flush_interval: float = 0.5,
    ) -> None:
        _check(transport, http_client)
        self._connection = _Connection(url, api_key, project)
        open_sender = _async_sender(self._connection, transport, timeout)
        self._log_queue = LogQueue(
            open_sender,
            max_queue=max_queue,
            flush_at=flush_at,
            flush_interval=flush_interval,
        )
        self._retention = RetentionScheduler(open_sender)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout, transport=transport)
        self.projects = AsyncProjects(self)
        self.environments = AsyncEnvironments(self)
        self.prompts = AsyncPrompts(self)
        self.logs = AsyncLogs(self)
        self.feedback = AsyncFeedbackResource(self)
        self.datasets = AsyncDatasets(self)
        self.evaluators = AsyncEvaluators(self)
        self.evaluations = AsyncEvaluations(self)
        self.fine_tunes = AsyncFineTunes(self)

    async def health(self) -> Health:
        """Check that the server and its database answer."""
        return await self._send(health())

    async def close(self) -> None:
        """Send the logs still queued (waiting up to 10 s), drop the retention checks not run
        yet, then close the connections (not those of an `http_client` passed in)."""
        await asyncio.to_thread(self._retention.close)
        await asyncio.to_thread(self._log_queue.close)
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncClient {self._connection!r}>"

    async def _send(self, call: Call[T]) -> T:
        request = self._connection.build(self._http, call)
        with _reaching(request):
            response = await self._http.send(request)
        return self._connection.read(call, response)

    async def _iterate(self, pages: Pages[M]) -> AsyncIterator[M]:
        call: Call[Page[M]] | None = pages.first()
        while call is not None:
            page = await self._send(call)
            for item in page.items:
                yield item
            call = pages.after(page)

    async def _stream(self, call: Call[CallResult]) -> AsyncGenerator[Event, None]:
        request = self._connection.build(self._http, call)
        with _reaching(request):
            response = await self._http.send(request, stream=True)
            try:
                if response.is_error:
                    await response.aread()
                    raise status_error(response)
                decoder = EventDecoder()
                async for line in response.aiter_lines():
                    if (event := decoder.feed(line)) is None:
                        continue
                    if (item := read_event(call, response, *event)) is not None:
                        yield item
                        if isinstance(item, CallResult):
                            return
                raise ended_early(response)
            finally:
                await response.aclose()
