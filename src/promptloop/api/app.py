"""The ASGI application: `create_app(settings)` wires storage, routes and error handling."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from promptloop import __version__, ui
from promptloop.api import errors, urls
from promptloop.api.routes import (
    audit,
    auth,
    calls,
    datasets,
    deployments,
    evaluations,
    feedback,
    finetunes,
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
from promptloop.runtime import Runtime
from promptloop.services import catalogue, demo
from promptloop.services import feedback as feedback_kinds
from promptloop.services.auth import first_admin_link
from promptloop.services.projects import ensure_project, list_all_projects
from promptloop.services.ratelimit import RateLimiter
from promptloop.settings import Settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the database is migrated and the default project created at start-up."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(settings)
        if settings.warm_local_model:
            local_provider.provider.warm()
        with runtime.db.session(write=True) as session:
            project = ensure_project(session, name=settings.default_project)
            token = first_admin_link(session, project=project)
            catalogue.seed(session, [m for p in providers().values() for m in p.models()])
            for each in list_all_projects(session):
                feedback_kinds.seed_kinds(session, project=each)
        if token:
            _announce_first_admin(urls.sign_in_link(settings.base_url(), token))
        if settings.demo:
            # Quick; the slow part is a job (docs/demo.md).
            demo.seed_on_start(runtime.db, url=settings.base_url())
        app.state.db = runtime.db
        app.state.secret_box = runtime.secret_box
        app.state.logger = runtime.logger
        app.state.caller = runtime.caller
        app.state.executor = runtime.executor
        app.state.wake_worker = runtime.worker.wake
        if settings.worker:
            runtime.worker.start()
        try:
            yield
        finally:
            await runtime.close()

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
        evaluations.router,
        finetunes.router,
        prompts.prompt_router,
    ):
        api.include_router(router)
    # The gateway first: its few routes are the hot path, and none shares a prefix with /api/v1.
    app.include_router(gateway.router)  # OpenAI-compatible: /v1/chat/completions, /v1/models
    app.include_router(api)
    ui.install(app)
    app.mount("/static", StaticFiles(directory=Path(ui.__file__).parent / "static"), name="static")
    return app


def _announce_first_admin(link: str) -> None:
    """Print the first admin's one-time sign-in link, as Jupyter prints its token."""
    print(
        "\n  promptloop has no users yet. Open this one-time link to sign in as the first admin\n"
        f"  and choose your email and password (valid 24 h; a new one is printed on each start):\n\n"
        f"      {link}\n",
        file=sys.stderr,
        flush=True,
    )
