"""Request and response bodies of evaluators, evaluation runs and human judgments."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from promptloop.api.schemas import Strict

JudgmentValue = bool | int | float | str | None


class EvaluatorCreate(Strict):
    kind: Literal["builtin", "code", "llm", "human"]
    builtin: str | None = Field(
        default=None, max_length=64, description="builtin: exact_match, regex, json_schema…"
    )
    config: dict[str, Any] = Field(default_factory=dict, description="builtin: its settings.")
    source: str | None = Field(
        default=None,
        max_length=200_000,
        description="code: Python defining `def evaluate(log, datapoint)`.",
    )
    timeout_s: float | None = Field(default=None, gt=0, le=60, description="code: per datapoint.")
    judge: dict[str, str] | None = Field(
        default=None, description="llm: {prompt, version | environment} of the judge prompt."
    )
    returns: Literal["boolean", "number", "choice", "text"] | None = None
    choices: list[str] | None = Field(default=None, max_length=100)
    higher_is_better: bool | None = None
    message: str | None = Field(default=None, max_length=10_000)
    description: str | None = Field(default=None, max_length=10_000)


class EvaluatorVersionPublic(BaseModel):
    name: str
    version: str
    kind: str
    returns: str
    higher_is_better: bool
    spec: dict[str, Any]
    message: str | None
    author: str
    created_at: datetime


class SavedEvaluatorPublic(EvaluatorVersionPublic):
    created: bool


class EvaluatorTry(Strict):
    """Try an evaluator (saved, or a draft) on one log before using it in a run."""

    log_id: str = Field(max_length=36)
    evaluator: str | None = Field(default=None, max_length=100, description="name[@version]")
    draft: EvaluatorCreate | None = None
    target: Any = Field(default=None, description="The target to compare with, if any.")


class OutcomePublic(BaseModel):
    value: JudgmentValue
    explanation: str | None
    error: str | None


class CandidateIn(Strict):
    prompt: str | None = Field(default=None, max_length=255)
    version: str | None = Field(default=None, max_length=12)
    environment: str | None = Field(default=None, max_length=64)
    model: str | None = Field(
        default=None, max_length=300, description="Swap the version's model: provider/model."
    )
    label: str | None = Field(default=None, max_length=200)


class RunCreate(Strict):
    dataset: str = Field(max_length=255)
    dataset_version: str | None = Field(default=None, max_length=12, description="Default: latest.")
    candidates: list[CandidateIn] = Field(min_length=1, max_length=20)
    evaluators: list[str] = Field(
        min_length=1, max_length=50, description="Evaluator names, optionally name@version."
    )
    control: int | None = Field(
        default=None, ge=0, description="Index of the control candidate (default: production)."
    )
    concurrency: int = Field(default=8, ge=1, le=64)
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="Evaluator name → the mean each candidate must reach."
    )
    name: str | None = Field(default=None, max_length=200)
    mode: Literal["server", "local"] = "server"


class CandidatePublic(BaseModel):
    label: str
    control: bool
    prompt: str | None
    version: str | None
    model: dict[str, Any] | None


class RunPublic(BaseModel):
    id: str
    name: str | None
    mode: str
    status: str = Field(description="queued, running, finishing, completed, failed, cancelled")
    dataset: str
    dataset_version: str
    concurrency: int
    thresholds: dict[str, float]
    progress: dict[str, Any]
    candidates: list[CandidatePublic]
    evaluators: list[dict[str, Any]]
    summary: dict[str, Any] | None
    error: str | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None


class RunListItem(BaseModel):
    id: str
    name: str | None
    mode: str
    status: str
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    verdict: str | None


class LocalOutputIn(Strict):
    datapoint: str = Field(max_length=32, description="The datapoint's key.")
    output: str | None = Field(default=None, max_length=1_000_000)
    error: str | None = Field(default=None, max_length=100_000)
    candidate: str | None = Field(default=None, max_length=200)
    latency_ms: float | None = Field(default=None, ge=0)
    prompt_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    cost: float | None = Field(default=None, ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)


class LocalOutputs(Strict):
    outputs: list[LocalOutputIn] = Field(min_length=1, max_length=1000)


class LocalDatapoint(BaseModel):
    key: str
    inputs: dict[str, Any]
    messages: list[dict[str, Any]] | None
    target: Any


class LocalPlan(BaseModel):
    run: str
    candidates: list[str]
    datapoints: list[LocalDatapoint]


class PendingJudgment(BaseModel):
    id: str
    evaluator: str
    returns: str
    choices: list[str] | None
    run: str | None
    log_id: str
    inputs: dict[str, Any] | None
    output: str | None
    created_at: datetime


class JudgmentGive(Strict):
    value: JudgmentValue
    explanation: str | None = Field(default=None, max_length=100_000)
