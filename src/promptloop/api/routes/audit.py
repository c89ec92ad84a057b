from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from promptloop.api.deps import ContextDep
from promptloop.api.routes.prompts import Cursor, Limit
from promptloop.api.schemas import AuditEventPublic, ListPublic
from promptloop.services import audit

router = APIRouter(tags=["audit"])


@router.get("/audit", summary="The project's audit log, newest first (admin)")
def list_audit(
    ctx: ContextDep, cursor: Cursor = None, limit: Limit = 50
) -> ListPublic[AuditEventPublic]:
    with ctx.transaction(write=False) as (session, project, actor):
        page = audit.list_events(session, actor=actor, project=project, cursor=cursor, limit=limit)
        return ListPublic(
            data=[AuditEventPublic.model_validate(e, from_attributes=True) for e in page.items],
            next_cursor=page.next_cursor,
        )


@router.get("/audit/export", summary="Download the whole audit log as JSON lines or CSV (admin)")
def export_audit(
    ctx: ContextDep, format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl"
) -> Response:
    with ctx.transaction(write=False) as (session, project, actor):
        body = "".join(audit.export(session, actor=actor, project=project, fmt=format))
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="audit-{project.name}.{format}"'},
    )
