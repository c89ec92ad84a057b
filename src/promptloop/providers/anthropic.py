"""The `anthropic` provider: Claude models through the official SDK's Messages API.

Requests arrive in the OpenAI chat shape and are translated:
- system messages become `system`; a completion template is one user message;
- tool calls (assistant `tool_calls`, `tool` results) become `tool_use` / `tool_result` blocks,
  and tools' JSON Schemas their `input_schema`; answers map back to OpenAI-shaped `tool_calls`;
- `max_tokens` is required by the API (1024 when unset); `stop` becomes `stop_sequences`;
  `temperature` and `top_p` travel in the body (the SDK no longer names them); `seed`,
  `response_format` and the penalties have no Anthropic equivalent and are not sent;
- `tool_choice` (`auto`, `required`, `none`, a named function) and `parallel_tool_calls: false`
  become Anthropic's `tool_choice`;
- stop reasons map to OpenAI finish reasons (`end_turn` → `stop`, `tool_use` → `tool_calls`…).
As with `openai`: no SDK retries, and `request.timeout` bounds a call and each streamed piece.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import anthropic
import httpx2

from promptloop.providers.base import (
    ChatRequest,
    Completion,
    Credentials,
    Delta,
    ModelInfo,
    ProviderError,
    Usage,
)
from promptloop.providers.hookspecs import hookimpl
from promptloop.providers.openai import ClientCache

DEFAULT_MAX_TOKENS = 1024
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Statuses for error types that arrive inside a stream (its HTTP status was already 200).
_STATUS_BY_KIND = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _client(credentials: Credentials) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key=credentials.api_key, base_url=credentials.base_url, max_retries=0
    )


class AnthropicProvider:
    """Claude through `anthropic.AsyncAnthropic`."""

    name: ClassVar[str] = "anthropic"
    needs_key: ClassVar[bool] = True

    def __init__(self) -> None:
        self.clients: ClientCache[anthropic.AsyncAnthropic] = ClientCache(_client)

    async def aclose(self) -> None:
        """Close this event loop's HTTP clients (the app calls it at shutdown)."""
        await self.clients.aclose()

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo("anthropic", "claude-haiku-4-5", 1.00, 5.00, 200_000),
            ModelInfo("anthropic", "claude-sonnet-4-5", 3.00, 15.00, 200_000),
            ModelInfo("anthropic", "claude-opus-4-5", 5.00, 25.00, 200_000),
            ModelInfo("anthropic", "claude-opus-4-1", 15.00, 75.00, 200_000),
            ModelInfo("anthropic", "claude-sonnet-4-0", 3.00, 15.00, 200_000),
            ModelInfo("anthropic", "claude-3-5-haiku-latest", 0.80, 4.00, 200_000),
        ]

    async def complete(self, request: ChatRequest, credentials: Credentials) -> Completion:
        client = self.clients.get(credentials)
        try:
            async with asyncio.timeout(request.timeout):
                message: Any = await client.messages.create(
                    **messages_arguments(request), stream=False
                )
        except (TimeoutError, anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise provider_error(exc, request, credentials) from exc
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                calls.append(_tool_call(block.id, block.name, json.dumps(block.input)))
        return Completion(
            output="".join(texts),
            finish_reason=_finish_reason(message.stop_reason),
            usage=_usage(message.usage),
            tool_calls=calls or None,
            model=message.model,
        )

    async def stream(
        self, request: ChatRequest, credentials: Credentials
    ) -> AsyncIterator[Delta | Completion]:
        client = self.clients.get(credentials)
        pieces: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        stop_reason: str | None = None
        prompt_tokens: int | None = None
        output_tokens: int | None = None
        model: str | None = None
        try:
            events: Any = await client.messages.create(**messages_arguments(request), stream=True)
            try:
                async for event in events:
                    if event.type == "message_start":
                        model = event.message.model
                        prompt_tokens = _usage(event.message.usage).prompt_tokens
                        output_tokens = event.message.usage.output_tokens
                    elif event.type == "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use":
                            calls[event.index] = _tool_call(block.id, block.name, "")
                    elif event.type == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta" and delta.text:
                            pieces.append(delta.text)
                            yield Delta(text=delta.text)
                        elif delta.type == "input_json_delta" and event.index in calls:
                            calls[event.index]["function"]["arguments"] += delta.partial_json
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        if event.usage is not None and event.usage.output_tokens is not None:
                            output_tokens = event.usage.output_tokens
            finally:
                await events.close()
        except (TimeoutError, anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise provider_error(exc, request, credentials) from exc
        tool_calls = [calls[i] for i in sorted(calls)]
        for call in tool_calls:
            call["function"]["arguments"] = call["function"]["arguments"] or "{}"
        yield Completion(
            output="".join(pieces),
            finish_reason=_finish_reason(stop_reason),
            usage=Usage(prompt_tokens=prompt_tokens, output_tokens=output_tokens),
            tool_calls=tool_calls or None,
            model=model,
        )


def messages_arguments(request: ChatRequest) -> dict[str, Any]:
    """Keyword arguments for `messages.create` (without `stream`)."""
    parameters = request.parameters
    system, messages = _translate_messages(request)
    arguments: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": parameters.max_tokens or DEFAULT_MAX_TOKENS,
        "timeout": request.timeout,
    }
    if system:
        arguments["system"] = system
    if parameters.stop:
        arguments["stop_sequences"] = parameters.stop
    if request.tools:
        arguments["tools"] = [_tool(tool) for tool in request.tools]
    extras = dict(parameters.extras)
    tool_choice = _tool_choice(
        extras.pop("tool_choice", None), extras.pop("parallel_tool_calls", None)
    )
    if tool_choice is not None:
        arguments["tool_choice"] = tool_choice
    body = {
        name: value
        for name, value in (("temperature", parameters.temperature), ("top_p", parameters.top_p))
        if value is not None
    }
    body.update(extras)
    if body:
        arguments["extra_body"] = body
    return arguments


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    """OpenAI's `tool_choice` (and `parallel_tool_calls`) in Anthropic's shape."""
    if choice is None and parallel is None:
        return None
    if isinstance(choice, dict) and choice.get("type") in ("auto", "any", "tool", "none"):
        translated = dict(choice)  # already Anthropic's shape
    elif isinstance(choice, dict):
        translated = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    else:
        translated = {"type": {"required": "any", "none": "none"}.get(str(choice), "auto")}
    if parallel is False and translated["type"] != "none":
        translated["disable_parallel_tool_use"] = True
    return translated


def _translate_messages(request: ChatRequest) -> tuple[str, list[dict[str, Any]]]:
    """(system text, Anthropic messages) from OpenAI-shaped messages; tool results that follow
    one another share one user message, as the API requires."""
    if request.messages is None:
        return "", [{"role": "user", "content": request.prompt or ""}]
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(message.get("content")))
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id", ""),
                "content": _text_of(message.get("content")),
            }
            previous = messages[-1] if messages else None
            if previous and previous["role"] == "user" and _is_tool_results(previous["content"]):
                previous["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
        elif role == "assistant" and message.get("tool_calls"):
            blocks: list[dict[str, Any]] = []
            if message.get("content"):
                blocks.append({"type": "text", "text": _text_of(message["content"])})
            for call in message["tool_calls"]:
                function = call.get("function", {})
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id", ""),
                        "name": function.get("name", ""),
                        "input": _arguments(function.get("arguments")),
                    }
                )
            messages.append({"role": "assistant", "content": blocks})
        else:
            messages.append(
                {
                    "role": "assistant" if role == "assistant" else "user",
                    "content": _content(message),
                }
            )
    return "\n\n".join(part for part in system if part), messages


