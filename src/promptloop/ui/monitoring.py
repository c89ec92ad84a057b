"""The monitoring page of a project (under /p/NAME): volume, errors, latency, tokens, cost and
feedback rates over time, split by prompt version, as charts and as a table."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from promptloop.api.deps import DbDep
from promptloop.core.errors import InvalidInput, NotFound
from promptloop.services import monitoring
from promptloop.services.deployments import environment_names
from promptloop.services.monitoring import WINDOWS, Figures, Overview
from promptloop.services.prompts import list_prompts
from promptloop.ui.web import open_page

router = APIRouter(include_in_schema=False)


@router.get("/p/{project}/monitoring", response_class=HTMLResponse)
def monitoring_page(
    request: Request,
    db: DbDep,
    project: str,
    prompt: str = "",
    environment: str = "",
    window: str = "24h",
) -> Response:
    form = {"prompt": prompt.strip(), "environment": environment.strip(), "window": window}
    with open_page(request, db, project=project) as page:
        errors: dict[str, str] = {}
        found: Overview | None = None
        try:
            found = monitoring.overview(
                page.session,
                actor=page.require_actor(),
                project=page.require_project(),
                prompt=form["prompt"] or None,
                environment=form["environment"] or None,
                window=window,
            )
        except (InvalidInput, NotFound) as exc:
            errors["window" if "window" in exc.message.lower() else "prompt"] = exc.message
        target = page.require_project()
        prompts = list_prompts(page.session, project=target, prefix=None, cursor=None, limit=200)
        return page.render(
            "monitoring/page.html",
            400 if errors else 200,
            section="monitoring",
            wide=True,
            form=form,
            errors=errors,
            overview=found,
            chart_data=chart_data(found) if found else None,
            windows=list(WINDOWS),
            prompt_paths=[p.path for p in prompts.items],
            environments=sorted(environment_names(page.session, project=target).values()),
        )


def chart_data(overview: Overview) -> dict[str, Any]:
    """The series as the page's charts read them: x in Unix seconds, one list per version and
    figure, null where a bucket has no value."""

    def figure(f: Figures, name: str) -> float | None:
        value = getattr(f, name)
        return None if value is None else round(float(value), 6)

    names = (
        "logs",
        "errors",
        "p50_ms",
        "p95_ms",
        "prompt_tokens",
        "output_tokens",
        "cost",
        "up_share",
        "correction_rate",
    )
    return {
        "x": [int(start.timestamp()) for start in overview.starts],
        "bucket_s": overview.bucket_s,
        "series": [
            {
                "label": s.label,
                **{name: [figure(f, name) for f in s.buckets] for name in names},
            }
            for s in overview.series
        ],
    }
