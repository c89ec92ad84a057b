"""The fine-tunes pages of a project (under /p/NAME): the jobs with their status and progress,
the form that starts one (LoRA on the local model, or OpenAI's fine-tuning API), and one job:
its progress while it runs (refreshed by htmx), cancelling it, and once it is done the model it
registered, its lineage, its metrics and its evaluation on the held-out data."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from promptloop.api.deps import DbDep
from promptloop.core.access import Permission
from promptloop.core.errors import Conflict, InvalidPath, MissingInputs, PromptloopError
from promptloop.services import datasets, evaluators, finetunes, jobs
from promptloop.services.finetunes import FineTuneRequest
from promptloop.store.models import FineTune
from promptloop.ui.web import Page, open_page

router = APIRouter(include_in_schema=False)

# Suggestions for the base model field, by method (any openai/<model> OpenAI tunes is taken).
BASE_MODELS = {
    "lora": ["local/smollm2-135m"],
    "openai": [
        "openai/gpt-4o-mini-2024-07-18",
        "openai/gpt-4.1-mini-2025-04-14",
        "openai/gpt-4.1-nano-2025-04-14",
        "openai/gpt-4o-2024-08-06",
    ],
}
HYPERPARAMETERS = {
    "lora": "r, alpha, dropout, learning_rate, batch_size, epochs or max_steps, max_length, seed",
    "openai": 'n_epochs, batch_size, learning_rate_multiplier (each may be "auto")',
}
_POLL_S = 2
# Shown on a job's page: absent ones show as a dash.
_PROGRESS = ("step", "total_steps", "loss", "elapsed_s", "remaining_s", "openai_job")
_METRICS = (
    "train_loss",
    "held_out_loss",
    "train_examples",
    "held_out_examples",
    "seconds",
    "device",
    "peak_memory_mb",
    "trained_tokens",
)


@dataclass
class StartForm:
    """The start form as typed, and what is wrong with it, by field."""

    name: str = ""
    dataset: str = ""
    dataset_version: str = ""
    prompt: str = ""
    version: str = ""
    method: str = "lora"
    base_model: str = "local/smollm2-135m"
    hyperparameters: str = ""
    held_out: str = "0.2"
    evaluators: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # an error that belongs to no one field

    def request(self) -> FineTuneRequest | None:
        """The request the form describes, or None with `errors` filled in."""
        for name in ("name", "dataset", "prompt"):
            if not getattr(self, name):
                self.errors[name] = f"Give the {name.replace('_', ' ')}."
        if self.method not in finetunes.METHODS:
            self.errors["method"] = "Choose lora or openai."
        try:
            held_out = float(self.held_out)
            if not (math.isfinite(held_out) and 0 < held_out < 1):
                raise ValueError
        except ValueError:
            self.errors["held_out"] = "A share between 0 and 1, e.g. 0.2."
            held_out = 0.2
        hyperparameters: Any = {}
        if self.hyperparameters.strip():
            try:
                hyperparameters = json.loads(self.hyperparameters)
            except ValueError:
                hyperparameters = None
            if not isinstance(hyperparameters, dict):
                self.errors["hyperparameters"] = (
                    'A JSON object, e.g. {"max_steps": 60} (lora) or {"n_epochs": 3} (openai).'
                )
        if self.errors:
            return None
        return FineTuneRequest(
            name=self.name,
            dataset=self.dataset,
            dataset_version=self.dataset_version or None,
            prompt=self.prompt,
            version=self.version or None,
            method=self.method,
            base_model=self.base_model,
            hyperparameters=hyperparameters,
            held_out_fraction=held_out,
            evaluators=list(self.evaluators),
        )

    def refused(self, error: PromptloopError) -> None:
        """Put the service's refusal next to the field it is about."""
        self.errors[_field_of(error)] = error.message


