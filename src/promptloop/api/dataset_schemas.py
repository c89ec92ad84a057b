"""Request and response bodies of datasets, versions and datapoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from promptloop.api.schemas import Strict
from promptloop.core.datapoints import MAX_DATAPOINTS, DatapointSpec, check_messages, check_value
from promptloop.services.datasets import MAX_FROM_LOGS, LogFilters
from promptloop.store.types import utc


class DatapointCreate(Strict):
    """One example: the inputs a prompt renders with, or chat messages, and what a good answer
    is (`target`)."""

    inputs: dict[str, Any] = Field(description="Template variables; may be empty.")
    messages: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=1000,
        description="Chat messages, each with a `role` (for datapoints without a template).",
    )
    target: Any = Field(default=None, description="The expected output; usually text.")
    source: Literal["upload", "log", "correction"] = Field(
        default="upload", description="Provenance: given by a person, a log, a correction."
    )
    log_id: str | None = Field(default=None, max_length=36, description="The log it came from.")

    @model_validator(mode="after")
    def _finite(self) -> DatapointCreate:
        check_value([self.inputs, self.messages, self.target])
        check_messages(self.messages)
        return self

    def spec(self) -> DatapointSpec:
        return DatapointSpec(
            inputs=self.inputs,
            messages=self.messages or None,
            target=self.target,
            source=self.source,
            log_uid=self.log_id,
        )


class DatasetVersionCreate(Strict):
    """Either the full content (`datapoints`), or an edit of a version (`base`, with `add`
    and `remove`)."""

    datapoints: list[DatapointCreate] | None = Field(
        default=None, max_length=MAX_DATAPOINTS, description="The whole content, in order."
    )
    base: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Edit: the version to start from (`latest`, an id or a unique prefix).",
    )
    add: list[DatapointCreate] = Field(
        default_factory=list, max_length=MAX_DATAPOINTS, description="Edit: appended datapoints."
    )
    remove: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=MAX_DATAPOINTS,
        description="Edit: keys of datapoints to leave out.",
    )
    message: str | None = Field(default=None, max_length=10_000, description="Why this version.")
    description: str | None = Field(
        default=None,
        max_length=10_000,
        description="Description of the dataset, used if this save creates it.",
    )

    @model_validator(mode="after")
    def _one_shape(self) -> DatasetVersionCreate:
        if (self.datapoints is None) == (self.base is None):
            raise ValueError("give either 'datapoints' (the full content) or 'base' (an edit)")
        if self.datapoints is not None and (self.add or self.remove):
            raise ValueError("'add' and 'remove' edit a 'base' version; not with 'datapoints'")
        if self.base is not None and self.description is not None:
            raise ValueError("'description' applies when a save creates the dataset, not to edits")
        return self


class LogFiltersCreate(Strict):
    """The filters of the log list, as an object."""

    prompt: str | None = Field(default=None, max_length=255)
    version: str | None = Field(default=None, max_length=12)
    environment: str | None = Field(default=None, max_length=64)
    source: str | None = Field(default=None, max_length=16)
    since: datetime | None = Field(default=None, description="ISO time, inclusive.")
    until: datetime | None = Field(default=None, description="ISO time, exclusive.")
    error: bool | None = Field(
        default=None, description="true: failed calls only; false: successful only."
    )
    end_user: str | None = Field(default=None, max_length=200)
    metadata: dict[str, str] = Field(
        default_factory=dict, max_length=20, description="Every key must have this value."
    )
    feedback: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=20,
        description="All must hold: `up`, `down`, `any`, `none`, or a feedback kind's name.",
    )
    judgments: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list,
        max_length=20,
        description="All must hold: an evaluator's judgment compared with a value, "
        "`<evaluator><op><value>` with op `>=`, `<=`, `>`, `<`, `=` or `!=` (`helpful>=4`, "
        "`exact=true`).",
    )

    def filters(self) -> LogFilters:
        return LogFilters(
            **self.model_dump(exclude={"since", "until", "feedback", "judgments"}),
            since=utc(self.since),
            until=utc(self.until),
            feedback=tuple(self.feedback),
            judgments=tuple(self.judgments),
        )


class FromLogsCreate(Strict):
    filters: LogFiltersCreate = Field(default_factory=LogFiltersCreate)
    target: Literal["output", "correction", "corrected", "none"] = Field(
        default="output",
        description="The datapoints' target: the log's output, the text a person corrected it "
        "to (only logs with a correction), that correction where there is one and else the "
        "output (`corrected`), or none.",
    )
    limit: int = Field(default=1000, ge=1, le=MAX_FROM_LOGS, description="Most datapoints.")
    message: str | None = Field(default=None, max_length=10_000)
    description: str | None = Field(default=None, max_length=10_000)


class PreviewCreate(Strict):
    """What a version from logs would hold, before saving it."""

    filters: LogFiltersCreate = Field(default_factory=LogFiltersCreate)
    target: Literal["output", "correction", "corrected", "none"] = Field(
        default="output", description="As for `from-logs`."
    )
    limit: int = Field(default=1000, ge=1, le=MAX_FROM_LOGS, description="Most datapoints.")
    sample: int = Field(default=5, ge=0, le=100, description="How many datapoints to show.")
    name: str | None = Field(
        default=None,
        max_length=255,
        description="The dataset it would be saved to: says whether that version exists.",
    )
    held_out_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="The share a fine-tune would hold out (by key)."
    )


class DatapointPreview(BaseModel):
    key: str
    inputs: dict[str, Any]
    messages: list[dict[str, Any]] | None
    target: Any
    source: str = Field(description="log, or correction where a correction replaced the output.")
    log_id: str | None


class PreviewPublic(BaseModel):
    count: int = Field(description="Datapoints the version would hold.")
    matched: int = Field(description="Logs that matched the filters.")
    skipped: int = Field(description="Matching logs left out (withheld, failed, duplicate).")
    skipped_reasons: dict[str, int]
    version: str | None = Field(description="The id the version would have; none when empty.")
    exists: bool = Field(description="The named dataset holds this version already.")
    train: int = Field(description="Datapoints a fine-tune would train on.")
    held_out: int = Field(description="Datapoints a fine-tune would hold out of training.")
    sample: list[DatapointPreview] = Field(description="The first datapoints, as stored.")


class DatasetPublic(BaseModel):
    name: str
    description: str | None
    created_at: datetime
    latest_version: str | None = Field(description="Id of the newest version.")
    count: int | None = Field(description="Datapoints in the newest version.")


class DatasetVersionPublic(BaseModel):
    """A saved, immutable version of a dataset."""

    id: str = Field(description="12 hex digits derived from the content hash.")
    dataset: str
    content_hash: str
    count: int
    source: str = Field(description="upload, logs, corrections, edit or api.")
    message: str | None
    author: str
    created_at: datetime


class SavedDatasetVersionPublic(DatasetVersionPublic):
    created: bool = Field(description="False when identical content was already saved.")


class FromLogsPublic(SavedDatasetVersionPublic):
    skipped: int = Field(description="Matching logs left out (withheld content, failed calls).")
    skipped_reasons: dict[str, int] = Field(description="The skipped logs, by reason.")


class DatapointPublic(BaseModel):
    key: str = Field(description="16 hex digits of its content's hash: the same across versions.")
    position: int
    inputs: dict[str, Any]
    messages: list[dict[str, Any]] | None
    target: Any
    source: str = Field(description="upload, log or correction.")
    log_id: str | None
