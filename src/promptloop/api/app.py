"""The ASGI application: `create_app(settings)` wires storage, routes and error handling."""

from __future__ import annotations

import getpass
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse

from promptloop import __version__
from promptloop.api import errors
from promptloop.api.deps import Principal
from promptloop.api.routes import deployments, health, projects, prompts
from promptloop.services.projects import ensure_project
from promptloop.settings import Settings
from promptloop.store.db import Database

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the database is migrated and the default project created at start-up."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url(), pool_size=settings.database_pool_size)
        db.migrate()
        with db.session(write=True) as session:
            ensure_project(session, name=settings.default_project)
        app.state.db = db
        try:
            yield
        finally:
            db.dispose()

    app = FastAPI(
        title="promptloop",
        version=__version__,
        summary="Prompt management, evaluation, logging and fine-tuning for LLM applications.",
        lifespan=lifespan,
        responses=errors.ERROR_RESPONSES,
    )
    app.state.settings = settings
    app.state.local_principal = Principal(kind="user", name=_local_user())
    errors.install(app)
    app.add_middleware(errors.BodySizeLimit, max_bytes=settings.max_body_bytes)

    api = APIRouter(prefix=API_PREFIX)
    for router in (
        health.router,
        projects.router,
        prompts.router,
        deployments.router,
        prompts.prompt_router,
    ):
        api.include_router(router)
    app.include_router(api)

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"