def _field_of(error: PromptloopError) -> str:
    message = error.message
    checks = [
        (isinstance(error, Conflict) or message.startswith("Name "), "name"),
        (message.startswith("Hyperparameters"), "hyperparameters"),
        ("base_model" in message, "base_model"),
        ("'openai' key" in message or message.startswith("method"), "method"),
        ("held_out_fraction" in message, "held_out"),
        ("evaluator" in message.lower(), "evaluators"),
        (message.startswith("Dataset") and "no version" in message, "dataset_version"),
        (
            "dataset" in message.lower()
            or "datapoint" in message.lower()
            or isinstance(error, MissingInputs),
            "dataset",
        ),
        (message.startswith("Prompt") and "no version" in message, "version"),
        ("prompt" in message.lower() or "version" in message.lower(), "prompt"),
        (isinstance(error, InvalidPath), "prompt"),
    ]
    return next((name for matched, name in checks if matched), "problem")


@dataclass(frozen=True)
class Row:
    tune: FineTune
    model: str | None
    progress: dict[str, Any]


def duration(seconds: float | int | None) -> str:
    """Seconds as people read them: 42 s, 3 min 5 s, 1 h 20 min."""
    if seconds is None:
        return "\N{EN DASH}"
    total = round(float(seconds))
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60} s"
    return f"{total // 3600} h {total % 3600 // 60} min"


# --- the list ------------------------------------------------------------------------------------


@router.get("/p/{project}/fine-tunes", response_class=HTMLResponse)
def fine_tune_list(
    request: Request, db: DbDep, project: str, cursor: str | None = None
) -> Response:
    with open_page(request, db, project=project) as page:
        found = finetunes.list_fine_tunes(
            page.session,
            actor=page.require_actor(),
            project=page.require_project(),
            cursor=cursor,
            limit=50,
        )
        rows = [
            Row(
                t,
                finetunes.model_of(page.session, t),
                {**dict.fromkeys(_PROGRESS), **finetunes.progress_of(page.session, t)},
            )
            for t in found.items
        ]
        return page.render(
            "finetunes/list.html",
            section="fine-tunes",
            rows=rows,
            next_cursor=found.next_cursor,
            active=any(r.tune.status not in jobs.FINISHED for r in rows),
            cursor=cursor,
            duration=duration,
            poll_s=_POLL_S,
        )


# --- starting one --------------------------------------------------------------------------------


@router.get("/p/{project}/fine-tunes/-/new", response_class=HTMLResponse)
def new_fine_tune(
    request: Request,
    db: DbDep,
    project: str,
    dataset: str = "",
    prompt: str = "",
    method: str = "lora",
) -> Response:
    with open_page(request, db, project=project) as page:
        page.require_actor().require(Permission.fine_tune)
        form = StartForm(dataset=dataset, prompt=prompt)
        if method == "openai":
            form.method, form.base_model = "openai", BASE_MODELS["openai"][0]
        return _form(page, form)


@router.post("/p/{project}/fine-tunes/-/new", response_class=HTMLResponse)
def start_fine_tune(
    request: Request,
    db: DbDep,
    project: str,
    csrf_token: Annotated[str | None, Form()] = None,
    name: Annotated[str, Form(max_length=64)] = "",
    dataset: Annotated[str, Form(max_length=255)] = "",
    dataset_version: Annotated[str, Form(max_length=12)] = "",
    prompt: Annotated[str, Form(max_length=255)] = "",
    version: Annotated[str, Form(max_length=12)] = "",
    method: Annotated[str, Form(max_length=16)] = "lora",
    base_model: Annotated[str, Form(max_length=200)] = "",
    hyperparameters: Annotated[str, Form(max_length=10_000)] = "",
    held_out: Annotated[str, Form(max_length=32)] = "0.2",
    evaluator: Annotated[list[str] | None, Form()] = None,
) -> Response:
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(csrf_token)
        actor = page.require_actor()
        actor.require(Permission.fine_tune)
        form = StartForm(
            name=name.strip(),
            dataset=dataset.strip(),
            dataset_version=dataset_version.strip(),
            prompt=prompt.strip(),
            version=version.strip(),
            method=method,
            base_model=base_model.strip() or BASE_MODELS.get(method, [""])[0],
            hyperparameters=hyperparameters,
            held_out=held_out.strip(),
            evaluators=[e for e in evaluator or [] if e],
        )
        start = form.request()
        if start is None:
            return _form(page, form, status=400)
        try:
            tune = finetunes.start(
                page.session, actor=actor, project=page.require_project(), request=start
            )
        except PromptloopError as exc:
            if exc.code == "forbidden":
                raise
            form.refused(exc)
            return _form(page, form, status=400)
        response = page.redirect(page.url(f"/fine-tunes/{tune.uid}"))
    request.app.state.wake_worker()  # committed: the worker can claim it now
    return response


