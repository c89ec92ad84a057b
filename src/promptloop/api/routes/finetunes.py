"""Fine-tuning jobs: train a small model on a dataset, register it, evaluate it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from promptloop.api.deps import ContextDep
from promptloop.api.routes.prompts import Cursor, Limit
from promptloop.api.schemas import ListPublic, Strict
from promptloop.services import finetunes
from promptloop.services.finetunes import FineTuneRequest
from promptloop.store.models import FineTune

router = APIRouter(tags=["fine-tuning"])
TuneId = Annotated[str, Path(max_length=32)]


class FineTuneCreate(Strict):
    name: str = Field(
        max_length=64,
        description="The job's name, unique in the project. lora: the model is called "
        "local/<project>/<name>; openai: OpenAI names the model, with this as its suffix.",
    )
    dataset: str = Field(max_length=255)
    dataset_version: str | None = Field(default=None, max_length=12)
    prompt: str = Field(
        max_length=255, description="The prompt whose template renders each datapoint."
    )
    version: str | None = Field(default=None, max_length=12)
    environment: str | None = Field(default=None, max_length=64)
    base_model: str = Field(
        default="local/smollm2-135m",
        max_length=200,
        description="lora: local/smollm2-135m; openai: openai/<model>, e.g. "
        "openai/gpt-4o-mini-2024-07-18.",
    )
    method: str = Field(
        default="lora",
        max_length=16,
        description="lora (on the local provider) or openai (OpenAI's fine-tuning API, with "
        "the project's openai key).",
    )
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        description="lora: r, alpha, dropout, learning_rate, batch_size, epochs or max_steps, "
        "max_length, seed. openai: n_epochs, batch_size, learning_rate_multiplier.",
    )
    held_out_fraction: float = Field(default=0.2, gt=0, lt=1)
    evaluators: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Evaluate the result against production on the held-out data with these.",
    )


class FineTunePublic(BaseModel):
    id: str
    name: str = Field(description="The job's name in its project.")
    model: str | None = Field(
        description="Use it as a provider model: local/<project>/<name>, or for openai the "
        "model OpenAI made, openai/ft:… (none until it has finished)."
    )
    status: str
    method: str
    base_model: str
    dataset: str = Field(description="The dataset it learned from...")
    dataset_version: str = Field(description="...this version of it...")
    prompt: str = Field(description="...each datapoint rendered through this prompt...")
    prompt_version: str = Field(description="...at this version.")
    hyperparameters: dict[str, Any]
    held_out_fraction: float
    evaluators: list[str]
    progress: dict[str, Any]
    metrics: dict[str, Any] | None
    evaluation: str | None = Field(description="The evaluation run against production.")
    error: str | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None


@router.get(
    "/fine-tunes/-/export",
    summary="A dataset version as OpenAI chat fine-tuning JSONL, rendered through a prompt",
    response_class=PlainTextResponse,
)
def export_openai(
    ctx: ContextDep,
    dataset: Annotated[str, Query(max_length=255)],
    prompt: Annotated[str, Query(max_length=255)],
    dataset_version: Annotated[str | None, Query(max_length=12)] = None,
    version: Annotated[str | None, Query(max_length=12)] = None,
    environment: Annotated[str | None, Query(max_length=64)] = None,
) -> PlainTextResponse:
    with ctx.transaction(write=False) as (session, project, actor):
        text, name = finetunes.export_openai(
            session,
            actor=actor,
            project=project,
            dataset=dataset,
            prompt=prompt,
            dataset_version=dataset_version,
            version=version,
            environment=environment,
        )
    return PlainTextResponse(
        text,
        media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/fine-tunes", status_code=status.HTTP_202_ACCEPTED, summary="Start a fine-tuning job")
def start(body: FineTuneCreate, ctx: ContextDep, request: Request) -> FineTunePublic:
    with ctx.transaction(write=True) as (session, project, actor):
        tune = finetunes.start(
            session, actor=actor, project=project, request=FineTuneRequest(**body.model_dump())
        )
        public = _public(session, tune)
    request.app.state.wake_worker()
    return public


@router.get("/fine-tunes", summary="Fine-tuning jobs, newest first")
def list_fine_tunes(
    ctx: ContextDep, cursor: Cursor = None, limit: Limit = 50
) -> ListPublic[FineTunePublic]:
    with ctx.transaction(write=False) as (session, project, actor):
        page = finetunes.list_fine_tunes(
            session, actor=actor, project=project, cursor=cursor, limit=limit
        )
        return ListPublic(
            data=[_public(session, t) for t in page.items], next_cursor=page.next_cursor
        )


@router.get("/fine-tunes/{tune_id}", summary="A fine-tuning job: progress, metrics, model")
def get(tune_id: TuneId, ctx: ContextDep) -> FineTunePublic:
    with ctx.transaction(write=False) as (session, project, actor):
        return _public(session, finetunes.get(session, actor=actor, project=project, uid=tune_id))


@router.post("/fine-tunes/{tune_id}/cancel", summary="Cancel a fine-tuning job")
def cancel(tune_id: TuneId, ctx: ContextDep) -> FineTunePublic:
    with ctx.transaction(write=True) as (session, project, actor):
        tune = finetunes.cancel(session, actor=actor, project=project, uid=tune_id)
        return _public(session, tune)


def _public(session: Session, tune: FineTune) -> FineTunePublic:
    lineage = finetunes.lineage_of(session, tune)
    return FineTunePublic(
        dataset=lineage.dataset,
        dataset_version=lineage.dataset_version,
        prompt=lineage.prompt,
        prompt_version=lineage.prompt_version,
        id=tune.uid,
        name=tune.model_name.split("/", 1)[-1],
        model=finetunes.model_of(session, tune),
        status=tune.status,
        method=tune.method,
        base_model=tune.base_model,
        hyperparameters=tune.hyperparameters,
        held_out_fraction=tune.held_out_fraction,
        evaluators=tune.evaluators,
        progress=finetunes.progress_of(session, tune),
        metrics=tune.metrics,
        evaluation=finetunes.run_uid(session, tune),
        error=tune.error,
        created_by=tune.created_by,
        created_at=tune.created_at,
        finished_at=tune.finished_at,
    )
