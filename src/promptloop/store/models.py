"""The tables. Every row belongs to a project; prompt versions are never updated or deleted."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from promptloop.store.types import JSONType, UtcDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime,
        dict[str, Any]: JSONType,
    }


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # When the inputs and outputs of a log are stored: "always", "unless_declined" (not when
    # the end user declined consent) or "with_consent" (only when the end user consented).
    content_capture: Mapped[str] = mapped_column(
        String(16), default="always", server_default="always"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Environment(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("project_id", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptVersion(Base):
    """Immutable. `version_id` is the first 12 hex digits of `content_hash`, unique per prompt."""

    __tablename__ = "prompt_versions"
    __table_args__ = (UniqueConstraint("prompt_id", "version_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[str] = mapped_column(String(12))
    content_hash: Mapped[str] = mapped_column(String(64))
    kernel: Mapped[dict[str, Any]]
    name: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    prompt: Mapped[Prompt] = relationship(lazy="raise")


class Deployment(Base):
    """Which version a prompt serves in an environment now; history is in DeploymentEvent."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("prompt_id", "environment_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    version_pk: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    deployed_by: Mapped[str] = mapped_column(String(200))
    deployed_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeploymentEvent(Base):
    """One change of what an environment serves: a deploy or a rollback, who, when and why."""

    __tablename__ = "deployment_events"
    __table_args__ = (Index(None, "prompt_id", "environment_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    version_pk: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    previous_version_pk: Mapped[int | None] = mapped_column(ForeignKey("prompt_versions.id"))
    actor: Mapped[str] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person who signs in. `server_admin` may create projects and acts as admin in every one."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    server_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime | None]


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebSession(Base):
    """A signed-in browser. Only the SHA-256 of the cookie value is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class SignInLink(Base):
    """A one-time sign-in link (first admin, invitations, password resets); stored hashed."""

    __tablename__ = "sign_in_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class ApiKey(Base):
    """A project-scoped credential with one role. Only the SHA-256 of the key is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    project: Mapped[Project] = relationship(lazy="joined")


class AuditEvent(Base):
    """Who did what, when, from where. Append-only."""

    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "project_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"))
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(400))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProviderCredential(Base):
    """A provider's API key for one project, encrypted at rest; `hint` is its last 4 characters."""

    __tablename__ = "provider_credentials"
    __table_args__ = (UniqueConstraint("project_id", "provider"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[str] = mapped_column(Text)
    hint: Mapped[str] = mapped_column(String(8))
    base_url: Mapped[str | None] = mapped_column(String(500))
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(Base):
    """A model in the catalogue: prices per million tokens (None: unknown, never zero by default)
    and capabilities. Fine-tuned models will carry their lineage here."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("provider", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    input_price: Mapped[float | None]
    output_price: Mapped[float | None]
    context_window: Mapped[int | None]
    capabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Fine-tuned models: the job that made it, and the only project whose members may call or
    # deploy it (its weights learned that project's data).
    fine_tune_id: Mapped[int | None] = mapped_column(
        ForeignKey("fine_tunes.id", ondelete="CASCADE")
    )
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


_SPLIT = ("prompt_id", "version_pk", "environment")
_MONITORED = (*_SPLIT, "latency_ms", "prompt_tokens", "output_tokens", "cost")
_FAILED: dict[str, Any] = {
    "sqlite_where": text("error IS NOT NULL"),
    "postgresql_where": text("error IS NOT NULL"),
}


class Log(Base):
    """One LLM call (or tool/flow step). Written in batches by the log writer; never updated."""

    __tablename__ = "logs"
    __table_args__ = (
        Index("ix_logs_project_id_id", "project_id", "id"),
        Index("ix_logs_project_id_prompt_id_id", "project_id", "prompt_id", "id"),
        # The monitoring page reads its figures from these alone (migration 0007).
        Index("ix_logs_monitoring", "project_id", "created_at", *_MONITORED),
        Index("ix_logs_project_id_errors", "project_id", "created_at", *_SPLIT, **_FAILED),
        Index("ix_logs_project_id_end_user_id", "project_id", "end_user", "id"),
        Index("ix_logs_trace_id", "trace_id"),
        UniqueConstraint("project_id", "uid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(36))  # the public id; a client may choose it
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id", ondelete="SET NULL"))
    version_pk: Mapped[int | None] = mapped_column(
        ForeignKey("prompt_versions.id", ondelete="SET NULL")
    )
    content_hash: Mapped[str | None] = mapped_column(String(64))
    kernel: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    environment: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(200))
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    messages: Mapped[list[Any] | None] = mapped_column(JSONType)
    output: Mapped[str | None] = mapped_column(Text)
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSONType)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int | None]
    output_tokens: Mapped[int | None]
    cost: Mapped[float | None]
    latency_ms: Mapped[float | None]
    ttft_ms: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(Text)
    end_user: Mapped[str | None] = mapped_column(String(200))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)
    trace_id: Mapped[str | None] = mapped_column(String(64))
    parent_id: Mapped[str | None] = mapped_column(String(64))
    consent: Mapped[bool | None] = mapped_column(Boolean)  # the end user's; None: not stated
    withheld: Mapped[bool | None] = mapped_column(Boolean)  # inputs/outputs kept out (consent)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeedbackKind(Base):
    """A kind of feedback a project collects: what category it is, what values it takes, and
    whether a higher value is better. Evaluators declare their judgments the same way."""

    __tablename__ = "feedback_kinds"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(16))  # vote, action, correction, comment
    type: Mapped[str] = mapped_column(String(16))  # boolean, number, choice, text
    choices: Mapped[list[Any] | None] = mapped_column(JSONType)
    minimum: Mapped[float | None]
    maximum: Mapped[float | None]
    higher_is_better: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Judgment(Base):
    """A verdict on one log: feedback from a person (vote, action, correction, comment), and
    later evaluator judgments, in one shape so that filters and statistics serve both.

    `score` maps the value onto 0..1 where 1 is good (votes and actions), for rates and shares.
    `current` is false once the same person gave a newer vote or correction of the same kind;
    history is kept, statistics count current ones.
    """

    __tablename__ = "judgments"
    __table_args__ = (
        Index("ix_judgments_log_id_kind_id", "log_id", "kind_id"),
        Index("ix_judgments_project_id_id", "project_id", "id"),
        UniqueConstraint("uid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id", ondelete="CASCADE"))
    kind_id: Mapped[int | None] = mapped_column(ForeignKey("feedback_kinds.id", ondelete="CASCADE"))
    evaluator_version_pk: Mapped[int | None] = mapped_column(
        ForeignKey("evaluator_versions.id", ondelete="CASCADE")
    )
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("evaluation_runs.id", ondelete="CASCADE"), index=True
    )
    run_item_id: Mapped[int | None] = mapped_column(  # the candidate and datapoint judged
        ForeignKey("run_items.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(16))
    value: Mapped[Any | None] = mapped_column(JSONType)
    score: Mapped[float | None]
    delay_s: Mapped[float | None]
    similarity: Mapped[float | None]
    diff: Mapped[str | None] = mapped_column(Text)
    withheld: Mapped[bool] = mapped_column(Boolean, default=False)
    explanation: Mapped[str | None] = mapped_column(Text)  # an LLM judge's reasoning
    error: Mapped[str | None] = mapped_column(Text)  # the evaluator failed on this log
    pending: Mapped[bool] = mapped_column(  # a human judgment still to give
        Boolean, default=False, server_default=false()
    )
    end_user: Mapped[str | None] = mapped_column(String(200))
    reviewer: Mapped[str | None] = mapped_column(String(200))
    recorded_by: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))
    current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    """A named collection of datapoints; its content lives in immutable versions."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetVersion(Base):
    """Immutable. `version_id`: the first 12 hex digits of the hash of its datapoints' content."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[str] = mapped_column(String(12))
    content_hash: Mapped[str] = mapped_column(String(64))
    count: Mapped[int]
    source: Mapped[str] = mapped_column(String(16))  # upload, logs, corrections, edit, api
    message: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Datapoint(Base):
    """One example of a dataset version: inputs, optional chat messages, optional target, and
    where it came from (an upload, a log, a correction on a log)."""

    __tablename__ = "datapoints"
    __table_args__ = (UniqueConstraint("version_pk", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version_pk: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="CASCADE"))
    position: Mapped[int]
    key: Mapped[str] = mapped_column(String(16))  # hash of its content: the same across versions
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    messages: Mapped[list[Any] | None] = mapped_column(JSONType)
    target: Mapped[Any | None] = mapped_column(JSONType)
    source: Mapped[str] = mapped_column(String(16))  # upload, log, correction
    log_uid: Mapped[str | None] = mapped_column(String(36))  # provenance


class Evaluator(Base):
    __tablename__ = "evaluators"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvaluatorVersion(Base):
    """Immutable, identified by the hash of its spec (kind, return type, configuration, code or
    judge prompt), like prompt versions."""

    __tablename__ = "evaluator_versions"
    __table_args__ = (UniqueConstraint("evaluator_id", "version_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluator_id: Mapped[int] = mapped_column(
        ForeignKey("evaluators.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[str] = mapped_column(String(12))
    content_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # builtin, code, llm, human
    returns: Mapped[str] = mapped_column(String(16))  # boolean, number, choice, text
    higher_is_better: Mapped[bool] = mapped_column(Boolean, default=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    message: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """Queued background work, claimed by a worker (in `serve`, or `promptloop worker`)."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # evaluation_run, fine_tune
    status: Mapped[str] = mapped_column(String(16), default="queued")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    run_after: Mapped[datetime | None]  # a queued job waiting for something is not claimed before
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class EvaluationRun(Base):
    """Candidates (prompt versions, or a version with another model), run on a dataset version with
    evaluators, one candidate marked control."""

    __tablename__ = "evaluation_runs"
    __table_args__ = (UniqueConstraint("uid"), Index(None, "project_id", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(200))
    dataset_version_pk: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    mode: Mapped[str] = mapped_column(String(8))  # server, local
    status: Mapped[str] = mapped_column(String(16), default="queued")
    concurrency: Mapped[int] = mapped_column(default=8)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class RunCandidate(Base):
    """One thing a run evaluates: a prompt version, optionally with another model, or (local
    runs) the user's own function."""

    __tablename__ = "run_candidates"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("evaluation_runs.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int]
    label: Mapped[str] = mapped_column(String(300))
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id", ondelete="SET NULL"))
    version_pk: Mapped[int | None] = mapped_column(
        ForeignKey("prompt_versions.id", ondelete="SET NULL")
    )
    model: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # {provider, model} swap
    control: Mapped[bool] = mapped_column(Boolean, default=False)


class RunEvaluator(Base):
    __tablename__ = "run_evaluators"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("evaluation_runs.id", ondelete="CASCADE"), index=True
    )
    evaluator_version_pk: Mapped[int] = mapped_column(ForeignKey("evaluator_versions.id"))


class RunItem(Base):
    """One candidate on one datapoint: its log, once made, and whether it is fully evaluated
    (what a resumed run skips)."""

    __tablename__ = "run_items"
    __table_args__ = (UniqueConstraint("candidate_id", "datapoint_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("evaluation_runs.id", ondelete="CASCADE"), index=True
    )
    candidate_id: Mapped[int] = mapped_column(ForeignKey("run_candidates.id", ondelete="CASCADE"))
    datapoint_id: Mapped[int] = mapped_column(ForeignKey("datapoints.id", ondelete="CASCADE"))
    log_uid: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, logged, done
    error: Mapped[str | None] = mapped_column(Text)


class FineTune(Base):
    """A fine-tuning job and what it produced: a base model trained on a dataset version (the
    datapoints rendered through a prompt version), its metrics, its adapter, the model it
    registered, and the evaluation that compares it with what is deployed."""

    __tablename__ = "fine_tunes"
    __table_args__ = (UniqueConstraint("uid"), UniqueConstraint("model_name"))

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    model_name: Mapped[str] = mapped_column(String(200))  # what it is called, under `local/`
    method: Mapped[str] = mapped_column(String(16))  # lora
    base_model: Mapped[str] = mapped_column(String(200))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    version_pk: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    dataset_version_pk: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    held_out_fraction: Mapped[float]
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSONType)
    evaluators: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    adapter_dir: Mapped[str | None] = mapped_column(String(500))
    evaluation_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("evaluation_runs.id", ondelete="SET NULL")
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
