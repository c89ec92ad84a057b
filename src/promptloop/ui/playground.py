"""The playground of a project (/p/NAME/playground): edit a draft of a prompt version, fill its
variables, run it on one or several models side by side, and save it as a new version.

Runs stream into their columns (server-sent events read by playground.js); without JavaScript
the same form posts, runs every model to the end and renders the results.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.datastructures import FormData

from promptloop.api.deps import DbDep
from promptloop.core import templates as prompt_templates
from promptloop.core.errors import InvalidInput, PromptloopError, TemplateSyntaxError
from promptloop.core.kernel import Kernel, Message
from promptloop.services import catalogue, playground, prompts
from promptloop.services.calls import Caller
from promptloop.store.db import Database
from promptloop.store.models import PromptVersion
from promptloop.ui.web import Page, open_page, templates

router = APIRouter(include_in_schema=False)

ROLES = ("system", "user", "assistant")
EDITED_PARAMETERS = ("temperature", "max_tokens", "top_p", "seed")
DEFAULT_MODEL = "local/smollm2-135m"
MAX_MESSAGES = 50


@dataclass
class Draft:
    """The playground form as the user filled it (text as typed, so errors can show it again)."""

    prompt: str = ""  # the prompt the draft was opened from ("" for a blank draft)
    version: str = ""  # the version it was opened from
    model: str = DEFAULT_MODEL  # "provider/model"
    messages: list[tuple[str, str]] = field(default_factory=lambda: [("user", "")])
    template: str | None = None  # a completion template instead of messages
    parameters: dict[str, str] = field(default_factory=dict)
    kept: str = "{}"  # JSON: the kernel's parts this form does not edit (tools, other options)
    compare: list[str] = field(default_factory=list)  # more models, one column each
    inputs: dict[str, str] = field(default_factory=dict)
    save_path: str = ""
    commit_message: str = ""

    @property
    def models(self) -> list[str]:
        return [self.model, *self.compare]


@dataclass
class ColumnView:
    """One model's column of results."""

    label: str
    output: str = ""
    error: str | None = None
    log_id: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    done: bool = False

    def apply(self, event: playground.ColumnEvent) -> None:
        if event.text is not None:
            self.output += event.text
        if event.failure is not None:
            self.error, self.done = event.failure, True
        result = event.result
        if result is not None:
            self.done = True
            self.log_id = result.log_id
            self.cost = result.cost
            self.latency_ms = result.latency_ms
            self.ttft_ms = event.ttft_ms
            if result.completion is not None:
                self.output = result.completion.output or self.output
                self.prompt_tokens = result.completion.usage.prompt_tokens
                self.output_tokens = result.completion.usage.output_tokens
            if result.error is not None:
                self.error = result.failure_message


@dataclass
class Checked:
    """A draft that passed the form's checks: what to run, and on which models."""

    kernel: Kernel
    models: list[tuple[str, str]]
    inputs: dict[str, str]


# --- Pages --------------------------------------------------------------------------------------


@router.get("/p/{project}/playground", response_class=HTMLResponse)
def playground_page(
    request: Request,
    db: DbDep,
    project: str,
    prompt: str | None = None,
    version: str | None = None,
    model: str | None = None,
    saved: str | None = None,
) -> Response:
    """`?prompt=PATH&version=ID` opens that version (the latest without an id) as the draft;
    `?model=provider/model` runs the draft on that model (a fine-tuned one, say)."""
    with open_page(request, db, project=project) as page:
        draft = Draft()
        if prompt:
            found = prompts.resolve_version(
                page.session, project=page.require_project(), path=prompt, version=version or None
            )
            draft = _draft_of(prompts.kernel_of(found), prompt=prompt, version=found.version_id)
        if model:
            draft.model = model.strip()[:300]
        message = None
        if saved == "created":
            message = f"Saved as version {draft.version} of {draft.prompt}."
        elif saved == "unchanged":
            message = f"Unchanged: the draft is version {draft.version} of {draft.prompt} already."
        return _render(page, draft, message=message)


@router.post("/p/{project}/playground", response_class=HTMLResponse)
async def playground_post(request: Request, db: DbDep, project: str) -> Response:
    """The form without JavaScript: change its shape (add or remove a message or a model), or
    run every model to the end and show the results."""
    form = await request.form()
    action = str(form.get("action") or "run")
    if action != "run":
        return await asyncio.to_thread(_reshape, request, db, project, form, action)
    ready = await asyncio.to_thread(_ready_to_run, request, db, project, form)
    if isinstance(ready, Response):
        return ready
    page, draft, checked, logged_prompt = ready
    views = [ColumnView(label=label) for label in draft.models]
    caller: Caller = request.app.state.caller
    async for event in playground.run(
        caller,
        actor=page.require_actor(),
        project=page.require_project(),
        prompt=logged_prompt,
        draft=checked.kernel,
        inputs=checked.inputs,
        models=checked.models,
    ):
        views[event.column].apply(event)
    return _render(page, draft, results=views)


