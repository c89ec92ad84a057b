"""`.prompt` files: YAML front matter, then a body whose `system:` / `user:` / `assistant:` lines
start messages (the Prompty convention). A file's path under its folder is the prompt's path.

    ---
    provider: openai
    model: gpt-4o-mini
    parameters:
      temperature: 0.2
    ---
    system:
    You answer support questions.

    user:
    {{ question }}

A body without role lines is one user message, or a completion template when the front matter
says `type: completion`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from promptloop.core.errors import InvalidInput
from promptloop.core.kernel import Kernel

SUFFIX = ".prompt"
_ROLE_LINE = re.compile(r"^(system|user|assistant|tool):[ \t]*$")
_KERNEL_KEYS = ("provider", "model", "parameters", "tools", "retrieval")
_META_KEYS = ("name", "description", "type")


@dataclass(frozen=True)
class PromptFile:
    """A parsed prompt file: the kernel plus the metadata that lives beside it."""

    kernel: Kernel
    name: str | None = None
    description: str | None = None


def parse(text: str, *, source: str = "<prompt>") -> PromptFile:
    """Parse a prompt file; errors name the file and say what to fix."""
    front, body = _split(text, source)
    unknown = sorted(set(front) - set(_KERNEL_KEYS) - set(_META_KEYS))
    if unknown:
        raise InvalidInput(
            f"{source}: unknown front matter key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; allowed: {', '.join(_KERNEL_KEYS + _META_KEYS)}."
        )
    kind = front.get("type", "chat")
    if kind not in ("chat", "completion"):
        raise InvalidInput(f"{source}: 'type' must be 'chat' or 'completion', not {kind!r}.")
    fields: dict[str, Any] = {k: front[k] for k in _KERNEL_KEYS if k in front}
    if kind == "completion":
        fields["template"] = body.strip("\n")
    else:
        fields["messages"] = _messages(body)
    try:
        kernel = Kernel.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"{source}: {problems}") from None
    return PromptFile(kernel=kernel, name=front.get("name"), description=front.get("description"))


def dump(kernel: Kernel, *, name: str | None = None, description: str | None = None) -> str:
    """Write a kernel as a prompt file that `parse` reads back to the same kernel."""
    front: dict[str, Any] = {}
    if name:
        front["name"] = name
    if description:
        front["description"] = description
    if kernel.messages is None:
        front["type"] = "completion"
    front.update(
        kernel.model_dump(
            mode="json", include=set(_KERNEL_KEYS), exclude_none=True, exclude_defaults=True
        )
    )
    front["provider"], front["model"] = kernel.provider, kernel.model
    header = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    if kernel.messages is None:
        body = (kernel.template or "") + "\n"
    else:
        body = "\n".join(f"{m.role}:\n{m.content}\n" for m in kernel.messages)
    return f"---\n{header}---\n{body}"


def _split(text: str, source: str) -> tuple[dict[str, Any], str]:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise InvalidInput(f"{source}: a prompt file starts with '---' and YAML front matter.")
    for end in range(1, len(lines)):
        if lines[end].strip() == "---":
            break
    else:
        raise InvalidInput(f"{source}: the front matter is not closed by a '---' line.")
    try:
        front = yaml.safe_load("".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: front matter is not valid YAML: {exc}") from None
    if not isinstance(front, dict):
        raise InvalidInput(f"{source}: front matter must be a YAML mapping of keys to values.")
    return front, "".join(lines[end + 1 :])


def _messages(body: str) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    preamble: list[str] = []
    for line in body.splitlines():
        match = _ROLE_LINE.match(line)
        if match:
            messages.append({"role": match.group(1), "content": ""})
        elif messages:
            messages[-1]["content"] += line + "\n"
        else:
            preamble.append(line)
    if "\n".join(preamble).strip():
        if messages:
            raise InvalidInput(
                "Text before the first role line: start the body with 'system:', 'user:' or "
                "'assistant:' on a line of its own."
            )
        return [{"role": "user", "content": "\n".join(preamble)}]
    return messages
