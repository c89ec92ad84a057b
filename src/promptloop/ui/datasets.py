"""The datasets pages of a project (under /p/NAME): the list, creating a dataset (an uploaded
file, pasted JSON, or the logs matching a filter of the logs page), and one dataset's versions
and datapoints, where editing a datapoint saves a new version (versions never change).

A dataset's name may hold slashes, so its sub-pages follow `/-/`, as in the API.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from promptloop.api.deps import DbDep
from promptloop.core.access import Permission
from promptloop.core.datapoints import DatapointSpec, check_value
from promptloop.core.errors import InvalidInput, InvalidPath, NotFound
from promptloop.services import datasets
from promptloop.services.logs import Logger
from promptloop.store.models import Datapoint
from promptloop.ui.logfilters import FILTERS, FormValues, LogFilterForm, field_of
from promptloop.ui.web import Page, open_page

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 25
SAMPLE_SIZE = 5
_MAX_TEXT = 10_000
_MAX_PASTE = 5_000_000


def _logger(request: Request) -> Logger:
    logger: Logger = request.app.state.logger
    return logger


# --- the list ------------------------------------------------------------------------------------


@router.get("/p/{project}/datasets", response_class=HTMLResponse)
def dataset_list(
    request: Request, db: DbDep, project: str, cursor: str | None = None, prefix: str = ""
) -> Response:
    with open_page(request, db, project=project) as page:
        found = datasets.list_datasets(
            page.session,
            actor=page.require_actor(),
            project=page.require_project(),
            prefix=prefix or None,
            cursor=cursor,
            limit=50,
        )
        latest = datasets.latest_versions(page.session, found.items)
        rows = [(d, latest.get(d.id)) for d in found.items]
        return page.render(
            "datasets/list.html",
            section="datasets",
            rows=rows,
            prefix=prefix,
            next_cursor=found.next_cursor,
        )


# --- creating ------------------------------------------------------------------------------------


def _preview(
    page: Page,
    request: Request,
    filters: datasets.LogFilters,
    form: dict[str, str],
    errors: dict[str, str],
) -> datasets.Preview | None:
    """What saving would give (through the service, which `from_logs` then matches exactly)."""
    target = form.get("target") or "output"
    limit = _limit(form.get("limit") or "1000", errors)
    if limit is None:
        return None
    try:
        return datasets.preview_from_logs(
            page.session,
            _logger(request).store,
            actor=page.require_actor(),
            project=page.require_project(),
            filters=filters,
            target=target,
            limit=limit,
            sample=SAMPLE_SIZE,
        )
    except (InvalidInput, NotFound) as exc:
        errors.setdefault(_where(exc.message), exc.message)
        return None


def _limit(text: str, errors: dict[str, str]) -> int | None:
    """The from-logs form's limit, or None with an error next to the field."""
    try:
        limit = int(text)
        if 1 <= limit <= datasets.MAX_FROM_LOGS:
            return limit
    except ValueError:
        pass
    errors.setdefault("limit", f"A whole number from 1 to {datasets.MAX_FROM_LOGS:,}.")
    return None


def _where(message: str) -> str:
    """The field of the from-logs form a service's refusal is about: a log filter (as the logs
    page shows it), the target, the limit, or the filters as a whole."""
    if message.startswith("limit"):
        return "limit"
    if message.startswith("Unknown target"):
        return "target"
    name = field_of(message)
    return f"filter_{name}" if name else "filters"


