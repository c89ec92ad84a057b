"""The web UI: server-rendered Jinja2 pages with htmx (see DESIGN.md). Each module holds the
pages of one section of a project; `web` holds what they share."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from promptloop.ui import (
    datasets,
    evaluations,
    evaluators,
    finetunes,
    logs,
    monitoring,
    pages,
    playground,
    prompts,
    review,
    web,
)

ROUTERS: list[APIRouter] = [
    pages.router,
    prompts.router,
    playground.router,
    logs.router,
    monitoring.router,
    datasets.router,
    evaluators.router,
    evaluations.router,
    review.router,
    finetunes.router,
]


def install(app: FastAPI) -> None:
    """Add every page and the handlers that show page errors as pages."""
    web.install(app)
    for router in ROUTERS:
        app.include_router(router)
