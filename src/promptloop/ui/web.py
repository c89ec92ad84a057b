"""What every signed-in page shares: who is signed in, in which project and with which role,
rendering (whole pages, or fragments for htmx), CSRF on forms, and errors shown as pages.

A route opens a page with `open_page(request, db, project=...)`. Inside it, domain errors
(`PromptloopError`) become an error page with the matching status, or, for an htmx request, a
message swapped into the page's `#flash` area; a visitor who is not signed in is sent to sign in
and brought back afterwards.
"""

from __future__ import annotations

import inspect
import json
import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptloop.api.deps import SESSION_COOKIE
from promptloop.api.errors import status_of
from promptloop.core.access import Actor, Permission
from promptloop.core.errors import Forbidden, PromptloopError
from promptloop.services import auth, members
from promptloop.services.projects import get_project
from promptloop.store.db import Database
from promptloop.store.models import Project, User, WebSession

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
NO_VALUE = "\N{EN DASH}"  # shown where a figure does not exist (not zero)

# The sections of a project, in the order of the navigation bar: (key, label, path under /p/NAME).
SECTIONS: list[tuple[str, str, str]] = [
    ("prompts", "Prompts", "/prompts"),
    ("playground", "Playground", "/playground"),
    ("logs", "Logs", "/logs"),
    ("monitoring", "Monitoring", "/monitoring"),
    ("datasets", "Datasets", "/datasets"),
    ("evaluators", "Evaluators", "/evaluators"),
    ("evaluations", "Evaluations", "/evaluations"),
    ("review", "Review", "/review"),
    ("fine-tunes", "Fine-tunes", "/fine-tunes"),
]


class SignInRequired(Exception):
    """No signed-in browser session: go to the sign-in page, then back to `next`."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class PageFailed(Exception):
    """A domain error raised while a page was open, already rendered as the answer (rendered
    while the database session was still open, since the page's objects need it)."""

    def __init__(self, error: PromptloopError, response: Response) -> None:
        super().__init__(error.message)
        self.error = error
        self.response = response


@dataclass
class Page:
    """A signed-in request: the user, their browser session, and the project they work in."""

    request: Request
    session: Session
    user: User
    web_session: WebSession
    project: Project | None = None
    actor: Actor | None = None
    memberships: list[tuple[Project, str]] = field(default_factory=list)

    @property
    def htmx(self) -> bool:
        """True for an htmx request (render a fragment); False for a full page load."""
        return self.request.headers.get("HX-Request") == "true"

    @property
    def csrf_token(self) -> str:
        return self.web_session.csrf_token

    def require_actor(self) -> Actor:
        if self.actor is None:
            raise RuntimeError("this page was opened without a project")
        return self.actor

    def require_project(self) -> Project:
        if self.project is None:
            raise RuntimeError("this page was opened without a project")
        return self.project

    def can(self, permission: str | Permission) -> bool:
        """Whether the user's role allows it: pages leave out what it does not (the server
        refuses anyway)."""
        if self.actor is None:
            return False
        wanted = permission if isinstance(permission, Permission) else Permission[permission]
        return self.actor.can(wanted)

    def check_csrf(self, submitted: str | None) -> None:
        """Forms that change data carry the session's CSRF token (a hidden field, or the
        X-CSRF-Token header that htmx sends from the page's meta tag)."""
        token = submitted or self.request.headers.get("X-CSRF-Token") or ""
        if not secrets.compare_digest(token, self.web_session.csrf_token):
            raise Forbidden("The form expired: reload the page and submit it again.")

    def url(self, path: str = "") -> str:
        """A path inside the current project: `page.url("/prompts")` → `/p/default/prompts`."""
        return project_url(self.require_project().name, path)

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        base: dict[str, Any] = {
            "page": self,
            "user": self.user,
            "csrf_token": self.csrf_token,
            "project": self.project,
            "projects": self.memberships,
            "sections": SECTIONS,
            "role": self.actor.role.name if self.actor else None,
        }
        base.update(context)
        return templates.TemplateResponse(self.request, name, base, status_code=status)

    def redirect(self, url: str) -> Response:
        """After a successful form post: htmx follows HX-Location without a reload; a plain
        form post gets a 303 (post/redirect/get), so reloading never submits twice."""
        if self.htmx:
            return Response(status_code=204, headers={"HX-Location": url})
        return RedirectResponse(url, status_code=303)


def project_url(project: str, path: str = "") -> str:
    return f"/p/{quote(project, safe='')}{path}"


def signed_in(session: Session, request: Request) -> tuple[User, WebSession] | None:
    token = request.cookies.get(SESSION_COOKIE)
    return auth.resolve_web_session(session, token=token) if token else None


@contextmanager
def open_page(
    request: Request, db: Database, *, project: str | None = None, write: bool = False
) -> Iterator[Page]:
    """A database session and the signed-in page around a route's body. With `project`, the
    user must be able to read it (members, and server admins)."""
    with db.session(write=write) as session:
        found = signed_in(session, request)
        if found is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(target)
        user, web_session = found
        page = Page(
            request=request,
            session=session,
            user=user,
            web_session=web_session,
            memberships=list(members.memberships_of(session, user=user)),
        )
        try:
            if project is not None:
                page.project = get_project(session, name=project)
                principal = auth.Principal(
                    kind="user",
                    name=user.email,
                    user=user,
                    address=request.client.host if request.client else None,
                )
                page.actor = auth.actor_for(session, principal=principal, project=page.project)
                page.actor.require(Permission.read)
            yield page
        except PromptloopError as exc:
            raise PageFailed(exc, _error_response(page, exc)) from exc


def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    target = "/sign-in?next=" + quote(exc.next_url, safe="/")
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _error_response(page: Page, error: PromptloopError) -> Response:
    status, headers = status_of(error)
    if page.htmx:
        response = page.render("_flash.html", status, message=error.message, kind="error")
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
    else:
        response = page.render("error.html", status, message=error.message, error_status=status)
    response.headers.update(headers)
    return response


def _page_failed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageFailed)
    return exc.response


