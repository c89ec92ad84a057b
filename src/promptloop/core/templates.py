"""Jinja2 templates in a sandbox: find the variables a kernel needs and render it with inputs.

Templates come from users, so they render in `SandboxedEnvironment`: attribute access to
internals (`__class__`, `__globals__`, …) raises a security error instead of running code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.meta
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from promptloop.core.errors import InvalidInput, MissingInputs, TemplateSyntaxError
from promptloop.core.kernel import Kernel, Message

_ENV = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Rendered:
    """A rendered kernel: chat `messages` or a completion `prompt`, never both."""

    messages: list[Message] | None
    prompt: str | None


def check_syntax(kernel: Kernel) -> None:
    """Raise TemplateSyntaxError naming the message and line of the first template that fails."""
    for label, text in kernel.templates():
        _parse(label, text)


def variables(kernel: Kernel) -> list[str]:
    """The input variables the kernel's templates read, in order of first appearance."""
    found: dict[str, None] = {}
    for label, text in kernel.templates():
        for name in _variables_of(label, text):
            found.setdefault(name)
    return list(found)


def render(kernel: Kernel, inputs: dict[str, Any]) -> Rendered:
    """Render every template with `inputs`; raise MissingInputs listing all absent variables."""
    missing = [name for name in variables(kernel) if name not in inputs]
    if missing:
        raise MissingInputs(
            f"Missing input{'s' if len(missing) > 1 else ''}: {', '.join(missing)}. "
            "Pass a value for each variable the template uses.",
            details={"missing": missing},
        )
    if kernel.messages is not None:
        messages = [
            Message(
                role=m.role, content=_render_one(f"messages[{i}] ({m.role})", m.content, inputs)
            )
            for i, m in enumerate(kernel.messages)
        ]
        return Rendered(messages=messages, prompt=None)
    return Rendered(messages=None, prompt=_render_one("template", kernel.template or "", inputs))


@lru_cache(maxsize=1024)
def _parse(label: str, text: str) -> nodes.Template:
    try:
        return _ENV.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        lines = text.splitlines()
        source_line = lines[exc.lineno - 1] if 0 < exc.lineno <= len(lines) else ""
        raise TemplateSyntaxError(
            f"Template syntax error in {label}, line {exc.lineno}: {exc.message}",
            details={"template": label, "line": exc.lineno, "source": source_line},
        ) from None


@lru_cache(maxsize=1024)
def _variables_of(label: str, text: str) -> tuple[str, ...]:
    ast = _parse(label, text)
    undeclared = jinja2.meta.find_undeclared_variables(ast)
    ordered: dict[str, None] = {}
    for node in ast.find_all(nodes.Name):
        if node.ctx == "load" and node.name in undeclared:
            ordered.setdefault(node.name)
    return tuple(ordered)


@lru_cache(maxsize=1024)
def _compiled(text: str) -> jinja2.Template:
    """Compiling is most of the cost of rendering: each template text compiles once."""
    return _ENV.from_string(text)


def _render_one(label: str, text: str, inputs: dict[str, Any]) -> str:
    _parse(label, text)
    try:
        return _compiled(text).render(inputs)
    except jinja2.exceptions.SecurityError as exc:
        raise InvalidInput(
            f"Template in {label} tried an unsafe operation and was stopped: {exc}",
            details={"template": label},
        ) from None
    except jinja2.TemplateError as exc:
        raise InvalidInput(
            f"Template in {label} failed to render: {exc}", details={"template": label}
        ) from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise InvalidInput(
            f"Template in {label} failed to render: {type(exc).__name__}: {exc}",
            details={"template": label},
        ) from None
