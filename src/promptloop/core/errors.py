"""The domain's exception tree; every layer raises these and the API maps them to responses.

PromptloopError
├── NotFound            the named thing does not exist (in this project)
├── InvalidInput        the request is well-formed but its content is wrong
│   ├── InvalidPath     a prompt path or environment name breaks the naming rules
│   ├── TemplateSyntaxError   a template does not parse; details say where
│   └── MissingInputs   rendering needs variables the caller did not give
└── Conflict            the request clashes with the current state (already exists, nothing to roll back)
"""

from __future__ import annotations

from typing import Any


class PromptloopError(Exception):
    """Base of every error promptloop reports to a user; `code` is stable, `message` says how to fix."""

    code = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(PromptloopError):
    """Raised when a prompt, version, environment or project does not exist."""

    code = "not_found"


class InvalidInput(PromptloopError):
    """Raised when input is structurally valid but semantically wrong."""

    code = "invalid_input"


class InvalidPath(InvalidInput):
    """Raised when a prompt path or an environment name breaks the naming rules."""

    code = "invalid_path"


class TemplateSyntaxError(InvalidInput):
    """Raised when a template does not parse; details name the message and line."""

    code = "template_syntax_error"


class MissingInputs(InvalidInput):
    """Raised when rendering lacks variables; details list every missing one."""

    code = "missing_inputs"


class Conflict(PromptloopError):
    """Raised when a request clashes with the current state."""

    code = "conflict"


class Unauthenticated(PromptloopError):
    """Raised when a request carries no valid credentials."""

    code = "unauthenticated"


class Forbidden(PromptloopError):
    """Raised when the caller's role does not allow the action."""

    code = "forbidden"


class RateLimited(PromptloopError):
    """Raised when a caller made too many attempts; `retry_after` is in seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after
