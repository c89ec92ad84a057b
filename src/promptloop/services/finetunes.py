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
from promptloop.finetune import lora, openai_api
from promptloop.finetune.lora import Example, Hyperparameters
from promptloop.providers import local
from promptloop.providers.base import Credentials
from promptloop.services import datasets, evaluations, evaluators, jobs, prompts, provider_keys
from promptloop.services.jobs import Cancelled, JobContext
from promptloop.services.pagination import Page, paginate
from promptloop.services.secrets import SecretBox
from promptloop.store.db import Database
from promptloop.store.models import (
    Datapoint,
    Dataset,
    DatasetVersion,
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
METHODS = ("lora", "openai")  # LoRA on the local provider; OpenAI's fine-tuning API


@dataclass(frozen=True)
class FineTuneRequest:
    name: str  # the job's name within the project (lora: the model is local/<project>/<name>)
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
    if request.method not in METHODS:
        raise InvalidInput(
            "method is 'lora' (on the local provider) or 'openai' (OpenAI's fine-tuning API)."
        )
    if not 0 < request.held_out_fraction < 1:
        raise InvalidInput("held_out_fraction must be between 0 and 1 (e.g. 0.2).")
    if request.method == "lora":
        if request.base_model not in BASES:
            raise InvalidInput(f"base_model must be one of {', '.join(BASES)} for method lora.")
        try:
            Hyperparameters.from_dict(request.hyperparameters)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"Hyperparameters: {exc}") from None
    else:
        provider, _, base = request.base_model.partition("/")
        if provider != "openai" or not base:
            raise InvalidInput(
                "base_model for method openai is openai/<a model OpenAI fine-tunes>, e.g. "
                "openai/gpt-4o-mini-2024-07-18."
            )
        try:
            openai_api.check_hyperparameters(request.hyperparameters)
        except ValueError as exc:
            raise InvalidInput(f"Hyperparameters: {exc}.") from None
        try:
            provider_keys.stored(session, project=project, provider="openai")
        except NotFound:
            raise InvalidInput(
                f"No 'openai' key in project {project.name!r}: a developer can add one with "
                "PUT /api/v1/provider-keys/openai."
            ) from None
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
    """Step, total steps, loss, elapsed and remaining seconds (OpenAI jobs: its ids too)."""
    job = session.get(Job, tune.job_id) if tune.job_id else None
    return dict(job.progress or {}) if job else {}


def model_of(session: Session, tune: FineTune) -> str | None:
    """What to call the model as (`provider/name`): a LoRA job's is known from the start, an
    OpenAI job's once OpenAI has named it."""
    if tune.method == "lora":
        return f"local/{tune.model_name}"
    found = session.scalars(select(Model).where(Model.fine_tune_id == tune.id)).first()
    return f"{found.provider}/{found.name}" if found else None


@dataclass(frozen=True)
class Lineage:
    """Where a fine-tune's examples came from: a dataset version rendered through a prompt
    version."""

    dataset: str
    dataset_version: str
    count: int
    prompt: str
    prompt_version: str


