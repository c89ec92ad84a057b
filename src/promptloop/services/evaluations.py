"""Evaluation runs: candidates (prompt versions, a version with another model, or the user's own
function in local mode) over a dataset version, judged by evaluators, compared with a control.

A run is a background job. It calls each candidate on each datapoint with bounded concurrency,
evaluates the logs in batches, and stores each item's judgments together with its "done" mark,
so a run resumed after a restart repeats nothing it finished. Statistics are computed from the
stored judgments: a mean or rate with a 95% interval per candidate and evaluator, and against
the control a paired comparison with a verdict.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from promptloop.core import stats
from promptloop.core.access import Actor, Permission, Role
from promptloop.core.errors import InvalidInput, NotFound
from promptloop.core.kernel import Kernel
from promptloop.evaluators.base import EvalInput, Outcome
from promptloop.services import datasets, evaluators, jobs, prompts
from promptloop.services.calls import Caller, CallSpec
from promptloop.services.evaluators import Runner
from promptloop.services.jobs import Cancelled, JobContext
from promptloop.services.logs import LogEntry, Logger, get_log
from promptloop.services.pagination import Page, paginate
from promptloop.store.db import Database
from promptloop.store.logs import LogStore
from promptloop.store.models import (
    Datapoint,
    Dataset,
    DatasetVersion,
    EvaluationRun,
    Evaluator,
    EvaluatorVersion,
    Job,
    Judgment,
    Log,
    Project,
    Prompt,
    PromptVersion,
    RunCandidate,
    RunEvaluator,
    RunItem,
)
from promptloop.store.types import utcnow

logger = logging.getLogger("promptloop.evaluations")
JOB_KIND = "evaluation_run"
LOCAL_RECHECK_S = 5.0  # a local run waiting for outputs looks again at least this often
MAX_CONCURRENCY = 64
BATCH = 64


# Creating runs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateSpec:
    """A prompt version (by id or environment; default production), optionally with another
    model (`provider/model`); or, in local mode, a label for the user's function."""

    prompt: str | None = None
    version: str | None = None
    environment: str | None = None
    model: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class RunRequest:
    dataset: str
    candidates: list[CandidateSpec]
    evaluators: list[str]
    dataset_version: str | None = None
    control: int | None = None  # index into candidates; default: what production serves
    concurrency: int = 8
    thresholds: dict[str, float] = field(default_factory=dict)
    name: str | None = None
    mode: str = "server"


def create_run(
    session: Session, *, actor: Actor, project: Project, request: RunRequest
) -> EvaluationRun:
    """Validate and queue a run. With one prompt candidate and no control given, what the
    prompt's production environment serves is added as the control (when it differs)."""
    actor.require(Permission.edit)
    if request.mode not in ("server", "local"):
        raise InvalidInput("mode is 'server' (promptloop calls the models) or 'local'.")
    if not 1 <= request.concurrency <= MAX_CONCURRENCY:
        raise InvalidInput(f"concurrency must be between 1 and {MAX_CONCURRENCY}.")
    if not request.candidates:
        raise InvalidInput("Name at least one candidate to evaluate.")
    if not request.evaluators:
        raise InvalidInput("Name at least one evaluator.")
    version = datasets.get_version(
        session, project=project, name=request.dataset, ref=request.dataset_version or "latest"
    )
    evaluator_versions = [
        evaluators.resolve(session, project=project, ref=ref) for ref in request.evaluators
    ]
    names = [evaluators.name_of(session, v) for v in evaluator_versions]
    if len(set(names)) != len(names):
        raise InvalidInput("Each evaluator may appear once in a run.")
    unknown = set(request.thresholds) - set(names)
    if unknown:
        raise InvalidInput(
            f"Thresholds name evaluators not in the run: {', '.join(sorted(unknown))}."
        )
    rows = _candidates(session, project=project, request=request)
    run = EvaluationRun(
        uid=uuid.uuid4().hex,
        project_id=project.id,
        name=request.name,
        dataset_version_pk=version.id,
        mode=request.mode,
        status="queued",
        concurrency=request.concurrency,
        thresholds=dict(request.thresholds),
        created_by=actor.name,
    )
    session.add(run)
    session.flush()
    for position, row in enumerate(rows):
        row.run_id, row.position = run.id, position
        session.add(row)
    for evaluator_version in evaluator_versions:
        session.add(RunEvaluator(run_id=run.id, evaluator_version_pk=evaluator_version.id))
    session.flush()
    point_ids = session.scalars(
        select(Datapoint.id).where(Datapoint.version_pk == version.id).order_by(Datapoint.position)
    ).all()
    session.add_all(
        RunItem(run_id=run.id, candidate_id=row.id, datapoint_id=point_id, status="pending")
        for row in rows
        for point_id in point_ids
    )
    job = jobs.enqueue(session, project=project, kind=JOB_KIND, payload={"run_id": run.id})
    run.job_id = job.id
    session.flush()
    return run


