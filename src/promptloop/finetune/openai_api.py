"""Fine-tuning as a service: OpenAI's fine-tuning API, through the official SDK.

    api = OpenAIFineTuning(Credentials(api_key="sk-…"))
    training = await api.upload(train_examples, "train.jsonl")
    job = await api.create(base="gpt-4o-mini-2024-07-18", training_file=training, suffix="orders")
    status = await api.status(job)  # state, step, loss, the fine-tuned model once it succeeded

Nothing here touches the database: the fine-tune job stores what it needs between polls.

Decisions:
- Progress comes from the job's `metrics` events (step, total steps, training and validation
  loss); time left from the job's `estimated_finish` when OpenAI gives one.
- The held-out datapoints go up as the validation file, so OpenAI reports a held-out loss.
- Errors name the upstream and what it said; a failed job carries OpenAI's own message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai

from promptloop.finetune.lora import Example, export_openai_jsonl
from promptloop.providers.base import Credentials

# What OpenAI accepts for supervised fine-tuning; each also takes "auto".
HYPERPARAMETERS: dict[str, type] = {
    "n_epochs": int,
    "batch_size": int,
    "learning_rate_multiplier": float,
}
FINISHED = ("succeeded", "failed", "cancelled")


class UpstreamError(Exception):
    """OpenAI refused a request, or could not be reached. `transient`: worth asking again."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def check_hyperparameters(values: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters as OpenAI takes them; ValueError names what is wrong."""
    unknown = sorted(set(values) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(
            f"unknown {', '.join(unknown)} (OpenAI takes {', '.join(HYPERPARAMETERS)})"
        )
    for name, value in values.items():
        if value == "auto":
            continue
        kind = HYPERPARAMETERS[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number or 'auto'")
        if kind is int and value != int(value):
            raise ValueError(f"{name} must be a whole number")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be above 0")
    return dict(values)


@dataclass(frozen=True)
class Status:
    """Where an OpenAI fine-tuning job stands."""

    state: str  # validating_files, queued, running, succeeded, failed, cancelled
    fine_tuned_model: str | None = None
    error: str | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    held_out_loss: float | None = None
    trained_tokens: int | None = None
    created_at: int | None = None
    estimated_finish: int | None = None
    finished_at: int | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


class OpenAIFineTuning:
    """One project's OpenAI fine-tuning calls (its key, and its base URL if it set one)."""

    def __init__(self, credentials: Credentials) -> None:
        self.where = credentials.base_url or "the OpenAI API"
        self.client = openai.AsyncOpenAI(
            api_key=credentials.api_key, base_url=credentials.base_url, max_retries=2
        )

    async def close(self) -> None:
        await self.client.close()

    async def upload(self, examples: Sequence[Example], filename: str) -> str:
        """Upload examples as a chat fine-tuning file; its id."""
        data = export_openai_jsonl(examples).encode()
        try:
            uploaded = await self.client.files.create(file=(filename, data), purpose="fine-tune")
        except openai.OpenAIError as exc:
            raise self._error("uploading the training file", exc) from exc
        return uploaded.id

    async def create(
        self,
        *,
        base: str,
        training_file: str,
        validation_file: str | None = None,
        suffix: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> str:
        """Start a supervised fine-tuning job; its id."""
        arguments: dict[str, Any] = {"model": base, "training_file": training_file}
        if validation_file is not None:
            arguments["validation_file"] = validation_file
        if suffix:
            arguments["suffix"] = suffix
        if seed is not None:
            arguments["seed"] = seed
        arguments["method"] = {
            "type": "supervised",
            "supervised": {"hyperparameters": dict(hyperparameters or {})},
        }
        try:
            job = await self.client.fine_tuning.jobs.create(**arguments)
        except openai.OpenAIError as exc:
            raise self._error("starting the fine-tuning job", exc) from exc
        return job.id

    async def status(self, job_id: str) -> Status:
        """The job's state and its latest metrics."""
        try:
            job = await self.client.fine_tuning.jobs.retrieve(job_id)
            events = await self.client.fine_tuning.jobs.list_events(job_id, limit=50)
        except openai.OpenAIError as exc:
            raise self._error(f"reading fine-tuning job {job_id}", exc) from exc
        metrics: dict[str, Any] = {}
        for event in events.data:  # newest first
            data = event.data if isinstance(event.data, dict) else None
            if event.type == "metrics" and data and "step" in data:
                metrics = data
                break
        error = None
        if job.error is not None and (job.error.message or job.error.code):
            error = job.error.message or job.error.code
        return Status(
            state=job.status,
            fine_tuned_model=job.fine_tuned_model,
            error=error,
            step=_int(metrics.get("step")),
            total_steps=_int(metrics.get("total_steps")),
            loss=_float(metrics.get("train_loss")),
            held_out_loss=_float(metrics.get("full_valid_loss", metrics.get("valid_loss"))),
            trained_tokens=job.trained_tokens,
            created_at=job.created_at,
            estimated_finish=job.estimated_finish,
            finished_at=job.finished_at,
        )

    async def cancel(self, job_id: str) -> None:
        try:
            await self.client.fine_tuning.jobs.cancel(job_id)
        except openai.OpenAIError as exc:
            raise self._error(f"cancelling fine-tuning job {job_id}", exc) from exc

    def _error(self, doing: str, exc: openai.OpenAIError) -> UpstreamError:
        if isinstance(exc, openai.APIStatusError):
            message = _message(exc)
            return UpstreamError(
                f"{self.where} answered {exc.status_code} when {doing}: {message}",
                transient=exc.status_code == 429 or exc.status_code >= 500,
            )
        if isinstance(exc, openai.APIConnectionError):
            return UpstreamError(f"Could not reach {self.where} when {doing}.", transient=True)
        return UpstreamError(f"{self.where} failed when {doing}: {exc}")


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return exc.message


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return round(float(value), 4) if math.isfinite(value) else None
