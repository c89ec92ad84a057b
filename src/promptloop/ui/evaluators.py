"""The evaluators pages of a project (under /p/NAME): the list, and the editor that creates an
evaluator or saves a new version of one (built-in with its settings, code, LLM judge, human),
where a draft can be tried on a log before anything is saved.

The editor's form is read whole (its built-in settings are named per built-in:
`cfg.<builtin>.<setting>`), turned into the service's `EvaluatorSpec`, and checked by the
service; its errors are shown next to the field they are about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from types import NoneType
from typing import Annotated, Any, get_args
from urllib.parse import urlencode

import anyio.from_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from promptloop.api.deps import DbDep
from promptloop.core.access import Permission
from promptloop.core.errors import InvalidInput, InvalidPath, NotFound
from promptloop.core.paths import validate_kind_name
from promptloop.evaluators.base import RETURN_TYPES, Builtin, Outcome
from promptloop.evaluators.registry import builtins
from promptloop.services import evaluations, evaluators, logs, prompts
from promptloop.services.evaluations import Executor
from promptloop.services.evaluators import EvaluatorSpec
from promptloop.services.logs import Logger
from promptloop.store.models import EvaluatorVersion
from promptloop.ui.web import Page, open_page

router = APIRouter(include_in_schema=False)

_MAX_FIELD = 200_000
KIND_LABELS = {
    "builtin": "Built-in",
    "code": "Code (Python)",
    "llm": "LLM judge",
    "human": "Human review",
}


async def _form(request: Request) -> dict[str, str]:
    """The submitted form's text fields (files are not part of this form)."""
    form = await request.form()
    values: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and len(value) <= _MAX_FIELD:
            values.setdefault(key, value)
    return values


FormDep = Annotated[dict[str, str], Depends(_form)]


# --- built-in settings, from each built-in's options model ---------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting of a built-in: its config key, how it is typed in, and its default."""

    name: str
    kind: str  # bool, text, integer, number or json
    required: bool
    default: Any


def settings_of(builtin: Builtin) -> list[Setting] | None:
    """The settings of a built-in with a pydantic options model; None for one without (a plugin),
    whose settings are typed as a JSON object."""
    options = getattr(builtin, "Options", None)
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        return None
    found = []
    for field_name, info in options.model_fields.items():
        annotation = info.annotation
        args = set(get_args(annotation)) - {NoneType}
        if annotation is bool:
            kind = "bool"
        elif annotation is int:
            kind = "integer"
        elif annotation is float:
            kind = "number"
        elif annotation is str or args == {str}:
            kind = "text"
        else:
            kind = "json"
        required = info.is_required()
        found.append(
            Setting(
                name=info.alias or field_name,
                kind=kind,
                required=required,
                default=None if required else info.default,
            )
        )
    return found


def _catalogue() -> list[tuple[Builtin, list[Setting] | None]]:
    return [(b, settings_of(b)) for _, b in sorted(builtins().items())]


