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


# Datasets, evaluators and evaluation runs ------------------------------------------------------


class Dataset(_Result):
    """A named collection of examples, such as "support/questions"; its content lives in
    immutable versions, the newest being `latest_version` (with `count` datapoints)."""

    name: str
    description: str | None = None
    created_at: datetime
    latest_version: str | None = None
    count: int | None = None


class DatasetVersion(_Result):
    """An immutable version of a dataset: `id` is 12 hex digits of its content's hash.

    `source` says how it was made: "upload", "logs", "corrections", "edit" or "api".
    """

    id: str
    dataset: str
    content_hash: str
    count: int
    source: str
    message: str | None = None
    author: str
    created_at: datetime


class SavedDatasetVersion(DatasetVersion):
    """The result of a save: `created` is False when identical content was already saved."""

    created: bool


class DatasetFromLogs(SavedDatasetVersion):
    """A version made from logs: `skipped` matching logs were left out, by reason in
    `skipped_reasons` (content withheld, failed calls, no correction)."""

    skipped: int = 0
    skipped_reasons: dict[str, int] = Field(default_factory=dict)


class DatapointPreview(_Result):
    """A datapoint as a version from logs would store it: `source` "correction" where a
    person's correction replaced the output, "log" elsewhere; `log_id` the log it came from."""

    key: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None
    target: Any = None
    source: str = "log"
    log_id: str | None = None


class DatasetPreview(_Result):
    """What `datasets.from_logs` would save: `count` datapoints (`train` and `held_out` as a
    fine-tune would split them), the first of them in `sample`, the `matched` logs and those
    `skipped` (by reason in `skipped_reasons`), the `version` id it would have and whether the
    named dataset holds it already (`exists`)."""

    count: int
    matched: int
    skipped: int = 0
    skipped_reasons: dict[str, int] = Field(default_factory=dict)
    version: str | None = None
    exists: bool = False
    train: int = 0
    held_out: int = 0
    sample: list[DatapointPreview] = Field(default_factory=list)


class FineTune(_Result):
    """A fine-tuning job: `method` "lora" (the local model) or "openai" (OpenAI's fine-tuning
    API); `progress` holds step, total_steps, loss, elapsed_s and remaining_s while it runs;
    once completed, `model` is what to call it (`local/<project>/<name>`, or the `openai/ft:…`
    model OpenAI made), `metrics` its training and held-out loss, and `evaluation` the id of
    its evaluation run against production on the held-out datapoints. Its lineage: the
    `dataset` version it learned from, rendered through the `prompt` version."""

    id: str
    name: str = ""
    model: str | None = None
    status: str
    method: str
    base_model: str
    dataset: str = ""
    dataset_version: str = ""
    prompt: str = ""
    prompt_version: str = ""
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    held_out_fraction: float
    evaluators: list[str] = Field(default_factory=list)
    progress: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    evaluation: str | None = None
    error: str | None = None
    created_by: str
    created_at: datetime
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")


class Datapoint(_Result):
    """One example: the `inputs` a prompt renders with (or chat `messages`) and what a good
    answer is (`target`). `key` hashes its content, so it is the same in every version that
    holds it; `source` is its provenance ("upload", "log", "correction")."""

    key: str
    position: int
    inputs: dict[str, Any] = Field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None
    target: Any = None
    source: str = "upload"
    log_id: str | None = None


class Evaluator(_Result):
    """One version of an evaluator: how it judges a log (`kind` "builtin", "code", "llm" or
    "human", with its `spec`), what it `returns` ("boolean", "number", "choice", "text"), and
    whether a higher value is better."""

    name: str
    version: str
    kind: str
    returns: str
    higher_is_better: bool = True
    spec: dict[str, Any] = Field(default_factory=dict)
    message: str | None = None
    author: str
    created_at: datetime


class SavedEvaluator(Evaluator):
    """The result of a save: `created` is False when identical content was already saved."""

    created: bool


class Outcome(_Result):
    """What an evaluator said about one log: its value and explanation, or why it could not
    judge (`error`)."""

    value: FeedbackValue = None
    explanation: str | None = None
    error: str | None = None


class RunCandidate(_Result):
    """What a run evaluates: a prompt version (optionally with another `model`), or in local
    mode your function, by its `label`. The `control` is what the others are compared with."""

    label: str
    control: bool = False
    prompt: str | None = None
    version: str | None = None
    model: dict[str, Any] | None = None


class RunEvaluator(_Result):
    """An evaluator a run uses, at the version it resolved to."""

    name: str
    version: str
    kind: str
    returns: str


