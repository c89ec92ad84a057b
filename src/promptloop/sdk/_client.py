"""`Client` and `AsyncClient`: the same calls, sent with httpx synchronously or with asyncio."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
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
from promptloop.sdk._models import Health
from promptloop.sdk._requests import Call, Page, Pages, health
from promptloop.sdk._resources import (
    AsyncEnvironments,
    AsyncProjects,
    AsyncPrompts,
    Environments,
    Projects,
    Prompts,
)

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
            headers=self.headers,
        )

    def read(self, call: Call[T], response: httpx.Response) -> T:
        """The call's result, or the error the response stands for."""
        if response.is_error:
            raise status_error(response)
        try:
            return call.read(response.json())
        except ValueError as exc:  # bad JSON and pydantic's ValidationError alike
            raise APIResponseValidationError(
                f"The answer of {call.method} {response.request.url} is not what this SDK "
                f"expects; is {self.url} a promptloop server of a compatible version? ({exc})",
                response=response,
            ) from exc

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
    ) -> None:
        _check(transport, http_client)
        self._connection = _Connection(url, api_key, project)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout, transport=transport)
        self.projects = Projects(self)
        self.environments = Environments(self)
        self.prompts = Prompts(self)

    def health(self) -> Health:
        """Check that the server and its database answer."""
        return self._send(health())

    def close(self) -> None:
        """Close the connections (not those of an `http_client` passed in)."""
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


class AsyncClient:
    """An asyncio client of a promptloop server; the methods of `Client`, awaitable.

        from promptloop import AsyncClient

        async with AsyncClient() as client:
            version = await client.prompts.get("support/answer", environment="production")
            async for old in client.prompts.versions("support/answer"):
                print(old.id, old.message)

    Arguments as for `Client`; `transport` is an async one (e.g. `httpx.ASGITransport`) and
    `http_client` an `httpx.AsyncClient`.
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
    ) -> None:
        _check(transport, http_client)
        self._connection = _Connection(url, api_key, project)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout, transport=transport)
        self.projects = AsyncProjects(self)
        self.environments = AsyncEnvironments(self)
        self.prompts = AsyncPrompts(self)

    async def health(self) -> Health:
        """Check that the server and its database answer."""
        return await self._send(health())

    async def close(self) -> None:
        """Close the connections (not those of an `http_client` passed in)."""
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
