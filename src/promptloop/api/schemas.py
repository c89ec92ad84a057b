"""Request and response bodies: `XCreate` in, `XPublic` out, lists as `{data, next_cursor}`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from promptloop.core.diff import Change
from promptloop.core.kernel import MAX_INT, Kernel, Message, reject_nul

T = TypeVar("T")


class Strict(BaseModel):
    """A request body: unknown fields and NUL characters are refused."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return reject_nul(value)


class ListPublic(BaseModel, Generic[T]):
    """A page of results; pass `next_cursor` as `cursor` to get the next page (null: no more)."""

    data: list[T]
    next_cursor: str | None


class Health(BaseModel):
    status: str
    version: str
    database: str


class ProjectCreate(Strict):
    name: str = Field(min_length=1, max_length=64)


class ProjectPublic(BaseModel):
    name: str
    content_capture: str = Field(
        description="When log inputs and outputs are stored: always, unless_declined (not for "
        "end users who declined consent) or with_consent (only for those who consented)."
    )
    created_at: datetime


class ProjectUpdate(Strict):
    content_capture: Literal["always", "unless_declined", "with_consent"]


class EnvironmentCreate(Strict):
    name: str = Field(min_length=1, max_length=64)
    protected: bool = Field(
        default=False, description="Protected environments need a higher role to deploy to."
    )


class EnvironmentPublic(BaseModel):
    name: str
    protected: bool
    created_at: datetime


class PromptCreate(Strict):
    path: str = Field(min_length=1, max_length=255, examples=["support/answer"])
    description: str | None = Field(default=None, max_length=10_000)


class PromptPublic(BaseModel):
    path: str
    description: str | None
    created_at: datetime


class VersionCreate(Kernel):
    """A kernel plus the metadata of this save."""

    name: str | None = Field(default=None, max_length=200)
    message: str | None = Field(
        default=None, max_length=10_000, description="Why this version exists."
    )
    author: str | None = Field(default=None, max_length=200, description="Defaults to the caller.")
    description: str | None = Field(
        default=None,
        max_length=10_000,
        description="Description of the prompt, used if this save creates it.",
    )

    def kernel(self) -> Kernel:
        return Kernel.model_validate(self.model_dump(include=set(Kernel.model_fields)))


