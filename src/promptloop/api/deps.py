"""Dependencies every route uses: the database and the request's credentials, resolved into a
principal, a project and an actor (the principal's role in that project) in one transaction.

This is the access-control seam: no route reads credentials or decides access itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from promptloop.core.access import Actor
from promptloop.core.errors import Forbidden, Unauthenticated
from promptloop.services import auth, projects
from promptloop.services.auth import Principal
from promptloop.settings import Settings
from promptloop.store.db import Database
from promptloop.store.models import Project

PROJECT_HEADER = "Promptloop-Project"
CSRF_HEADER = "X-CSRF-Token"
SESSION_COOKIE = "promptloop_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Credentials:
    """What a request carries to say who it is; resolved against the database later."""

    bearer: str | None
    session_cookie: str | None
    csrf: str | None
    unsafe: bool
    address: str | None


@dataclass(frozen=True)
class RequestContext:
    """The request's credentials and the project it names, with the database to act through."""

    db: Database
    credentials: Credentials
    project_name: str | None
    default_project: str

    @contextmanager
    def principal_transaction(self, *, write: bool) -> Iterator[tuple[Session, Principal]]:
        """One transaction and the authenticated caller (Unauthenticated if there is none)."""
        with self.db.session(write=write) as session:
            principal = resolve_principal(session, self.credentials)
            key = principal.api_key
            stale = key is not None and auth.last_use_is_stale(key)
            if key is not None and stale and write:
                auth.touch_api_key(session, key=key)
                stale = False
            yield session, principal
        if key is not None and stale:
            # Recorded in a short write of its own, so that read requests stay reads.
            with self.db.session(write=True) as writer:
                auth.touch_api_key(writer, key=key)

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[tuple[Session, Project, Actor]]:
        """One transaction in the request's project, as the caller's actor there."""
        with self.principal_transaction(write=write) as (session, principal):
            if self.project_name is None and principal.api_key is not None:
                project = principal.api_key.project  # a key acts in its own project by default
            else:
                project = projects.get_project(
                    session, name=self.project_name or self.default_project
                )
            yield session, project, auth.actor_for(session, principal=principal, project=project)

    def resolve(self) -> tuple[Project, Actor]:
        """The project and actor alone, for routes that do their own I/O afterwards."""
        with self.transaction(write=False) as (_session, project, actor):
            return project, actor


def resolve_principal(session: Session, credentials: Credentials) -> Principal:
    """An API key (Authorization: Bearer) or a browser session (cookie, with CSRF on writes)."""
    if credentials.bearer:
        key = auth.resolve_api_key(session, secret=credentials.bearer)
        return Principal(
            kind="api_key", name=f"key:{key.name}", api_key=key, address=credentials.address
        )
    if credentials.session_cookie:
        found = auth.resolve_web_session(session, token=credentials.session_cookie)
        if found is None:
            raise Unauthenticated("Your session has expired: sign in again.")
        user, web_session = found
        if credentials.unsafe and not secrets.compare_digest(
            credentials.csrf or "", web_session.csrf_token
        ):
            raise Forbidden(
                f"Missing or wrong {CSRF_HEADER} header: browser requests that change data must "
                "send the CSRF token of the session (GET /api/v1/auth/me returns it)."
            )
        return Principal(kind="user", name=user.email, user=user, address=credentials.address)
    raise Unauthenticated(
        "Authentication required: send an API key as 'Authorization: Bearer plk_…' (create one "
        "with `promptloop keys create`), or sign in."
    )


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_credentials(
    request: Request,
    authorization: Annotated[
        str | None, Header(description="`Bearer <API key>`.", max_length=400)
    ] = None,
    csrf: Annotated[
        str | None,
        Header(alias=CSRF_HEADER, description="Session CSRF token (browsers).", max_length=200),
    ] = None,
) -> Credentials:
    bearer = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("The Authorization header must be 'Bearer <API key>'.")
        bearer = value.strip()
    return Credentials(
        bearer=bearer,
        session_cookie=request.cookies.get(SESSION_COOKIE),
        csrf=csrf,
        unsafe=request.method not in SAFE_METHODS,
        address=request.client.host if request.client else None,
    )


async def get_context(
    db: Annotated[Database, Depends(get_db)],
    credentials: Annotated[Credentials, Depends(get_credentials)],
    settings: Annotated[Settings, Depends(get_settings)],
    project: Annotated[
        str | None,
        Header(
            alias=PROJECT_HEADER,
            description="Project to act on: an API key's own project, or the server's default.",
            max_length=64,
        ),
    ] = None,
) -> RequestContext:
    return RequestContext(
        db=db,
        credentials=credentials,
        project_name=project,
        default_project=settings.default_project,
    )


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ContextDep = Annotated[RequestContext, Depends(get_context)]
