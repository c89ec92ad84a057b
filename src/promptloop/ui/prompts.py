"""The prompts pages of a project (under /p/NAME): the tree of prompts with search, the editor
(saving makes a new version), the history of versions with diffs, and deployments.

A prompt's path may hold slashes, so its sub-pages follow `/-/` (as in the API); the routes
with a fixed tail are declared before the editor's catch-all `{path:path}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from promptloop.api.deps import DbDep
from promptloop.core import templates
from promptloop.core.diff import KernelDiff
from promptloop.core.errors import InvalidInput, NotFound, TemplateSyntaxError
from promptloop.core.kernel import Kernel, Message, Parameters, Tool
from promptloop.core.paths import validate_prompt_path
from promptloop.services import catalogue, deployments, prompts
from promptloop.store.models import Model, Prompt, PromptVersion
from promptloop.ui.web import Page, open_page

router = APIRouter(include_in_schema=False)

ROLES = ("system", "user", "assistant")
HISTORY_PAGE = 100
LIST_LIMIT = 1000  # prompts on the list page; search narrows a longer list
# `{{ expression }}` in a template: what the editor's preview marks as a variable.
_EXPRESSION = re.compile(r"(\{\{.*?\}\})", re.S)


class EditorFields(BaseModel):
    """The editor form as submitted (every field as typed, so a failed save shows it again)."""

    model_config = ConfigDict(extra="ignore")

    csrf_token: str = ""
    op: str = "save"
    base: str = ""  # the version the form was opened from
    path: str = ""
    kind: str = "chat"
    role: list[str] = []
    content: list[str] = []
    template: str = ""
    model: str = ""
    temperature: str = ""
    max_tokens: str = ""
    top_p: str = ""
    stop: str = ""
    seed: str = ""
    presence_penalty: str = ""
    frequency_penalty: str = ""
    response_format: str = ""
    tools: str = ""
    retrieval: str = ""
    extras: str = ""
    name: str = ""
    message: str = ""

    def messages(self) -> list[tuple[str, str]]:
        return list(zip(self.role, self.content, strict=False))


FormDep = Annotated[EditorFields, Form()]


@dataclass
class Folder:
    """A folder of the prompt tree (the `/`-separated segments of paths)."""

    name: str
    folders: dict[str, Folder] = field(default_factory=dict)
    prompts: list[prompts.PromptSummary] = field(default_factory=list)


@dataclass
class Preview:
    """The editor's preview: variables the templates read, and each template with its
    `{{ expressions }}` marked (segments of (text, is_expression))."""

    variables: list[str]
    templates: list[tuple[str, list[tuple[str, bool]]]]
    error: str | None = None


# --- the list ----------------------------------------------------------------------------------


@router.get("/p/{project}/prompts", response_class=HTMLResponse)
def prompt_list(request: Request, db: DbDep, project: str, q: str = "") -> Response:
    """Every prompt of the project as a tree of folders, with its latest version and what each
    environment serves; `q` narrows it to paths (or descriptions) that contain it."""
    with open_page(request, db, project=project) as page:
        found = prompts.summaries(
            page.session, project=page.require_project(), query=q, limit=LIST_LIMIT
        )
        context: dict[str, Any] = {
            "section": "prompts",
            "q": q,
            "tree": _tree(found),
            "count": len(found),
            "capped": len(found) == LIST_LIMIT,
        }
        if request.headers.get("HX-Target") == "prompt-tree":
            return page.render("prompts/_tree.html", **context)
        return page.render("prompts/list.html", **context)


# --- the editor --------------------------------------------------------------------------------


@router.get("/p/{project}/prompts/-/new", response_class=HTMLResponse)
def new_prompt(request: Request, db: DbDep, project: str) -> Response:
    with open_page(request, db, project=project) as page:
        models = catalogue.list_models(page.session, project=page.require_project())
        return _editor(page, _blank("", models), prompt=None, version=None, models=models)


@router.post("/p/{project}/prompts/-/new", response_class=HTMLResponse)
def create_prompt(request: Request, db: DbDep, project: str, fields: FormDep) -> Response:
    with open_page(request, db, project=project, write=True) as page:
        return _submit(page, fields, prompt=None)


@router.post("/p/{project}/prompts/-/preview", response_class=HTMLResponse)
def preview(request: Request, db: DbDep, project: str, fields: FormDep) -> Response:
    """The variables line of the editor, recomputed as the user types (changes nothing)."""
    with open_page(request, db, project=project) as page:
        return page.render("prompts/_preview.html", preview=_preview(fields))


@router.get("/p/{project}/prompts/{path:path}/-/history", response_class=HTMLResponse)
def history(
    request: Request, db: DbDep, project: str, path: str, cursor: str | None = None
) -> Response:
    """Every version of the prompt, newest first, with who saved it, when, why, and which
    environments serve it; pick two to compare."""
    with open_page(request, db, project=project) as page:
        prompt = prompts.get_prompt(page.session, project=page.require_project(), path=path)
        versions = prompts.list_versions(
            page.session,
            project=page.require_project(),
            path=path,
            cursor=cursor,
            limit=HISTORY_PAGE,
        )
        serving = prompts.environments_serving(page.session, prompt_id=prompt.id)
        return page.render(
            "prompts/history.html",
            section="prompts",
            prompt=prompt,
            versions=versions.items,
            serving=serving,
            next_cursor=versions.next_cursor,
            first_page=cursor is None,
            urls=_urls(page, path),
        )


@router.get("/p/{project}/prompts/{path:path}/-/diff", response_class=HTMLResponse)
def diff(
    request: Request, db: DbDep, project: str, path: str, a: str = "", b: str = ""
) -> Response:
    """What changed from version `a` to version `b`: the templates line by line, then every
    other setting."""
    with open_page(request, db, project=project) as page:
        if not a or not b:
            raise InvalidInput("Pick two versions to compare (a and b) on the history page.")
        before, after, changes = prompts.diff_versions(
            page.session, project=page.require_project(), path=path, before=a, after=b
        )
        return page.render(
            "prompts/diff.html",
            section="prompts",
            path=path,
            before=before,
            after=after,
            lines=_diff_lines(changes),
            changes=changes.changes,
            urls=_urls(page, path),
        )


@router.get("/p/{project}/prompts/{path:path}/-/deploy", response_class=HTMLResponse)
def deploy_page(request: Request, db: DbDep, project: str, path: str) -> Response:
    """What each environment serves, its deployment history, and (for roles that may) deploy
    and roll back."""
    with open_page(request, db, project=project) as page:
        return _deploy_panel(page, path, notice=None)


@router.post("/p/{project}/prompts/{path:path}/-/deploy", response_class=HTMLResponse)
def deploy(
    request: Request,
    db: DbDep,
    project: str,
    path: str,
    environment: Annotated[str, Form(max_length=64)],
    version: Annotated[str, Form(max_length=64)],
    message: Annotated[str, Form(max_length=2000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(csrf_token)
        before = _serving(page, path, environment)
        done = deployments.deploy(
            page.session,
            project=page.require_project(),
            path=path,
            version=version,
            environment=environment,
            actor=page.require_actor(),
            message=message.strip() or None,
        )
        if not page.htmx:
            return page.redirect(page.url(f"/prompts/{_quoted(path)}/-/deploy"))
        after = _serving(page, path, environment)
        notice = (
            f"{environment} now serves {after} (was {before or 'nothing'})."
            if done.changed
            else f"{environment} already serves {after}: nothing changed."
        )
        return _deploy_panel(page, path, notice=notice)


@router.post("/p/{project}/prompts/{path:path}/-/rollback", response_class=HTMLResponse)
def rollback(
    request: Request,
    db: DbDep,
    project: str,
    path: str,
    environment: Annotated[str, Form(max_length=64)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(csrf_token)
        before = _serving(page, path, environment)
        deployments.rollback(
            page.session,
            project=page.require_project(),
            path=path,
            environment=environment,
            actor=page.require_actor(),
        )
        if not page.htmx:
            return page.redirect(page.url(f"/prompts/{_quoted(path)}/-/deploy"))
        after = _serving(page, path, environment)
        return _deploy_panel(
            page, path, notice=f"Rolled back {environment}: it now serves {after} (was {before})."
        )


@router.get("/p/{project}/prompts/{path:path}", response_class=HTMLResponse)
def edit_prompt(
    request: Request, db: DbDep, project: str, path: str, version: str = "", saved: str = ""
) -> Response:
    """The editor, holding the latest version (or `version`); saving makes a new version."""
    with open_page(request, db, project=project) as page:
        prompt = prompts.get_prompt(page.session, project=page.require_project(), path=path)
        shown = _version_or_latest(page, prompt, version)
        models = catalogue.list_models(page.session, project=page.require_project())
        fields = _fields_of(prompts.kernel_of(shown), path) if shown else _blank(path, models)
        notice = None
        if shown and saved == "new":
            notice = f"Saved version {shown.version_id}."
        elif shown and saved == "unchanged":
            notice = (
                f"Unchanged: this is version {shown.version_id} (saved by {shown.author}); "
                "no new version was created."
            )
        return _editor(page, fields, prompt=prompt, version=shown, models=models, notice=notice)


@router.post("/p/{project}/prompts/{path:path}", response_class=HTMLResponse)
def save_prompt(request: Request, db: DbDep, project: str, path: str, fields: FormDep) -> Response:
    with open_page(request, db, project=project, write=True) as page:
        prompt = prompts.get_prompt(page.session, project=page.require_project(), path=path)
        fields.path = path
        return _submit(page, fields, prompt=prompt)


# --- editor helpers ----------------------------------------------------------------------------


def _submit(page: Page, fields: EditorFields, *, prompt: Prompt | None) -> Response:
    """Apply a form button: change the list of messages (nothing saved), or save a version."""
    models = catalogue.list_models(page.session, project=page.require_project())
    base = _base_version(page, prompt, fields.base)
    if fields.op != "save":
        _apply(fields)
        return _editor(page, fields, prompt=prompt, version=base, models=models)
    page.check_csrf(fields.csrf_token)
    errors: dict[str, str] = {}
    path = fields.path.strip()
    if prompt is None:
        errors.update(_path_error(page, path))
    kernel = _kernel(fields, models, errors)
    if kernel is None or errors:
        return _editor(
            page, fields, prompt=prompt, version=base, models=models, errors=errors, status=400
        )
    saved = prompts.save_version(
        page.session,
        actor=page.require_actor(),
        project=page.require_project(),
        path=path,
        kernel=kernel,
        name=fields.name.strip() or None,
        message=fields.message.strip() or None,
    )
    query = urlencode(
        {"version": saved.version.version_id, "saved": "new" if saved.created else "unchanged"}
    )
    return page.redirect(page.url(f"/prompts/{_quoted(path)}?{query}"))


def _apply(fields: EditorFields) -> None:
    """Add, remove or move a message (`op` is `add`, `remove-N`, `up-N` or `down-N`)."""
    messages = fields.messages()
    op, _, number = fields.op.partition("-")
    index = int(number) if number.isdigit() else -1
    if op == "add":
        last = messages[-1][0] if messages else "assistant"
        messages.append(("assistant" if last == "user" else "user", ""))
    elif op == "remove" and 0 <= index < len(messages):
        del messages[index]
    elif op == "up" and 0 < index < len(messages):
        messages[index - 1], messages[index] = messages[index], messages[index - 1]
    elif op == "down" and 0 <= index < len(messages) - 1:
        messages[index], messages[index + 1] = messages[index + 1], messages[index]
    fields.role = [role for role, _ in messages]
    fields.content = [content for _, content in messages]


def _path_error(page: Page, path: str) -> dict[str, str]:
    try:
        validate_prompt_path(path)
        prompts.get_prompt(page.session, project=page.require_project(), path=path)
    except InvalidInput as exc:
        return {"path": exc.message}
    except NotFound:
        return {}
    return {"path": f"A prompt already exists at {path!r}: open it from the list to edit it."}


def _kernel(fields: EditorFields, models: Sequence[Model], errors: dict[str, str]) -> Kernel | None:
    """The kernel the form describes, or None with `errors` naming each field that is wrong."""
    provider, _, model = fields.model.partition("/")
    known = {(m.provider, m.name) for m in models}
    if not fields.model:
        errors["model"] = "Choose a model."
    elif (provider, model) not in known:
        errors["model"] = (
            f"{fields.model} is not in this project's model catalogue: choose one from the list."
        )
    parameters = _parameters(fields, errors)
    tools = _json_field(fields.tools, "tools", list, errors)
    retrieval = _json_field(fields.retrieval, "retrieval", dict, errors)
    messages: list[Message] | None = None
    template: str | None = None
    if fields.kind == "completion":
        template = fields.template
    else:
        messages = []
        for i, (role, content) in enumerate(fields.messages()):
            if role not in (*ROLES, "tool"):
                errors[f"role-{i}"] = "Choose system, user or assistant."
                continue
            messages.append(Message(role=role, content=content))
            _check_template(f"content-{i}", content, errors)
        if not fields.messages():
            errors["messages"] = "Add at least one message."
    if template is not None:
        _check_template("template", template, errors)
    if errors or parameters is None:
        return None
    try:
        return Kernel(
            provider=provider,
            model=model,
            messages=messages,
            template=template,
            parameters=parameters,
            tools=[Tool.model_validate(t) for t in tools or []],
            retrieval=retrieval,
        )
    except ValidationError as exc:
        for error in exc.errors():
            errors[_field_of(error["loc"])] = error["msg"]
        return None


def _parameters(fields: EditorFields, errors: dict[str, str]) -> Parameters | None:
    values: dict[str, Any] = {}
    for name, kind in (
        ("temperature", float),
        ("max_tokens", int),
        ("top_p", float),
        ("seed", int),
        ("presence_penalty", float),
        ("frequency_penalty", float),
    ):
        raw = str(getattr(fields, name)).strip()
        if not raw:
            continue
        try:
            values[name] = kind(raw)
        except ValueError:
            errors[name] = "Enter a whole number." if kind is int else "Enter a number."
    stop = [_unescape(line) for line in fields.stop.replace("\r", "").split("\n") if line]
    if stop:
        values["stop"] = stop
    response_format = _json_field(fields.response_format, "response_format", dict, errors)
    if response_format is not None:
        values["response_format"] = response_format
    extras = _json_field(fields.extras, "extras", dict, errors)
    if extras:
        values["extras"] = extras
    try:
        return Parameters(**values)
    except ValidationError as exc:
        for error in exc.errors():
            errors[str(error["loc"][0])] = error["msg"]
        return None


def _json_field(raw: str, name: str, kind: type, errors: dict[str, str]) -> Any:
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        errors[name] = f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        return None
    if not isinstance(value, kind):
        errors[name] = f"Give a JSON {'list' if kind is list else 'object'}."
        return None
    return value


def _check_template(name: str, text: str, errors: dict[str, str]) -> None:
    try:
        templates.check_syntax(Kernel(provider="x", model="x", template=text))
    except TemplateSyntaxError as exc:
        line = exc.details.get("line")
        reason = exc.message.split(f"line {line}: ", 1)[-1]
        errors[name] = f"Template syntax error on line {line}: {reason}"


def _field_of(loc: tuple[int | str, ...]) -> str:
    if loc[:1] == ("messages",) and len(loc) > 1:
        return f"content-{loc[1]}"
    if loc and loc[0] in ("provider", "model"):
        return "model"
    if loc and loc[0] in ("tools", "retrieval", "template"):
        return str(loc[0])
    if loc[:1] == ("parameters",) and len(loc) > 1:
        return str(loc[1])
    return "form"


def _fields_of(kernel: Kernel, path: str) -> EditorFields:
    p = kernel.parameters
    messages = kernel.messages or []

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    def as_json(value: Any) -> str:
        return json.dumps(value, indent=2, ensure_ascii=False) if value else ""

    return EditorFields(
        path=path,
        kind="chat" if kernel.messages is not None else "completion",
        role=[m.role for m in messages],
        content=[m.content for m in messages],
        template=kernel.template or "",
        model=f"{kernel.provider}/{kernel.model}",
        temperature=text(p.temperature),
        max_tokens=text(p.max_tokens),
        top_p=text(p.top_p),
        stop="\n".join(_escape(item) for item in p.stop or []),
        seed=text(p.seed),
        presence_penalty=text(p.presence_penalty),
        frequency_penalty=text(p.frequency_penalty),
        response_format=as_json(p.response_format),
        tools=as_json([t.model_dump(mode="json", exclude_none=True) for t in kernel.tools]),
        retrieval=as_json(kernel.retrieval),
        extras=as_json(p.extras),
    )


# Stop sequences are edited one per line, so a newline in one is written `\n` (tab `\t`,
# return `\r`, backslash `\\`); any other backslash stays as typed.
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def _escape(text: str) -> str:
    return "".join(_ESCAPES.get(char, char) for char in text)


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _UNESCAPES:
            out.append(_UNESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _preview(fields: EditorFields) -> Preview:
    texts = (
        [("template", fields.template)]
        if fields.kind == "completion"
        else [(role, content) for role, content in fields.messages()]
    )
    marked = [(label, _marked(text)) for label, text in texts]
    try:
        kernel = Kernel(
            provider="x",
            model="x",
            messages=[Message(role="user", content=text) for _, text in texts] or None,
            template=None if texts else "",
        )
        return Preview(variables=templates.variables(kernel), templates=marked)
    except TemplateSyntaxError as exc:
        return Preview(variables=[], templates=marked, error=exc.message)
    except ValidationError:
        return Preview(variables=[], templates=marked)


def _marked(text: str) -> list[tuple[str, bool]]:
    return [(part, bool(_EXPRESSION.fullmatch(part))) for part in _EXPRESSION.split(text) if part]


def _editor(
    page: Page,
    fields: EditorFields,
    *,
    prompt: Prompt | None,
    version: PromptVersion | None,
    models: Sequence[Model],
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    latest = None
    serving: list[str] = []
    if prompt is not None:
        latest = _latest(page, prompt)
        if version is not None:
            serving = prompts.environments_serving(page.session, prompt_id=prompt.id).get(
                version.id, []
            )
    by_provider: dict[str, list[str]] = {}
    for m in models:
        by_provider.setdefault(m.provider, []).append(m.name)
    path = prompt.path if prompt else ""
    context: dict[str, Any] = {
        "section": "prompts",
        "form": fields,
        "messages": fields.messages(),
        "errors": errors or {},
        "prompt": prompt,
        "version": version,
        "latest": latest,
        "serving": serving,
        "models": by_provider,
        "notice": notice,
        "preview": _preview(fields),
        "can_edit": page.can("edit"),
        "roles": ROLES,
        "action": page.url(f"/prompts/{_quoted(path)}" if prompt else "/prompts/-/new"),
        "preview_url": page.url("/prompts/-/preview"),
        "urls": _urls(page, path) if prompt else None,
    }
    name = "prompts/_editor.html" if page.htmx else "prompts/editor.html"
    return page.render(name, status, **context)


def _blank(path: str, models: Sequence[Model]) -> EditorFields:
    """The form for a prompt without versions: a system and a user message, a default model."""
    return EditorFields(
        path=path, role=["system", "user"], content=["", ""], model=_default_model(models)
    )


def _default_model(models: Sequence[Model]) -> str:
    names = [f"{m.provider}/{m.name}" for m in models]
    for preferred in ("openai/gpt-4o-mini", "local/smollm2-135m"):
        if preferred in names:
            return preferred
    return names[0] if names else ""


def _base_version(page: Page, prompt: Prompt | None, ref: str) -> PromptVersion | None:
    """The version a submitted form was opened from, to show its facts again (None if gone)."""
    if prompt is None or not ref:
        return None
    try:
        return prompts.get_version(page.session, prompt=prompt, ref=ref)
    except (InvalidInput, NotFound):
        return None


def _version_or_latest(page: Page, prompt: Prompt, ref: str) -> PromptVersion | None:
    if ref:
        return prompts.get_version(page.session, prompt=prompt, ref=ref)
    return _latest(page, prompt)


def _latest(page: Page, prompt: Prompt) -> PromptVersion | None:
    """The prompt's latest version (None: it has none yet)."""
    try:
        return prompts.latest_version(page.session, prompt=prompt)
    except NotFound:
        return None