def _is_tool_results(content: Any) -> bool:
    return isinstance(content, list) and all(b.get("type") == "tool_result" for b in content)


def _content(message: dict[str, Any]) -> str | list[dict[str, Any]]:
    content = message.get("content")
    if not isinstance(content, list):
        return "" if content is None else str(content)
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            blocks.append({"type": "image", "source": _image_source(url)})
    return blocks


def _image_source(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[len("data:") :].split(";base64,", 1)
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _arguments(arguments: Any) -> Any:
    if isinstance(arguments, dict):
        return arguments
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return {}


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function", {})
    translated = {
        "name": function.get("name", ""),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        translated["description"] = function["description"]
    return translated


def _tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _finish_reason(stop_reason: str | None) -> str | None:
    return FINISH_REASONS.get(stop_reason, stop_reason) if stop_reason else None


def _usage(usage: Any) -> Usage:
    """Prompt tokens include cached ones (each is billed, at its own rate)."""
    if usage is None:
        return Usage()
    prompt = (
        (usage.input_tokens or 0)
        + (getattr(usage, "cache_creation_input_tokens", None) or 0)
        + (getattr(usage, "cache_read_input_tokens", None) or 0)
    )
    return Usage(prompt_tokens=prompt, output_tokens=usage.output_tokens)


def provider_error(exc: Exception, request: ChatRequest, credentials: Credentials) -> ProviderError:
    """The ProviderError for an SDK or transport failure: upstream statuses pass through (an
    error event inside a stream gets its type's status), unreachable is 502, a timeout 504."""
    where = credentials.base_url or "the Anthropic API"
    if isinstance(exc, TimeoutError | anthropic.APITimeoutError | httpx2.TimeoutException):
        return ProviderError(
            f"{where} did not answer {request.model!r} within {request.timeout:g} s.",
            status=504,
            kind="timeout",
        )
    if isinstance(exc, anthropic.APIStatusError):
        kind = exc.type or "api_error"
        status = exc.status_code if exc.status_code >= 400 else _STATUS_BY_KIND.get(kind, 502)
        return ProviderError(
            exc.api_message or f"HTTP {status} from {where}.", status=status, kind=kind
        )
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return ProviderError(
            f"Could not reach {where}: {exc.__cause__ or exc}.", status=502, kind="connection_error"
        )
    return ProviderError(f"{where} failed: {exc}", status=502, kind="provider_error")


provider = AnthropicProvider()


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    """Register the built-in `anthropic` provider."""
    register(provider)
