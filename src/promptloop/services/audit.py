"""The audit log: deployments, rollbacks, membership and role changes, key creation and
revocation, deletions, provider-key changes. Append-only; readable and exportable by admins."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from promptloop.core.access import Actor, Permission
from promptloop.services.pagination import Page, paginate
from promptloop.store.models import AuditEvent, Project

EXPORT_COLUMNS = (
    "id",
    "created_at",
    "actor_kind",
    "actor",
    "address",
    "action",
    "target",
    "details",
)


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    target: str,
    project: Project | None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction, so it commits with the change it records."""
    event = AuditEvent(
        project_id=project.id if project else None,
        actor_kind=actor.kind,
        actor=actor.name,
        action=action,
        target=target,
        details=details or {},
        address=actor.address,
    )
    session.add(event)
    return event


def list_events(
    session: Session, *, actor: Actor, project: Project, cursor: str | None, limit: int
) -> Page[AuditEvent]:
    """The project's audit events, newest first."""
    actor.require(Permission.read_audit)
    query = select(AuditEvent).where(AuditEvent.project_id == project.id)
    return paginate(session, query, key=AuditEvent.id, cursor=cursor, limit=limit, descending=True)


def export(session: Session, *, actor: Actor, project: Project, fmt: str) -> Iterator[str]:
    """Every audit event of the project, oldest first, as JSON lines or CSV."""
    actor.require(Permission.read_audit)
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.project_id == project.id).order_by(AuditEvent.id)
    )
    rows = (
        {
            "id": e.id,
            "created_at": e.created_at.isoformat(),
            "actor_kind": e.actor_kind,
            "actor": e.actor,
            "address": e.address,
            "action": e.action,
            "target": e.target,
            "details": e.details,
        }
        for e in events
    )
    if fmt == "jsonl":
        return (json.dumps(row) + "\n" for row in rows)
    return _csv(rows)


def _csv(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "details": json.dumps(row["details"])})
    yield buffer.getvalue()