def _candidates(session: Session, *, project: Project, request: RunRequest) -> list[RunCandidate]:
    rows: list[RunCandidate] = []
    if request.mode == "local":
        for spec in request.candidates:
            if spec.prompt or spec.version or spec.model:
                raise InvalidInput(
                    "Local runs evaluate your own function: give candidates a label only."
                )
            rows.append(RunCandidate(label=spec.label or "local", control=False))
        if request.control is not None:
            _mark_control(rows, request.control)
        return rows
    seen: set[tuple[int, str | None]] = set()
    for spec in request.candidates:
        if not spec.prompt:
            raise InvalidInput("Each candidate names a prompt (and a version or environment).")
        version = prompts.resolve_version(
            session,
            project=project,
            path=spec.prompt,
            version=spec.version,
            environment=spec.environment or (None if spec.version else "production"),
        )
        model = _parse_model(spec.model) if spec.model else None
        key = (version.id, spec.model)
        if key in seen:
            raise InvalidInput(f"Candidate {spec.prompt}@{version.version_id} is listed twice.")
        seen.add(key)
        label = spec.label or f"{spec.prompt}@{version.version_id}" + (
            f" with {spec.model}" if spec.model else ""
        )
        rows.append(
            RunCandidate(
                label=label,
                prompt_id=version.prompt_id,
                version_pk=version.id,
                model=model,
                control=False,
            )
        )
    if request.control is not None:
        _mark_control(rows, request.control)
        return rows
    first = rows[0]
    prompt = session.get(Prompt, first.prompt_id)
    assert prompt is not None
    try:
        served = prompts.deployed_version(
            session, project=project, prompt=prompt, environment="production"
        )
    except (NotFound, InvalidInput):
        served = None
    match = next(
        (r for r in rows if served and r.version_pk == served.id and r.model is None), None
    )
    if match is not None:
        match.control = True
    elif served is not None:
        rows.insert(
            0,
            RunCandidate(
                label=f"{prompt.path}@{served.version_id} (production)",
                prompt_id=prompt.id,
                version_pk=served.id,
                control=True,
            ),
        )
    else:
        first.control = True  # nothing deployed: the first candidate is the baseline
    return rows


def _mark_control(rows: list[RunCandidate], index: int) -> None:
    if not 0 <= index < len(rows):
        raise InvalidInput(f"control must be the index of a candidate (0 to {len(rows) - 1}).")
    rows[index].control = True


def _parse_model(model: str) -> dict[str, str]:
    provider, slash, name = model.partition("/")
    if not slash or not provider or not name:
        raise InvalidInput(f"Model {model!r} must look like 'provider/model'.")
    return {"provider": provider, "model": name}


# Reading runs ----------------------------------------------------------------------------------


def get_run(session: Session, *, actor: Actor, project: Project, uid: str) -> EvaluationRun:
    actor.require(Permission.read)
    run = session.scalars(
        select(EvaluationRun).where(
            EvaluationRun.project_id == project.id, EvaluationRun.uid == uid
        )
    ).first()
    if run is None:
        raise NotFound(f"No evaluation run {uid!r} in project {project.name!r}.")
    return run


def list_runs(
    session: Session, *, actor: Actor, project: Project, cursor: str | None, limit: int
) -> Page[EvaluationRun]:
    actor.require(Permission.read)
    query = select(EvaluationRun).where(EvaluationRun.project_id == project.id)
    return paginate(
        session, query, key=EvaluationRun.id, cursor=cursor, limit=limit, descending=True
    )


@dataclass(frozen=True)
class RunView:
    run: EvaluationRun
    dataset: str
    dataset_version: str
    status: str
    progress: dict[str, Any]
    candidates: list[RunCandidate]
    evaluators: list[tuple[str, EvaluatorVersion]]
    summary: dict[str, Any] | None