def lineage_of(session: Session, tune: FineTune) -> Lineage:
    data = session.get(DatasetVersion, tune.dataset_version_pk)
    dataset = session.get(Dataset, data.dataset_id) if data else None
    prompt = session.get(Prompt, tune.prompt_id)
    version = session.get(PromptVersion, tune.version_pk)
    return Lineage(
        dataset=dataset.name if dataset else "",
        dataset_version=data.version_id if data else "",
        count=data.count if data else 0,
        prompt=prompt.path if prompt else "",
        prompt_version=version.version_id if version else "",
    )


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

    openai_poll_s = 10.0  # how often an OpenAI job is asked how it is doing

    def __init__(
        self, db: Database, *, data_dir: Path, wake: Any = None, box: SecretBox | None = None
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        self.wake = wake
        self.box = box  # decrypts the project's provider key (OpenAI jobs)

    async def __call__(self, ctx: JobContext) -> None:
        tune_id = int(ctx.payload["fine_tune_id"])
        try:
            method = await asyncio.to_thread(self._method, tune_id)
            if method == "openai":
                await self._run_openai(ctx, tune_id)
            else:
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
        metrics = {
            "steps": result.steps,
            "train_loss": result.train_loss,
            "held_out_loss": result.held_out_loss,
            "seconds": round(result.seconds, 1),
            "peak_memory_mb": round(result.peak_memory_mb),
            "device": result.device,
            "train_examples": len(plan.train),
            "held_out_examples": len(plan.held_out),
        }
        await asyncio.to_thread(
            self._finish,
            plan,
            metrics,
            provider="local",
            name=plan.tune.model_name,
            base=("local", plan.base),
            adapter_dir=plan.adapter_dir,
        )
        if self.wake is not None:
            self.wake()

    async def _run_openai(self, ctx: JobContext, tune_id: int) -> None:
        """Upload the set, start an OpenAI fine-tuning job, follow it until it ends, and
        register the model it made. The OpenAI ids are kept in the job's progress, so a job
        resumed after a restart follows the same OpenAI job."""
        plan = await asyncio.to_thread(self._plan, tune_id)
        credentials = await asyncio.to_thread(self._credentials, plan.project.id, "openai")
        await ctx.checkpoint()
        await asyncio.to_thread(self._set, tune_id, status="running")
        folder = self.data_dir / "fine-tunes" / plan.tune.uid
        api = openai_api.OpenAIFineTuning(credentials)
        try:
            upstream = ctx.progress.get("openai_job")
            if upstream is None:
                upstream = await self._start_openai(ctx, api, plan, folder)
            status = await self._follow_openai(ctx, api, upstream)
        finally:
            await api.close()
        if status.state == "cancelled":
            raise Cancelled()
        if status.state != "succeeded" or not status.fine_tuned_model:
            raise RuntimeError(
                f"OpenAI fine-tuning job {upstream} {status.state}: "
                f"{status.error or 'no reason given'}"
            )
        seconds = (
            status.finished_at - status.created_at
            if status.finished_at and status.created_at
            else None
        )
        metrics = {
            "steps": status.step,
            "train_loss": status.loss,
            "held_out_loss": status.held_out_loss,
            "seconds": seconds,
            "trained_tokens": status.trained_tokens,
            "train_examples": len(plan.train),
            "held_out_examples": len(plan.held_out),
            "openai_job": upstream,
            "artifacts": str(folder),
        }
        await asyncio.to_thread(
            _write_json, folder / "result.json", {"status": status.state, **metrics}
        )
        await asyncio.to_thread(
            self._finish,
            plan,
            metrics,
            provider="openai",
            name=status.fine_tuned_model,
            base=("openai", plan.base),
            adapter_dir=None,
        )
        if self.wake is not None:
            self.wake()

    async def _start_openai(
        self,
        ctx: JobContext,
        api: openai_api.OpenAIFineTuning,
        plan: _Plan,
        folder: Path,
    ) -> str:
        tune = plan.tune
        await asyncio.to_thread(_write_sets, folder, plan.train, plan.held_out)
        training = ctx.progress.get("training_file")
        if training is None:
            training = await api.upload(plan.train, f"{tune.uid}-train.jsonl")
            await ctx.checkpoint(training_file=training)
        validation = ctx.progress.get("validation_file")
        if validation is None:
            validation = await api.upload(plan.held_out, f"{tune.uid}-held-out.jsonl")
            await ctx.checkpoint(validation_file=validation)
        upstream = await api.create(
            base=plan.base,
            training_file=training,
            validation_file=validation,
            suffix=tune.model_name.rsplit("/", 1)[-1],
            hyperparameters=tune.hyperparameters,
        )
        await ctx.checkpoint(openai_job=upstream)
        return upstream

    async def _follow_openai(
        self, ctx: JobContext, api: openai_api.OpenAIFineTuning, upstream: str
    ) -> openai_api.Status:
        """Poll the OpenAI job, reporting its progress, until it ends; a cancellation here
        cancels it there. A few transient failures to reach OpenAI in a row are waited out."""
        failures = 0
        while True:
            try:
                status = await api.status(upstream)
                failures = 0
            except openai_api.UpstreamError as exc:
                failures += 1
                if not exc.transient or failures > 5:
                    raise
                logger.warning("Fine-tune %s: %s (retrying)", upstream, exc)
                status = None
            try:
                if status is not None:
                    await ctx.checkpoint(**_openai_progress(status))
                    if status.finished:
                        return status
                deadline = asyncio.get_running_loop().time() + self.openai_poll_s
                while asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(min(1.0, self.openai_poll_s))
                    await ctx.checkpoint()
            except Cancelled:
                try:
                    await api.cancel(upstream)
                except openai_api.UpstreamError as exc:
                    logger.warning(
                        "Fine-tune %s could not be cancelled at OpenAI: %s", upstream, exc
                    )
                raise

    def _method(self, tune_id: int) -> str:
        with self.db.session(write=False) as session:
            tune = session.get(FineTune, tune_id)
            if tune is None:
                raise NotFound(f"Fine-tuning job {tune_id} no longer exists.")
            return tune.method

    def _credentials(self, project_id: int, provider: str) -> Credentials:
        if self.box is None:
            raise RuntimeError("This worker cannot read provider keys (no secret box).")
        with self.db.session(write=False) as session:
            project = session.get(Project, project_id)
            assert project is not None
            try:
                stored = provider_keys.stored(session, project=project, provider=provider)
            except NotFound:
                raise InvalidInput(
                    f"No {provider!r} key in project {project.name!r}: a developer can add one "
                    f"with PUT /api/v1/provider-keys/{provider}."
                ) from None
            return Credentials(
                api_key=self.box.decrypt(stored.ciphertext), base_url=stored.base_url
            )

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
                base=BASES[tune.base_model]
                if tune.method == "lora"
                else tune.base_model.partition("/")[2],
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

    def _finish(
        self,
        plan: _Plan,
        metrics: dict[str, Any],
        *,
        provider: str,
        name: str,
        base: tuple[str, str],
        adapter_dir: Path | None,
    ) -> None:
        """Register the model with its lineage, and queue its evaluation on the held-out data
        against what the prompt serves in production."""
        with self.db.session(write=True) as session:
            tune = session.get(FineTune, plan.tune.id)
            project = session.get(Project, plan.project.id)
            assert tune is not None and project is not None
            tune.metrics = metrics
            tune.adapter_dir = str(adapter_dir) if adapter_dir is not None else None
            model = session.scalars(
                select(Model).where(Model.provider == provider, Model.name == name)
            ).first()
            if model is None:
                base_row = session.scalars(
                    select(Model).where(Model.provider == base[0], Model.name == base[1])
                ).first()
                # OpenAI prices its fine-tuned models above their bases: unknown, not guessed.
                priced = base_row is not None and provider == "local"
                session.add(
                    Model(
                        provider=provider,
                        name=name,
                        input_price=base_row.input_price if priced and base_row else None,
                        output_price=base_row.output_price if priced and base_row else None,
                        context_window=base_row.context_window if base_row else None,
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
                tune.evaluation_run_id = self._evaluation(
                    session, tune, project, plan, model=f"{provider}/{name}"
                )
            tune.status = "completed"
            tune.finished_at = utcnow()

    def _evaluation(
        self, session: Session, tune: FineTune, project: Project, plan: _Plan, *, model: str
    ) -> int:
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
                        model=model,
                        label=f"{prompt.path}@{version.version_id} with {model}",
                    ),
                ],
                evaluators=list(tune.evaluators),
                control=0,
                name=f"fine-tune {tune.model_name}",
            ),
        )
        return run.id


def _openai_progress(status: openai_api.Status) -> dict[str, Any]:
    now = utcnow().timestamp()
    progress: dict[str, Any] = {"openai_status": status.state}
    if status.step is not None:
        progress |= {"step": status.step, "total_steps": status.total_steps}
    if status.loss is not None:
        progress["loss"] = status.loss
    if status.created_at is not None:
        end = status.finished_at or now
        progress["elapsed_s"] = round(max(0.0, end - status.created_at), 1)
    if status.finished:
        progress["remaining_s"] = 0.0
    elif status.estimated_finish is not None:
        progress["remaining_s"] = round(max(0.0, status.estimated_finish - now), 1)
    return progress


def _write_sets(folder: Path, train: list[Example], held_out: list[Example]) -> None:
    """Keep what was sent to the provider with the job, in the data directory."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text(lora.export_openai_jsonl(train), encoding="utf-8")
    (folder / "held-out.jsonl").write_text(lora.export_openai_jsonl(held_out), encoding="utf-8")


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")