@router.post("/p/{project}/playground/-/stream")
async def playground_stream(request: Request, db: DbDep, project: str) -> Response:
    """Run the draft and stream every column's output as server-sent events: `columns` (the
    results area, empty), `delta` (column, text) and `end` (column, the column's figures as
    HTML). A draft with errors gets the page back with them, status 400."""
    form = await request.form()
    ready = await asyncio.to_thread(_ready_to_run, request, db, project, form)
    if isinstance(ready, Response):
        return ready
    page, draft, checked, logged_prompt = ready
    caller: Caller = request.app.state.caller
    events = playground.run(
        caller,
        actor=page.require_actor(),
        project=page.require_project(),
        prompt=logged_prompt,
        draft=checked.kernel,
        inputs=checked.inputs,
        models=checked.models,
    )
    return StreamingResponse(
        _sse(page, draft, events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/p/{project}/playground/-/inputs", response_class=HTMLResponse)
async def playground_inputs(request: Request, db: DbDep, project: str) -> Response:
    """The inputs fieldset for the variables the draft's templates read now (htmx, as the
    messages change)."""
    form = await request.form()
    return await asyncio.to_thread(_inputs_fragment, request, db, project, form)


@router.post("/p/{project}/playground/-/save", response_class=HTMLResponse)
async def playground_save(request: Request, db: DbDep, project: str) -> Response:
    form = await request.form()
    return await asyncio.to_thread(_save, request, db, project, form)


# --- Route bodies (run in a thread: they use the database) --------------------------------------


def _reshape(request: Request, db: Database, project: str, form: FormData, action: str) -> Response:
    with open_page(request, db, project=project) as page:
        page.check_csrf(_text(form, "csrf_token"))
        draft = _draft_from_form(form)
        if action == "add-message" and len(draft.messages) < MAX_MESSAGES:
            last_role = draft.messages[-1][0] if draft.messages else "assistant"
            draft.messages.append(("assistant" if last_role == "user" else "user", ""))
        elif action == "add-model" and len(draft.models) < playground.MAX_COLUMNS:
            draft.compare.append("")
        elif action.startswith("remove-message-"):
            index = _index(action)
            if index is not None and index < len(draft.messages) and len(draft.messages) > 1:
                del draft.messages[index]
        elif action.startswith("remove-model-"):
            index = _index(action)
            if index is not None and index < len(draft.compare):
                del draft.compare[index]
        return _render(page, draft)


def _ready_to_run(
    request: Request, db: Database, project: str, form: FormData
) -> tuple[Page, Draft, Checked, str | None] | Response:
    """The page, the draft and what to run, or the page with the draft's errors (status 400)."""
    with open_page(request, db, project=project) as page:
        page.check_csrf(_text(form, "csrf_token"))
        playground.require_run(page.require_actor())
        draft = _draft_from_form(form)
        checked, errors = _check(draft, run=True)
        if checked is None:
            return _render(page, draft, errors=errors, status=400)
        logged_prompt = (
            draft.prompt
            if playground.prompt_exists(
                page.session, project=page.require_project(), path=draft.prompt
            )
            else None
        )
        return page, draft, checked, logged_prompt


def _inputs_fragment(request: Request, db: Database, project: str, form: FormData) -> Response:
    with open_page(request, db, project=project) as page:
        draft = _draft_from_form(form)
        names, problem = _variables(draft)
        return page.render(
            "playground/_inputs.html",
            draft=draft,
            variables=names,
            problem=problem,
            errors={},
            matches=_matches(page, draft),
            oob=True,
        )


def _save(request: Request, db: Database, project: str, form: FormData) -> Response:
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(_text(form, "csrf_token"))
        draft = _draft_from_form(form)
        checked, errors = _check(draft, run=False)
        if not draft.save_path.strip():
            errors["save_path"] = (
                "Name the prompt to save the version to (a path like support/answer)."
            )
        if checked is None or errors:
            return _save_refused(page, draft, errors)
        path = draft.save_path.strip()
        try:
            saved = prompts.save_version(
                page.session,
                actor=page.require_actor(),
                project=page.require_project(),
                path=path,
                kernel=checked.kernel,
                message=draft.commit_message.strip() or None,
            )
        except InvalidInput as exc:  # a path that breaks the naming rules
            return _save_refused(page, draft, {"save_path": exc.message})
        state = "created" if saved.created else "unchanged"
        if page.htmx:
            draft.prompt, draft.version = path, saved.version.version_id
            draft.commit_message = ""
            return page.render(
                "playground/_save.html",
                draft=draft,
                errors={},
                saved=state,
                oob=True,
                matches=saved.version,
            )
        return page.redirect(
            page.url(
                f"/playground?prompt={_q(path)}&version={saved.version.version_id}&saved={state}"
            )
        )


def _save_refused(page: Page, draft: Draft, errors: dict[str, str]) -> HTMLResponse:
    """The save form (htmx) or the whole page again, with the errors next to their fields."""
    if page.htmx:
        return page.render("playground/_save.html", 400, draft=draft, errors=errors, saved=None)
    return _render(page, draft, errors=errors, status=400)


# --- The form -----------------------------------------------------------------------------------


def _render(
    page: Page,
    draft: Draft,
    *,
    errors: dict[str, str] | None = None,
    results: list[ColumnView] | None = None,
    message: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    session, project = page.session, page.require_project()
    names, problem = _variables(draft)
    listed = prompts.list_prompts(session, project=project, prefix=None, cursor=None, limit=200)
    versions = []
    if draft.prompt:
        try:
            versions = list(
                prompts.list_versions(
                    session, project=project, path=draft.prompt, cursor=None, limit=100
                ).items
            )
        except PromptloopError:
            versions = []
    models = [f"{m.provider}/{m.name}" for m in catalogue.list_models(session, project=project)]
    return page.render(
        "playground/page.html",
        status,
        section="playground",
        wide=True,
        draft=draft,
        errors=errors or {},
        variables=names,
        problem=problem,
        results=results,
        message=message,
        matches=_matches(page, draft),
        prompts=listed.items,
        versions=versions,
        catalogue=models,
        roles=ROLES,
        can_run=page.can("write_logs"),
        can_save=page.can("edit"),
        saved=None,
    )


def _matches(page: Page, draft: Draft) -> PromptVersion | None:
    """The saved version of the draft's prompt that the draft matches (None if it has errors)."""
    checked, _ = _check(draft, run=False)
    if checked is None:
        return None
    return playground.matching_version(
        page.session, project=page.require_project(), path=draft.prompt, draft=checked.kernel
    )


def _draft_of(kernel: Kernel, *, prompt: str, version: str) -> Draft:
    parameters = kernel.parameters.model_dump(exclude_none=True)
    shown = {name: str(parameters.pop(name)) for name in EDITED_PARAMETERS if name in parameters}
    if not parameters.get("extras"):
        parameters.pop("extras", None)
    kept: dict[str, Any] = {}
    if parameters:
        kept["parameters"] = parameters
    if kernel.tools:
        kept["tools"] = [t.model_dump(exclude_none=True) for t in kernel.tools]
    if kernel.retrieval is not None:
        kept["retrieval"] = kernel.retrieval
    return Draft(
        prompt=prompt,
        version=version,
        model=f"{kernel.provider}/{kernel.model}",
        messages=[(m.role, m.content) for m in kernel.messages] if kernel.messages else [],
        template=kernel.template,
        parameters=shown,
        kept=json.dumps(kept, sort_keys=True),
        save_path=prompt,
    )


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _texts(form: FormData, name: str) -> list[str]:
    return [v for v in form.getlist(name) if isinstance(v, str)]


def _draft_from_form(form: FormData) -> Draft:
    roles, contents = _texts(form, "role"), _texts(form, "content")
    template = _text(form, "template") if "template" in form else None
    return Draft(
        prompt=_text(form, "prompt").strip(),
        version=_text(form, "version").strip(),
        model=_text(form, "model").strip(),
        messages=list(zip(roles, contents, strict=False))[:MAX_MESSAGES]
        if template is None
        else [],
        template=template,
        parameters={
            name: _text(form, name).strip()
            for name in EDITED_PARAMETERS
            if _text(form, name).strip()
        },
        kept=_text(form, "kept") or "{}",
        compare=[m.strip() for m in _texts(form, "compare")][: playground.MAX_COLUMNS - 1],
        inputs={
            key.removeprefix("input."): value
            for key, value in form.items()
            if key.startswith("input.") and isinstance(value, str)
        },
        save_path=_text(form, "save_path").strip(),
        commit_message=_text(form, "commit_message").strip(),
    )


def _split_model(text: str) -> tuple[str, str] | None:
    provider, _, model = text.strip().partition("/")
    if not provider or not model:
        return None
    return provider, model


def _check(draft: Draft, *, run: bool) -> tuple[Checked | None, dict[str, str]]:
    """The kernel the draft makes, or the errors to show next to its fields. With `run`, also
    the models to compare and the inputs (every variable filled)."""
    errors: dict[str, str] = {}
    parsed = _split_model(draft.model)
    if parsed is None:
        errors["model"] = "Give the model as provider/model, for example local/smollm2-135m."
    parameters: dict[str, Any] = {}
    for name in EDITED_PARAMETERS:
        raw = draft.parameters.get(name, "")
        if raw:
            try:
                parameters[name] = int(raw) if name in ("max_tokens", "seed") else float(raw)
            except ValueError:
                kind = "a whole number" if name in ("max_tokens", "seed") else "a number"
                errors[name] = f"Enter {kind}."
    try:
        kept = json.loads(draft.kept or "{}")
        if not isinstance(kept, dict):
            raise ValueError
    except ValueError:
        kept, errors["form"] = {}, "The form was damaged: reload the page."
    kernel: Kernel | None = None
    if not errors and parsed is not None:
        body: dict[str, Any] = {
            **kept,
            "provider": parsed[0],
            "model": parsed[1],
            "parameters": {**kept.get("parameters", {}), **parameters},
        }
        if draft.template is not None:
            body["template"] = draft.template
        else:
            body["messages"] = [{"role": r, "content": c} for r, c in draft.messages]
        try:
            kernel = Kernel.model_validate(body)
            prompt_templates.check_syntax(kernel)
        except ValidationError as exc:
            kernel = None
            _validation_errors(exc, errors)
        except TemplateSyntaxError as exc:
            kernel = None
            errors[_template_field(exc)] = exc.message
    if kernel is None or not run:
        return (Checked(kernel, [], {}) if kernel is not None and not errors else None), errors
    models: list[tuple[str, str]] = [(kernel.provider, kernel.model)]
    for index, text in enumerate(draft.compare):
        other = _split_model(text)
        if other is None:
            errors[f"compare-{index}"] = "Give the model as provider/model, or remove this column."
        else:
            models.append(other)
    for name in playground.missing_inputs(kernel, draft.inputs):
        errors[f"input.{name}"] = f"Fill in {name}: the template uses it."
    if errors:
        return None, errors
    names = prompt_templates.variables(kernel)
    return Checked(kernel, models, {name: draft.inputs[name] for name in names}), errors


def _validation_errors(exc: ValidationError, errors: dict[str, str]) -> None:
    for error in exc.errors():
        loc = error["loc"]
        message = str(error["msg"]).removeprefix("Value error, ")
        if loc[:1] == ("parameters",) and len(loc) > 1 and loc[1] in EDITED_PARAMETERS:
            errors.setdefault(str(loc[1]), message)
        elif loc[:1] == ("messages",) and len(loc) > 2:
            errors.setdefault(f"content-{loc[1]}", message)
        elif loc[:1] in (("provider",), ("model",)):
            errors.setdefault("model", f"{loc[0]}: {message}")
        else:
            errors.setdefault("form", message)


def _template_field(exc: TemplateSyntaxError) -> str:
    label = str(exc.details.get("template", "")) if exc.details else ""
    found = re.match(r"messages\[(\d+)\]", label)
    return f"content-{found.group(1)}" if found else "template" if label == "template" else "form"


def _variables(draft: Draft) -> tuple[list[str], str | None]:
    """The variables the draft's templates read (in order), or why they cannot be read."""
    texts = [draft.template] if draft.template is not None else [c for _, c in draft.messages]
    found: dict[str, None] = {}
    for index, text in enumerate(texts):
        try:
            kernel = Kernel(provider="x", model="x", messages=[Message(role="user", content=text)])
            for name in prompt_templates.variables(kernel):
                found.setdefault(name)
        except TemplateSyntaxError as exc:
            where = "the template" if draft.template is not None else f"message {index + 1}"
            return list(found), f"{where}: {exc.message}"
        except ValidationError:
            continue
    return list(found), None


def _index(action: str) -> int | None:
    tail = action.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _q(text: str) -> str:
    return quote(text, safe="/")


# --- Streaming ----------------------------------------------------------------------------------


async def _sse(
    page: Page, draft: Draft, events: AsyncIterator[playground.ColumnEvent]
) -> AsyncIterator[str]:
    views = [ColumnView(label=label) for label in draft.models]
    results = templates.env.get_template("playground/_results.html")
    end = templates.env.get_template("playground/_column_end.html")
    project = page.require_project()
    yield _event(
        "columns", {"html": results.render(results=views, project=project, streaming=True)}
    )
    try:
        async for event in events:
            view = views[event.column]
            view.apply(event)
            if event.text is not None:
                yield _event("delta", {"column": event.column, "text": event.text})
            else:
                yield _event(
                    "end",
                    {
                        "column": event.column,
                        "output": view.output,
                        "html": end.render(column=view, project=project),
                    },
                )
    except PromptloopError as exc:
        yield _event("failed", {"message": exc.message})
    yield _event("finished", {})


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