# --- deploy helpers ----------------------------------------------------------------------------


def _serving(page: Page, path: str, environment: str) -> str | None:
    for state in deployments.environment_states(
        page.session, project=page.require_project(), path=path
    ):
        if state.environment.name == environment:
            return state.version.version_id if state.version else None
    return None


def _deploy_panel(page: Page, path: str, *, notice: str | None) -> HTMLResponse:
    project = page.require_project()
    prompt = prompts.get_prompt(page.session, project=project, path=path)
    states = deployments.environment_states(page.session, project=project, path=path)
    events = deployments.history(
        page.session, project=project, path=path, environment=None, cursor=None, limit=50
    ).items
    versions = prompts.list_versions(
        page.session, project=project, path=path, cursor=None, limit=HISTORY_PAGE
    ).items
    event_versions = prompts.versions_by_pk(
        page.session, [pk for e in events for pk in (e.version_pk, e.previous_version_pk)]
    )
    context: dict[str, Any] = {
        "section": "prompts",
        "prompt": prompt,
        "states": [
            (
                s,
                page.can("deploy_protected" if s.environment.protected else "deploy"),
            )
            for s in states
        ],
        "events": events,
        # Environments with an earlier version to go back to (the service refuses otherwise).
        "rollbackable": set(deployments.rollback_targets(page.session, project=project, path=path)),
        "event_versions": event_versions,
        "environment_names": deployments.environment_names(page.session, project=project),
        "versions": versions,
        "notice": notice,
        "urls": _urls(page, path),
    }
    name = "prompts/_deploy_panel.html" if page.htmx else "prompts/deploy.html"
    return page.render(name, **context)


