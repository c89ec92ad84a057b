"""The kernel: everything that makes a prompt version behave as it does, and its content hash.

Two kernels with the same canonical JSON are the same version. Metadata (name, commit message,
author) is deliberately outside the kernel, so re-saving the same content under a new message
returns the existing version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "user", "assistant", "tool"]
VERSION_ID_LENGTH = 12


class Message(BaseModel):
    """One chat message template; `content` may hold `{{ variables }}`."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str = Field(max_length=200_000)

    @field_validator("content")
    @classmethod
    def _strip(cls, value: str) -> str:
        # Surrounding whitespace never changes a model's behaviour in practice, and stripping it
        # makes prompt files round-trip to the same version.
        return value.strip()


class ToolFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of the function's arguments."
    )


class Tool(BaseModel):
    """A tool the model may call, in the OpenAI function-calling shape."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: ToolFunction


class Parameters(BaseModel):
    """Sampling parameters; `extras` carries provider-specific options verbatim."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] | None = Field(default=None, max_length=16)
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    extras: dict[str, Any] = Field(default_factory=dict)

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Kernel(BaseModel):
    """Provider, model, template (chat `messages` or completion `template`), parameters, tools
    and the retrieval strategy slot."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    model: str = Field(min_length=1, max_length=200)
    messages: list[Message] | None = Field(default=None, max_length=500)
    template: str | None = Field(
        default=None, max_length=200_000, description="A completion template, instead of messages."
    )
    parameters: Parameters = Field(default_factory=Parameters)
    tools: list[Tool] = Field(default_factory=list, max_length=128)
    retrieval: dict[str, Any] | None = Field(
        default=None, description="The retrieval strategy; reserved for a later release."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return reject_nul(value)

    @model_validator(mode="after")
    def _one_template(self) -> Kernel:
        if (self.messages is None) == (self.template is None):
            raise ValueError("give exactly one of 'messages' (chat) or 'template' (completion)")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must hold at least one message")
        return self

    def templates(self) -> list[tuple[str, str]]:
        """(label, template text) for every template in the kernel, in order."""
        if self.messages is not None:
            return [(f"messages[{i}] ({m.role})", m.content) for i, m in enumerate(self.messages)]
        return [("template", self.template or "")]


MAX_INT = 2**31 - 1  # integers stored in columns must fit PostgreSQL's `integer`


def reject_nul(value: Any) -> Any:
    """Return `value` unchanged, or raise ValueError if any string in it holds a NUL character
    (text columns cannot store one, and no prompt or log needs one)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL (\\u0000) characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul(key)
            reject_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            reject_nul(item)
    return value


def canonical_json(kernel: Kernel) -> str:
    """The normalized serialization that identifies a kernel: sorted keys, no unset options.

    Unset (None) options and empty collections are dropped, so adding a new optional field to
    the kernel later does not change the hash of any existing version.
    """
    return canonical(kernel.model_dump(mode="json"))


def canonical(value: Any) -> str:
    """Sorted-key JSON of `value` without None options or empty collections: the text that
    content-addressed versions (prompts, evaluators) hash."""
    return json.dumps(_prune(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(kernel: Kernel) -> str:
    """SHA-256 (hex) of the kernel's canonical JSON."""
    return hashlib.sha256(canonical_json(kernel).encode()).hexdigest()


def version_id(kernel: Kernel) -> str:
    """The version id: the first 12 hex digits of the content hash, like a short git hash."""
    return content_hash(kernel)[:VERSION_ID_LENGTH]


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value