def _wants_page(request: Request) -> bool:
    """A browser asking for a page (not the API, the gateway or a script)."""
    path = request.url.path
    if path.startswith(("/api/", "/v1/", "/static/", "/docs", "/openapi")):
        return False
    return "text/html" in request.headers.get("accept", "")


def install(app: FastAPI) -> None:
    """The exception handlers that turn page errors into pages. Call after the API's handlers:
    an unknown page answers a browser with a page, and the API keeps its JSON errors."""
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(PageFailed, _page_failed)
    json_handler = app.exception_handlers[StarletteHTTPException]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not _wants_page(request):
            answered = json_handler(request, exc)
            return await answered if inspect.isawaitable(answered) else answered
        message = "There is no page at this address." if exc.status_code == 404 else str(exc.detail)
        return templates.TemplateResponse(
            request,
            "error.html",
            {"message": message, "error_status": exc.status_code, "user": None},
            status_code=exc.status_code,
        )

    app.add_exception_handler(StarletteHTTPException, http_error)


# --- Template filters: one way to show a number, a time, a cost, everywhere ---------------------


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = (datetime.now(UTC) - value).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def _ms(value: float | int | None) -> str:
    if value is None:
        return NO_VALUE
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:.0f} ms"


def _money(value: float | None) -> str:
    """A cost in US dollars; unknown stays unknown (never shown as zero)."""
    if value is None:
        return "unknown"
    if value == 0:
        return "$0"
    return f"${value:.6f}" if value < 0.01 else f"${value:.4f}"


def _num(value: float | int | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NO_VALUE
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return NO_VALUE if value is None else f"{value * 100:.0f}%"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


templates.env.filters.update(
    when=_when, ago=_ago, ms=_ms, money=_money, num=_num, pct=_pct, pretty=_pretty
)
templates.env.globals["project_url"] = project_url
