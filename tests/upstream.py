"""A fake OpenAI-compatible and Anthropic-compatible server on loopback, for tests that drive the
real SDKs without touching the internet.

Answers are scripted: queue `Reply`, `Failure` or `Slow` items and each request takes the next
one (an empty script answers `Reply()`). Streams are sent as the real APIs send them (OpenAI:
`data:` lines ending with `data: [DONE]`; Anthropic: named events from `message_start` to
`message_stop`, with a `ping`). Every request body and its headers are recorded.

    with Upstream() as upstream:
        upstream.queue(Reply("Hello there"))
        AsyncOpenAI(base_url=upstream.openai_url, api_key="sk-test")...
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "server_error",
}
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Reply:
    """A successful answer: text and/or OpenAI-shaped tool calls."""

    text: str = "ok"
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None  # default: "tool_calls" with tool calls, else "stop"
    prompt_tokens: int = 11
    output_tokens: int | None = None  # default: the number of streamed pieces
    pieces: list[str] | None = None  # how the text streams (default: word by word)
    model: str | None = None  # default: the requested model

    def chunks(self) -> list[str]:
        if self.pieces is not None:
            return self.pieces
        words = self.text.split(" ")
        return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words) if w or i == 0]

    def usage_out(self) -> int:
        return self.output_tokens if self.output_tokens is not None else len(self.chunks())


@dataclass
class Failure:
    """An error answer with an HTTP status, or (`in_stream`) an error event after one piece."""

    status: int
    message: str = "upstream failed"
    kind: str | None = None  # error type; default by status
    in_stream: bool = False


@dataclass
class Slow:
    """Wait `seconds` (before the first byte, or `between` pieces of a stream), then answer."""

    seconds: float = 0.0
    then: Reply = field(default_factory=Reply)
    between: float = 0.0


Item = Reply | Failure | Slow


@dataclass
class Seen:
    """One request the fake received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class BackgroundServer:
    """Any ASGI app served by uvicorn in a daemon thread on 127.0.0.1 and a free port."""

    def __init__(self, app: Any, *, lifespan: str = "off") -> None:
        self.app = app
        self.lifespan = lifespan
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BackgroundServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan=self.lifespan,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the background server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(15)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class Upstream:
    """The fake server, serving in a background thread on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.script: deque[Item] = deque()
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
            ]
        )
        self.server = BackgroundServer(self.app)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def openai_url(self) -> str:
        """The `base_url` for OpenAI clients (they add `/chat/completions`)."""
        return f"{self.url}/v1"

    @property
    def anthropic_url(self) -> str:
        """The `base_url` for Anthropic clients (they add `/v1/messages`)."""
        return self.url

    def queue(self, *items: Item) -> None:
        with self._lock:
            self.script.extend(items)

    def reset(self) -> None:
        with self._lock:
            self.script.clear()
            self.requests.clear()

    def start(self) -> Upstream:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    async def _take(self, request: Request) -> tuple[dict[str, Any], Item]:
        body = await request.json()
        with self._lock:
            self.requests.append(Seen(request.url.path, dict(request.headers), body))
            item = self.script.popleft() if self.script else Reply()
        if isinstance(item, Slow):
            await asyncio.sleep(item.seconds)
        return body, item

    # OpenAI ------------------------------------------------------------------------------------

    async def _openai(self, request: Request) -> Response:
        body, item = await self._take(request)
        reply = item.then if isinstance(item, Slow) else item
        between = item.between if isinstance(item, Slow) else 0.0
        if isinstance(reply, Failure) and not reply.in_stream:
            return JSONResponse(_openai_error(reply), status_code=reply.status)
        model = body.get("model", "unknown")
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = _openai_events(reply, model, include_usage=include_usage, between=between)
            return StreamingResponse(events, media_type="text/event-stream")
        assert isinstance(reply, Reply)
        return JSONResponse(_openai_completion(reply, model))

    # Anthropic ---------------------------------------------------------------------------------

    async def _anthropic(self, request: Request) -> Response:
        body, item = await self._take(request)
        reply = item.then if isinstance(item, Slow) else item
        between = item.between if isinstance(item, Slow) else 0.0
        if isinstance(reply, Failure) and not reply.in_stream:
            return JSONResponse(_anthropic_error(reply), status_code=reply.status)
        model = body.get("model", "unknown")
        if body.get("stream"):
            return StreamingResponse(
                _anthropic_events(reply, model, between=between), media_type="text/event-stream"
            )
        assert isinstance(reply, Reply)
        return JSONResponse(_anthropic_message(reply, model))


def _openai_error(failure: Failure) -> dict[str, Any]:
    return {
        "error": {
            "message": failure.message,
            "type": failure.kind or OPENAI_ERROR_TYPES.get(failure.status, "server_error"),
            "param": None,
            "code": None,
        }
    }


def _openai_completion(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_calls:
        message["content"] = reply.text or None
        message["tool_calls"] = reply.tool_calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish(reply),
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.usage_out(),
            "total_tokens": reply.prompt_tokens + reply.usage_out(),
        },
    }


def _finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


async def _openai_events(
    reply: Reply | Failure, model: str, *, include_usage: bool, between: float
) -> AsyncIterator[str]:
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": (reply.model if isinstance(reply, Reply) else None) or model,
        "system_fingerprint": "fp_fake",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        extra = {"usage": None} if include_usage else {}
        return f"data: {json.dumps({**base, 'choices': [choice], **extra})}\n\n"

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    if isinstance(reply, Failure):
        yield chunk({"content": "partial "})
        error = _openai_error(reply)
        yield f"event: error\ndata: {json.dumps(error)}\n\n"
        return
    for piece in reply.chunks() if reply.text else []:
        await asyncio.sleep(between)
        yield chunk({"content": piece})
    for index, call in enumerate(reply.tool_calls or []):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        yield chunk({"tool_calls": [head]})
        for part in (arguments[:half], arguments[half:]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
    yield chunk({}, _finish(reply))
    if include_usage:
        usage = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.usage_out(),
            "total_tokens": reply.prompt_tokens + reply.usage_out(),
        }
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def _anthropic_error(failure: Failure) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {
            "type": failure.kind or ANTHROPIC_ERROR_TYPES.get(failure.status, "api_error"),
            "message": failure.message,
        },
        "request_id": f"req_{uuid.uuid4().hex[:20]}",
    }


_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _anthropic_blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    for call in reply.tool_calls or []:
        blocks.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": call["function"]["name"],
                "input": json.loads(call["function"]["arguments"] or "{}"),
            }
        )
    return blocks


def _anthropic_message(reply: Reply, model: str) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": reply.model or model,
        "content": _anthropic_blocks(reply),
        "stop_reason": _STOP_REASONS.get(_finish(reply), "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": reply.usage_out(),
        },
    }


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def _anthropic_events(
    reply: Reply | Failure, model: str, *, between: float
) -> AsyncIterator[str]:
    prompt_tokens = reply.prompt_tokens if isinstance(reply, Reply) else 5
    start = {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": (reply.model if isinstance(reply, Reply) else None) or model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        },
    }
    yield _event("message_start", {"type": "message_start", "message": start})
    yield _event(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    yield _event("ping", {"type": "ping"})
    if isinstance(reply, Failure):
        delta = {"type": "text_delta", "text": "partial "}
        yield _event(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )
        yield _event("error", _anthropic_error(reply))
        return
    for piece in reply.chunks() if reply.text else []:
        await asyncio.sleep(between)
        delta = {"type": "text_delta", "text": piece}
        yield _event(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )
    yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
    tool_blocks = [b for b in _anthropic_blocks(reply) if b["type"] == "tool_use"]
    for index, block in enumerate(tool_blocks, start=1):
        arguments = json.dumps(block["input"])
        half = len(arguments) // 2
        yield _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {**block, "input": {}},
            },
        )
        for part in (arguments[:half], arguments[half:]):
            delta = {"type": "input_json_delta", "partial_json": part}
            yield _event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": _STOP_REASONS.get(_finish(reply), "end_turn"),
                "stop_sequence": None,
            },
            "usage": {"output_tokens": reply.usage_out()},
        },
    )
    yield _event("message_stop", {"type": "message_stop"})


def serve() -> Iterator[Upstream]:
    """For a fixture: a started fake upstream, stopped afterwards."""
    with Upstream() as upstream:
        yield upstream
