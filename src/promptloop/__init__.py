"""promptloop: prompt management, evaluation, logging and fine-tuning for LLM applications.

The package root is the Python SDK; it imports only httpx and pydantic:

    from promptloop import Client

    client = Client()  # PROMPTLOOP_URL, PROMPTLOOP_API_KEY, PROMPTLOOP_PROJECT
    version = client.prompts.get("support/answer", environment="production")
"""

from promptloop.sdk import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    AsyncEnvironments,
    AsyncProjects,
    AsyncPrompts,
    AuthenticationError,
    BadRequestError,
    Change,
    Client,
    ConflictError,
    DeploymentEvent,
    Diff,
    Environment,
    Environments,
    EnvironmentState,
    Health,
    InternalServerError,
    Message,
    NotFoundError,
    Parameters,
    PermissionDeniedError,
    Project,
    Projects,
    Prompt,
    PromptloopError,
    Prompts,
    PromptVersion,
    RateLimitError,
    Rendered,
    SavedVersion,
    Tool,
    ToolFunction,
)

__version__ = "0.1.0"

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
