"""The `openai` provider: OpenAI, and any OpenAI-compatible server (vLLM, Ollama, llama.cpp,
LM Studio, Groq, Together…) through the stored key's `base_url`, with the official SDK.

Decisions:
- A completion template (`request.prompt`) is sent to the chat endpoint as one user message:
  every current OpenAI model and every compatible server serves chat, while the legacy
  completions endpoint is served by one OpenAI model only.
- `max_tokens` goes out as `max_completion_tokens` to OpenAI itself (its reasoning models refuse
  `max_tokens`) and as `max_tokens` to other servers (which do not all know the newer name).
- The SDK does not retry (`max_retries=0`): a retry would hide the upstream status and multiply
  the time a caller waits; callers decide.
- `request.timeout` bounds a whole call, and the wait for each streamed piece (504 past it).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Generic, TypeVar, cast

import httpx2
import openai

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

Client = TypeVar("Client")
_PARAMETERS = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
)
_KIND_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ClientCache(Generic[Client]):
    """SDK clients by (key, base URL), kept per event loop because a client's connection pool
    belongs to the loop that opened it. At most `size` per loop; the least recently used goes."""

    def __init__(self, factory: Callable[[Credentials], Client], *, size: int = 64) -> None:
        self.factory = factory
        self.size = size
        self._loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, OrderedDict[tuple[str | None, str | None], Client]
        ] = weakref.WeakKeyDictionary()

    def get(self, credentials: Credentials) -> Client:
        loop = asyncio.get_running_loop()
        clients = self._loops.get(loop)
        if clients is None:
            clients = self._loops[loop] = OrderedDict()
        key = (credentials.api_key, credentials.base_url)
        client = clients.get(key)
        if client is None:
            client = clients[key] = self.factory(credentials)
            while len(clients) > self.size:
                clients.popitem(last=False)
        else:
            clients.move_to_end(key)
        return client

    async def aclose(self) -> None:
        """Close the running loop's clients (their connections cannot outlive the loop)."""
        clients = self._loops.pop(asyncio.get_running_loop(), None)
        for client in (clients or {}).values():
            await cast(Any, client).close()


def _client(credentials: Credentials) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=credentials.api_key, base_url=credentials.base_url, max_retries=0
    )


class OpenAIProvider:
    """Chat completions through `openai.AsyncOpenAI`."""

    name: ClassVar[str] = "openai"
    needs_key: ClassVar[bool] = True

    def __init__(self) -> None:
        self.clients: ClientCache[openai.AsyncOpenAI] = ClientCache(_client)

    async def aclose(self) -> None:
        """Close this event loop's HTTP clients (the app calls it at shutdown)."""
        await self.clients.aclose()

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo("openai", "gpt-4o-mini", 0.15, 0.60, 128_000),
            ModelInfo("openai", "gpt-4o", 2.50, 10.00, 128_000),
            ModelInfo("openai", "gpt-4.1-nano", 0.10, 0.40, 1_047_576),
            ModelInfo("openai", "gpt-4.1-mini", 0.40, 1.60, 1_047_576),
            ModelInfo("openai", "gpt-4.1", 2.00, 8.00, 1_047_576),
            ModelInfo("openai", "o4-mini", 1.10, 4.40, 200_000),
            ModelInfo("openai", "gpt-5-nano", 0.05, 0.40, 400_000),
            ModelInfo("openai", "gpt-5-mini", 0.25, 2.00, 400_000),
            ModelInfo("openai", "gpt-5", 1.25, 10.00, 400_000),
        ]

    async def complete(self, request: ChatRequest, credentials: Credentials) -> Completion:
        """One chat completion. The request goes through the SDK's client (its auth, base
        URL, headers and error statuses), but as a plain JSON body answered by the raw
        response: the typed request transform and response models cost more CPU than the rest
        of a promptloop call together."""
        client = self.clients.get(credentials)
        body = chat_arguments(request, credentials)
        body.pop("timeout")
        body |= body.pop("extra_body", {})
        body["stream"] = False
        try:
            async with asyncio.timeout(request.timeout):
                response = await client.post(
                    "/chat/completions",
                    body=body,
                    cast_to=httpx2.Response,
                    options={"timeout": request.timeout},
                )
                data = json.loads(await response.aread())
        except (TimeoutError, openai.OpenAIError, httpx2.HTTPError) as exc:
            raise provider_error(exc, request, credentials) from exc
        except ValueError as exc:
            raise ProviderError(
                f"{credentials.base_url or 'the OpenAI API'} answered with invalid JSON: {exc}.",
                status=502,
                kind="provider_error",
            ) from exc
        return completion_of(data)

    async def stream(
        self, request: ChatRequest, credentials: Credentials
    ) -> AsyncIterator[Delta | Completion]:
        client = self.clients.get(credentials)
        pieces: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        finish_reason: str | None = None
        usage = Usage()
        model: str | None = None
        try:
            chunks = await client.chat.completions.create(
                **chat_arguments(request, credentials),
                stream=True,
                stream_options={"include_usage": True},
            )
            try:
                async for chunk in chunks:
                    model = chunk.model or model
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    finish_reason = choice.finish_reason or finish_reason
                    if choice.delta.tool_calls:
                        _gather_tool_calls(calls, choice.delta.tool_calls)
                    if choice.delta.content:
                        pieces.append(choice.delta.content)
                        yield Delta(text=choice.delta.content)
            finally:
                await chunks.close()
        except (TimeoutError, openai.OpenAIError, httpx2.HTTPError) as exc:
            raise provider_error(exc, request, credentials) from exc
        yield Completion(
            output="".join(pieces),
            finish_reason=finish_reason,
            usage=usage,
            tool_calls=[calls[i] for i in sorted(calls)] or None,
            model=model,
        )


