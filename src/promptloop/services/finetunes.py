"""Fine-tuning: train a small model on a dataset version, register it as a model with its
lineage, and evaluate it against what the prompt serves in production.

The datapoints are rendered through a prompt version (its template is what the model will be
called with) and answered with their targets — outputs voted up, corrections, judged-good
answers, whatever the dataset was built from. A deterministic share of them (by datapoint key)
is held out: the training never sees it, and the evaluation runs on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from promptloop.core import templates
from promptloop.core.access import SYSTEM, Actor, Permission
from promptloop.core.errors import Conflict, InvalidInput, NotFound
from promptloop.core.kernel import Kernel
from promptloop.core.paths import validate_kind_name
from promptloop.finetune import lora
from promptloop.finetune.lora import Example, Hyperparameters
from promptloop.providers import local
from promptloop.services import datasets, evaluations, evaluators, jobs, prompts
from promptloop.services.jobs import Cancelled, JobContext
from promptloop.services.pagination import Page, paginate
from promptloop.store.db import Database
from promptloop.store.models import (
    Datapoint,
    EvaluationRun,
    FineTune,
    Job,
    Model,
    Project,
    Prompt,
    PromptVersion,
)
from promptloop.store.types import utcnow

logger = logging.getLogger("promptloop.finetunes")
JOB_KIND = "fine_tune"
BASES = {"local/smollm2-135m": "smollm2-135m"}


@dataclass(frozen=True)
class FineTuneRequest:
    name: str  # the model's name within the project: called as local/<project>/<name>
    dataset: str
    prompt: str
    dataset_version: str | None = None
    version: str | None = None  # the prompt version the datapoints render through
    environment: str | None = None  # ...or what an environment serves (default production)
    base_model: str = "local/smollm2-135m"
    method: str = "lora"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    held_out_fraction: float = 0.2
    evaluators: list[str] = field(default_factory=list)


def model_name(project: Project, name: str) -> str:
    return f"{project.name}/{name}"


def start(
    session: Session, *, actor: Actor, project: Project, request: FineTuneRequest
) -> FineTune:
    """Validate and queue a fine-tuning job."""
    actor.require(Permission.fine_tune)
    validate_kind_name(request.name)
    if request.method != "lora":
        raise InvalidInput("method is 'lora' (on the local provider).")
    if request.base_model not in BASES:
        raise InvalidInput(f"base_model must be one of {', '.join(BASES)}.")
    if not 0 < request.held_out_fraction < 1:
        raise InvalidInput("held_out_fraction must be between 0 and 1 (e.g. 0.2).")
    try:
        Hyperparameters.from_dict(request.hyperparameters)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"Hyperparameters: {exc}") from None
    name = model_name(project, request.name)
    if session.scalar(select(FineTune.id).where(FineTune.model_name == name)) is not None:
        raise Conflict(f"A fine-tuned model {name!r} exists already; choose another name.")
    version = prompts.resolve_version(
        session,
        project=project,
        path=request.prompt,
        version=request.version,
        environment=request.environment or (None if request.version else "production"),
    )
    data = datasets.get_version(
        session, project=project, name=request.dataset, ref=request.dataset_version or "latest"
    )
    points = datasets.datapoints_of(session, version=data)
    train, held_out = split(points, request.held_out_fraction)
    if len(train) < 2 or not held_out:
        raise InvalidInput(
            f"Dataset {request.dataset}@{data.version_id} has {len(points)} datapoints: too few "
            "to train on some and hold others out."
        )
    kernel = prompts.kernel_of(version)
    if kernel.messages is None:
        raise InvalidInput("Fine-tuning needs a chat prompt (messages), not a completion template.")
    for point in points:
        if point.target is None:
            raise InvalidInput(f"Datapoint {point.key} has no target: nothing to learn from.")
        templates.render(kernel, dict(point.inputs or {}))  # MissingInputs names what is missing
    for ref in request.evaluators:
        evaluators.resolve(session, project=project, ref=ref)
    tune = FineTune(
        uid=uuid.uuid4().hex,
        project_id=project.id,
        model_name=name,
        method=request.method,
        base_model=request.base_model,
        prompt_id=version.prompt_id,
        version_pk=version.id,
        dataset_version_pk=data.id,
        held_out_fraction=request.held_out_fraction,
        hyperparameters=request.hyperparameters,
        evaluators=list(request.evaluators),
        created_by=actor.name,
    )
    session.add(tune)
    session.flush()
    job = jobs.enqueue(session, project=project, kind=JOB_KIND, payload={"fine_tune_id": tune.id})
    tune.job_id = job.id
    session.flush()
    return tune


def example_of(kernel: Kernel, point: Datapoint) -> Example:
    """What the model learns from a datapoint: the prompt's messages rendered with its inputs
    (then its own messages), answered with its target."""
    rendered = templates.render(kernel, dict(point.inputs or {}))
    if rendered.messages is None:
        raise InvalidInput("Fine-tuning needs a chat prompt (messages), not a completion template.")
    messages = [m.model_dump() for m in rendered.messages] + list(point.messages or [])
    target = point.target
    if target is None:
        raise InvalidInput(f"Datapoint {point.key} has no target: nothing to learn from.")
    return Example.from_call(messages, target if isinstance(target, str) else json.dumps(target))


def export_openai(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    dataset: str,
    prompt: str,
    dataset_version: str | None = None,
    version: str | None = None,
    environment: str | None = None,
) -> tuple[str, str]:
    """A dataset version in OpenAI's chat fine-tuning format (one `{"messages": [...]}` per
    line), each datapoint rendered through the prompt version; and a file name for it."""
    actor.require(Permission.read)
    prompt_version = prompts.resolve_version(
        session,
        project=project,
        path=prompt,
        version=version,
        environment=environment or (None if version else "production"),
    )
    data = datasets.get_version(
        session, project=project, name=dataset, ref=dataset_version or "latest"
    )
    kernel = prompts.kernel_of(prompt_version)
    examples = [example_of(kernel, p) for p in datasets.datapoints_of(session, version=data)]
    name = f"{dataset.replace('/', '-')}-{data.version_id}-openai.jsonl"
    return lora.export_openai_jsonl(examples), name


def split(points: list[Datapoint], fraction: float) -> tuple[list[Datapoint], list[Datapoint]]:
    """Train and held-out datapoints, chosen by key (`datasets.held_out_keys`): the same split
    on every run and machine."""
    held = datasets.held_out_keys([p.key for p in points], fraction)
    return [p for p in points if p.key not in held], [p for p in points if p.key in held]


def get(session: Session, *, actor: Actor, project: Project, uid: str) -> FineTune:
    actor.require(Permission.read)
    tune = session.scalars(
        select(FineTune).where(FineTune.project_id == project.id, FineTune.uid == uid)
    ).first()
    if tune is None:
        raise NotFound(f"No fine-tuning job {uid!r} in project {project.name!r}.")
    return tune


def list_fine_tunes(
    session: Session, *, actor: Actor, project: Project, cursor: str | None, limit: int
) -> Page[FineTune]:
    actor.require(Permission.read)
    query = select(FineTune).where(FineTune.project_id == project.id)
    return paginate(session, query, key=FineTune.id, cursor=cursor, limit=limit, descending=True)


def cancel(session: Session, *, actor: Actor, project: Project, uid: str) -> FineTune:
    actor.require(Permission.fine_tune)
    tune = get(session, actor=actor, project=project, uid=uid)
    if tune.status in jobs.FINISHED:
        raise InvalidInput(f"Fine-tuning job {uid} is already {tune.status}.")
    if tune.job_id is not None:
        job = jobs.request_cancel(session, job_id=tune.job_id)
        if job.status == "cancelled":
            tune.status, tune.finished_at = "cancelled", utcnow()
    return tune


def progress_of(session: Session, tune: FineTune) -> dict[str, Any]:
    job = session.get(Job, tune.job_id) if tune.job_id else None
    return dict(job.progress or {}) if job else {}


def run_uid(session: Session, tune: FineTune) -> str | None:
    if tune.evaluation_run_id is None:
        return None
    run = session.get(EvaluationRun, tune.evaluation_run_id)
    return run.uid if run else None


def register_adapters(data_dir: Path) -> list[str]:
    """Serve the adapters of finished fine-tunes again after a restart."""
    folder = data_dir / "adapters"
    return local.load_adapters(folder) if folder.is_dir() else []


@dataclass
class _Plan:
    tune: FineTune
    project: Project
    base: str
    train: list[Any]
    held_out: list[Any]
    held_out_points: list[Datapoint]
    adapter_dir: Path


class Trainer:
    """Runs fine-tuning jobs for one process: training in a thread, progress and cancellation
    through the job."""

    def __init__(self, db: Database, *, data_dir: Path, wake: Any = None) -> None:
        self.db = db
        self.data_dir = data_dir
        self.wake = wake

    async def __call__(self, ctx: JobContext) -> None:
        tune_id = int(ctx.payload["fine_tune_id"])
        try:
            await self._run(ctx, tune_id)
        except Cancelled:
            await asyncio.to_thread(self._set, tune_id, status="cancelled", finished_at=utcnow())
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await asyncio.to_thread(
                self._set, tune_id, status="failed", error=str(exc), finished_at=utcnow()
            )
            raise

    async def _run(self, ctx: JobContext, tune_id: int) -> None:
        plan = await asyncio.to_thread(self._plan, tune_id)
        await ctx.checkpoint()  # cancelled while queued: stop before any model work
        await asyncio.to_thread(self._set, tune_id, status="running")
        stop = threading.Event()
        latest: dict[str, Any] = {}

        def report(step: lora.Progress) -> None:
            latest.update(
                step=step.step,
                total_steps=step.total_steps,
                loss=round(step.loss, 4),
                elapsed_s=round(step.elapsed_s, 1),
                remaining_s=round(step.remaining_s, 1),
            )

        def work() -> lora.TrainResult:
            local.provider.load(plan.base)  # converts the packaged base model once
            if plan.adapter_dir.exists():  # a previous attempt died mid-way: start over
                shutil.rmtree(plan.adapter_dir)
            return lora.train(
                local.provider.models_dir / plan.base,
                plan.train,
                plan.held_out,
                plan.adapter_dir,
                lora.Hyperparameters.from_dict(plan.tune.hyperparameters),
                name=plan.tune.model_name,
                base=plan.base,
                progress=report,
                should_stop=stop.is_set,
            )

        training = asyncio.get_running_loop().run_in_executor(None, work)
        try:
            while not training.done():
                await asyncio.wait({training}, timeout=1.0)
                await ctx.checkpoint(**latest)
        except Cancelled:
            stop.set()
            await asyncio.gather(training, return_exceptions=True)
            raise
        try:
            result = training.result()
        except lora.Cancelled:
            raise Cancelled() from None
        await ctx.checkpoint(**latest)
        local.provider.register_adapter(
            plan.tune.model_name, base=plan.base, adapter=plan.adapter_dir
        )
        await asyncio.to_thread(self._finish, plan, result)
        if self.wake is not None:
            self.wake()

    def _plan(self, tune_id: int) -> _Plan:
        with self.db.session(write=False) as session:
            tune = session.get(FineTune, tune_id)
            if tune is None:
                raise NotFound(f"Fine-tuning job {tune_id} no longer exists.")
            project = session.get(Project, tune.project_id)
            version = session.get(PromptVersion, tune.version_pk)
            assert project is not None and version is not None
            kernel = prompts.kernel_of(version)
            points = list(
                session.scalars(
                    select(Datapoint)
                    .where(Datapoint.version_pk == tune.dataset_version_pk)
                    .order_by(Datapoint.position)
                )
            )
            train, held = split(points, tune.held_out_fraction)

            def example(point: Datapoint) -> Example:
                return example_of(kernel, point)

            session.expunge_all()
            return _Plan(
                tune=tune,
                project=project,
                base=BASES[tune.base_model],
                train=[example(p) for p in train],
                held_out=[example(p) for p in held],
                held_out_points=held,
                adapter_dir=self.data_dir / "adapters" / tune.uid,
            )

    def _set(self, tune_id: int, **values: Any) -> None:
        with self.db.session(write=True) as session:
            tune = session.get(FineTune, tune_id)
            if tune is None:
                return
            for key, value in values.items():
                if key == "status" and value == "running" and tune.status != "queued":
                    continue
                setattr(tune, key, value)

    def _finish(self, plan: _Plan, result: Any) -> None:
        """Register the model with its lineage, and queue its evaluation on the held-out data
        against what the prompt serves in production."""
        with self.db.session(write=True) as session:
            tune = session.get(FineTune, plan.tune.id)
            project = session.get(Project, plan.project.id)
            assert tune is not None and project is not None
            tune.metrics = {
                "steps": result.steps,
                "train_loss": result.train_loss,
                "held_out_loss": result.held_out_loss,
                "seconds": round(result.seconds, 1),
                "peak_memory_mb": round(result.peak_memory_mb),
                "device": result.device,
                "train_examples": len(plan.train),
                "held_out_examples": len(plan.held_out),
            }
            tune.adapter_dir = str(plan.adapter_dir)
            provider, name = "local", tune.model_name
            model = session.scalars(
                select(Model).where(Model.provider == provider, Model.name == name)
            ).first()
            if model is None:
                base = session.scalars(
                    select(Model).where(Model.provider == "local", Model.name == plan.base)
                ).first()
                session.add(
                    Model(
                        provider=provider,
                        name=name,
                        input_price=base.input_price if base else None,
                        output_price=base.output_price if base else None,
                        context_window=base.context_window if base else None,
                        capabilities={
                            "kinds": ["chat"],
                            "lineage": {
                                "base_model": tune.base_model,
                                "fine_tune": tune.uid,
                                "method": tune.method,
                                "hyperparameters": tune.hyperparameters,
                            },
                        },
                        fine_tune_id=tune.id,
                        project_id=project.id,
                    )
                )
            if tune.evaluators:
                tune.evaluation_run_id = self._evaluation(session, tune, project, plan)
            tune.status = "completed"
            tune.finished_at = utcnow()

    def _evaluation(self, session: Session, tune: FineTune, project: Project, plan: _Plan) -> int:
        prompt = session.get(Prompt, tune.prompt_id)
        version = session.get(PromptVersion, tune.version_pk)
        assert prompt is not None and version is not None
        held = f"fine-tunes/{tune.uid[:8]}/held-out"
        datasets.save_version(
            session,
            actor=SYSTEM,
            project=project,
            name=held,
            datapoints=[datasets.spec_of(p) for p in plan.held_out_points],
            source="edit",
            message=f"The datapoints fine-tune {tune.uid} held out of training.",
        )
        try:  # the control: what production serves, else the same version on its base model
            prompts.deployed_version(
                session, project=project, prompt=prompt, environment="production"
            )
            control = evaluations.CandidateSpec(prompt=prompt.path, environment="production")
        except (NotFound, InvalidInput):
            control = evaluations.CandidateSpec(prompt=prompt.path, version=version.version_id)
        run = evaluations.create_run(
            session,
            actor=SYSTEM,
            project=project,
            request=evaluations.RunRequest(
                dataset=held,
                candidates=[
                    control,
                    evaluations.CandidateSpec(
                        prompt=prompt.path,
                        version=version.version_id,
                        model=f"local/{tune.model_name}",
                        label=f"{prompt.path}@{version.version_id} with local/{tune.model_name}",
                    ),
                ],
                evaluators=list(tune.evaluators),
                control=0,
                name=f"fine-tune {tune.model_name}",
            ),
        )
        return run.id