class Comparison(_Result):
    """A candidate against the control on one evaluator, paired by datapoint: how often it did
    better (`wins`), worse or the same, the mean difference (positive: better) with its 95%
    interval, the test's p-value, and the `verdict` ("improved", "regressed" or "no
    detectable change")."""

    n: int
    wins: int
    losses: int
    ties: int
    mean_difference: Interval
    p_value: float | None = None
    test: str
    verdict: str


class RunResult(_Result):
    """One candidate on one evaluator: the mean (a rate for booleans) with its 95% interval
    over `n` judged datapoints, how many judgments failed (`errors`) or wait for a person
    (`pending`), the threshold and whether it was met, and the comparison with the control
    (None for the control itself and for choice or text evaluators)."""

    candidate: str
    evaluator: str
    returns: str
    higher_is_better: bool = True
    n: int
    errors: int = 0
    pending: int = 0
    mean: Interval
    interval: str
    choices: dict[str, int] | None = None
    threshold: float | None = None
    passed_threshold: bool | None = None
    comparison: Comparison | None = None

    @property
    def regressed(self) -> bool:
        """Worse than the control, beyond chance."""
        return self.comparison is not None and self.comparison.verdict == "regressed"

    @property
    def failed(self) -> bool:
        """Regressed, or missed its threshold: what fails the run."""
        return self.regressed or self.passed_threshold is False


class CandidateTotals(_Result):
    """What one candidate's calls cost: logs, failed calls, dollars (None when a price is
    unknown), latency in ms (`total`, `p50`, `p95`) and tokens."""

    label: str
    control: bool = False
    logs: int
    errors: int = 0
    cost: float | None = None
    latency_ms: dict[str, float | None] = Field(default_factory=dict)
    prompt_tokens: int = 0
    output_tokens: int = 0


class RunSummary(_Result):
    """A run's statistics: one result per candidate and evaluator, each candidate's totals,
    and the `verdict`: "passed", or "failed" with the reasons in `failures` (a regression
    against the control, a missed threshold)."""

    control: str | None = None
    candidates: list[CandidateTotals] = Field(default_factory=list)
    results: list[RunResult] = Field(default_factory=list)
    verdict: str
    failures: list[str] = Field(default_factory=list)


class EvaluationRun(_Result):
    """Prompt versions (or your function), a dataset version and evaluators: every candidate
    answers every datapoint, and every evaluator judges every answer.

    `status` is "queued", "running", "finishing", then "completed", "failed" or "cancelled";
    `progress` counts the answers to judge, one per candidate and datapoint (`total`, `done`);
    `summary` holds the statistics, final once the run completed.
    """

    id: str
    name: str | None = None
    mode: str
    status: str
    dataset: str
    dataset_version: str
    concurrency: int
    thresholds: dict[str, float] = Field(default_factory=dict)
    progress: dict[str, Any] = Field(default_factory=dict)
    candidates: list[RunCandidate] = Field(default_factory=list)
    evaluators: list[RunEvaluator] = Field(default_factory=list)
    summary: RunSummary | None = None
    error: str | None = None
    created_by: str
    created_at: datetime
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        """Completed, failed or cancelled: nothing will change any more."""
        return self.status in ("completed", "failed", "cancelled")

    @property
    def passed(self) -> bool:
        """Completed with no regression and every threshold met."""
        return (
            self.status == "completed"
            and self.summary is not None
            and self.summary.verdict == "passed"
        )


class RunOverview(_Result):
    """A run as listed: its status and, once completed, its verdict."""

    id: str
    name: str | None = None
    mode: str
    status: str
    created_by: str
    created_at: datetime
    finished_at: datetime | None = None
    verdict: str | None = None


class DatapointComparison(_Result):
    """One datapoint, candidate against control on one evaluator: both outputs and values,
    and the `difference` in score (positive: the candidate did better)."""

    datapoint: str
    inputs: dict[str, Any] | None = None
    target: Any = None
    control_output: str | None = None
    candidate_output: str | None = None
    control_value: FeedbackValue = None
    candidate_value: FeedbackValue = None
    difference: float | None = None


class RunDatapoint(_Result):
    """A datapoint of a local run, to call your function on; outputs name it by `key`."""

    key: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None
    target: Any = None


class LocalPlan(_Result):
    """What a local run needs from you: an output per candidate (by label) and datapoint."""

    run: str
    candidates: list[str]
    datapoints: list[RunDatapoint]


class PendingJudgment(_Result):
    """A human evaluator's judgment waiting for a reviewer: the log's inputs and output, and
    what kind of value to give."""

    id: str
    evaluator: str
    returns: str
    choices: list[str] | None = None
    run: str | None = None
    log_id: str
    inputs: dict[str, Any] | None = None
    output: str | None = None
    created_at: datetime
