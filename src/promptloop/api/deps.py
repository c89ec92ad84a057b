"""Dependencies every route uses: the database, the caller (principal) and the project.

This is the access-control seam: every request resolves one principal and one project here.
Until accounts exist, the principal is the local user who runs the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from promptloop.services import projects
from promptloop.settings import Settings
from promptloop.store.db import Database
from promptloop.store.models import Project

PROJECT_HEADER = "Promptloop-Project"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user or (later) an API key, by display name."""

    kind: str
    name: str


@dataclass(frozen=True)
class RequestContext:
    """The caller and the project a request acts on, with the database to act through."""

    db: Database
    principal: Principal
    project_name: str

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[tuple[Session, Project]]:
        """One transaction in the request's project; committed when the block ends cleanly."""
        with self.db.session(write=write) as session:
            yield session, projects.get_project(session, name=self.project_name)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_principal(request: Request) -> Principal:
    principal: Principal = request.app.state.local_principal
    return principal


def get_context(
    db: Annotated[Database, Depends(get_db)],
    principal: Annotated[Principal, Depends(get_principal)],
    settings: Annotated[Settings, Depends(get_settings)],
    project: Annotated[
        str | None,
        Header(
            alias=PROJECT_HEADER,
            description="Project to act on; the server's default project when absent.",
            max_length=64,
        ),
    ] = None,
) -> RequestContext:
    return RequestContext(
        db=db, principal=principal, project_name=project or settings.default_project
    )


DbDep = Annotated[Database, Depends(get_db)]
ContextDep = Annotated[RequestContext, Depends(get_context)]
