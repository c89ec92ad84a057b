"""What every provider implements, and the shapes that cross the provider boundary.

A provider receives a `ChatRequest` (rendered messages in the OpenAI chat shape, or a completion
prompt) and returns a `Completion`, or streams `Delta`s ending with a `Completion`. Failures are
`ProviderError`s carrying the upstream status, so callers can answer with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from promptloop.core.kernel import Parameters


@dataclass(frozen=True)
class Credentials:
    """How to reach a provider for one project: a key and, for OpenAI-compatible servers, a URL."""

    api_key: str | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]] | None = None  # OpenAI chat shape: role, content, …
    prompt: str | None = None  # a completion template's rendered text, instead of messages
    parameters: Parameters = field(default_factory=Parameters)
    tools: list[dict[str, Any]] = field(default_factory=list)
    timeout: float = 120.0


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Completion:
    """A finished generation."""

    output: str
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[dict[str, Any]] | None = None
    model: str | None = None  # what the provider says it ran, when it says


@dataclass(frozen=True)
class Delta:
    """A piece of streamed output text."""

    text: str


class ProviderError(Exception):
    """A provider call failed. `status` is the upstream HTTP status (504 for a timeout, 502 when
    the provider could not be reached), `message` says why in the provider's words."""

    def __init__(self, message: str, *, status: int = 502, kind: str = "provider_error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class ModelInfo:
    """A model a provider offers, with prices per million tokens (None: unknown)."""

    provider: str
    name: str
    input_price: float | None = None
    output_price: float | None = None
    context_window: int | None = None
    capabilities: tuple[str, ...] = ("chat",)


class Provider(Protocol):
    """A model provider. `complete` and `stream` are coroutines so one server process can hold
    many slow calls at once; CPU-bound providers run their work in threads."""

    name: ClassVar[str]
    needs_key: ClassVar[bool]

    def models(self) -> list[ModelInfo]:
        """The models this provider offers out of the box (the catalogue seeds its prices)."""
        ...

    async def complete(self, request: ChatRequest, credentials: Credentials) -> Completion: ...

    def stream(
        self, request: ChatRequest, credentials: Credentials
    ) -> AsyncIterator[Delta | Completion]:
        """Yield `Delta`s as text arrives, then exactly one `Completion` with the whole output."""
        ...
