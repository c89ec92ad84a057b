"""Streamed calls: reading server-sent events, and `CallStream`, what `prompts.stream` returns.

A streamed call answers `delta` events (`{"text"}`) and then one `done` event holding the
call's result, or one `error` event when the provider failed after the stream began.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import Self

import httpx

from promptloop.sdk._errors import APIResponseValidationError, event_error
from promptloop.sdk._models import CallResult
from promptloop.sdk._requests import Call

Event = str | CallResult
"""What a stream yields inside the SDK: a piece of text, or the result that ends it."""


class EventDecoder:
    """Server-sent events from the lines of a body: `feed` each line, get `(event, data)`
    when a blank line ends an event. Comments and unknown fields are skipped, as the
    specification asks."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if not line:
            event, data = self._event or "message", "\n".join(self._data)
            dispatch = bool(self._data)
            self._event, self._data = "", []
            return (event, data) if dispatch else None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def read_event(
    call: Call[CallResult], response: httpx.Response, event: str, data: str
) -> Event | None:
    """The text or result an event carries; raises for `error` events. Unknown events (a
    newer server's) are skipped: None."""
    if event not in ("delta", "done", "error"):
        return None
    try:
        body = json.loads(data)
        if event == "delta":
            text = body["text"]
            if not isinstance(text, str):
                raise ValueError("a delta's text is not a string")
            return text
        if event == "done":
            return call.read(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise APIResponseValidationError(
            f"The {event!r} event of {call.method} {response.request.url} is not what this SDK "
            f"expects; is the server a promptloop server of a compatible version? ({exc!r})",
            response=response,
        ) from exc
    raise event_error(response, body)


class CallStream:
    """A streamed call: iterate it for the output's text as it arrives, then read `result`.

        with client.prompts.stream("support/answer", {"question": question}) as stream:
            for text in stream:
                print(text, end="", flush=True)
        print(stream.result.log_id, stream.result.cost)

    The request is sent when iteration starts, so the errors of `prompts.call` raise from the
    loop; a provider failing mid-stream raises the APIStatusError of its status, with
    `details["log_id"]`. Leaving the `with` block (or `close()`) ends the request early.
    """

    def __init__(self, events: Generator[Event, None, None]) -> None:
        self._events = events
        self._result: CallResult | None = None

    def __iter__(self) -> Iterator[str]:
        for event in self._events:
            if isinstance(event, CallResult):
                self._result = event
            else:
                yield event

    @property
    def result(self) -> CallResult:
        """The whole call, as `prompts.call` returns it; there once the stream is read to its end."""
        return _finished(self._result)

    def close(self) -> None:
        """Stop reading and release the connection."""
        self._events.close()

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
        return f"<CallStream {'done' if self._result else 'open'}>"


class AsyncCallStream:
    """`CallStream` for `AsyncClient`: iterate it with `async for`, then read `result`.

    async with client.prompts.stream("support/answer", {"question": question}) as stream:
        async for text in stream:
            print(text, end="", flush=True)
    print(stream.result.log_id)
    """

    def __init__(self, events: AsyncGenerator[Event, None]) -> None:
        self._events = events
        self._result: CallResult | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        async for event in self._events:
            if isinstance(event, CallResult):
                self._result = event
            else:
                yield event

    @property
    def result(self) -> CallResult:
        """The whole call, as `prompts.call` returns it; there once the stream is read to its end."""
        return _finished(self._result)

    async def aclose(self) -> None:
        """Stop reading and release the connection."""
        await self._events.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncCallStream {'done' if self._result else 'open'}>"


def _finished(result: CallResult | None) -> CallResult:
    if result is None:
        raise RuntimeError(
            "The stream has no result yet: iterate it to its end first (`for text in stream`)."
        )
    return result


def ended_early(response: httpx.Response) -> APIResponseValidationError:
    """For a stream whose body ended cleanly without its `done` or `error` event (a cut
    connection raises APIConnectionError instead)."""
    return APIResponseValidationError(
        f"The stream of {response.request.url} ended without the call's result; is the server "
        "a promptloop server of a compatible version, or did a proxy end the response?",
        response=response,
    )