def chat_arguments(request: ChatRequest, credentials: Credentials) -> dict[str, Any]:
    """Keyword arguments for `chat.completions.create` (without `stream`)."""
    parameters = request.parameters
    arguments: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages
        if request.messages is not None
        else [{"role": "user", "content": request.prompt or ""}],
        "timeout": request.timeout,
    }
    for name in _PARAMETERS:
        value = getattr(parameters, name)
        if value is not None:
            arguments[name] = value
    if parameters.max_tokens is not None:
        limit = "max_completion_tokens" if credentials.base_url is None else "max_tokens"
        arguments[limit] = parameters.max_tokens
    if request.tools:
        arguments["tools"] = request.tools
    if parameters.extras:
        arguments["extra_body"] = parameters.extras
    return arguments


def provider_error(exc: Exception, request: ChatRequest, credentials: Credentials) -> ProviderError:
    """The ProviderError for an SDK or transport failure: upstream statuses pass through, an
    unreachable server is 502, a timeout 504."""
    where = credentials.base_url or "the OpenAI API"
    if isinstance(exc, TimeoutError | openai.APITimeoutError | httpx2.TimeoutException):
        return ProviderError(
            f"{where} did not answer {request.model!r} within {request.timeout:g} s.",
            status=504,
            kind="timeout",
        )
    if isinstance(exc, openai.APIStatusError):
        message, kind = _error_fields(exc.body)
        return ProviderError(
            message or f"HTTP {exc.status_code} from {where}.",
            status=exc.status_code,
            kind=kind or _KIND_BY_STATUS.get(exc.status_code, "api_error"),
        )
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return ProviderError(
            f"Could not reach {where}: {exc.__cause__ or exc}.", status=502, kind="connection_error"
        )
    if isinstance(exc, openai.APIError):  # an error event inside a stream
        message, kind = _error_fields(exc.body)
        return ProviderError(message or exc.message, status=502, kind=kind or "api_error")
    return ProviderError(f"{where} failed: {exc}", status=502, kind="provider_error")


def _error_fields(body: object) -> tuple[str | None, str | None]:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message, kind = error.get("message"), error.get("type") or error.get("code")
            return (
                str(message) if message else None,
                str(kind) if kind else None,
            )
    return (str(body) if isinstance(body, str) and body else None), None


def completion_of(data: Any) -> Completion:
    """A Completion from a chat-completions JSON answer (OpenAI's shape)."""
    if not isinstance(data, dict):
        raise ProviderError("the chat-completions answer is not a JSON object", status=502)
    usage = data.get("usage") or {}
    counts = Usage(
        prompt_tokens=usage.get("prompt_tokens"), output_tokens=usage.get("completion_tokens")
    )
    choices = data.get("choices") or []
    if not choices:
        return Completion(output="", usage=counts, model=data.get("model"))
    message = choices[0].get("message") or {}
    tool_calls = [
        {k: v for k, v in call.items() if v is not None} for call in message.get("tool_calls") or []
    ]
    return Completion(
        output=message.get("content") or "",
        finish_reason=choices[0].get("finish_reason"),
        usage=counts,
        tool_calls=tool_calls or None,
        model=data.get("model"),
    )


def _gather_tool_calls(calls: dict[int, dict[str, Any]], deltas: list[Any]) -> None:
    """Join streamed tool-call fragments (keyed by index) into whole OpenAI-shaped calls."""
    for delta in deltas:
        call = calls.setdefault(
            delta.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if delta.id:
            call["id"] = delta.id
        if delta.function is not None:
            call["function"]["name"] += delta.function.name or ""
            call["function"]["arguments"] += delta.function.arguments or ""


provider = OpenAIProvider()


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    """Register the built-in `openai` provider."""
    register(provider)
