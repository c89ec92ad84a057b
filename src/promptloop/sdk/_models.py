"""Typed results of API calls, mirroring the server's response bodies.

Unknown fields are ignored, so a newer server that adds fields does not break an older SDK.
Results are frozen: a saved version never changes, and neither does its description here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FeedbackValue = bool | int | float | str | None
"""A feedback's value: a vote's up/down (True/False), a number, a choice, or text."""


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Health(_Result):
    """The server's liveness: `status` is "ok", with its version and database backend."""

    status: str
    version: str
    database: str


class Project(_Result):
    """An isolation boundary: every prompt and environment belongs to one project."""

    name: str
    created_at: datetime


class Environment(_Result):
    """A place a version is deployed to, such as "production"."""

    name: str
    protected: bool
    created_at: datetime


class Prompt(_Result):
    """A prompt by its path, such as "support/answer"; its content lives in versions."""

    path: str
    description: str | None = None
    created_at: datetime


class Message(_Result):
    """One chat message template; `content` may hold `{{ variables }}`."""

    role: str
    content: str


class ToolFunction(_Result):
    """The function a tool exposes: name, description and JSON Schema of its arguments."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Result):
    """A tool the model may call, in the OpenAI function-calling shape."""

    type: str = "function"
    function: ToolFunction


class Parameters(_Result):
    """Sampling parameters; `extras` carries provider-specific options verbatim."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    extras: dict[str, Any] = Field(default_factory=dict)


class PromptVersion(_Result):
    """An immutable version of a prompt: its content (the kernel), identity and metadata.

    Chat prompts have `messages`, completion prompts a `template`; `variables` are the inputs
    the templates read and `environments` those that serve this version now.
    """

    id: str
    prompt_path: str
    content_hash: str
    provider: str
    model: str
    messages: list[Message] | None = None
    template: str | None = None
    parameters: Parameters = Field(default_factory=Parameters)
    tools: list[Tool] = Field(default_factory=list)
    retrieval: dict[str, Any] | None = None
    name: str | None = None
    message: str | None = None
    author: str
    created_at: datetime
    variables: list[str] = Field(default_factory=list)
    environments: list[str] = Field(default_factory=list)


class SavedVersion(PromptVersion):
    """The result of a save: `created` is False when identical content was already saved."""

    created: bool


class Rendered(_Result):
    """A rendered version: chat `messages` or a completion `prompt`, never both."""

    version_id: str
    messages: list[Message] | None = None
    prompt: str | None = None


class Change(_Result):
    """One changed setting: its dotted name and the values before and after (None: unset)."""

    field: str
    before: Any = None
    after: Any = None


class Diff(_Result):
    """Two versions compared: a unified diff of the templates and every other change."""

    before: str
    after: str
    template: str
    changes: list[Change]


class DeploymentEvent(_Result):
    """One change of what an environment serves: `action` is "deploy" or "rollback"."""

    id: int
    environment: str
    action: str
    version_id: str
    previous_version_id: str | None = None
    actor: str
    message: str | None = None
    created_at: datetime
    changed: bool = True
    """On deploy: False when the environment already served this version (nothing recorded)."""


class EnvironmentState(_Result):
    """What one environment serves for a prompt; `version_id` None means nothing deployed."""

    environment: str
    protected: bool
    version_id: str | None = None
    deployed_by: str | None = None
    deployed_at: datetime | None = None


class Usage(_Result):
    """Tokens a call used, as the provider counted them (None: not reported)."""

    prompt_tokens: int | None = None
    output_tokens: int | None = None


class CallResult(_Result):
    """A prompt's answer: the output (or `tool_calls`), what it cost, and the id of its log.

    `prompt` and `version` name what was called; `provider` and `model` what answered.
    """

    log_id: str
    output: str | None = None
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    usage: Usage = Field(default_factory=Usage)
    cost: float | None = None
    """Dollars; None when the model's price or a token count is unknown."""
    latency_ms: float
    prompt: str | None = None
    version: str | None = None
    provider: str
    model: str
    feedback_token: str | None = None
    """When the call asked for one (`feedback_token=True`): lets a browser give feedback on
    this log alone, without an API key, until it expires."""


class Log(_Result):
    """One recorded call: what was sent and answered, its cost and timing, and who asked.

    `source` says where the call came from ("sdk", "api", "playground", "gateway", "eval");
    `kernel` holds the draft a playground run used when it matches no saved version;
    `withheld` is True when inputs and output were not stored because of the end user's
    `consent` and the project's content capture setting.
    """

    id: str
    source: str
    prompt: str | None = None
    version: str | None = None
    environment: str | None = None
    provider: str | None = None
    model: str | None = None
    inputs: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    output: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    error: str | None = None
    end_user: str | None = None
    metadata: dict[str, Any] | None = None
    trace_id: str | None = None
    parent_id: str | None = None
    consent: bool | None = None
    withheld: bool = False
    created_at: datetime
    kernel: dict[str, Any] | None = None


class FeedbackKind(_Result):
    """A kind of feedback a project collects, such as "rating" or "copied".

    Its `category` ("vote", "action", "correction", "comment") and `type` ("boolean",
    "number", "choice", "text") fix what its values may be; `higher_is_better` False means
    up (or the action) is bad, as for "rejected".
    """

    name: str
    category: str
    type: str
    choices: list[str] | None = None
    minimum: float | None = None
    maximum: float | None = None
    higher_is_better: bool = True
    description: str | None = None
    created_by: str
    created_at: datetime


class Feedback(_Result):
    """One piece of feedback on a log: a vote, an action, a correction or a comment.

    `score` is on 0..1 where 1 is good (votes and actions); corrections carry their
    `similarity` to the output and a unified `diff` from it. `current` is False once the same
    person gave a newer one of the same kind; `withheld` when its text was not stored (the end
    user did not consent).
    """

    id: str
    log_id: str
    name: str
    category: str
    value: FeedbackValue = None
    score: float | None = None
    delay_s: float | None = None
    similarity: float | None = None
    diff: str | None = None
    withheld: bool = False
    end_user: str | None = None
    reviewer: str | None = None
    recorded_by: str
    source: str
    current: bool = True
    created_at: datetime


class FeedbackToken(_Result):
    """A token that lets a browser post feedback on one log to `/api/v1/feedback`, without an
    API key, until `expires_at`."""

    log_id: str
    token: str
    expires_at: datetime


class Interval(_Result):
    """A share with its 95% confidence interval (`low`, `high`) over `n` logs; None when
    `n` is 0."""

    value: float | None = None
    low: float | None = None
    high: float | None = None
    n: int


class KindStats(_Result):
    """One kind of feedback in a group: how many of the group's logs have it (`rate`), how many
    votes went up and down, and the share up (`up_share`; None for kinds without a direction).
    `mean_similarity` is the corrections' mean similarity to the output."""

    name: str
    category: str
    logs: int
    rate: Interval
    count: int
    up: int
    down: int
    up_share: Interval | None = None
    mean_similarity: float | None = None


class FeedbackStats(_Result):
    """Feedback on the logs of one prompt version (or environment): each kind's rates."""

    prompt: str | None = None
    version: str | None = None
    environment: str | None = None
    logs: int
    kinds: list[KindStats] = Field(default_factory=list)