class VersionPublic(Kernel):
    """A saved, immutable version: its kernel, identity and metadata."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(description="12 hex digits derived from the content hash.")
    prompt_path: str
    content_hash: str
    name: str | None
    message: str | None
    author: str
    created_at: datetime
    variables: list[str] = Field(description="Input variables the templates read.")
    environments: list[str] = Field(
        default_factory=list, description="Environments serving it now."
    )


class SavedVersionPublic(VersionPublic):
    created: bool = Field(description="False when identical content was already saved.")


class RenderRequest(Strict):
    inputs: dict[str, Any] = Field(default_factory=dict)
    environment: str | None = Field(
        default=None, description="Render what this environment serves."
    )
    version: str | None = Field(
        default=None, description="Render this version id (default: latest)."
    )


class RenderPublic(BaseModel):
    version_id: str
    messages: list[Message] | None
    prompt: str | None


class DiffPublic(BaseModel):
    before: str
    after: str
    template: str = Field(description="Unified diff of the templates.")
    changes: list[Change]


class DeployRequest(Strict):
    version: str = Field(
        min_length=4, max_length=12, description="Version id (or a unique prefix)."
    )
    message: str | None = Field(default=None, max_length=10_000)


class RollbackRequest(Strict):
    message: str | None = Field(default=None, max_length=10_000)


class DeploymentEventPublic(BaseModel):
    id: int
    environment: str
    action: str = Field(description="`deploy` or `rollback`.")
    version_id: str
    previous_version_id: str | None
    actor: str
    message: str | None
    created_at: datetime
    changed: bool = Field(
        default=True,
        description="On deploy: false when the environment already served this version, so nothing was recorded.",
    )


class EnvironmentStatePublic(BaseModel):
    environment: str
    protected: bool
    version_id: str | None
    deployed_by: str | None
    deployed_at: datetime | None


class EnvironmentUpdate(Strict):
    protected: bool


class SignIn(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1000)


class SignInLinkRedeem(Strict):
    token: str = Field(min_length=10, max_length=200)


class PasswordChange(Strict):
    current_password: str | None = Field(default=None, max_length=1000)
    new_password: str = Field(min_length=1, max_length=1000)


class ProfileUpdate(Strict):
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=200)


class MembershipPublic(BaseModel):
    project: str
    role: str


class MePublic(BaseModel):
    """The signed-in user, with the CSRF token to send as X-CSRF-Token on writes."""

    email: str
    name: str
    server_admin: bool
    has_password: bool
    projects: list[MembershipPublic]
    csrf_token: str | None = None


class MemberCreate(Strict):
    email: str = Field(min_length=3, max_length=320)
    role: str = Field(max_length=16, examples=["member"])
    name: str | None = Field(default=None, max_length=200)


class MemberUpdate(Strict):
    role: str = Field(max_length=16)


class MemberPublic(BaseModel):
    email: str
    name: str
    role: str
    sign_in_url: str | None = Field(
        default=None,
        description="Only when the account was just created: a one-time link to share.",
    )


class SignInLinkPublic(BaseModel):
    sign_in_url: str


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200, description="What uses the key, e.g. 'ci'.")
    role: str = Field(max_length=16, examples=["member"])


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    role: str
    prefix: str = Field(description="The key's first characters, to recognise it.")
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret. Shown only now: store it safely.")


class ProviderKeySet(Strict):
    api_key: str = Field(min_length=1, max_length=4000)
    base_url: str | None = Field(
        default=None,
        max_length=500,
        pattern=r"^https?://",
        description="For OpenAI-compatible servers (vLLM, Ollama, llama.cpp, LM Studio): their URL.",
    )


class ProviderKeyPublic(BaseModel):
    """A stored provider key; only its last four characters are ever shown."""

    provider: str
    hint: str
    base_url: str | None = None
    updated_by: str
    updated_at: datetime


class AuditEventPublic(BaseModel):
    id: int
    created_at: datetime
    actor_kind: str
    actor: str
    address: str | None
    action: str
    target: str
    details: dict[str, Any]


class LogCreate(Strict):
    """A call your own code made, to record. Name a prompt (and version) to link it, or not."""

    id: str | None = Field(
        default=None,
        min_length=8,
        max_length=36,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="Your id for the log; sending the same id again stores it once (safe retries).",
    )
    source: Literal["playground", "sdk", "api", "gateway", "eval"] = "api"
    prompt: str | None = Field(default=None, max_length=255)
    version: str | None = Field(default=None, max_length=12)
    environment: str | None = Field(default=None, max_length=64)
    provider: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=200)
    inputs: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = Field(default=None, max_length=1000)
    output: str | None = Field(default=None, max_length=1_000_000)
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = Field(default=None, max_length=32)
    prompt_tokens: int | None = Field(default=None, ge=0, le=MAX_INT)
    output_tokens: int | None = Field(default=None, ge=0, le=MAX_INT)
    cost: float | None = Field(
        default=None, ge=0, description="Dollars; computed from the catalogue if absent."
    )
    latency_ms: float | None = Field(default=None, ge=0)
    ttft_ms: float | None = Field(default=None, ge=0)
    error: str | None = Field(default=None, max_length=100_000)
    end_user: str | None = Field(default=None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)
    trace_id: str | None = Field(default=None, max_length=64)
    parent_id: str | None = Field(default=None, max_length=64)
    consent: bool | None = Field(
        default=None, description="Whether the end user consented to capture of their content."
    )
    created_at: datetime | None = Field(
        default=None, description="When the call happened (default: now); no zone means UTC."
    )

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class LogBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")  # each LogCreate checks its own text for NULs

    logs: list[LogCreate] = Field(min_length=1, max_length=10_000)


class LogIds(BaseModel):
    ids: list[str]


class LogCreated(BaseModel):
    id: str


class LogPublic(BaseModel):
    id: str
    source: str
    prompt: str | None
    version: str | None
    environment: str | None
    provider: str | None
    model: str | None
    inputs: dict[str, Any] | None
    messages: list[dict[str, Any]] | None
    output: str | None
    tool_calls: list[dict[str, Any]] | None
    finish_reason: str | None
    prompt_tokens: int | None
    output_tokens: int | None
    cost: float | None = Field(description="Dollars; null when a price or token count is unknown.")
    latency_ms: float | None
    ttft_ms: float | None
    error: str | None
    end_user: str | None
    metadata: dict[str, Any] | None
    trace_id: str | None
    parent_id: str | None
    consent: bool | None
    withheld: bool = Field(description="Inputs and outputs not stored (the end user's consent).")
    created_at: datetime
    kernel: dict[str, Any] | None = Field(description="The draft kernel of a playground run.")


class CallRequest(Strict):
    inputs: dict[str, Any] = Field(default_factory=dict)
    messages: list[Message] = Field(
        default_factory=list, description="Appended after the template's messages."
    )
    environment: str | None = Field(default=None, max_length=64, description="Default: production.")
    version: str | None = Field(default=None, max_length=12)
    stream: bool = False
    end_user: str | None = Field(default=None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)
    trace_id: str | None = Field(default=None, max_length=64)
    parent_id: str | None = Field(default=None, max_length=64)
    consent: bool | None = Field(
        default=None, description="Whether the end user consented to capture of their content."
    )
    feedback_token: bool = Field(
        default=False,
        description="Return a feedback token: lets a browser give feedback on this log alone.",
    )


class PlaygroundCall(Kernel):
    """A draft kernel to run without saving it; logged, and linked to the version it matches."""

    prompt: str | None = Field(
        default=None, max_length=255, description="The prompt the draft belongs to."
    )
    inputs: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False

    def kernel(self) -> Kernel:
        return Kernel.model_validate(self.model_dump(include=set(Kernel.model_fields)))


class UsagePublic(BaseModel):
    prompt_tokens: int | None
    output_tokens: int | None


class CallPublic(BaseModel):
    log_id: str
    output: str | None
    finish_reason: str | None
    tool_calls: list[dict[str, Any]] | None
    usage: UsagePublic
    cost: float | None
    latency_ms: float
    prompt: str | None
    version: str | None
    provider: str
    model: str
    feedback_token: str | None = Field(
        default=None, description="Present when the call asked for one (feedback_token: true)."
    )


class ModelPublic(BaseModel):
    provider: str
    name: str
    input_price: float | None = Field(
        description="Dollars per million input tokens; null: unknown."
    )
    output_price: float | None = Field(
        description="Dollars per million output tokens; null: unknown."
    )
    context_window: int | None
    updated_at: datetime


class ModelPrices(Strict):
    input_price: float | None = Field(ge=0)
    output_price: float | None = Field(ge=0)


# Feedback --------------------------------------------------------------------------------------

FeedbackValue = bool | int | float | str | None


class FeedbackKindCreate(Strict):
    name: str = Field(min_length=1, max_length=64, examples=["stars"])
    category: Literal["vote", "action", "correction", "comment"]
    type: Literal["boolean", "number", "choice", "text"] | None = Field(
        default=None,
        description="Default: boolean for votes, number for actions, text for the others.",
    )
    choices: list[str] | None = Field(default=None, max_length=100)
    minimum: float | None = Field(default=None, allow_inf_nan=False)
    maximum: float | None = Field(default=None, allow_inf_nan=False)
    higher_is_better: bool = Field(
        default=True, description="Whether up (true, a higher rating, the action) is good."
    )
    description: str | None = Field(default=None, max_length=10_000)


class FeedbackKindPublic(BaseModel):
    name: str
    category: str
    type: str
    choices: list[str] | None
    minimum: float | None
    maximum: float | None
    higher_is_better: bool
    description: str | None
    created_by: str
    created_at: datetime


class FeedbackCreate(Strict):
    name: str = Field(
        min_length=1, max_length=64, description="A declared feedback kind.", examples=["rating"]
    )
    value: FeedbackValue = Field(
        default=None,
        description="Votes: 'up'/'down' (or true/false), a number on the kind's scale, or a "
        "choice. Actions: an optional number. Corrections and comments: text.",
    )
    delay_s: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Actions: seconds after the output."
    )
    end_user: str | None = Field(
        default=None, max_length=200, description="The end user who gave it (else: you)."
    )
    source: Literal["api", "sdk", "cli", "ui"] = "api"


class TokenFeedbackCreate(Strict):
    """Feedback from a browser holding a feedback token, instead of an API key."""

    token: str = Field(min_length=1, max_length=1000)
    log_id: str | None = Field(
        default=None, max_length=36, description="Optional: refused unless it is the token's log."
    )
    name: str = Field(min_length=1, max_length=64)
    value: FeedbackValue = None
    delay_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    end_user: str | None = Field(default=None, max_length=200)


class FeedbackPublic(BaseModel):
    id: str
    log_id: str
    name: str
    category: str
    value: FeedbackValue
    score: float | None = Field(description="0..1, where 1 is good (votes and actions).")
    delay_s: float | None
    similarity: float | None = Field(description="Corrections: similarity to the output, 0..1.")
    diff: str | None = Field(description="Corrections: unified diff from the output.")
    withheld: bool = Field(description="Text not stored: the end user did not consent.")
    end_user: str | None
    reviewer: str | None
    recorded_by: str
    source: str
    current: bool = Field(description="False once the same person gave a newer one of this kind.")
    created_at: datetime


class FeedbackTokenPublic(BaseModel):
    log_id: str
    token: str
    expires_at: datetime


class IntervalPublic(BaseModel):
    value: float | None
    low: float | None = Field(description="95% confidence interval.")
    high: float | None
    n: int


class KindStatsPublic(BaseModel):
    name: str
    category: str
    logs: int = Field(description="Logs with at least one (current) entry of this kind.")
    rate: IntervalPublic = Field(description="Share of the group's logs.")
    count: int
    up: int
    down: int
    up_share: IntervalPublic | None
    mean_similarity: float | None


class FeedbackStatsGroup(BaseModel):
    prompt: str | None
    version: str | None
    environment: str | None
    logs: int
    kinds: list[KindStatsPublic]
