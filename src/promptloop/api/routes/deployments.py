from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from promptloop.api.deps import ContextDep
from promptloop.api.present import event_public
from promptloop.api.routes.prompts import Cursor, Limit
from promptloop.api.schemas import (
    DeploymentEventPublic,
    DeployRequest,
    EnvironmentStatePublic,
    ListPublic,
    RollbackRequest,
)
from promptloop.services import deployments
from promptloop.services.prompts import versions_by_pk
from promptloop.store.models import DeploymentEvent, Project

router = APIRouter(tags=["deployments"])


@router.get("/prompts/{path:path}/-/deployments", summary="What each environment serves")
def list_deployments(path: str, ctx: ContextDep) -> list[EnvironmentStatePublic]:
    with ctx.transaction(write=False) as (session, project, _actor):
        states = deployments.environment_states(session, project=project, path=path)
    return [
        EnvironmentStatePublic(
            environment=s.environment.name,
            protected=s.environment.protected,
            version_id=s.version.version_id if s.version else None,
            deployed_by=s.deployment.deployed_by if s.deployment else None,
            deployed_at=s.deployment.deployed_at if s.deployment else None,
        )
        for s in states
    ]


@router.put(
    "/prompts/{path:path}/-/deployments/{environment}", summary="Deploy a version to an environment"
)
def deploy(
    path: str, environment: str, body: DeployRequest, ctx: ContextDep
) -> DeploymentEventPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        deployed = deployments.deploy(
            session,
            project=project,
            path=path,
            version=body.version,
            environment=environment,
            actor=actor,
            message=body.message,
        )
        public = _events_public(session, project, [deployed.event])[0]
    return public.model_copy(update={"changed": deployed.changed})


@router.post(
    "/prompts/{path:path}/-/deployments/{environment}/rollback",
    summary="Undo the latest deploy to an environment",
)
def rollback(
    path: str, environment: str, body: RollbackRequest, ctx: ContextDep
) -> DeploymentEventPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        event = deployments.rollback(
            session,
            project=project,
            path=path,
            environment=environment,
            actor=actor,
            message=body.message,
        )
        return _events_public(session, project, [event])[0]


@router.get("/prompts/{path:path}/-/history", summary="Deployment history, newest first")
def history(
    path: str,
    ctx: ContextDep,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ListPublic[DeploymentEventPublic]:
    with ctx.transaction(write=False) as (session, project, _actor):
        page = deployments.history(
            session, project=project, path=path, environment=environment, cursor=cursor, limit=limit
        )
        data = _events_public(session, project, page.items)
    return ListPublic(data=data, next_cursor=page.next_cursor)


def _events_public(
    session: Session, project: Project, events: Sequence[DeploymentEvent]
) -> list[DeploymentEventPublic]:
    pks = [e.version_pk for e in events] + [e.previous_version_pk for e in events]
    versions = versions_by_pk(session, pks)
    names = deployments.environment_names(session, project=project)
    return [event_public(e, versions=versions, environments=names) for e in events]
