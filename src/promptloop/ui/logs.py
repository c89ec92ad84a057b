"""The logs pages of a project (under /p/NAME): a filterable listing, one log with its feedback,
and giving feedback on it (vote, correction, comment) from the page."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response

from promptloop.api.deps import DbDep
from promptloop.core.errors import InvalidInput, NotFound
from promptloop.services import feedback, logs, monitoring
from promptloop.services.deployments import environment_names
from promptloop.services.feedback import FeedbackInput
from promptloop.services.logs import SOURCES, Logger
from promptloop.services.prompts import list_prompts
from promptloop.store.logs import FEEDBACK_WORDS
from promptloop.ui.logfilters import LogFilterForm, field_of
from promptloop.ui.web import Page, open_page

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
LogId = Annotated[str, Path(max_length=36)]


@router.get("/p/{project}/logs", response_class=HTMLResponse)
def logs_page(request: Request, db: DbDep, project: str, cursor: str | None = None) -> Response:
    filters = LogFilterForm.of(request.query_params)
    logger: Logger = request.app.state.logger
    with open_page(request, db, project=project) as page:
        actor = page.require_actor()
        rows: list[Any] = []
        next_cursor = None
        if not filters.errors:
            try:
                project_row = page.require_project()
                found = logs.list_logs(
                    page.session,
                    logger.store,
                    actor=actor,
                    project=project_row,
                    cursor=cursor,
                    limit=PAGE_SIZE,
                    **filters.list_logs_args(page.session, project=project_row),
                )
                rows, next_cursor = list(found.items), found.next_cursor
            except (InvalidInput, NotFound) as exc:
                filters.errors[_field_of(exc.message)] = exc.message
        names = logs.names_for(page.session, rows)
        summaries = monitoring.feedback_summaries(
            page.session,
            actor=actor,
            project=page.require_project(),
            log_ids=[row.id for row in rows],
        )
        context = {
            "section": "logs",
            "wide": True,
            "rows": [(row, *names.of(row), summaries.get(row.id)) for row in rows],
            "filters": filters,
            "next_cursor": next_cursor,
            "cursor": cursor,
        }
        status = 400 if filters.errors else 200
        if page.htmx and request.headers.get("HX-History-Restore-Request") != "true":
            response = page.render("logs/_results.html", status, **context)
            # the address bar gets the filters that are set, not every empty field of the form
            query = filters.query + (f"&cursor={quote(cursor)}" if cursor else "")
            response.headers["HX-Push-Url"] = page.url("/logs") + (
                f"?{query.lstrip('&')}" if query else ""
            )
            return response
        return page.render("logs/list.html", status, **context, **_choices(page))


def _field_of(message: str) -> str:
    """Which field of the form a service's message is about, to show it next to that field."""
    if "cursor" in message.lower():
        return "cursor"
    return field_of(message) or "prompt"


def _choices(page: Page) -> dict[str, Any]:
    """What the filter form offers: prompt paths, environments, sources, feedback words."""
    project = page.require_project()
    prompts = list_prompts(page.session, project=project, prefix=None, cursor=None, limit=200)
    kinds = feedback.list_kinds(page.session, actor=page.require_actor(), project=project)
    return {
        "prompt_paths": [p.path for p in prompts.items],
        "environments": sorted(environment_names(page.session, project=project).values()),
        "sources": SOURCES,
        "feedback_words": FEEDBACK_WORDS,
        "feedback_kinds": [k.name for k in kinds],
    }


@router.get("/p/{project}/logs/{log_id}", response_class=HTMLResponse)
def log_page(request: Request, db: DbDep, project: str, log_id: LogId) -> Response:
    with open_page(request, db, project=project) as page:
        return _render_log(page, request, log_id)


def _render_log(
    page: Page,
    request: Request,
    log_id: str,
    *,
    status: int = 200,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    fragment: bool = False,
) -> HTMLResponse:
    logger: Logger = request.app.state.logger
    actor, project = page.require_actor(), page.require_project()
    log = logs.get_log(logger.store, actor=actor, project=project, uid=log_id)
    prompt, version = logs.names_for(page.session, [log]).of(log)
    entries = feedback.list_for_log(page.session, actor=actor, project=project, log_uid=log_id)
    context = {
        "section": "logs",
        "log": log,
        "prompt_path": prompt,
        "version_id": version,
        "entries": entries,
        "form": form or {},
        "errors": errors or {},
        "message": message,
        "can_feedback": page.can("write_logs"),
    }
    name = "logs/_feedback.html" if fragment else "logs/detail.html"
    return page.render(name, status, **context)


# What each feedback form records: the form's `kind` → (the project's feedback kind name, the
# message once it is recorded).
FEEDBACK_FORMS = {
    "vote": ("rating", "Vote recorded."),
    "correction": ("correction", "Correction saved."),
    "comment": ("comment", "Comment added."),
}


@router.post("/p/{project}/logs/{log_id}/feedback", response_class=HTMLResponse)
def give_feedback(
    request: Request,
    db: DbDep,
    project: str,
    log_id: LogId,
    kind: Annotated[str, Form(max_length=16)],
    value: Annotated[str, Form(max_length=1_000_000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """A vote, a correction or a comment on the log, from the signed-in member (source "ui")."""
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(csrf_token)
        actor = page.require_actor()
        if kind not in FEEDBACK_FORMS:
            raise InvalidInput(f"Unknown feedback form {kind!r}: use vote, correction or comment.")
        name, thanks = FEEDBACK_FORMS[kind]
        try:
            with page.session.begin_nested():  # a refused entry stores nothing
                feedback.record(
                    page.session,
                    actor=actor,
                    project=page.require_project(),
                    log_uid=log_id,
                    given=FeedbackInput(name=name, value=value, source="ui"),
                )
        except InvalidInput as exc:
            return _render_log(
                page,
                request,
                log_id,
                status=400,
                form={kind: value},
                errors={kind: exc.message},
                fragment=page.htmx,
            )
        if page.htmx:
            return _render_log(page, request, log_id, message=thanks, fragment=True)
        return page.redirect(page.url(f"/logs/{log_id}"))
