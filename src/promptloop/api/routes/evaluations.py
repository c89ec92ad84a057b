"""Evaluators, evaluation runs (server and local mode) and human judgments."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from promptloop.api.deps import ContextDep
from promptloop.api.evaluation_schemas import (
    CandidatePublic,
    EvaluatorCreate,
    EvaluatorTry,
    EvaluatorVersionPublic,
    JudgmentGive,
    LocalDatapoint,
    LocalOutputs,
    LocalPlan,
    OutcomePublic,
    PendingJudgment,
    RunCreate,
    RunListItem,
    RunPublic,
    SavedEvaluatorPublic,
)
from promptloop.api.routes.prompts import Cursor, Limit
from promptloop.api.schemas import ListPublic
from promptloop.services import evaluations, evaluators
from promptloop.services.evaluations import CandidateSpec, Executor, LocalOutput, RunRequest
from promptloop.services.evaluators import EvaluatorSpec
from promptloop.store.models import EvaluatorVersion, PromptVersion

router = APIRouter(tags=["evaluation"])
Name = Annotated[str, Path(max_length=64)]
RunId = Annotated[str, Path(max_length=32)]


def _version_public(name: str, version: EvaluatorVersion) -> dict[str, Any]:
    return {
        "name": name,
        "version": version.version_id,
        "kind": version.kind,
        "returns": version.returns,
        "higher_is_better": version.higher_is_better,
        "spec": version.spec,
        "message": version.message,
        "author": version.author,
        "created_at": version.created_at,
    }


def _spec(body: EvaluatorCreate) -> EvaluatorSpec:
    return EvaluatorSpec(
        kind=body.kind,
        returns=body.returns,
        higher_is_better=body.higher_is_better,
        builtin=body.builtin,
        config=body.config,
        source=body.source,
        judge=body.judge,
        choices=body.choices,
        timeout_s=body.timeout_s,
    )


@router.get("/evaluators", summary="Evaluators, each with its latest version")
def list_evaluators(ctx: ContextDep) -> list[EvaluatorVersionPublic]:
    with ctx.transaction(write=False) as (session, project, actor):
        found = evaluators.list_evaluators(session, actor=actor, project=project)
        return [EvaluatorVersionPublic(**_version_public(e.name, v)) for e, v in found]


@router.post(
    "/evaluators/{name}/-/versions",
    summary="Save an evaluator version (identical content returns the existing one)",
    responses={201: {"model": SavedEvaluatorPublic}},
)
def save_evaluator(
    name: Name, body: EvaluatorCreate, ctx: ContextDep, response: Response
) -> SavedEvaluatorPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        saved = evaluators.save_version(
            session,
            actor=actor,
            project=project,
            name=name,
            spec=_spec(body),
            message=body.message,
            description=body.description,
        )
        response.status_code = status.HTTP_201_CREATED if saved.created else status.HTTP_200_OK
        return SavedEvaluatorPublic(**_version_public(name, saved.version), created=saved.created)


@router.get("/evaluators/{name}/-/versions", summary="An evaluator's versions, newest first")
def evaluator_versions(name: Name, ctx: ContextDep) -> list[EvaluatorVersionPublic]:
    with ctx.transaction(write=False) as (session, project, actor):
        found = evaluators.list_versions(session, actor=actor, project=project, name=name)
        return [EvaluatorVersionPublic(**_version_public(name, v)) for v in found]


@router.post("/evaluators/-/try", summary="Try an evaluator (saved or draft) on one log")
async def try_evaluator(body: EvaluatorTry, ctx: ContextDep, request: Request) -> OutcomePublic:
    executor: Executor = request.app.state.executor
    store = request.app.state.logger.store

    def prepare() -> tuple[Any, Any, evaluations.TrySubject]:
        with ctx.transaction(write=False) as (session, project, actor):
            subject = evaluations.prepare_try(
                session,
                store,
                actor=actor,
                project=project,
                log_uid=body.log_id,
                evaluator=body.evaluator,
                draft=_spec(body.draft) if body.draft else None,
            )
            session.expunge_all()
            return project, actor, subject

    project, actor, subject = await asyncio.to_thread(prepare)
    outcome = await executor.try_on(
        actor=actor, project=project, subject=subject, target=body.target
    )
    return OutcomePublic(value=outcome.value, explanation=outcome.explanation, error=outcome.error)


@router.post(
    "/evaluations", status_code=status.HTTP_202_ACCEPTED, summary="Start an evaluation run"
)
def create_run(body: RunCreate, ctx: ContextDep, request: Request) -> RunPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        run = evaluations.create_run(
            session,
            actor=actor,
            project=project,
            request=RunRequest(
                dataset=body.dataset,
                dataset_version=body.dataset_version,
                candidates=[CandidateSpec(**c.model_dump()) for c in body.candidates],
                evaluators=body.evaluators,
                control=body.control,
                concurrency=body.concurrency,
                thresholds=body.thresholds,
                name=body.name,
                mode=body.mode,
            ),
        )
        public = _run_public(session, run)
    request.app.state.wake_worker()
    return public


@router.get("/evaluations", summary="Evaluation runs, newest first")
def list_runs(ctx: ContextDep, cursor: Cursor = None, limit: Limit = 50) -> ListPublic[RunListItem]:
    with ctx.transaction(write=False) as (session, project, actor):
        page = evaluations.list_runs(
            session, actor=actor, project=project, cursor=cursor, limit=limit
        )
        items = [
            RunListItem(
                id=r.uid,
                name=r.name,
                mode=r.mode,
                status=r.status,
                created_by=r.created_by,
                created_at=r.created_at,
                finished_at=r.finished_at,
                verdict=(r.summary or {}).get("verdict"),
            )
            for r in page.items
        ]
    return ListPublic(data=items, next_cursor=page.next_cursor)


@router.get("/evaluations/{run_id}", summary="A run: status, progress and statistics")
def get_run(run_id: RunId, ctx: ContextDep) -> RunPublic:
    with ctx.transaction(write=False) as (session, project, actor):
        run = evaluations.get_run(session, actor=actor, project=project, uid=run_id)
        return _run_public(session, run)


@router.post("/evaluations/{run_id}/cancel", summary="Cancel a queued or running run")
def cancel_run(run_id: RunId, ctx: ContextDep) -> RunPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        run = evaluations.cancel_run(session, actor=actor, project=project, uid=run_id)
        return _run_public(session, run)


@router.get(
    "/evaluations/{run_id}/comparison",
    summary="Per datapoint, a candidate against the control on one evaluator, regressions first",
)
def run_comparison(
    run_id: RunId,
    ctx: ContextDep,
    evaluator: Annotated[str, Query(max_length=64)],
    candidate: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict[str, Any]]:
    with ctx.transaction(write=False) as (session, project, actor):
        run = evaluations.get_run(session, actor=actor, project=project, uid=run_id)
        return evaluations.comparison(
            session, run=run, evaluator=evaluator, candidate=candidate, limit=limit
        )


@router.get("/evaluations/{run_id}/datapoints", summary="Local runs: what to run your function on")
def local_plan(run_id: RunId, ctx: ContextDep) -> LocalPlan:
    with ctx.transaction(write=False) as (session, project, actor):
        run, candidates, points = evaluations.local_datapoints(
            session, actor=actor, project=project, uid=run_id
        )
        return LocalPlan(
            run=run.uid,
            candidates=[c.label for c in candidates],
            datapoints=[
                LocalDatapoint(key=p.key, inputs=p.inputs, messages=p.messages, target=p.target)
                for p in points
            ],
        )


@router.post(
    "/evaluations/{run_id}/outputs",
    status_code=status.HTTP_201_CREATED,
    summary="Local runs: record your function's outputs (logged, then evaluated)",
)
async def local_outputs(
    run_id: RunId, body: LocalOutputs, ctx: ContextDep, request: Request
) -> dict[str, int]:
    project, actor = await asyncio.to_thread(ctx.resolve)
    count = await evaluations.record_local_outputs(
        ctx.db,
        request.app.state.logger,
        actor=actor,
        project=project,
        uid=run_id,
        outputs=[LocalOutput(**o.model_dump()) for o in body.outputs],
    )
    request.app.state.wake_worker()
    return {"recorded": count}


@router.post("/evaluations/{run_id}/finish", summary="Local runs: every output is in")
def finish_local(run_id: RunId, ctx: ContextDep, request: Request) -> RunPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        run = evaluations.finish_local(session, actor=actor, project=project, uid=run_id)
        public = _run_public(session, run)
    request.app.state.wake_worker()
    return public


@router.get("/judgments/pending", summary="Human judgments waiting for a reviewer, oldest first")
def pending(
    ctx: ContextDep,
    run: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[PendingJudgment]:
    with ctx.transaction(write=False) as (session, project, actor):
        found = evaluations.pending_judgments(
            session, actor=actor, project=project, run_uid=run, limit=limit
        )
        runs = evaluations.run_uids(session, [j.run_id for j, _, _ in found])
        return [
            PendingJudgment(
                id=j.uid,
                evaluator=j.name,
                returns=v.returns,
                choices=v.spec.get("choices"),
                run=runs.get(j.run_id) if j.run_id else None,
                log_id=log.uid,
                inputs=log.inputs,
                output=log.output,
                created_at=j.created_at,
            )
            for j, log, v in found
        ]


@router.post("/judgments/{judgment_id}", summary="Give a pending human judgment")
def give_judgment(
    judgment_id: Annotated[str, Path(max_length=32)], body: JudgmentGive, ctx: ContextDep
) -> OutcomePublic:
    with ctx.transaction(write=True) as (session, project, actor):
        judgment = evaluations.give_judgment(
            session,
            actor=actor,
            project=project,
            uid=judgment_id,
            value=body.value,
            explanation=body.explanation,
        )
        return OutcomePublic(value=judgment.value, explanation=judgment.explanation, error=None)


def _run_public(session: Any, run: Any) -> RunPublic:
    shown = evaluations.view(session, run=run)
    versions = {
        c.version_pk: session.get(PromptVersion, c.version_pk)
        for c in shown.candidates
        if c.version_pk
    }
    paths = evaluations.prompt_paths(session, [c.prompt_id for c in shown.candidates])
    return RunPublic(
        id=run.uid,
        name=run.name,
        mode=run.mode,
        status=shown.status,
        dataset=shown.dataset,
        dataset_version=shown.dataset_version,
        concurrency=run.concurrency,
        thresholds=run.thresholds,
        progress=shown.progress,
        candidates=[
            CandidatePublic(
                label=c.label,
                control=c.control,
                prompt=paths.get(c.prompt_id) if c.prompt_id else None,
                version=versions[c.version_pk].version_id
                if c.version_pk and versions.get(c.version_pk)
                else None,
                model=c.model,
            )
            for c in shown.candidates
        ],
        evaluators=[
            {"name": n, "version": v.version_id, "kind": v.kind, "returns": v.returns}
            for n, v in shown.evaluators
        ],
        summary=shown.summary,
        error=run.error,
        created_by=run.created_by,
        created_at=run.created_at,
        finished_at=run.finished_at,
    )
