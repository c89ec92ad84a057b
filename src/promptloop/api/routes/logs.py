"""Recording calls your code made, and reading logs back with filters."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status

from promptloop.api.deps import ContextDep
from promptloop.api.routes.prompts import Cursor, Limit
from promptloop.api.schemas import ListPublic, LogBatch, LogCreate, LogCreated, LogIds, LogPublic
from promptloop.core.errors import InvalidInput
from promptloop.services import datasets, logs
from promptloop.services.logs import LogEntry, Logger
from promptloop.store.models import Log
from promptloop.store.types import utc

router = APIRouter(tags=["logs"])
_ENTRY_FIELDS = [name for name in LogCreate.model_fields if name != "id"]


@router.post(
    "/logs",
    status_code=status.HTTP_201_CREATED,
    summary="Record one call (acknowledged once on disk)",
)
async def create_log(body: LogCreate, ctx: ContextDep, request: Request) -> LogCreated:
    [uid] = await _record(ctx, request, [body])
    return LogCreated(id=uid)


@router.post(
    "/logs/batch", status_code=status.HTTP_201_CREATED, summary="Record up to 10,000 calls at once"
)
async def create_logs(body: LogBatch, ctx: ContextDep, request: Request) -> LogIds:
    return LogIds(ids=await _record(ctx, request, body.logs))


@router.get("/logs", summary="Logs, newest first, filtered")
def list_logs(
    ctx: ContextDep,
    request: Request,
    prompt: Annotated[str | None, Query(max_length=255)] = None,
    version: Annotated[str | None, Query(max_length=12)] = None,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    source: Annotated[str | None, Query(max_length=16)] = None,
    since: Annotated[datetime | None, Query(description="ISO time, inclusive.")] = None,
    until: Annotated[datetime | None, Query(description="ISO time, exclusive.")] = None,
    error: Annotated[
        bool | None, Query(description="true: failed calls only; false: successful only.")
    ] = None,
    end_user: Annotated[str | None, Query(max_length=200)] = None,
    trace_id: Annotated[str | None, Query(max_length=64)] = None,
    metadata: Annotated[
        list[str] | None,
        Query(max_length=20, description="`key:value`, repeatable; all must match."),
    ] = None,
    feedback: Annotated[
        list[str] | None,
        Query(
            max_length=20,
            description="Repeatable; all must hold: `up`, `down` (a current vote above or below "
            "the middle of its scale), `any`, `none` (no feedback yet), or a feedback kind's name "
            "(`copied`, `correction`, …).",
        ),
    ] = None,
    judgment: Annotated[
        list[str] | None,
        Query(
            max_length=20,
            description="Repeatable; all must hold: an evaluator's judgment of the log compared "
            "with a value, `<evaluator><op><value>` with op `>=`, `<=`, `>`, `<`, `=` or `!=` "
            "(`helpful>=4`, `exact=true`).",
        ),
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ListPublic[LogPublic]:
    logger: Logger = request.app.state.logger
    with ctx.transaction(write=False) as (session, project, actor):
        judgments = datasets.judgment_filters(session, project=project, texts=judgment or ())
        page = logs.list_logs(
            session,
            logger.store,
            actor=actor,
            project=project,
            prompt=prompt,
            version=version,
            cursor=cursor,
            limit=limit,
            environment=environment,
            source=source,
            since=utc(since),
            until=utc(until),
            has_error=error,
            end_user=end_user,
            trace_id=trace_id,
            metadata=_pairs(metadata or []),
            feedback=tuple(feedback or ()),
            judgments=judgments,
        )
        names = logs.names_for(session, page.items)
    return ListPublic(
        data=[log_public(log, names) for log in page.items], next_cursor=page.next_cursor
    )


@router.get("/logs/{log_id}", summary="One log")
def get_log(
    log_id: Annotated[str, Path(max_length=36)], ctx: ContextDep, request: Request
) -> LogPublic:
    logger: Logger = request.app.state.logger
    with ctx.transaction(write=False) as (session, project, actor):
        log = logs.get_log(logger.store, actor=actor, project=project, uid=log_id)
        names = logs.names_for(session, [log])
    return log_public(log, names)


def log_public(log: Log, names: logs.Names) -> LogPublic:
    prompt, version = names.of(log)
    return LogPublic(
        id=log.uid,
        source=log.source,
        prompt=prompt,
        version=version,
        environment=log.environment,
        provider=log.provider,
        model=log.model,
        inputs=log.inputs,
        messages=log.messages,
        output=log.output,
        tool_calls=log.tool_calls,
        finish_reason=log.finish_reason,
        prompt_tokens=log.prompt_tokens,
        output_tokens=log.output_tokens,
        cost=log.cost,
        latency_ms=log.latency_ms,
        ttft_ms=log.ttft_ms,
        error=log.error,
        end_user=log.end_user,
        metadata=log.meta,
        trace_id=log.trace_id,
        parent_id=log.parent_id,
        consent=log.consent,
        withheld=bool(log.withheld),
        created_at=log.created_at,
        kernel=log.kernel,
    )


async def _record(ctx: ContextDep, request: Request, bodies: list[LogCreate]) -> list[str]:
    logger: Logger = request.app.state.logger
    project, actor = await asyncio.to_thread(ctx.resolve)
    entries = [
        LogEntry(**{name: getattr(body, name) for name in _ENTRY_FIELDS}, uid=body.id)
        for body in bodies
    ]
    return await logger.record(ctx.db, actor=actor, project=project, entries=entries)


def _pairs(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise InvalidInput(f"Metadata filter {item!r} must look like key:value.")
        pairs[key] = value
    return pairs
