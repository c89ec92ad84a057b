"""Signing in and out, the signed-in user, and password changes (JSON; the pages use the same
services)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from sqlalchemy.orm import Session

from promptloop.api import cookies
from promptloop.api.deps import SESSION_COOKIE, ContextDep, DbDep, SettingsDep
from promptloop.api.schemas import (
    MembershipPublic,
    MePublic,
    PasswordChange,
    ProfileUpdate,
    SignIn,
    SignInLinkRedeem,
)
from promptloop.core.errors import Forbidden
from promptloop.services import auth, members
from promptloop.services.ratelimit import RateLimiter
from promptloop.store.models import User

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/sign-in", summary="Sign in with email and password (sets the session cookie)")
def sign_in(
    body: SignIn, request: Request, response: Response, db: DbDep, settings: SettingsDep
) -> MePublic:
    limiter: RateLimiter = request.app.state.sign_in_limiter
    with db.session(write=True) as session:
        user = auth.sign_in(
            session,
            email=body.email,
            password=body.password,
            limiter=limiter,
            address=request.client.host if request.client else None,
        )
        token, csrf = auth.start_web_session(session, user=user, days=settings.session_days)
        me = _me(session, user, csrf)
    cookies.set_session(response, request, settings, token)
    return me


@router.post("/sign-in-link", summary="Sign in with a one-time link's token")
def redeem(
    body: SignInLinkRedeem, request: Request, response: Response, db: DbDep, settings: SettingsDep
) -> MePublic:
    with db.session(write=True) as session:
        user = auth.redeem_sign_in_link(session, token=body.token)
        token, csrf = auth.start_web_session(session, user=user, days=settings.session_days)
        me = _me(session, user, csrf)
    cookies.set_session(response, request, settings, token)
    return me


@router.post(
    "/sign-out", status_code=status.HTTP_204_NO_CONTENT, summary="End this browser session"
)
def sign_out(request: Request, ctx: ContextDep) -> Response:
    with ctx.principal_transaction(write=True) as (session, _principal):
        auth.end_web_session(session, token=request.cookies.get(SESSION_COOKIE, ""))
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    cookies.clear_session(response)
    return response


@router.get("/me", summary="The signed-in user, their projects, and the session's CSRF token")
def me(request: Request, ctx: ContextDep) -> MePublic:
    with ctx.principal_transaction(write=False) as (session, principal):
        user = _user(principal.user)
        found = auth.resolve_web_session(session, token=request.cookies.get(SESSION_COOKIE, ""))
        return _me(session, user, found[1].csrf_token if found else None)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT, summary="Change your password")
def change_password(body: PasswordChange, ctx: ContextDep) -> None:
    with ctx.principal_transaction(write=True) as (session, principal):
        auth.change_password(
            session,
            user=_user(principal.user),
            current=body.current_password,
            new=body.new_password,
        )


@router.patch("/me", summary="Change your email or name")
def update_me(body: ProfileUpdate, ctx: ContextDep) -> MePublic:
    with ctx.principal_transaction(write=True) as (session, principal):
        user = auth.update_profile(
            session, user=_user(principal.user), email=body.email, name=body.name
        )
        return _me(session, user, None)


def _user(user: User | None) -> User:
    if user is None:
        raise Forbidden("This needs a signed-in user, not an API key.")
    return user


def _me(session: Session, user: User, csrf: str | None) -> MePublic:
    return MePublic(
        email=user.email,
        name=user.name,
        server_admin=user.server_admin,
        has_password=user.password_hash is not None,
        projects=[
            MembershipPublic(project=p.name, role=r)
            for p, r in members.memberships_of(session, user=user)
        ],
        csrf_token=csrf,
    )
