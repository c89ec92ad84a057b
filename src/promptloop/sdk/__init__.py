"""The Python SDK: `Client` and `AsyncClient`, their typed results and errors.

Imports only the standard library, httpx and pydantic, never the server's modules, so
`import promptloop` stays light in applications that only call a server.
"""

from promptloop.sdk._client import AsyncClient, Client
from promptloop.sdk._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    PromptloopError,
    RateLimitError,
)
from promptloop.sdk._models import (
    Change,
    DeploymentEvent,
    Diff,
    Environment,
    EnvironmentState,
    Health,
    Message,
    Parameters,
    Project,
    Prompt,
    PromptVersion,
    Rendered,
    SavedVersion,
    Tool,
    ToolFunction,
)
from promptloop.sdk._resources import (
    AsyncEnvironments,
    AsyncProjects,
    AsyncPrompts,
    Environments,
    Projects,
    Prompts,
)

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncEnvironments",
    "AsyncProjects",
    "AsyncPrompts",
    "AuthenticationError",
    "BadRequestError",
    "Change",
    "Client",
    "ConflictError",
    "DeploymentEvent",
    "Diff",
    "Environment",
    "EnvironmentState",
    "Environments",
    "Health",
    "InternalServerError",
    "Message",
    "NotFoundError",
    "Parameters",
    "PermissionDeniedError",
    "Project",
    "Projects",
    "Prompt",
    "PromptVersion",
    "PromptloopError",
    "Prompts",
    "RateLimitError",
    "Rendered",
    "SavedVersion",
    "Tool",
    "ToolFunction",
]
