"""The review page of a project (under /p/NAME): human judgments waiting for a reviewer, oldest
first, each with a form that fits its evaluator's return type."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from promptloop.api.deps import DbDep
from promptloop.core.access import Permission
from promptloop.core.errors import InvalidInput, NotFound
from promptloop.services import evaluations
from promptloop.ui.web import Page, open_page

router = APIRouter(include_in_schema=False)
QUEUE = 20  # pending judgments shown at once


@router.get("/p/{project}/review", response_class=HTMLResponse)
def review_page(request: Request, db: DbDep, project: str, run: str | None = None) -> Response:
    with open_page(request, db, project=project) as page:
        return _render(page, run or None, status=200)


@router.post("/p/{project}/review/{judgment_id}", response_class=HTMLResponse)
def give_judgment(
    request: Request,
    db: DbDep,
    project: str,
    judgment_id: str,
    csrf_token: Annotated[str, Form()] = "",
    value: Annotated[str, Form(max_length=100_000)] = "",
    explanation: Annotated[str, Form(max_length=100_000)] = "",
    returns: Annotated[str, Form(max_length=16)] = "",
    run: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    with open_page(request, db, project=project, write=True) as page:
        page.check_csrf(csrf_token)
        page.require_actor().require(Permission.write_logs)
        typed = {"value": value, "explanation": explanation}
        try:
            evaluations.give_judgment(
                page.session,
                actor=page.require_actor(),
                project=page.require_project(),
                uid=judgment_id,
                value=_parsed(value, returns),
                explanation=explanation.strip() or None,
            )
        except (InvalidInput, NotFound) as exc:
            return _render(page, run or None, status=400, failed=(judgment_id, exc.message, typed))
        if page.htmx:
            return _render(page, run or None, status=200, saved=True)
        query = f"?{urlencode({'run': run})}" if run else ""
        return page.redirect(page.url(f"/review{query}"))


def _parsed(value: str, returns: str) -> Any:
    """The form's text as the evaluator's type (the service says what is wrong with it)."""
    text = value.strip()
    if returns == "boolean":
        return {"true": True, "false": False}.get(text, text)
    if returns == "number":
        try:
            return float(text)
        except ValueError:
            if not text:
                raise InvalidInput("Give a number.") from None
            raise InvalidInput(f"{text!r} is not a number.") from None
    return text


def _render(
    page: Page,
    run: str | None,
    *,
    status: int,
    failed: tuple[str, str, dict[str, str]] | None = None,
    saved: bool = False,
) -> HTMLResponse:
    found = evaluations.pending_judgments(
        page.session,
        actor=page.require_actor(),
        project=page.require_project(),
        run_uid=run,
        limit=QUEUE + 1,
    )
    context = evaluations.review_context(page.session, [j for j, _, _ in found[:QUEUE]])
    items = [
        {
            "judgment": judgment,
            "log": log,
            "version": version,
            "question": context[judgment.uid].question,
            "target": context[judgment.uid].target,
            "run": context[judgment.uid].run,
        }
        for judgment, log, version in found[:QUEUE]
    ]
    template = "review/_queue.html" if page.htmx else "review/page.html"
    return page.render(
        template,
        status,
        section="review",
        items=items,
        more=len(found) > QUEUE,
        run=run,
        can_review=page.can(Permission.write_logs),
        failed=failed,
        saved=saved,
    )
