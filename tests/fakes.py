"""A fake model provider with queued answers, registered like any plugin (and unregistered after)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

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
from promptloop.providers.registry import plugin_manager


class FakeProvider:
    """Answers with queued texts (or errors), else with `respond(request)` when given, else
    "ok"; waits `delay` seconds first; records every request it got."""

    name: ClassVar[str] = "fake"
    needs_key: ClassVar[bool] = False

    def __init__(
        self, respond: Callable[[ChatRequest], str] | None = None, delay: float = 0.0
    ) -> None:
        self.answers: list[str | ProviderError] = []
        self.requests: list[tuple[ChatRequest, Credentials]] = []
        self.respond = respond
        self.delay = delay

    def queue(self, *answers: str | ProviderError) -> None:
        self.answers.extend(answers)

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(provider="fake", name="fake-1", input_price=1.0, output_price=2.0)]

    def _next(self, request: ChatRequest, credentials: Credentials) -> str:
        self.requests.append((request, credentials))
        if self.answers:
            answer = self.answers.pop(0)
        else:
            answer = self.respond(request) if self.respond else "ok"
        if isinstance(answer, ProviderError):
            raise answer
        return answer

    async def complete(self, request: ChatRequest, credentials: Credentials) -> Completion:
        if self.delay:
            await asyncio.sleep(self.delay)
        text = self._next(request, credentials)
        return Completion(
            output=text, finish_reason="stop", usage=_usage(request, text), model=request.model
        )

    async def stream(
        self, request: ChatRequest, credentials: Credentials
    ) -> AsyncIterator[Delta | Completion]:
        text = self._next(request, credentials)
        for word in text.split(" "):
            yield Delta(text=word + " ")
        yield Completion(output=text, finish_reason="stop", usage=_usage(request, text))


def _usage(request: ChatRequest, text: str) -> Usage:
    words = sum(len(str(m.get("content", "")).split()) for m in request.messages or []) or len(
        (request.prompt or "").split()
    )
    return Usage(prompt_tokens=words, output_tokens=len(text.split()))


class _Plugin:
    def __init__(self, provider: Any) -> None:
        self.provider = provider

    @hookimpl
    def register_providers(self, register: Callable[[Any], None]) -> None:
        register(self.provider)


@contextmanager
def registered(provider: Any) -> Iterator[Any]:
    plugin = _Plugin(provider)
    plugin_manager().register(plugin)
    try:
        yield provider
    finally:
        plugin_manager().unregister(plugin)