def _new_form(
    page: Page,
    request: Request,
    *,
    mode: str,
    form: dict[str, str],
    errors: dict[str, str],
    problems: list[dict[str, Any]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    params = request.query_params if request.method == "GET" else FormValues(form)
    log_filter = LogFilterForm.of(params, trace=False)
    preview: datasets.Preview | None = None
    if mode == "logs":
        errors = {**{f"filter_{k}": v for k, v in log_filter.errors.items()}, **errors}
        if not log_filter.errors:
            preview = _preview(page, request, log_filter.dataset_filters(), form, errors)
    return page.render(
        "datasets/new.html",
        status,
        section="datasets",
        mode=mode,
        form=form,
        errors=errors,
        problems=problems or [],
        log_filter=log_filter,
        preview=preview,
        targets=datasets.TARGETS,
        log_filter_names=FILTERS,
    )


@router.get("/p/{project}/datasets/-/new", response_class=HTMLResponse)
def new_dataset_page(
    request: Request,
    db: DbDep,
    project: str,
    mode: str = "upload",
    name: str = "",
    target: str = "output",
    limit: str = "1000",
) -> Response:
    chosen = "logs" if request.query_params.get("from") == "logs" else mode
    if chosen not in ("upload", "paste", "logs"):
        chosen = "upload"
    with open_page(request, db, project=project) as page:
        page.require_actor().require(Permission.edit)
        form = {"name": name, "target": target, "limit": limit}
        return _new_form(page, request, mode=chosen, form=form, errors={})


@router.post("/p/{project}/datasets/-/new", response_class=HTMLResponse)
def create_dataset(
    request: Request,
    db: DbDep,
    project: str,
    mode: Annotated[str, Form(max_length=10)] = "upload",
    name: Annotated[str, Form(max_length=255)] = "",
    message: Annotated[str, Form(max_length=_MAX_TEXT)] = "",
    description: Annotated[str, Form(max_length=_MAX_TEXT)] = "",
    file: Annotated[UploadFile | None, File()] = None,
    format: Annotated[str, Form(max_length=10)] = "",
    content: Annotated[str, Form(max_length=_MAX_PASTE)] = "",
    target: Annotated[str, Form(max_length=20)] = "output",
    limit: Annotated[str, Form(max_length=10)] = "1000",
    prompt: Annotated[str, Form(max_length=255)] = "",
    version: Annotated[str, Form(max_length=64)] = "",
    environment: Annotated[str, Form(max_length=64)] = "",
    source: Annotated[str, Form(max_length=16)] = "",
    feedback: Annotated[str, Form(max_length=1000)] = "",
    error: Annotated[str, Form(max_length=10)] = "",
    end_user: Annotated[str, Form(max_length=200)] = "",
    since: Annotated[str, Form(max_length=40)] = "",
    until: Annotated[str, Form(max_length=40)] = "",
    judgment: Annotated[str, Form(max_length=1000)] = "",
    trace_id: Annotated[str, Form(max_length=64)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    data = file.file.read() if file is not None and file.filename else None
    filename = file.filename if file is not None else None
    form = {
        "name": name.strip(),
        "message": message,
        "description": description,
        "format": format,
        "content": content,
        "target": target,
        "limit": limit,
        "prompt": prompt,
        "version": version,
        "environment": environment,
        "source": source,
        "feedback": feedback,
        "error": error,
        "end_user": end_user,
        "since": since,
        "until": until,
        "judgment": judgment,
        "trace_id": trace_id,
    }
    if mode not in ("upload", "paste", "logs"):
        mode = "upload"
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(csrf_token)
        errors: dict[str, str] = {}
        problems: list[dict[str, Any]] = []
        saved: datasets.SavedVersion | None = None
        skipped: dict[str, int] = {}
        if not form["name"]:
            errors["name"] = "Name the dataset, e.g. support/questions."
        try:
            with page.session.begin_nested():  # nothing of a failed form is saved
                if not errors:
                    saved, skipped = _save_new(page, request, mode, form, data, filename, errors)
        except InvalidPath as exc:  # the dataset's name, or a prompt filter's path
            about_filter = mode == "logs" and field_of(exc.message) is not None
            errors[_where(exc.message) if about_filter else "name"] = exc.message
        except NotFound as exc:
            if mode != "logs":
                raise
            errors[_where(exc.message)] = exc.message
        except InvalidInput as exc:
            where = {"upload": "file", "paste": "content"}.get(mode) or _where(exc.message)
            errors[where] = exc.message
            if isinstance(exc.details, list):
                problems = [p for p in exc.details if isinstance(p, dict)]
        if errors or saved is None:
            return _new_form(
                page, request, mode=mode, form=form, errors=errors, problems=problems, status=400
            )
        return page.redirect(
            _saved_url(page, saved.dataset.name, saved, skipped=sum(skipped.values()))
        )


def _save_new(
    page: Page,
    request: Request,
    mode: str,
    form: dict[str, str],
    data: bytes | None,
    filename: str | None,
    errors: dict[str, str],
) -> tuple[datasets.SavedVersion | None, dict[str, int]]:
    actor, project = page.require_actor(), page.require_project()
    name, message = form["name"], form["message"] or None
    description = form["description"] or None
    if mode == "upload":
        if data is None:
            errors["file"] = "Choose a CSV or JSON-lines file."
            return None, {}
        saved = datasets.upload(
            page.session,
            actor=actor,
            project=project,
            name=name,
            data=data,
            filename=filename,
            fmt=form["format"] or None,
            message=message,
            description=description,
        )
        return saved, {}
    if mode == "paste":
        text = form["content"].strip()
        if not text:
            errors["content"] = "Paste JSON lines (one object per line) or a JSON array."
            return None, {}
        saved = datasets.upload(
            page.session,
            actor=actor,
            project=project,
            name=name,
            data=_as_jsonl(text),
            fmt="jsonl",
            message=message,
            description=description,
        )
        return saved, {}
    log_filter = LogFilterForm.of(FormValues(form), trace=False)
    filters = log_filter.dataset_filters()
    if log_filter.errors:
        errors.update({f"filter_{k}": v for k, v in log_filter.errors.items()})
        return None, {}
    if form["target"] not in datasets.TARGETS:
        errors["target"] = f"Choose one of {', '.join(datasets.TARGETS)}."
    limit = _limit(form["limit"], errors)
    if errors or limit is None:
        return None, {}
    from_logs = datasets.from_logs(
        page.session,
        _logger(request).store,
        actor=actor,
        project=project,
        name=name,
        filters=filters,
        target=form["target"],
        limit=limit,
        message=message,
        description=description,
    )
    return from_logs, from_logs.skipped


def _as_jsonl(text: str) -> bytes:
    """Pasted text as JSON lines: a JSON array becomes one line per element (numbered from 1)."""
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"Line 1: not a valid JSON array: {exc}.") from None
        if isinstance(items, list):
            return "\n".join(json.dumps(item, ensure_ascii=False) for item in items).encode()
    return text.encode()


# --- one dataset ---------------------------------------------------------------------------------


@router.get("/p/{project}/datasets/{name:path}/-/download")
def download(
    request: Request,
    db: DbDep,
    project: str,
    name: str,
    version: str = "latest",
    format: str = "jsonl",
) -> Response:
    with open_page(request, db, project=project) as page:
        found, body = datasets.export(
            page.session,
            actor=page.require_actor(),
            project=page.require_project(),
            name=name,
            ref=version or "latest",
            fmt=format,
        )
    filename = f"{name.replace('/', '-')}-{found.version_id}.{format}"
    return Response(
        body,
        media_type="application/x-ndjson" if format == "jsonl" else "text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/p/{project}/datasets/{name:path}/-/datapoint", response_class=HTMLResponse)
def datapoint_form(
    request: Request, db: DbDep, project: str, name: str, version: str, key: str = ""
) -> Response:
    """The inline form editing one datapoint (`key`), or adding one (no key): an htmx fragment."""
    with open_page(request, db, project=project) as page:
        found = datasets.read_version(
            page.session,
            actor=page.require_actor(),
            project=page.require_project(),
            name=name,
            ref=version,
        )
        point = _find(datasets.datapoints_of(page.session, version=found), key) if key else None
        return page.render(
            "datasets/_datapoint_form.html",
            dataset_name=name,
            version=found,
            point=point,
            form=_point_form(point),
            errors={},
        )


def _find(points: list[Datapoint], key: str) -> Datapoint:
    for point in points:
        if point.key == key:
            return point
    raise InvalidInput(f"This version has no datapoint with key {key!r}.")


def _point_form(point: Datapoint | None) -> dict[str, str]:
    if point is None:
        return {"inputs": "{}", "target": "", "target_json": "", "key": ""}
    target = point.target
    as_json = target is not None and not isinstance(target, str)
    return {
        "key": point.key,
        "inputs": json.dumps(point.inputs, indent=2, ensure_ascii=False),
        "messages": json.dumps(point.messages, indent=2, ensure_ascii=False)
        if point.messages
        else "",
        "target": json.dumps(target, indent=2, ensure_ascii=False) if as_json else (target or ""),
        "target_json": "on" if as_json else "",
    }


@router.post("/p/{project}/datasets/{name:path}/-/edit", response_class=HTMLResponse)
def edit_datapoint(
    request: Request,
    db: DbDep,
    project: str,
    name: str,
    base: Annotated[str, Form(max_length=64)],
    action: Annotated[str, Form(max_length=10)] = "save",
    key: Annotated[str, Form(max_length=64)] = "",
    inputs: Annotated[str, Form(max_length=_MAX_PASTE)] = "{}",
    messages: Annotated[str, Form(max_length=_MAX_PASTE)] = "",
    target: Annotated[str, Form(max_length=_MAX_PASTE)] = "",
    target_json: Annotated[str, Form(max_length=10)] = "",
    message: Annotated[str, Form(max_length=_MAX_TEXT)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Add, change or delete one datapoint: each saves a new version from `base`, which stays."""
    form = {
        "key": key,
        "inputs": inputs,
        "messages": messages,
        "target": target,
        "target_json": target_json,
        "message": message,
    }
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(csrf_token)
        actor, target_project = page.require_actor(), page.require_project()
        found = datasets.read_version(
            page.session, actor=actor, project=target_project, name=name, ref=base
        )
        note = message.strip() or None
        if action == "delete":
            saved = datasets.edit_version(
                page.session,
                actor=actor,
                project=target_project,
                name=name,
                base=found.version_id,
                remove=[key],
                message=note or f"Deleted datapoint {key}",
            )
            return page.redirect(_saved_url(page, name, saved))
        errors: dict[str, str] = {}
        spec = _spec_of_form(form, errors)
        original = _find(datasets.datapoints_of(page.session, version=found), key) if key else None
        if spec is not None and not errors:
            if original is not None:  # keep where it came from, and its place
                spec = DatapointSpec(
                    inputs=spec.inputs,
                    messages=spec.messages,
                    target=spec.target,
                    source=original.source,
                    log_uid=original.log_uid,
                )
            try:
                with page.session.begin_nested():
                    saved = _save_edit(page, name, found, original, spec, note)
                return page.redirect(_saved_url(page, name, saved))
            except InvalidInput as exc:
                errors["inputs"] = exc.message
        if not page.htmx:
            return _detail(
                page,
                name,
                found.version_id,
                edit=key or "new",
                edit_form=form,
                edit_errors=errors,
                status=400,
            )
        return page.render(
            "datasets/_datapoint_form.html",
            400,
            dataset_name=name,
            version=found,
            point=original,
            form=form,
            errors=errors,
        )


def _save_edit(
    page: Page,
    name: str,
    base: Any,
    original: Datapoint | None,
    spec: DatapointSpec,
    message: str | None,
) -> datasets.SavedVersion:
    actor, project = page.require_actor(), page.require_project()
    if original is None:
        return datasets.edit_version(
            page.session,
            actor=actor,
            project=project,
            name=name,
            base=base.version_id,
            add=[spec],
            message=message or "Added a datapoint",
        )
    # A changed datapoint keeps its position: the new version is the base with this one replaced.
    points = [
        spec if p.key == original.key else datasets.spec_of(p)
        for p in datasets.datapoints_of(page.session, version=base)
    ]
    return datasets.save_version(
        page.session,
        actor=actor,
        project=project,
        name=name,
        datapoints=points,
        source="edit",
        message=message or f"Edited datapoint {original.key}",
    )


def _spec_of_form(form: dict[str, str], errors: dict[str, str]) -> DatapointSpec | None:
    try:
        inputs = json.loads(form["inputs"] or "{}")
        if not isinstance(inputs, dict):
            raise ValueError("not an object")
        check_value(inputs)
    except ValueError as exc:
        errors["inputs"] = f'The inputs must be a JSON object, e.g. {{"question": "…"}} ({exc}).'
        inputs = None
    messages: list[dict[str, Any]] | None = None
    if form["messages"].strip():
        try:
            parsed = json.loads(form["messages"])
            if not isinstance(parsed, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) for m in parsed
            ):
                raise ValueError("a list of messages, each with a 'role'")
            messages = parsed or None
        except ValueError as exc:
            errors["messages"] = f"The messages must be a JSON list of chat messages ({exc})."
    target: Any = form["target"]
    if form["target_json"]:
        try:
            target = check_value(json.loads(form["target"]))
        except ValueError as exc:
            errors["target"] = f"The target is marked as JSON but is not valid JSON ({exc})."
    elif target == "":
        target = None
    if errors or inputs is None:
        return None
    return DatapointSpec(inputs=inputs, messages=messages, target=target)


def _saved_url(page: Page, name: str, saved: datasets.SavedVersion, *, skipped: int = 0) -> str:
    """The dataset's page on the version just saved, saying whether it is new (and how many
    logs were skipped)."""
    query: dict[str, Any] = {
        "version": saved.version.version_id,
        "saved": "new" if saved.created else "same",
    }
    if skipped:
        query["skipped"] = skipped
    return page.url(f"/datasets/{name}") + "?" + urlencode(query)


@router.get("/p/{project}/datasets/{name:path}", response_class=HTMLResponse)
def dataset_page(
    request: Request,
    db: DbDep,
    project: str,
    name: str,
    version: str = "latest",
    cursor: str | None = None,
    edit: str = "",
    saved: str = "",
    skipped: int = 0,
) -> Response:
    with open_page(request, db, project=project) as page:
        return _detail(
            page, name, version or "latest", cursor=cursor, edit=edit, saved=saved, skipped=skipped
        )


def _detail(
    page: Page,
    name: str,
    version: str,
    *,
    cursor: str | None = None,
    edit: str = "",
    saved: str = "",
    skipped: int = 0,
    edit_form: dict[str, str] | None = None,
    edit_errors: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    actor, target_project = page.require_actor(), page.require_project()
    dataset, latest = datasets.read_dataset(
        page.session, actor=actor, project=target_project, name=name
    )
    versions = datasets.list_versions(
        page.session, actor=actor, project=target_project, name=name, cursor=None, limit=100
    )
    shown, points = datasets.list_datapoints(
        page.session,
        actor=actor,
        project=target_project,
        name=name,
        ref=version,
        cursor=cursor,
        limit=PAGE_SIZE,
    )
    items = list(points.items)
    editing = None
    if edit and edit != "new":
        everything = datasets.datapoints_of(page.session, version=shown)
        editing = next((p for p in everything if p.key == edit), None)
        if editing is not None and editing not in items:
            items.insert(0, editing)  # shown even when it is on another page
    can_edit = page.can("edit")
    if not can_edit:
        editing, edit = None, ""
    return page.render(
        "datasets/detail.html",
        status,
        section="datasets",
        dataset=dataset,
        latest=latest,
        versions=versions.items,
        more_versions=versions.next_cursor is not None,
        version=shown,
        points=items,
        next_cursor=points.next_cursor,
        cursor=cursor,
        editing=editing,
        edit_form=edit_form or (_point_form(editing) if editing or edit == "new" else None),
        edit_errors=edit_errors or {},
        adding=edit == "new",
        saved=saved,
        skipped=skipped,
        can_edit=can_edit,
    )