def _config_of(form: dict[str, str], builtin: str, errors: dict[str, str]) -> dict[str, Any] | None:
    """The chosen built-in's settings as a config object; typing errors go into `errors`."""
    available = builtins()
    if builtin not in available:
        return {}
    settings = settings_of(available[builtin])
    if settings is None:
        raw = form.get(f"cfg.{builtin}.__json__", "").strip() or "{}"
        try:
            parsed = json.loads(raw)
            if not isinstance(parsed, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            errors[f"cfg.{builtin}.__json__"] = f"The settings must be a JSON object ({exc})."
            return None
        return {str(k): v for k, v in parsed.items()}
    config: dict[str, Any] = {}
    for setting in settings:
        key = f"cfg.{builtin}.{setting.name}"
        raw = form.get(key, "")
        if setting.kind == "bool":
            config[setting.name] = raw not in ("", "off", "false")
            continue
        if not raw.strip():
            continue  # its default applies; a required one is reported by the built-in
        try:
            if setting.kind == "integer":
                config[setting.name] = int(raw)
            elif setting.kind == "number":
                config[setting.name] = float(raw)
            elif setting.kind == "json":
                config[setting.name] = json.loads(raw)
            else:
                config[setting.name] = raw
        except ValueError:
            errors[key] = {
                "integer": "A whole number.",
                "number": "A number.",
                "json": "Not valid JSON.",
            }.get(setting.kind, "Not valid.")
    return config


# --- the form ------------------------------------------------------------------------------------


def _spec_of(form: dict[str, str], errors: dict[str, str]) -> EvaluatorSpec | None:
    """The draft the form describes, or None when a field cannot even be read."""
    kind = form.get("kind", "")
    if kind not in KIND_LABELS:
        errors["kind"] = "Choose what kind of evaluator this is."
        return None
    higher = {"true": True, "false": False}.get(form.get("higher_is_better", ""))
    if kind == "builtin":
        builtin = form.get("builtin", "")
        config = _config_of(form, builtin, errors)
        if config is None or errors:
            return None
        return EvaluatorSpec(
            kind=kind, builtin=builtin or None, config=config, higher_is_better=higher
        )
    returns = form.get("returns") or None
    choices = [c.strip() for c in form.get("choices", "").split(",") if c.strip()] or None
    if choices is not None and len(choices) > 100:
        errors["choices"] = "At most 100 choices."
    timeout: float | None = None
    if kind == "code" and form.get("timeout_s", "").strip():
        try:
            timeout = float(form["timeout_s"])
        except ValueError:
            errors["timeout_s"] = "A number of seconds, up to 60."
    judge = None
    if kind == "llm":
        judge = {
            k: v
            for k, v in {
                "prompt": form.get("judge_prompt", "").strip(),
                "version": form.get("judge_version", "").strip(),
                "environment": form.get("judge_environment", "").strip(),
            }.items()
            if v
        }
    if errors:
        return None
    return EvaluatorSpec(
        kind=kind,
        returns=returns,
        higher_is_better=higher,
        choices=choices,
        source=form.get("source") if kind == "code" else None,
        timeout_s=timeout,
        judge=judge,
    )


def _field_of(spec: EvaluatorSpec, error: InvalidInput | NotFound) -> str:
    """Which field a service's error is about."""
    message = error.message
    if "declares what it returns" in message:
        return "returns"
    if "lists its choices" in message:
        return "choices"
    if spec.kind == "builtin":
        if not spec.builtin or "Unknown built-in" in message:
            return "builtin"
        for setting in settings_of(builtins()[spec.builtin]) or []:
            if f"'{setting.name}'" in message or f"the {setting.name} " in message:
                return f"cfg.{spec.builtin}.{setting.name}"
        return f"cfg.{spec.builtin}"
    if spec.kind == "code":
        return "timeout_s" if "timeout_s" in message else "source"
    if spec.kind == "llm":
        about_version = ("not both", "Version id", "has no version ")
        return "judge_version" if any(t in message for t in about_version) else "judge_prompt"
    return "kind"


def _checked(page: Page, form: dict[str, str], errors: dict[str, str]) -> EvaluatorSpec | None:
    """The draft, checked by the service as a save would check it (nothing stored)."""
    spec = _spec_of(form, errors)
    if spec is None:
        return None
    if spec.kind == "code":
        page.require_actor().require(Permission.write_code)  # refused, not a field error
    try:
        evaluators.checked(page.session, project=page.require_project(), spec=spec)
    except (InvalidInput, NotFound) as exc:
        errors[_field_of(spec, exc)] = exc.message
        return None
    return spec


def _form_of(version: EvaluatorVersion) -> dict[str, str]:
    """A saved version as the editor's form values."""
    spec = version.spec
    form = {
        "kind": version.kind,
        "returns": version.returns or "",
        "higher_is_better": "true" if version.higher_is_better else "false",
        "choices": ", ".join(spec.get("choices") or []),
        "source": spec.get("source") or "",
        "timeout_s": str(spec.get("timeout_s") or ""),
        "judge_prompt": (spec.get("judge") or {}).get("prompt", ""),
        "judge_version": (spec.get("judge") or {}).get("version", ""),
        "builtin": spec.get("builtin") or "",
    }
    builtin = spec.get("builtin")
    if builtin:
        config = spec.get("config") or {}
        settings = settings_of(builtins()[builtin]) if builtin in builtins() else None
        if settings is None:
            form[f"cfg.{builtin}.__json__"] = json.dumps(config, indent=2)
        for setting in settings or []:
            value = config.get(setting.name)
            key = f"cfg.{builtin}.{setting.name}"
            if setting.kind == "bool":
                form[key] = "on" if value else ""
            elif setting.kind == "json":
                form[key] = json.dumps(value, indent=2) if value is not None else ""
            else:
                form[key] = "" if value is None else str(value)
    return form


def _defaults() -> dict[str, str]:
    """A new evaluator's form: built-in exact match, every built-in's settings at default."""
    form = {"kind": "builtin", "builtin": "exact_match", "returns": "boolean"}
    for builtin, settings in _catalogue():
        for setting in settings or []:
            if setting.kind == "bool":
                form[f"cfg.{builtin.name}.{setting.name}"] = "on" if setting.default else ""
    return form


def _editor(
    page: Page,
    *,
    name: str | None,
    form: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
    outcome: Outcome | None = None,
    tried_on: str | None = None,
    saved: str = "",
    version: EvaluatorVersion | None = None,
) -> HTMLResponse:
    project = page.require_project()
    versions = (
        evaluators.list_versions(
            page.session, actor=page.require_actor(), project=project, name=name
        )
        if name
        else []
    )
    prompt_paths = [
        p.path
        for p in prompts.list_prompts(
            page.session, project=project, prefix=None, cursor=None, limit=200
        ).items
    ]
    kinds = [k for k in KIND_LABELS if k != "code" or page.can(Permission.write_code)]
    return page.render(
        "evaluators/editor.html",
        status,
        section="evaluators",
        evaluator_name=name,
        form=form,
        errors=errors,
        kinds=kinds,
        kind_labels=KIND_LABELS,
        catalogue=_catalogue(),
        return_types=RETURN_TYPES,
        versions=versions,
        shown=version,
        prompt_paths=prompt_paths,
        outcome=outcome,
        tried_on=tried_on,
        saved=saved,
        can_edit=page.can("edit"),
    )


# --- pages ---------------------------------------------------------------------------------------


@router.get("/p/{project}/evaluators", response_class=HTMLResponse)
def evaluator_list(request: Request, db: DbDep, project: str) -> Response:
    with open_page(request, db, project=project) as page:
        found = evaluators.list_evaluators(
            page.session, actor=page.require_actor(), project=page.require_project()
        )
        return page.render("evaluators/list.html", section="evaluators", rows=found)


@router.get("/p/{project}/evaluators/-/new", response_class=HTMLResponse)
def new_evaluator_page(request: Request, db: DbDep, project: str) -> Response:
    with open_page(request, db, project=project) as page:
        page.require_actor().require(Permission.edit)
        return _editor(page, name=None, form=_defaults(), errors={})


@router.post("/p/{project}/evaluators/-/new", response_class=HTMLResponse)
def create_evaluator(request: Request, db: DbDep, project: str, form: FormDep) -> Response:
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(form.get("csrf_token"))
        return _save(page, name=form.get("name", "").strip(), form=form, new=True)


@router.post("/p/{project}/evaluators/-/try", response_class=HTMLResponse)
def try_evaluator(request: Request, db: DbDep, project: str, form: FormDep) -> Response:
    """Run the draft in the form on one log and show its judgment; nothing is saved."""
    executor: Executor = request.app.state.executor
    logger: Logger = request.app.state.logger
    name = form.get("evaluator") or None
    with open_page(request, db, project=project) as page:
        page.check_csrf(form.get("csrf_token"))
        actor, target_project = page.require_actor(), page.require_project()
        actor.require(Permission.edit)
        errors: dict[str, str] = {}
        spec = _checked(page, form, errors)
        log_uid = _log_to_try(page, logger, form, errors)
        target = _target(form, errors)
        if spec is None or log_uid is None or errors:
            return _editor(page, name=name, form=form, errors=errors, status=400)
        try:
            subject = evaluations.prepare_try(
                page.session,
                logger.store,
                actor=actor,
                project=target_project,
                log_uid=log_uid,
                evaluator=None,
                draft=spec,
            )
        except (InvalidInput, NotFound) as exc:
            errors["try_log"] = exc.message
            return _editor(page, name=name, form=form, errors=errors, status=400)
        outcome: Outcome = anyio.from_thread.run(
            partial(
                executor.try_on, actor=actor, project=target_project, subject=subject, target=target
            )
        )
        return _editor(page, name=name, form=form, errors={}, outcome=outcome, tried_on=log_uid)


def _log_to_try(
    page: Page, logger: Logger, form: dict[str, str], errors: dict[str, str]
) -> str | None:
    """The log id given, or the latest log of the prompt given."""
    given = form.get("try_log", "").strip()
    if given:
        return given
    path = form.get("try_prompt", "").strip()
    if not path:
        errors["try_log"] = "Give a log id, or a prompt whose latest log to use."
        return None
    try:
        latest = logs.list_logs(
            page.session,
            logger.store,
            actor=page.require_actor(),
            project=page.require_project(),
            prompt=path,
            cursor=None,
            limit=1,
        ).items
    except (InvalidInput, NotFound) as exc:
        errors["try_prompt"] = exc.message
        return None
    if not latest:
        errors["try_prompt"] = f"Prompt {path!r} has no logs yet."
        return None
    return latest[0].uid


def _target(form: dict[str, str], errors: dict[str, str]) -> Any:
    raw = form.get("try_target", "")
    if not raw:
        return None
    if form.get("try_target_json"):
        try:
            return json.loads(raw)
        except ValueError as exc:
            errors["try_target"] = f"Marked as JSON but not valid JSON ({exc})."
            return None
    return raw


@router.get("/p/{project}/evaluators/{name}", response_class=HTMLResponse)
def evaluator_page(
    request: Request, db: DbDep, project: str, name: str, version: str = "", saved: str = ""
) -> Response:
    with open_page(request, db, project=project) as page:
        target_project = page.require_project()
        evaluators.get_evaluator(page.session, project=target_project, name=name)
        found = evaluators.resolve(
            page.session, project=target_project, ref=f"{name}@{version}" if version else name
        )
        return _editor(page, name=name, form=_form_of(found), errors={}, saved=saved, version=found)


@router.post("/p/{project}/evaluators/{name}", response_class=HTMLResponse)
def save_evaluator(request: Request, db: DbDep, project: str, name: str, form: FormDep) -> Response:
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(form.get("csrf_token"))
        evaluators.get_evaluator(page.session, project=page.require_project(), name=name)
        return _save(page, name=name, form=form, new=False)


def _save(page: Page, *, name: str, form: dict[str, str], new: bool) -> Response:
    actor = page.require_actor()
    actor.require(Permission.edit)
    errors: dict[str, str] = {}
    if new:
        try:
            validate_kind_name(name)
        except InvalidPath as exc:
            errors["name"] = exc.message
    spec = _checked(page, form, errors)
    if spec is None or errors:
        return _editor(page, name=None if new else name, form=form, errors=errors, status=400)
    saved = evaluators.save_version(
        page.session,
        actor=actor,
        project=page.require_project(),
        name=name,
        spec=spec,
        message=form.get("message") or None,
        description=form.get("description") or None,
    )
    query = urlencode(
        {"version": saved.version.version_id, "saved": "new" if saved.created else "same"}
    )
    return page.redirect(page.url(f"/evaluators/{name}") + "?" + query)