# --- shared helpers ----------------------------------------------------------------------------


def _quoted(path: str) -> str:
    return quote(path, safe="/")


def _urls(page: Page, path: str) -> dict[str, str]:
    base = page.url(f"/prompts/{_quoted(path)}")
    return {
        "list": page.url("/prompts"),
        "editor": base,
        "history": f"{base}/-/history",
        "diff": f"{base}/-/diff",
        "deploy": f"{base}/-/deploy",
        "rollback": f"{base}/-/rollback",
        "playground": page.url("/playground?" + urlencode({"prompt": path})),
    }


def _tree(found: list[prompts.PromptSummary]) -> Folder:
    root = Folder(name="")
    for summary in found:
        folder = root
        for segment in summary.prompt.path.split("/")[:-1]:
            folder = folder.folders.setdefault(segment, Folder(name=segment))
        folder.prompts.append(summary)
    return root


def _diff_lines(changes: KernelDiff) -> list[tuple[str, str]]:
    """The unified diff of the templates as (class, line): add, del or ctx."""
    lines = []
    for line in changes.template.splitlines():
        if line.startswith(("+++", "---")):
            continue
        if line.startswith("+"):
            lines.append(("add", line))
        elif line.startswith("-"):
            lines.append(("del", line))
        else:
            lines.append(("ctx", line))
    return lines
