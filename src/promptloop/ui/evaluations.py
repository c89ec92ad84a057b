"""The evaluations pages of a project (under /p/NAME): the runs, a form to start one, and a run's
page (live progress while it runs; statistics, verdicts and the per-datapoint comparison with
the control, regressions first, once it completed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from promptloop.api.deps import DbDep
from promptloop.core.access import Permission
from promptloop.core.errors import PromptloopError
from promptloop.services import datasets, evaluations, evaluators, prompts
from promptloop.services.evaluations import MAX_CONCURRENCY, CandidateSpec, RunRequest
from promptloop.ui.web import Page, open_page

router = APIRouter(include_in_schema=False)
BASE = "/p/{project}/evaluations"
FINISHED = ("completed", "failed", "cancelled")
COMPARISON_ROWS = 25  # datapoints shown at first; "show more" asks for more
MAX_COMPARISON_ROWS = 1000
CHOICES = 200  # prompts, datasets offered in the form
VERSIONS = 30  # a prompt's or dataset's newest versions offered in the form


# The list of runs ------------------------------------------------------------------------------


@router.get(BASE, response_class=HTMLResponse)
def runs_page(request: Request, db: DbDep, project: str, cursor: str | None = None) -> Response:
    with open_page(request, db, project=project) as page:
        found = evaluations.list_runs(
            page.session,
            actor=page.require_actor(),
            project=page.require_project(),
            cursor=cursor,
            limit=50,
        )
        rows = [
            {"view": shown, "verdicts": _verdict_counts(shown.run.summary)}
            for shown in evaluations.overviews(page.session, found.items)
        ]
        return page.render(
            "evaluations/list.html",
            section="evaluations",
            runs=rows,
            next_cursor=found.next_cursor,
            can_start=page.can(Permission.edit),
        )


def _verdict_counts(summary: dict[str, Any] | None) -> dict[str, int]:
    """How many candidate-evaluator pairs improved, regressed or showed no detectable change."""
    counts: dict[str, int] = {}
    for result in (summary or {}).get("results", []):
        comparison = result.get("comparison")
        if comparison:
            counts[comparison["verdict"]] = counts.get(comparison["verdict"], 0) + 1
    return counts


# Starting a run --------------------------------------------------------------------------------


@dataclass
class RunForm:
    """What the new-run form holds, as typed (kept when the form comes back with errors)."""

    name: str = ""
    prompt: str = ""
    candidates: list[str] = field(default_factory=list)  # version ids of the prompt
    swap_version: str = ""
    swap_model: str = ""
    control: str = ""  # a version id; empty: what production serves
    dataset: str = ""
    dataset_version: str = ""  # empty: the latest
    evaluators: list[str] = field(default_factory=list)
    thresholds: dict[str, str] = field(default_factory=dict)
    concurrency: str = "8"


@router.get(BASE + "/-/new", response_class=HTMLResponse)
def new_run_page(
    request: Request, db: DbDep, project: str, prompt: str = "", dataset: str = ""
) -> Response:
    with open_page(request, db, project=project) as page:
        page.require_actor().require(Permission.edit)
        form = RunForm(prompt=prompt.strip(), dataset=dataset.strip())
        options, errors = _options(page, form)
        if form.prompt and "prompt" not in errors:
            _default_candidate(form, options)
        return _render_form(page, form, options, errors, status=200)


@router.post(BASE + "/-/new", response_class=HTMLResponse)
def new_run_submit(
    request: Request,
    db: DbDep,
    project: str,
    csrf_token: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "start",
    name: Annotated[str, Form(max_length=200)] = "",
    prompt: Annotated[str, Form(max_length=255)] = "",
    candidate: Annotated[list[str] | None, Form()] = None,
    swap_version: Annotated[str, Form(max_length=64)] = "",
    swap_model: Annotated[str, Form(max_length=300)] = "",
    control: Annotated[str, Form(max_length=64)] = "",
    dataset: Annotated[str, Form(max_length=255)] = "",
    dataset_version: Annotated[str, Form(max_length=64)] = "",
    evaluator: Annotated[list[str] | None, Form()] = None,
    threshold_name: Annotated[list[str] | None, Form()] = None,
    threshold_value: Annotated[list[str] | None, Form()] = None,
    concurrency: Annotated[str, Form(max_length=8)] = "8",
) -> Response:
    form = RunForm(
        name=name.strip(),
        prompt=prompt.strip(),
        candidates=[c.strip() for c in candidate or [] if c.strip()],
        swap_version=swap_version.strip(),
        swap_model=swap_model.strip(),
        control=control.strip(),
        dataset=dataset.strip(),
        dataset_version=dataset_version.strip(),
        evaluators=[e.strip() for e in evaluator or [] if e.strip()],
        thresholds={
            n: v.strip()
            for n, v in zip(threshold_name or [], threshold_value or [], strict=False)
            if v.strip()
        },
        concurrency=concurrency.strip() or "8",
    )
    created: str | None = None
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(csrf_token)
        page.require_actor().require(Permission.edit)
        options, errors = _options(page, form)
        if action == "refresh":  # the prompt or dataset changed: offer its versions
            known = {v.version_id for v, _ in options["versions"]}
            form.candidates = [c for c in form.candidates if c in known]
            if not form.candidates:
                _default_candidate(form, options)
            response = _render_form(page, form, options, errors, status=200)
            query = urlencode(
                {k: v for k, v in (("prompt", form.prompt), ("dataset", form.dataset)) if v}
            )
            response.headers["HX-Push-Url"] = page.url("/evaluations/-/new") + (
                f"?{query}" if query else ""
            )
            return response
        run_request = _validated(page, form, errors)
        if run_request is None:
            return _render_form(page, form, options, errors, status=400)
        try:
            run = evaluations.create_run(
                page.session,
                actor=page.require_actor(),
                project=page.require_project(),
                request=run_request,
            )
        except PromptloopError as exc:
            errors["form"] = exc.message
            return _render_form(page, form, options, errors, status=400)
        created = page.url(f"/evaluations/{run.uid}")
    request.app.state.wake_worker()
    return page.redirect(created)


def _options(page: Page, form: RunForm) -> tuple[dict[str, Any], dict[str, str]]:
    """What the form offers (prompts, the chosen prompt's versions, datasets and versions,
    evaluators); a prompt or dataset that does not exist becomes an error next to its field."""
    session, project, actor = page.session, page.require_project(), page.require_actor()
    errors: dict[str, str] = {}
    options: dict[str, Any] = {
        "prompts": [
            p.path
            for p in prompts.list_prompts(
                session, project=project, prefix=None, cursor=None, limit=CHOICES
            ).items
        ],
        "versions": [],
        "production": None,
        "datasets": [
            d.name
            for d in datasets.list_datasets(
                session, actor=actor, project=project, prefix=None, cursor=None, limit=CHOICES
            ).items
        ],
        "dataset_versions": [],
        "evaluators": [
            (e.name, v, e.description)
            for e, v in evaluators.list_evaluators(session, actor=actor, project=project)
        ],
    }
    if form.prompt:
        try:
            found = prompts.get_prompt(session, project=project, path=form.prompt)
            versions = prompts.list_versions(
                session, project=project, path=form.prompt, cursor=None, limit=VERSIONS
            ).items
            serving = prompts.environments_serving(session, prompt_id=found.id)
            options["versions"] = [(v, serving.get(v.id, [])) for v in versions]
            production = next((v for v, envs in options["versions"] if "production" in envs), None)
            options["production"] = production.version_id if production else None
        except PromptloopError as exc:
            errors["prompt"] = exc.message
    if form.dataset:
        try:
            options["dataset_versions"] = datasets.list_versions(
                session,
                actor=actor,
                project=project,
                name=form.dataset,
                cursor=None,
                limit=VERSIONS,
            ).items
        except PromptloopError as exc:
            errors["dataset"] = exc.message
    return options, errors


def _default_candidate(form: RunForm, options: dict[str, Any]) -> None:
    """A prompt just chosen: its newest version is the candidate, unless production serves it."""
    versions = options["versions"]
    if versions and versions[0][0].version_id != options["production"]:
        form.candidates = [versions[0][0].version_id]


def _validated(page: Page, form: RunForm, errors: dict[str, str]) -> RunRequest | None:
    """The run to start, or None with an error next to each field that needs fixing."""
    session, project = page.session, page.require_project()
    if not form.prompt:
        errors.setdefault("prompt", "Choose the prompt to evaluate.")
    if not form.candidates and not (form.swap_version or form.swap_model):
        errors["candidates"] = "Choose at least one version to evaluate."
    if "prompt" not in errors:
        prompt = prompts.get_prompt(session, project=project, path=form.prompt)
        for ref in form.candidates:
            try:
                prompts.get_version(session, prompt=prompt, ref=ref)
            except PromptloopError as exc:
                errors["candidates"] = exc.message
        if form.control:
            try:
                prompts.get_version(session, prompt=prompt, ref=form.control)
            except PromptloopError as exc:
                errors["control"] = exc.message
        if form.swap_version or form.swap_model:
            provider, slash, model = form.swap_model.partition("/")
            if not form.swap_version:
                errors["swap"] = "Choose the version whose model to swap."
            elif not (slash and provider and model):
                errors["swap"] = "Give the other model as provider/model, e.g. local/smollm2-135m."
            else:
                try:
                    prompts.get_version(session, prompt=prompt, ref=form.swap_version)
                except PromptloopError as exc:
                    errors["swap"] = exc.message
    if not form.dataset:
        errors.setdefault("dataset", "Choose the dataset to run on.")
    elif "dataset" not in errors:
        try:
            datasets.get_version(
                session, project=project, name=form.dataset, ref=form.dataset_version or "latest"
            )
        except PromptloopError as exc:
            errors["dataset_version"] = exc.message
    if not form.evaluators:
        errors["evaluators"] = "Choose at least one evaluator."
    for ref in form.evaluators:
        try:
            evaluators.resolve(session, project=project, ref=ref)
        except PromptloopError as exc:
            errors["evaluators"] = exc.message
    thresholds: dict[str, float] = {}
    for name, value in form.thresholds.items():
        if name not in form.evaluators:
            continue  # a threshold for an evaluator left out of the run is ignored
        try:
            thresholds[name] = float(value)
        except ValueError:
            errors[f"threshold:{name}"] = "A threshold is a number, e.g. 0.8."
    try:
        concurrency = int(form.concurrency)
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError
    except ValueError:
        errors["concurrency"] = f"A whole number from 1 to {MAX_CONCURRENCY}."
        concurrency = 8
    if errors:
        return None
    candidates = [CandidateSpec(prompt=form.prompt, version=ref) for ref in form.candidates]
    if form.swap_version:
        candidates.append(
            CandidateSpec(prompt=form.prompt, version=form.swap_version, model=form.swap_model)
        )
    control: int | None = None
    if form.control:
        control = next(
            (i for i, c in enumerate(candidates) if c.version == form.control and not c.model),
            None,
        )
        if control is None:
            candidates.insert(0, CandidateSpec(prompt=form.prompt, version=form.control))
            control = 0
    return RunRequest(
        dataset=form.dataset,
        dataset_version=form.dataset_version or None,
        candidates=candidates,
        evaluators=form.evaluators,
        control=control,
        concurrency=concurrency,
        thresholds=thresholds,
        name=form.name or None,
    )


def _render_form(
    page: Page, form: RunForm, options: dict[str, Any], errors: dict[str, str], *, status: int
) -> HTMLResponse:
    template = "evaluations/_form.html" if page.htmx else "evaluations/new.html"
    return page.render(
        template,
        status,
        section="evaluations",
        form=form,
        options=options,
        errors=errors,
        max_concurrency=MAX_CONCURRENCY,
    )


# A run -----------------------------------------------------------------------------------------


@router.get(BASE + "/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request,
    db: DbDep,
    project: str,
    run_id: str,
    candidate: str | None = None,
    evaluator: str | None = None,
    limit: int = COMPARISON_ROWS,
) -> Response:
    with open_page(request, db, project=project) as page:
        context = _run_context(page, run_id, candidate, evaluator, limit)
        return page.render("evaluations/run.html", section="evaluations", **context)


@router.get(BASE + "/{run_id}/-/live", response_class=HTMLResponse)
def run_live(
    request: Request,
    db: DbDep,
    project: str,
    run_id: str,
    candidate: str | None = None,
    evaluator: str | None = None,
    limit: int = COMPARISON_ROWS,
) -> Response:
    """The run's body: polled every second while the run is queued or running (small: status
    and progress), the statistics and the comparison once it finished (and no more polling)."""
    with open_page(request, db, project=project) as page:
        context = _run_context(page, run_id, candidate, evaluator, limit)
        return page.render("evaluations/_run_body.html", **context)


@router.get(BASE + "/{run_id}/-/comparison", response_class=HTMLResponse)
def run_comparison(
    request: Request,
    db: DbDep,
    project: str,
    run_id: str,
    candidate: str | None = None,
    evaluator: str | None = None,
    limit: int = COMPARISON_ROWS,
) -> Response:
    """The per-datapoint comparison alone (another candidate or evaluator, or more rows)."""
    with open_page(request, db, project=project) as page:
        context = _run_context(page, run_id, candidate, evaluator, limit)
        response = page.render("evaluations/_comparison.html", **context)
        query = {"candidate": context["candidate"] or "", "evaluator": context["evaluator"] or ""}
        if context["limit"] != COMPARISON_ROWS:
            query["limit"] = str(context["limit"])
        response.headers["HX-Push-Url"] = f"{context['run_url']}?{urlencode(query)}"
        return response


@router.post(BASE + "/{run_id}/-/cancel", response_class=HTMLResponse)
def cancel_run(
    request: Request,
    db: DbDep,
    project: str,
    run_id: str,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(csrf_token)
        run = evaluations.cancel_run(
            page.session, actor=page.require_actor(), project=page.require_project(), uid=run_id
        )
        if page.htmx:  # the run's body in place: cancelled, or still stopping (and polling)
            page.session.flush()
            context = _run_context(page, run.uid, None, None, COMPARISON_ROWS)
            response: Response = page.render("evaluations/_run_body.html", **context)
        else:
            response = page.redirect(page.url(f"/evaluations/{run.uid}"))
    request.app.state.wake_worker()
    return response


def _run_context(
    page: Page, run_id: str, candidate: str | None, evaluator: str | None, limit: int
) -> dict[str, Any]:
    run = evaluations.get_run(
        page.session, actor=page.require_actor(), project=page.require_project(), uid=run_id
    )
    shown = evaluations.view(page.session, run=run)
    summary = shown.summary
    control = next((c for c in shown.candidates if c.control), None)
    others = [c.label for c in shown.candidates if not c.control]
    compared = [n for n, v in shown.evaluators if v.returns in ("boolean", "number")]
    chosen_candidate = candidate if candidate in others else (others[0] if others else None)
    chosen_evaluator = evaluator if evaluator in compared else (compared[0] if compared else None)
    limit = max(1, min(limit, MAX_COMPARISON_ROWS))
    rows: list[dict[str, Any]] = []
    if summary is not None and control and chosen_candidate and chosen_evaluator:
        rows = evaluations.comparison(
            page.session,
            run=run,
            evaluator=chosen_evaluator,
            candidate=chosen_candidate,
            limit=limit + 1,
        )
    more = len(rows) > limit
    results: dict[str, list[dict[str, Any]]] = {}
    for result in (summary or {}).get("results", []):
        results.setdefault(result["evaluator"], []).append(result)
    progress = shown.progress
    total = progress.get("total") or 0
    finished = shown.status in FINISHED
    return {
        "run": run,
        "view": shown,
        "run_status": shown.status,
        "finished": finished,
        "percent": round(100 * (progress.get("done") or 0) / total) if total else 0,
        "summary": summary,
        "results": results,
        "scales": {name: _scale(rows_) for name, rows_ in results.items()},
        "totals": (summary or {}).get("candidates", []),
        "control": control,
        "others": others,
        "compared": compared,
        "candidate": chosen_candidate,
        "evaluator": chosen_evaluator,
        "rows": rows[:limit],
        "more": more,
        "limit": limit,
        "next_limit": min(limit * 4, MAX_COMPARISON_ROWS),
        "can_cancel": page.can(Permission.edit) and not finished,
        # offered once the run finished: not looked up on every poll while it runs
        "again_url": _again_url(page, shown) if finished and page.can(Permission.edit) else None,
        "run_url": page.url(f"/evaluations/{run.uid}"),
    }


def _again_url(page: Page, shown: evaluations.RunView) -> str | None:
    """The new-run form with this run's prompt and dataset chosen (server runs of one prompt)."""
    paths = evaluations.prompt_paths(page.session, [c.prompt_id for c in shown.candidates])
    if len(set(paths.values())) != 1:
        return None
    query = urlencode({"prompt": next(iter(paths.values())), "dataset": shown.dataset})
    return page.url(f"/evaluations/-/new?{query}")


def _scale(results: list[dict[str, Any]]) -> tuple[float, float]:
    """The range the interval bars of one evaluator share (0 to 1 for rates)."""
    if all(r["returns"] == "boolean" for r in results):
        return (0.0, 1.0)
    points = [
        x
        for r in results
        for x in (r["mean"]["low"], r["mean"]["high"], r["mean"]["value"])
        if x is not None
    ]
    if not points:
        return (0.0, 1.0)
    low, high = min([*points, 0.0]), max(points)
    return (low, high if high > low else low + 1.0)
