"""Sign-in, one-time links, account and home pages. Forms carry a CSRF token: the session's
once signed in, a double-submit cookie before."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from promptloop.api import cookies
from promptloop.api.deps import SESSION_COOKIE, DbDep, SettingsDep
from promptloop.core.access import Actor
from promptloop.core.errors import InvalidInput, PromptloopError
from promptloop.services import audit, auth, demo, members
from promptloop.services.projects import get_project
from promptloop.services.ratelimit import RateLimiter
from promptloop.store.models import Project, User, WebSession
from promptloop.ui.web import open_page, project_url, templates
from promptloop.ui.web import signed_in as _signed_in

router = APIRouter(include_in_schema=False)
PRE_SESSION_CSRF = "promptloop_csrf"


def _render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status)


def _pre_session_form(request: Request, name: str, **context: Any) -> HTMLResponse:
    token = request.cookies.get(PRE_SESSION_CSRF) or secrets.token_urlsafe(24)
    response = _render(request, name, csrf_token=token, **context)
    response.set_cookie(PRE_SESSION_CSRF, token, httponly=True, samesite="strict", path="/")
    return response


def _pre_session_ok(request: Request, submitted: str) -> bool:
    expected = request.cookies.get(PRE_SESSION_CSRF)
    return bool(expected) and secrets.compare_digest(expected or "", submitted)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, db: DbDep, settings: SettingsDep) -> Response:
    """Signed in: the demo project when the server seeds one and the user is in it (so a
    newcomer lands on populated pages), else the list of projects."""
    with db.session(write=False) as session:
        found = _signed_in(session, request)
        if found is None:
            return RedirectResponse("/sign-in", status_code=303)
        names = {project.name for project, _ in members.memberships_of(session, user=found[0])}
    if settings.demo and demo.PROJECT in names:
        return RedirectResponse(project_url(demo.PROJECT, "/prompts"), status_code=303)
    return RedirectResponse("/projects", status_code=303)


@router.get("/projects", response_class=HTMLResponse)
def projects_page(request: Request, db: DbDep) -> Response:
    """The projects the user belongs to, with their role in each."""
    with open_page(request, db) as page:
        return page.render("home.html", demo_project=demo.PROJECT)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request, db: DbDep, project: str = "default", cursor: str | None = None
) -> Response:
    """The audit log of a project, for its admins."""
    with open_page(request, db, project=project) as page:
        events = audit.list_events(
            page.session,
            actor=page.require_actor(),
            project=page.require_project(),
            cursor=cursor,
            limit=100,
        )
        return page.render(
            "audit.html", section="audit", events=events.items, next_cursor=events.next_cursor
        )


@router.get("/audit/export")
def audit_export(
    request: Request, db: DbDep, project: str = "default", format: str = "jsonl"
) -> Response:
    with db.session(write=False) as session:
        found = _signed_in(session, request)
        if found is None:
            return RedirectResponse("/sign-in?next=/audit", status_code=303)
        try:
            target, actor = _acting(session, request, found[0], project)
            fmt = "csv" if format == "csv" else "jsonl"
            body = "".join(audit.export(session, actor=actor, project=target, fmt=fmt))
        except PromptloopError as exc:
            return Response(exc.message, status_code=403 if exc.code == "forbidden" else 404)
    return Response(
        body,
        media_type="text/csv" if fmt == "csv" else "application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="audit-{target.name}.{fmt}"'},
    )


def _acting(
    session: Session, request: Request, user: User, project_name: str
) -> tuple[Project, Actor]:
    target = get_project(session, name=project_name)
    principal = auth.Principal(
        kind="user",
        name=user.email,
        user=user,
        address=request.client.host if request.client else None,
    )
    return target, auth.actor_for(session, principal=principal, project=target)


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, next: str = "/") -> Response:
    return _pre_session_form(request, "sign_in.html", next=_safe_next(next), email="", error=None)


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1000)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    if not _pre_session_ok(request, csrf_token):
        return _pre_session_form(
            request,
            "sign_in.html",
            next=_safe_next(next),
            email=email,
            error="The form expired: sign in again.",
        )
    limiter: RateLimiter = request.app.state.sign_in_limiter
    try:
        with db.session(write=True) as session:
            user = auth.sign_in(
                session,
                email=email,
                password=password,
                limiter=limiter,
                address=request.client.host if request.client else None,
            )
            token, _ = auth.start_web_session(session, user=user, days=settings.session_days)
    except PromptloopError as exc:
        response = _pre_session_form(
            request, "sign_in.html", next=_safe_next(next), email=email, error=exc.message
        )
        response.status_code = 429 if exc.code == "rate_limited" else 401
        return response
    redirect = RedirectResponse(_safe_next(next), status_code=303)
    cookies.set_session(redirect, request, settings, token)
    return redirect


@router.get("/sign-in/link", response_class=HTMLResponse)
def sign_in_link_page(request: Request, token: str = "") -> Response:
    # A page with a button rather than signing in on GET: link previewers must not use the link up.
    error = None if token else "This sign-in link is incomplete."
    return _pre_session_form(request, "sign_in_link.html", token=token, error=error)


@router.post("/sign-in/link", response_class=HTMLResponse)
def redeem_sign_in_link(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    if not _pre_session_ok(request, csrf_token):
        return _pre_session_form(request, "sign_in_link.html", token=token, error=None)
    try:
        with db.session(write=True) as session:
            user = auth.redeem_sign_in_link(session, token=token)
            session_token, _ = auth.start_web_session(
                session, user=user, days=settings.session_days
            )
            needs_password = user.password_hash is None
    except PromptloopError as exc:
        return _render(
            request, "sign_in_link.html", status=401, token="", error=exc.message, csrf_token=""
        )
    response = RedirectResponse("/account" if needs_password else "/", status_code=303)
    cookies.set_session(response, request, settings, session_token)
    return response


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, db: DbDep) -> Response:
    with db.session(write=False) as session:
        found = _signed_in(session, request)
    if found is None:
        return RedirectResponse("/sign-in?next=/account", status_code=303)
    user, web_session = found
    return _render(
        request, "account.html", user=user, csrf_token=web_session.csrf_token, form={}, errors={}
    )


@router.post("/account", response_class=HTMLResponse)
def update_account(
    request: Request,
    db: DbDep,
    email: Annotated[str, Form(max_length=320)],
    name: Annotated[str, Form(max_length=200)] = "",
    current_password: Annotated[str, Form(max_length=1000)] = "",
    new_password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    form = {"email": email, "name": name}
    with db.session(write=True) as session:
        found = _signed_in(session, request)
        if found is None:
            return RedirectResponse("/sign-in?next=/account", status_code=303)
        user, web_session = found
        try:
            if not secrets.compare_digest(csrf_token, web_session.csrf_token):
                raise _FormErrors({"email": "The form expired: submit it again."}, status=403)
            with session.begin_nested():  # a form with any error saves nothing
                _apply_account_form(
                    session, request, user, web_session, form, current_password, new_password
                )
        except _FormErrors as failed:
            return _render(
                request,
                "account.html",
                failed.status,
                user=user,
                csrf_token=web_session.csrf_token,
                form=form,
                errors=failed.errors,
            )
        return _render(
            request,
            "account.html",
            user=user,
            csrf_token=web_session.csrf_token,
            form={},
            errors={},
            message="Saved.",
        )


class _FormErrors(Exception):
    """Field errors of a form; raised inside a transaction so that nothing of it is saved."""

    def __init__(self, errors: dict[str, str], *, status: int = 400) -> None:
        super().__init__(errors)
        self.errors = errors
        self.status = status


def _apply_account_form(
    session: Session,
    request: Request,
    user: User,
    web_session: WebSession,
    form: dict[str, str],
    current_password: str,
    new_password: str,
) -> None:
    errors: dict[str, str] = {}
    try:
        auth.update_profile(session, user=user, email=form["email"], name=form["name"] or None)
    except InvalidInput as exc:
        errors["email"] = exc.message
    if new_password or user.password_hash is None:
        try:
            auth.change_password(session, user=user, current=current_password, new=new_password)
        except InvalidInput as exc:
            errors["password"] = exc.message
        else:
            # A new password ends every session; keep this browser signed in.
            web_session.expires_at = auth.session_expiry(
                days=request.app.state.settings.session_days
            )
    if errors:
        raise _FormErrors(errors)


@router.post("/sign-out")
def sign_out(
    request: Request, db: DbDep, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    with db.session(write=True) as session:
        found = _signed_in(session, request)
        if found is not None and secrets.compare_digest(csrf_token, found[1].csrf_token):
            auth.end_web_session(session, token=request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/sign-in", status_code=303)
    cookies.clear_session(response)
    return response


def _safe_next(target: str) -> str:
    """Only same-site paths, so a crafted link cannot send a user elsewhere after sign-in."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/p/{project}", response_class=HTMLResponse)
def project_home(request: Request, db: DbDep, project: str) -> Response:
    """A project opens on its prompts."""
    with open_page(request, db, project=project) as page:
        return RedirectResponse(page.url("/prompts"), status_code=303)