def view(session: Session, *, run: EvaluationRun) -> RunView:
    """The run with its live status and progress, and its statistics once it completed."""
    job = session.get(Job, run.job_id) if run.job_id else None
    status = _live_status(run, job)
    dataset_name, dataset_version = session.execute(
        select(Dataset.name, DatasetVersion.version_id)
        .join(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
        .where(DatasetVersion.id == run.dataset_version_pk)
    ).one()
    total = session.scalar(select(func.count()).where(RunItem.run_id == run.id)) or 0
    done = (
        session.scalar(
            select(func.count()).where(RunItem.run_id == run.id, RunItem.status == "done")
        )
        or 0
    )
    # Statistics are computed once, when the run completes (and again when a human judgment
    # arrives); while it runs, polling it stays cheap.
    summary = run.summary if status == "completed" else None
    return RunView(
        run=run,
        dataset=dataset_name,
        dataset_version=dataset_version,
        status=status,
        progress={"total": total, "done": done, **(job.progress if job else {})},
        candidates=_run_candidates(session, run),
        evaluators=_run_evaluators(session, run),
        summary=summary,
    )


def _live_status(run: EvaluationRun, job: Job | None) -> str:
    """The run's status, or its job's when the job failed or was cancelled before the run
    recorded it."""
    if (
        job is not None
        and job.status in ("failed", "cancelled")
        and run.status not in jobs.FINISHED
    ):
        return job.status
    return run.status


@dataclass(frozen=True)
class RunOverview:
    """A run as a list shows it: live status and progress, dataset, candidates and prompts."""

    run: EvaluationRun
    status: str
    progress: dict[str, Any]
    dataset: str
    dataset_version: str
    candidates: list[RunCandidate]
    prompts: list[str]


def overviews(session: Session, runs: Sequence[EvaluationRun]) -> list[RunOverview]:
    """`view` for a page of runs, in a fixed number of queries (not a few per run)."""
    if not runs:
        return []
    ids = [r.id for r in runs]
    job_ids = [r.job_id for r in runs if r.job_id is not None]
    found_jobs = (
        {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
        if job_ids
        else {}
    )
    datasets_of = {
        pk: (name, version)
        for pk, name, version in session.execute(
            select(DatasetVersion.id, Dataset.name, DatasetVersion.version_id)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(DatasetVersion.id.in_({r.dataset_version_pk for r in runs}))
        )
    }
    counts: dict[int, dict[str, int]] = {}
    for run_id, status, count in session.execute(
        select(RunItem.run_id, RunItem.status, func.count())
        .where(RunItem.run_id.in_(ids))
        .group_by(RunItem.run_id, RunItem.status)
    ):
        counts.setdefault(run_id, {})[status] = count
    candidates: dict[int, list[RunCandidate]] = {}
    for cand in session.scalars(
        select(RunCandidate)
        .where(RunCandidate.run_id.in_(ids))
        .order_by(RunCandidate.run_id, RunCandidate.position)
    ):
        candidates.setdefault(cand.run_id, []).append(cand)
    paths = prompt_paths(session, [c.prompt_id for cs in candidates.values() for c in cs])
    out = []
    for run in runs:
        job = found_jobs.get(run.job_id) if run.job_id is not None else None
        status = _live_status(run, job)
        mine = counts.get(run.id, {})
        cands = candidates.get(run.id, [])
        name, version = datasets_of[run.dataset_version_pk]
        out.append(
            RunOverview(
                run=run,
                status=status,
                progress={
                    "total": sum(mine.values()),
                    "done": mine.get("done", 0),
                    **(job.progress if job else {}),
                },
                dataset=name,
                dataset_version=version,
                candidates=cands,
                prompts=sorted({paths[c.prompt_id] for c in cands if c.prompt_id in paths}),
            )
        )
    return out


def _run_candidates(session: Session, run: EvaluationRun) -> list[RunCandidate]:
    return list(
        session.scalars(
            select(RunCandidate)
            .where(RunCandidate.run_id == run.id)
            .order_by(RunCandidate.position)
        )
    )


def _run_evaluators(session: Session, run: EvaluationRun) -> list[tuple[str, EvaluatorVersion]]:
    versions = session.scalars(
        select(EvaluatorVersion)
        .join(RunEvaluator, RunEvaluator.evaluator_version_pk == EvaluatorVersion.id)
        .where(RunEvaluator.run_id == run.id)
        .order_by(RunEvaluator.id)
    ).all()
    return [(evaluators.name_of(session, v), v) for v in versions]


def cancel_run(session: Session, *, actor: Actor, project: Project, uid: str) -> EvaluationRun:
    actor.require(Permission.edit)
    run = get_run(session, actor=actor, project=project, uid=uid)
    if run.status in jobs.FINISHED:
        raise InvalidInput(f"Run {uid} is already {run.status}.")
    if run.job_id is not None:
        job = jobs.request_cancel(session, job_id=run.job_id)
        if job.status == "cancelled":
            run.status, run.finished_at = "cancelled", utcnow()
    return run


# Statistics ------------------------------------------------------------------------------------


def _judgment_rows(session: Session, run: EvaluationRun) -> list[Any]:
    return list(
        session.execute(
            select(
                RunItem.candidate_id,
                RunItem.datapoint_id,
                Judgment.evaluator_version_pk,
                Judgment.value,
                Judgment.score,
                Judgment.error,
                Judgment.pending,
            )
            .join(RunItem, RunItem.id == Judgment.run_item_id)
            .where(Judgment.run_id == run.id)
        )
    )


def summarize(session: Session, *, run: EvaluationRun) -> dict[str, Any]:
    """Per candidate and evaluator: mean (numbers) or rate (booleans) with a 95% interval,
    errors and pending judgments; against the control, a paired comparison and a verdict; cost,
    latency and tokens per candidate; and whether the run passes (no regression, every
    threshold met)."""
    candidates = _run_candidates(session, run)
    named = _run_evaluators(session, run)
    control = next((c for c in candidates if c.control), None)
    scores: dict[tuple[int, int], dict[int, float]] = {}
    errors: dict[tuple[int, int], int] = {}
    pending: dict[tuple[int, int], int] = {}
    choices: dict[tuple[int, int], dict[str, int]] = {}
    for cand, point, ev, value, score, error, is_pending in _judgment_rows(session, run):
        key = (cand, ev)
        if is_pending:
            pending[key] = pending.get(key, 0) + 1
        elif error is not None:
            errors[key] = errors.get(key, 0) + 1
        elif score is not None:
            scores.setdefault(key, {})[point] = score
        elif isinstance(value, str):
            counts = choices.setdefault(key, {})
            counts[value] = counts.get(value, 0) + 1
    results = []
    failures = []
    for cand in candidates:
        for name, version in named:
            key = (cand.id, version.id)
            values = scores.get(key, {})
            interval = (
                stats.proportion(int(sum(values.values())), len(values))
                if version.returns == "boolean"
                else stats.mean_interval(list(values.values()))
            )
            comparison = None
            if (
                control is not None
                and cand.id != control.id
                and version.returns in ("boolean", "number")
            ):
                base = scores.get((control.id, version.id), {})
                shared = sorted(set(values) & set(base))
                paired = stats.paired_difference(
                    [values[p] for p in shared], [base[p] for p in shared]
                )
                verdict = stats.verdict(paired, higher_is_better=version.higher_is_better)
                comparison = {
                    "n": paired.n,
                    "wins": paired.wins if version.higher_is_better else paired.losses,
                    "losses": paired.losses if version.higher_is_better else paired.wins,
                    "ties": paired.ties,
                    "mean_difference": _interval(paired.mean_difference),
                    "p_value": paired.p_value,
                    "test": paired.test,
                    "verdict": verdict,
                }
                if verdict == "regressed":
                    failures.append(
                        f"{cand.label}: {name} regressed against the control ({paired.test}, p={paired.p_value:.3g})"
                    )
            threshold = run.thresholds.get(name)
            passed = None
            if threshold is not None and not cand.control:
                mean = interval.value
                passed = mean is not None and (
                    mean >= threshold if version.higher_is_better else mean <= threshold
                )
                if not passed:
                    shown = "no value" if mean is None else f"{mean:.3g}"
                    sign = ">=" if version.higher_is_better else "<="
                    failures.append(f"{cand.label}: {name} is {shown}, needs {sign} {threshold:g}")
            results.append(
                {
                    "candidate": cand.label,
                    "evaluator": name,
                    "returns": version.returns,
                    "higher_is_better": version.higher_is_better,
                    "n": len(values),
                    "errors": errors.get(key, 0),
                    "pending": pending.get(key, 0),
                    "mean": _interval(interval),
                    "interval": "Wilson score" if version.returns == "boolean" else "Student t",
                    "choices": choices.get(key),
                    "threshold": threshold,
                    "passed_threshold": passed,
                    "comparison": comparison,
                }
            )
    return {
        "control": control.label if control else None,
        "candidates": _candidate_totals(session, run, candidates),
        "results": results,
        "verdict": "failed" if failures else "passed",
        "failures": failures,
    }


def _interval(interval: stats.Interval) -> dict[str, Any]:
    return {"value": interval.value, "low": interval.low, "high": interval.high, "n": interval.n}


def _candidate_totals(
    session: Session, run: EvaluationRun, candidates: Sequence[RunCandidate]
) -> list[dict[str, Any]]:
    rows = session.execute(
        select(
            RunItem.candidate_id,
            Log.cost,
            Log.latency_ms,
            Log.prompt_tokens,
            Log.output_tokens,
            Log.error,
        )
        .join(Log, (Log.uid == RunItem.log_uid) & (Log.project_id == run.project_id))
        .where(RunItem.run_id == run.id)
    ).all()
    out = []
    for cand in candidates:
        mine = [r for r in rows if r[0] == cand.id]
        costs = [r[1] for r in mine if r[1] is not None]
        latencies = [r[2] for r in mine if r[2] is not None]
        out.append(
            {
                "label": cand.label,
                "control": cand.control,
                "logs": len(mine),
                "errors": sum(1 for r in mine if r[5]),
                "cost": round(sum(costs), 8) if costs and len(costs) == len(mine) else None,
                "latency_ms": {
                    "total": round(sum(latencies), 3),
                    "p50": stats.percentile(latencies, 50),
                    "p95": stats.percentile(latencies, 95),
                },
                "prompt_tokens": sum(r[3] or 0 for r in mine),
                "output_tokens": sum(r[4] or 0 for r in mine),
            }
        )
    return out


def comparison(
    session: Session,
    *,
    run: EvaluationRun,
    evaluator: str,
    candidate: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Per datapoint, a candidate against the control on one evaluator, biggest regressions
    first."""
    candidates = _run_candidates(session, run)
    control = next((c for c in candidates if c.control), None)
    if control is None:
        raise InvalidInput("This run has no control to compare with.")
    others = [c for c in candidates if not c.control]
    chosen = next((c for c in others if candidate in (None, c.label)), None)
    if chosen is None:
        raise NotFound(f"No candidate {candidate!r} besides the control in this run.")
    version = next((v for n, v in _run_evaluators(session, run) if n == evaluator), None)
    if version is None:
        raise NotFound(f"No evaluator {evaluator!r} in this run.")
    rows = session.execute(
        select(
            RunItem.candidate_id,
            RunItem.datapoint_id,
            Judgment.value,
            Judgment.score,
            Log.output,
            Log.uid,
        )
        .join(
            Judgment,
            (Judgment.run_item_id == RunItem.id) & (Judgment.evaluator_version_pk == version.id),
        )
        .join(Log, Log.id == Judgment.log_id)
        .where(RunItem.run_id == run.id, RunItem.candidate_id.in_([control.id, chosen.id]))
    ).all()
    by_point: dict[int, dict[int, tuple[Any, float | None, str | None, str]]] = {}
    for cand_id, point, value, score, output, log_uid in rows:
        by_point.setdefault(point, {})[cand_id] = (value, score, output, log_uid)
    points = {
        p.id: p for p in session.scalars(select(Datapoint).where(Datapoint.id.in_(list(by_point))))
    }
    sign = 1.0 if version.higher_is_better else -1.0
    out = []
    for point_id, pair in by_point.items():
        base, cand = pair.get(control.id), pair.get(chosen.id)
        difference = None
        if base and cand and base[1] is not None and cand[1] is not None:
            difference = sign * (cand[1] - base[1])
        point = points[point_id]
        out.append(
            {
                "datapoint": point.key,
                "inputs": point.inputs,
                "target": point.target,
                "control_output": base[2] if base else None,
                "candidate_output": cand[2] if cand else None,
                "control_value": base[0] if base else None,
                "candidate_value": cand[0] if cand else None,
                "difference": difference,
                "control_log": base[3] if base else None,
                "candidate_log": cand[3] if cand else None,
            }
        )
    out.sort(key=lambda r: (r["difference"] is None, r["difference"] or 0.0))
    return out[:limit]


# Executing runs --------------------------------------------------------------------------------


@dataclass
class _Item:
    item_id: int
    candidate: RunCandidate
    datapoint: Datapoint
    log_uid: str | None
    status: str


@dataclass
class _Plan:
    run: EvaluationRun
    project: Project
    candidates: dict[int, RunCandidate]
    kernels: dict[int, tuple[str, str, Kernel | None]]  # candidate id -> (path, version, swap)
    evaluators: list[tuple[str, EvaluatorVersion]]
    items: list[_Item]
    logs: dict[str, Log]  # already-made logs of items to evaluate (a resumed run)


class Executor:
    """Runs evaluation jobs for one server process."""

    def __init__(self, db: Database, caller: Caller, *, blocked_paths: Sequence[Path] = ()) -> None:
        self.db = db
        self.caller = caller
        self.blocked_paths = tuple(blocked_paths)

    async def __call__(self, ctx: JobContext) -> None:
        run_id = int(ctx.payload["run_id"])
        try:
            await self._execute(ctx, run_id)
        except Cancelled:
            await asyncio.to_thread(self._set_status, run_id, "cancelled")
            raise
        except (asyncio.CancelledError, jobs.Waiting):
            raise
        except Exception as exc:
            await asyncio.to_thread(self._set_status, run_id, "failed", str(exc))
            raise

    async def _execute(self, ctx: JobContext, run_id: int) -> None:
        plan = await asyncio.to_thread(self._plan, run_id)
        await asyncio.to_thread(self._set_status, run_id, "running")
        actor = Actor(kind="system", id=None, name=f"evaluation {plan.run.uid}", role=Role.admin)
        runners = [
            Runner(
                version,
                name=name,
                judge=self._judge_caller(actor, plan.project),
                blocked_paths=self.blocked_paths,
            )
            for name, version in plan.evaluators
        ]
        total = len(plan.items)
        done = sum(1 for i in plan.items if i.status == "done")
        progress = {"total": total, "done": done, "called": done}
        queue: asyncio.Queue[tuple[_Item, Log | dict[str, Any]] | None] = asyncio.Queue()
        try:
            for item in plan.items:
                log = plan.logs.get(item.log_uid or "")
                if item.status == "logged" and log is not None:
                    queue.put_nowait((item, log))
            consumer = asyncio.get_running_loop().create_task(
                self._evaluate_all(ctx, plan, runners, queue, progress)
            )
            finished = True
            if plan.run.mode == "server":
                await self._call_all(ctx, plan, actor, queue, progress)
                queue.put_nowait(None)
            else:
                finished = await self._await_local(ctx, plan, queue)
            await consumer
        finally:
            for runner in runners:
                await asyncio.to_thread(runner.close)
        if not finished:
            await ctx.checkpoint()  # a cancellation asked meanwhile ends the run now
            # Outputs and the finish call requeue the job at once; the timer is a backstop.
            raise jobs.Waiting(after=LOCAL_RECHECK_S)
        await asyncio.to_thread(self._complete, run_id)

    async def _call_all(
        self,
        ctx: JobContext,
        plan: _Plan,
        actor: Actor,
        queue: asyncio.Queue[Any],
        progress: dict[str, Any],
    ) -> None:
        limit = asyncio.Semaphore(plan.run.concurrency)  # requests in flight to the provider
        gate = asyncio.Semaphore(plan.run.concurrency * 2)
        todo = [i for i in plan.items if i.status == "pending"]
        marks: list[tuple[int, str]] = []
        targets = {}  # each candidate resolved once: no database work per call
        for cand_id, (path, version, swap) in plan.kernels.items():
            base = CallSpec(prompt=path, version=None if swap else version, kernel=swap)
            targets[cand_id] = await asyncio.to_thread(
                self.caller.resolve, actor=actor, project=plan.project, spec=base
            )

        async def one(item: _Item) -> None:
            async with gate:  # bounds the items in progress (their logs committing included)
                if ctx.cancelled:
                    return
                path, version, swap = plan.kernels[item.candidate.id]
                spec = CallSpec(
                    prompt=path,
                    version=None if swap else version,
                    kernel=swap,
                    inputs=dict(item.datapoint.inputs or {}),
                    messages=list(item.datapoint.messages or []),
                    source="eval",
                    metadata={"evaluation": plan.run.uid, "candidate": item.candidate.label},
                )
                try:
                    result = await self.caller.call(
                        actor=actor,
                        project=plan.project,
                        spec=spec,
                        target=targets[item.candidate.id],
                        limit=limit,
                    )
                except InvalidInput as exc:  # e.g. a datapoint lacks a template variable
                    await asyncio.to_thread(self._fail_item, item.item_id, exc.message)
                    progress["done"] = progress.get("done", 0) + 1
                    return
                item.log_uid = result.log_id
                marks.append((item.item_id, result.log_id))
                completion = result.completion
                log = {
                    "output": completion.output if completion else None,
                    "latency_ms": result.latency_ms,
                    "cost": result.cost,
                    "prompt_tokens": completion.usage.prompt_tokens if completion else None,
                    "output_tokens": completion.usage.output_tokens if completion else None,
                    "error": result.failure_message if result.error else None,
                }
                progress["called"] += 1
                queue.put_nowait((item, log))

        async def flush_marks() -> None:
            while True:
                await asyncio.sleep(0.25)
                if marks:
                    batch = list(marks)
                    marks.clear()
                    await asyncio.to_thread(self._mark_logged, batch)
                await ctx.checkpoint(**progress)

        flusher = asyncio.get_running_loop().create_task(flush_marks())
        try:
            await asyncio.gather(*(one(item) for item in todo))
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        if marks:
            await asyncio.to_thread(self._mark_logged, list(marks))
        await ctx.checkpoint(**progress)

    async def _await_local(self, ctx: JobContext, plan: _Plan, queue: asyncio.Queue[Any]) -> bool:
        """Local mode: evaluate the outputs the SDK posted so far. True once the client said it
        finished and nothing is left; False when it should wait for more (holding no slot)."""
        queued = {i.item_id for i in plan.items if i.status != "pending"}
        while True:
            arrived, finished = await asyncio.to_thread(self._local_arrivals, plan, queued)
            for item, log in arrived:
                queued.add(item.item_id)
                queue.put_nowait((item, log))
            if finished or not arrived:
                queue.put_nowait(None)
                return finished
            await ctx.checkpoint()

    async def _evaluate_all(
        self,
        ctx: JobContext,
        plan: _Plan,
        runners: list[Runner],
        queue: asyncio.Queue[Any],
        progress: dict[str, Any],
    ) -> None:
        ended = False
        while not ended:
            first = await queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + 0.05
            while len(batch) < BATCH:
                try:
                    nxt = await asyncio.wait_for(queue.get(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    break
                if nxt is None:
                    ended = True
                    break
                batch.append(nxt)
            inputs = [_eval_input(item, log) for item, log in batch]
            outcomes = await asyncio.gather(*(runner.evaluate(inputs) for runner in runners))
            await asyncio.to_thread(self._store_judgments, plan, batch, runners, outcomes)
            progress["done"] = progress.get("done", 0) + len(batch)
            await ctx.checkpoint(**progress)

    async def try_on(
        self, *, actor: Actor, project: Project, subject: TrySubject, target: Any
    ) -> Outcome:
        """One evaluator on one log, nothing stored: what a user checks before saving it."""
        runner = Runner(
            subject.version,
            name=subject.name,
            judge=self._judge_caller(actor, project),
            blocked_paths=self.blocked_paths,
        )
        log = subject.log
        item = EvalInput(
            output=log.output,
            inputs=dict(log.inputs or {}),
            messages=log.messages,
            target=target,
            latency_ms=log.latency_ms,
            cost=log.cost,
            prompt_tokens=log.prompt_tokens,
            output_tokens=log.output_tokens,
            error=log.error,
        )
        try:
            [outcome] = await runner.evaluate([item])
        finally:
            await asyncio.to_thread(runner.close)
        return outcome

    def _judge_caller(self, actor: Actor, project: Project) -> Any:
        async def judge(
            path: str, version: str, inputs: dict[str, Any]
        ) -> tuple[str | None, str | None]:
            spec = CallSpec(prompt=path, version=version, inputs=inputs, source="eval")
            try:
                result = await self.caller.call(actor=actor, project=project, spec=spec)
            except InvalidInput as exc:
                return None, exc.message
            if result.error is not None:
                return None, result.failure_message
            return (result.completion.output if result.completion else ""), None

        return judge

    # Storage steps (each in its own short transaction, called from threads) ----------------

    def _plan(self, run_id: int) -> _Plan:
        with self.db.session(write=False) as session:
            run = session.get(EvaluationRun, run_id)
            if run is None:
                raise NotFound(f"Evaluation run {run_id} no longer exists.")
            project = session.get(Project, run.project_id)
            assert project is not None
            candidates = {c.id: c for c in _run_candidates(session, run)}
            kernels: dict[int, tuple[str, str, Kernel | None]] = {}
            for cand in candidates.values():
                if cand.version_pk is None:
                    continue
                version = session.get(PromptVersion, cand.version_pk)
                prompt = session.get(Prompt, cand.prompt_id) if cand.prompt_id else None
                if version is None or prompt is None:
                    raise NotFound(f"The prompt version of candidate {cand.label!r} was deleted.")
                swap = None
                if cand.model:
                    swap = prompts.kernel_of(version).model_copy(update=dict(cand.model))
                kernels[cand.id] = (prompt.path, version.version_id, swap)
            points = {
                p.id: p
                for p in session.scalars(
                    select(Datapoint).where(Datapoint.version_pk == run.dataset_version_pk)
                )
            }
            items = [
                _Item(r.id, candidates[r.candidate_id], points[r.datapoint_id], r.log_uid, r.status)
                for r in session.scalars(
                    select(RunItem).where(RunItem.run_id == run.id).order_by(RunItem.id)
                )
            ]
            uids = [i.log_uid for i in items if i.status == "logged" and i.log_uid]
            logs = (
                {
                    log.uid: log
                    for log in session.scalars(
                        select(Log).where(Log.project_id == project.id, Log.uid.in_(uids))
                    )
                }
                if uids
                else {}
            )
            session.expunge_all()
            return _Plan(
                run=run,
                project=project,
                candidates=candidates,
                kernels=kernels,
                evaluators=_run_evaluators_detached(self.db, run_id),
                items=items,
                logs=logs,
            )

    def _set_status(self, run_id: int, status: str, error: str | None = None) -> None:
        with self.db.session(write=True) as session:
            values: dict[str, Any] = {"status": status}
            if error is not None:
                values["error"] = error
            if status in jobs.FINISHED:
                values["finished_at"] = utcnow()
            query = update(EvaluationRun).where(EvaluationRun.id == run_id)
            if status == "running":  # never over "finishing" (a local run the client finished)
                query = query.where(EvaluationRun.status == "queued")
            session.execute(query.values(**values))

    def _mark_logged(self, marks: list[tuple[int, str]]) -> None:
        with self.db.session(write=True) as session:
            for item_id, log_uid in marks:
                session.execute(
                    update(RunItem)
                    .where(RunItem.id == item_id, RunItem.status == "pending")
                    .values(status="logged", log_uid=log_uid)
                )

    def _fail_item(self, item_id: int, error: str) -> None:
        with self.db.session(write=True) as session:
            session.execute(
                update(RunItem).where(RunItem.id == item_id).values(status="done", error=error)
            )

    def _store_judgments(
        self,
        plan: _Plan,
        batch: list[tuple[_Item, Any]],
        runners: list[Runner],
        outcomes: list[list[Outcome]],
    ) -> None:
        with self.db.session(write=True) as session:
            uids = [item.log_uid for item, _ in batch]
            ids = dict(
                (uid, pk)
                for pk, uid in session.execute(
                    select(Log.id, Log.uid).where(
                        Log.project_id == plan.project.id, Log.uid.in_(uids)
                    )
                )
            )
            now = utcnow()
            rows: list[dict[str, Any]] = []
            done: list[dict[str, Any]] = []
            for position, (item, _log) in enumerate(batch):
                log_id = ids.get(item.log_uid or "")
                if log_id is None:
                    continue
                done.append({"item": item.item_id, "log": item.log_uid})
                for runner, results in zip(runners, outcomes, strict=True):
                    outcome = results[position]
                    rows.append(
                        {
                            "uid": uuid.uuid4().hex,
                            "project_id": plan.project.id,
                            "log_id": log_id,
                            "kind_id": None,
                            "evaluator_version_pk": runner.version.id,
                            "run_id": plan.run.id,
                            "run_item_id": item.item_id,
                            "name": runner.name,
                            "category": "evaluator",
                            "value": None if runner.human else outcome.value,
                            "score": None
                            if runner.human or outcome.error
                            else evaluators.score_of(outcome.value),
                            "delay_s": None,
                            "similarity": None,
                            "diff": None,
                            "withheld": False,
                            "explanation": outcome.explanation,
                            "error": outcome.error,
                            "pending": runner.human,
                            "end_user": None,
                            "reviewer": None,
                            "recorded_by": f"evaluation {plan.run.uid}",
                            "source": "eval",
                            "current": True,
                            "created_at": now,
                        }
                    )
            if rows:  # one executemany for the batch, not one ORM object per judgment
                session.execute(insert(Judgment), rows)
            if done:
                items = cast(Table, RunItem.__table__)
                session.execute(
                    update(items)
                    .where(items.c.id == bindparam("item"))
                    .values(status="done", log_uid=bindparam("log")),
                    done,
                )

    def _local_arrivals(
        self, plan: _Plan, queued: set[int]
    ) -> tuple[list[tuple[_Item, Log]], bool]:
        with self.db.session(write=False) as session:
            run = session.get(EvaluationRun, plan.run.id)
            assert run is not None
            rows = session.execute(
                select(RunItem.id, RunItem.log_uid).where(
                    RunItem.run_id == plan.run.id, RunItem.status == "logged"
                )
            ).all()
            fresh = [(item_id, uid) for item_id, uid in rows if item_id not in queued]
            logs = (
                {
                    log.uid: log
                    for log in session.scalars(
                        select(Log).where(
                            Log.project_id == plan.project.id, Log.uid.in_([u for _, u in fresh])
                        )
                    )
                }
                if fresh
                else {}
            )
            session.expunge_all()
            by_id = {i.item_id: i for i in plan.items}
            arrived = []
            for item_id, uid in fresh:
                item = by_id[item_id]
                item.log_uid = uid
                if uid in logs:
                    arrived.append((item, logs[uid]))
            finished = run.status == "finishing" and not fresh
            return arrived, finished

    def _complete(self, run_id: int) -> None:
        with self.db.session(write=True) as session:
            run = session.get(EvaluationRun, run_id)
            assert run is not None
            run.summary = summarize(session, run=run)
            run.status = "completed"
            run.finished_at = utcnow()


@dataclass(frozen=True)
class TrySubject:
    name: str
    version: EvaluatorVersion
    log: Log


def prepare_try(
    session: Session,
    store: LogStore,
    *,
    actor: Actor,
    project: Project,
    log_uid: str,
    evaluator: str | None,
    draft: evaluators.EvaluatorSpec | None,
) -> TrySubject:
    """The evaluator (a saved version, or a draft not saved) and the log to try it on."""
    actor.require(Permission.edit)
    if (evaluator is None) == (draft is None):
        raise InvalidInput("Give an evaluator to try (name or name@version) or a draft, not both.")
    log = get_log(store, actor=actor, project=project, uid=log_uid)
    if evaluator is not None:
        version = evaluators.resolve(session, project=project, ref=evaluator)
        return TrySubject(evaluators.name_of(session, version), version, log)
    assert draft is not None
    if draft.kind == "code":
        actor.require(Permission.write_code)
    stored = evaluators.checked(session, project=project, spec=draft)
    version = EvaluatorVersion(
        kind=stored["kind"],
        returns=stored["returns"],
        higher_is_better=stored["higher_is_better"],
        spec=stored,
    )
    return TrySubject("draft", version, log)


def run_uids(session: Session, ids: Sequence[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    query = select(EvaluationRun.id, EvaluationRun.uid).where(EvaluationRun.id.in_(wanted))
    return {pk: uid for pk, uid in session.execute(query)}


def prompt_paths(session: Session, ids: Sequence[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    query = select(Prompt.id, Prompt.path).where(Prompt.id.in_(wanted))
    return {pk: path for pk, path in session.execute(query)}


def _run_evaluators_detached(db: Database, run_id: int) -> list[tuple[str, EvaluatorVersion]]:
    with db.session(write=False) as session:
        run = session.get(EvaluationRun, run_id)
        assert run is not None
        found = _run_evaluators(session, run)
        session.expunge_all()
        return found


def _eval_input(item: _Item, log: Log | dict[str, Any]) -> EvalInput:
    def get(name: str) -> Any:
        return log.get(name) if isinstance(log, dict) else getattr(log, name)

    return EvalInput(
        output=get("output"),
        inputs=dict(item.datapoint.inputs or {}),
        messages=item.datapoint.messages,
        target=item.datapoint.target,
        latency_ms=get("latency_ms"),
        cost=get("cost"),
        prompt_tokens=get("prompt_tokens"),
        output_tokens=get("output_tokens"),
        error=get("error"),
    )


# Local mode ------------------------------------------------------------------------------------


def local_datapoints(
    session: Session, *, actor: Actor, project: Project, uid: str
) -> tuple[EvaluationRun, list[RunCandidate], list[Datapoint]]:
    """What the SDK needs to run a local evaluation: the candidates and the datapoints."""
    run = get_run(session, actor=actor, project=project, uid=uid)
    points = list(
        session.scalars(
            select(Datapoint)
            .where(Datapoint.version_pk == run.dataset_version_pk)
            .order_by(Datapoint.position)
        )
    )
    return run, _run_candidates(session, run), points


@dataclass(frozen=True)
class LocalOutput:
    """What the user's function produced for one datapoint."""

    datapoint: str  # the datapoint's key
    output: str | None = None
    error: str | None = None
    candidate: str | None = None  # its label; default: the run's only candidate
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


async def record_local_outputs(
    db: Database,
    logger_: Logger,
    *,
    actor: Actor,
    project: Project,
    uid: str,
    outputs: Sequence[LocalOutput],
) -> int:
    """Log the outputs of a local run (source `eval`); the run's job evaluates them."""
    actor.require(Permission.edit)

    def plan() -> tuple[EvaluationRun, list[tuple[int, LogEntry]]]:
        with db.session(write=False) as session:
            run = get_run(session, actor=actor, project=project, uid=uid)
            if run.mode != "local":
                raise InvalidInput(f"Run {uid} is not a local run: promptloop calls its models.")
            if run.status in (*jobs.FINISHED, "finishing"):
                raise InvalidInput(f"Run {uid} is {run.status}: it takes no more outputs.")
            candidates = {c.label: c for c in _run_candidates(session, run)}
            points = {
                p.key: p
                for p in session.scalars(
                    select(Datapoint).where(Datapoint.version_pk == run.dataset_version_pk)
                )
            }
            items = {
                (r.candidate_id, r.datapoint_id): r
                for r in session.scalars(select(RunItem).where(RunItem.run_id == run.id))
            }
            planned = []
            for given in outputs:
                if given.candidate is None and len(candidates) != 1:
                    raise InvalidInput(f"Name the candidate: one of {', '.join(candidates)}.")
                label = given.candidate or next(iter(candidates))
                cand = candidates.get(label)
                if cand is None:
                    raise InvalidInput(f"No candidate {label!r} in run {uid}.")
                point = points.get(given.datapoint)
                if point is None:
                    raise InvalidInput(f"No datapoint {given.datapoint!r} in this run's dataset.")
                item = items[(cand.id, point.id)]
                if item.status != "pending":
                    raise InvalidInput(
                        f"Datapoint {given.datapoint} already has an output for {label!r}."
                    )
                entry = LogEntry(
                    source="eval",
                    inputs=dict(point.inputs or {}),
                    messages=point.messages,
                    output=given.output,
                    error=given.error,
                    latency_ms=given.latency_ms,
                    prompt_tokens=given.prompt_tokens,
                    output_tokens=given.output_tokens,
                    cost=given.cost,
                    metadata={**given.metadata, "evaluation": uid, "candidate": label},
                )
                planned.append((item.id, entry))
            return run, planned

    _run, planned = await asyncio.to_thread(plan)
    uids = await logger_.record(db, actor=actor, project=project, entries=[e for _, e in planned])

    def mark() -> None:
        with db.session(write=True) as session:
            for (item_id, _entry), log_uid in zip(planned, uids, strict=True):
                session.execute(
                    update(RunItem)
                    .where(RunItem.id == item_id, RunItem.status == "pending")
                    .values(status="logged", log_uid=log_uid)
                )
            if _run.job_id is not None:
                jobs.requeue(session, job_id=_run.job_id)

    await asyncio.to_thread(mark)
    return len(uids)


def finish_local(session: Session, *, actor: Actor, project: Project, uid: str) -> EvaluationRun:
    """The SDK has sent every output: evaluate what is left, then compute the statistics."""
    actor.require(Permission.edit)
    run = get_run(session, actor=actor, project=project, uid=uid)
    if run.mode != "local":
        raise InvalidInput(f"Run {uid} is not a local run.")
    if run.status in jobs.FINISHED:
        raise InvalidInput(f"Run {uid} is already {run.status}.")
    run.status = "finishing"
    if run.job_id is not None:
        jobs.requeue(session, job_id=run.job_id)
    return run


# Human review ----------------------------------------------------------------------------------


def pending_judgments(
    session: Session, *, actor: Actor, project: Project, run_uid: str | None, limit: int
) -> list[tuple[Judgment, Log, EvaluatorVersion]]:
    """Human judgments still to give, oldest first, with the log to judge."""
    actor.require(Permission.read)
    query = (
        select(Judgment, Log, EvaluatorVersion)
        .join(Log, Log.id == Judgment.log_id)
        .join(EvaluatorVersion, EvaluatorVersion.id == Judgment.evaluator_version_pk)
        .where(Judgment.project_id == project.id, Judgment.pending.is_(True))
        .order_by(Judgment.id)
        .limit(limit)
    )
    if run_uid is not None:
        run = get_run(session, actor=actor, project=project, uid=run_uid)
        query = query.where(Judgment.run_id == run.id)
    return [(j, log, v) for j, log, v in session.execute(query)]


@dataclass(frozen=True)
class ReviewContext:
    """What a reviewer reads besides the log: the evaluator's question (its description) and
    the datapoint's target, when the judgment belongs to a run."""

    question: str | None
    target: Any
    run: str | None


def review_context(session: Session, judgments: Sequence[Judgment]) -> dict[str, ReviewContext]:
    """Per pending judgment (by uid), its evaluator's question and its datapoint's target."""
    if not judgments:
        return {}
    version_pks = {j.evaluator_version_pk for j in judgments if j.evaluator_version_pk}
    questions = {
        pk: description
        for pk, description in session.execute(
            select(EvaluatorVersion.id, Evaluator.description)
            .join(Evaluator, Evaluator.id == EvaluatorVersion.evaluator_id)
            .where(EvaluatorVersion.id.in_(version_pks))
        )
    }
    item_ids = {j.run_item_id for j in judgments if j.run_item_id}
    targets = (
        {
            item_id: target
            for item_id, target in session.execute(
                select(RunItem.id, Datapoint.target)
                .join(Datapoint, Datapoint.id == RunItem.datapoint_id)
                .where(RunItem.id.in_(item_ids))
            )
        }
        if item_ids
        else {}
    )
    runs = run_uids(session, [j.run_id for j in judgments])
    return {
        j.uid: ReviewContext(
            question=questions.get(j.evaluator_version_pk) if j.evaluator_version_pk else None,
            target=targets.get(j.run_item_id) if j.run_item_id else None,
            run=runs.get(j.run_id) if j.run_id else None,
        )
        for j in judgments
    }


def give_judgment(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    uid: str,
    value: Any,
    explanation: str | None = None,
) -> Judgment:
    """A reviewer's judgment for a pending human evaluation."""
    actor.require(Permission.write_logs)
    judgment = session.scalars(
        select(Judgment).where(Judgment.project_id == project.id, Judgment.uid == uid)
    ).first()
    if judgment is None or judgment.evaluator_version_pk is None:
        raise NotFound(f"No judgment {uid!r} in project {project.name!r}.")
    version = session.get(EvaluatorVersion, judgment.evaluator_version_pk)
    assert version is not None
    if version.kind != "human":
        raise InvalidInput("Only human evaluators take judgments from reviewers.")
    judgment.value = _checked_judgment(version, value)
    judgment.score = evaluators.score_of(judgment.value)
    judgment.explanation = explanation
    judgment.pending = False
    judgment.reviewer = actor.name
    judgment.error = None
    session.flush()
    if judgment.run_id is not None:  # the run's statistics now include it
        run = session.get(EvaluationRun, judgment.run_id)
        if run is not None and run.status == "completed":
            run.summary = summarize(session, run=run)
    return judgment


def _checked_judgment(version: EvaluatorVersion, value: Any) -> Any:
    returns = version.returns
    if returns == "boolean" and isinstance(value, bool):
        return value
    if returns == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if returns == "choice" and value in (version.spec.get("choices") or []):
        return value
    if returns == "text" and isinstance(value, str) and value.strip():
        return value
    allowed = {
        "boolean": "true or false",
        "number": "a number",
        "choice": "one of " + ", ".join(version.spec.get("choices") or []),
        "text": "non-empty text",
    }[returns]
    raise InvalidInput(f"This evaluator takes {allowed}, not {value!r}.")