def _form(page: Page, form: StartForm, status: int = 200) -> Response:
    actor, project = page.require_actor(), page.require_project()
    found = datasets.list_datasets(
        page.session, actor=actor, project=project, prefix=None, cursor=None, limit=200
    )
    return page.render(
        "finetunes/new.html",
        status,
        section="fine-tunes",
        form=form,
        datasets=[d.name for d in found.items],
        evaluators=[
            e.name
            for e, _ in evaluators.list_evaluators(page.session, actor=actor, project=project)
        ],
        base_models=BASE_MODELS,
        hyperparameters=HYPERPARAMETERS,
    )


# --- one job -------------------------------------------------------------------------------------


@router.get("/p/{project}/fine-tunes/{tune_id}", response_class=HTMLResponse)
def fine_tune_detail(request: Request, db: DbDep, project: str, tune_id: str) -> Response:
    with open_page(request, db, project=project) as page:
        return page.render("finetunes/detail.html", section="fine-tunes", **_job(page, tune_id))


@router.get("/p/{project}/fine-tunes/{tune_id}/-/status", response_class=HTMLResponse)
def fine_tune_status(request: Request, db: DbDep, project: str, tune_id: str) -> Response:
    """The job's status, progress and result: what the detail page polls while it runs."""
    with open_page(request, db, project=project) as page:
        return page.render("finetunes/_status.html", **_job(page, tune_id))


@router.post("/p/{project}/fine-tunes/{tune_id}/-/cancel", response_class=HTMLResponse)
def cancel_fine_tune(
    request: Request,
    db: DbDep,
    project: str,
    tune_id: str,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(csrf_token)
        finetunes.cancel(
            page.session, actor=page.require_actor(), project=page.require_project(), uid=tune_id
        )
        if page.htmx:
            return page.render("finetunes/_status.html", **_job(page, tune_id))
        return page.redirect(page.url(f"/fine-tunes/{tune_id}"))


@router.get("/p/{project}/fine-tunes/{tune_id}/-/export")
def export_training_set(
    request: Request, db: DbDep, project: str, tune_id: str, format: str = "openai"
) -> Response:
    """The job's training set: OpenAI chat JSONL (rendered through its prompt version), or the
    dataset version's plain JSONL with each datapoint's provenance."""
    with open_page(request, db, project=project) as page:
        actor, target = page.require_actor(), page.require_project()
        tune = finetunes.get(page.session, actor=actor, project=target, uid=tune_id[:32])
        lineage = finetunes.lineage_of(page.session, tune)
        if format == "jsonl":
            _version, body = datasets.export(
                page.session,
                actor=actor,
                project=target,
                name=lineage.dataset,
                ref=lineage.dataset_version,
                fmt="jsonl",
            )
            filename = f"{lineage.dataset.replace('/', '-')}-{lineage.dataset_version}.jsonl"
        else:
            body, filename = finetunes.export_openai(
                page.session,
                actor=actor,
                project=target,
                dataset=lineage.dataset,
                dataset_version=lineage.dataset_version,
                prompt=lineage.prompt,
                version=lineage.prompt_version,
            )
    return Response(
        body,
        media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _job(page: Page, tune_id: str) -> dict[str, Any]:
    session = page.session
    tune = finetunes.get(
        session, actor=page.require_actor(), project=page.require_project(), uid=tune_id[:32]
    )
    return {
        "tune": tune,
        "tune_name": tune.model_name.split("/", 1)[-1],
        "model": finetunes.model_of(session, tune),
        "progress": {**dict.fromkeys(_PROGRESS), **finetunes.progress_of(session, tune)},
        "metrics": {**dict.fromkeys(_METRICS), **(tune.metrics or {})},
        "lineage": finetunes.lineage_of(session, tune),
        "evaluation": finetunes.run_uid(session, tune),
        "finished": tune.status in jobs.FINISHED,
        "can_cancel": page.can("fine_tune") and tune.status not in jobs.FINISHED,
        "duration": duration,
        "poll_s": _POLL_S,
    }
