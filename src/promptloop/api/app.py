"""The ASGI application: `create_app(settings)` wires storage, routes and error handling."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from promptloop import __version__
from promptloop.api import errors, urls
from promptloop.api.routes import (
    audit,
    auth,
    calls,
    datasets,
    deployments,
    feedback,
    gateway,
    health,
    keys,
    logs,
    members,
    models,
    projects,
    prompts,
)
from promptloop.providers import local as local_provider
from promptloop.providers.registry import providers
from promptloop.services import catalogue
from promptloop.services import feedback as feedback_kinds
from promptloop.services.auth import first_admin_link
from promptloop.services.calls import Caller
from promptloop.services.catalogue import Prices
from promptloop.services.logs import Logger
from promptloop.services.projects import ensure_project, list_all_projects
from promptloop.services.ratelimit import RateLimiter
from promptloop.services.secrets import SecretBox
from promptloop.settings import Settings
from promptloop.store.db import Database
from promptloop.store.logs import SqlLogStore
from promptloop.ui import pages

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the database is migrated and the default project created at start-up."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        local_provider.configure(models_dir=settings.data_dir / "models")
        if settings.warm_local_model:
            local_provider.provider.warm()
        db = Database(settings.resolved_database_url(), pool_size=settings.database_pool_size)
        db.migrate()
        with db.session(write=True) as session:
            project = ensure_project(session, name=settings.default_project)
            token = first_admin_link(session, project=project)
            catalogue.seed(session, [m for p in providers().values() for m in p.models()])
            for each in list_all_projects(session):
                feedback_kinds.seed_kinds(session, project=each)
        if token:
            _announce_first_admin(urls.sign_in_link(settings.base_url(), token))
        app.state.db = db
        app.state.secret_box = SecretBox.load(
            configured=settings.secret_key, data_dir=settings.data_dir
        )
        app.state.logger = Logger(SqlLogStore(db), Prices(db))
        app.state.caller = Caller(db, app.state.logger, app.state.secret_box)
        try:
            yield
        finally:
            await _close_providers()
            app.state.logger.close()
            db.dispose()

    app = FastAPI(
        title="promptloop",
        version=__version__,
        summary="Prompt management, evaluation, logging and fine-tuning for LLM applications.",
        lifespan=lifespan,
        responses=errors.ERROR_RESPONSES,
    )
    app.state.settings = settings
    app.state.sign_in_limiter = RateLimiter(limit=settings.sign_in_attempts_per_minute, window=60)
    app.state.feedback_limiter = RateLimiter(limit=settings.public_feedback_per_minute, window=60)
    errors.install(app)
    app.add_middleware(errors.BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(errors.PublicCors, paths=frozenset({feedback.PUBLIC_FEEDBACK_PATH}))

    api = APIRouter(prefix=API_PREFIX)
    for router in (
        health.router,
        auth.router,
        projects.router,
        members.router,
        keys.router,
        audit.router,
        models.router,
        logs.router,
        feedback.router,
        calls.router,
        prompts.router,
        deployments.router,
        datasets.router,
        prompts.prompt_router,
    ):
        api.include_router(router)
    app.include_router(api)
    app.include_router(gateway.router)  # OpenAI-compatible: /v1/chat/completions, /v1/models
    app.include_router(pages.router)
    app.mount(
        "/static", StaticFiles(directory=Path(pages.__file__).parent / "static"), name="static"
    )
    return app


async def _close_providers() -> None:
    """Close providers' HTTP clients (those that keep any) while their event loop still runs."""
    for provider in providers().values():
        close = getattr(provider, "aclose", None)
        if close is not None:
            await close()


def _announce_first_admin(link: str) -> None:
    """Print the first admin's one-time sign-in link, as Jupyter prints its token."""
    print(
        "\n  promptloop has no users yet. Open this one-time link to sign in as the first admin\n"
        f"  and choose your email and password (valid 24 h; a new one is printed on each start):\n\n"
        f"      {link}\n",
        file=sys.stderr,
        flush=True,
    )
