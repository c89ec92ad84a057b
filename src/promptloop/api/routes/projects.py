from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from promptloop.api.deps import ContextDep
from promptloop.api.schemas import (
    EnvironmentCreate,
    EnvironmentPublic,
    EnvironmentUpdate,
    ProjectCreate,
    ProjectPublic,
    ProjectUpdate,
)
from promptloop.services import auth, projects

router = APIRouter(tags=["projects"])

EnvironmentName = Annotated[str, Path(max_length=64)]


@router.get("/projects", summary="List the projects you can see")
def list_projects(ctx: ContextDep) -> list[ProjectPublic]:
    with ctx.principal_transaction(write=False) as (session, principal):
        return [
            ProjectPublic.model_validate(p, from_attributes=True)
            for p in projects.list_projects(session, principal=principal)
        ]


@router.post(
    "/projects",
    status_code=status.HTTP_201_CREATED,
    summary="Create a project (you become its admin)",
)
def create_project(body: ProjectCreate, ctx: ContextDep) -> ProjectPublic:
    with ctx.principal_transaction(write=True) as (session, principal):
        project = projects.create_project(session, principal=principal, name=body.name)
        return ProjectPublic.model_validate(project, from_attributes=True)


@router.patch("/projects/{name}", summary="Change a project's settings (admins)")
def update_project(
    name: Annotated[str, Path(max_length=64)], body: ProjectUpdate, ctx: ContextDep
) -> ProjectPublic:
    with ctx.principal_transaction(write=True) as (session, principal):
        project = projects.get_project(session, name=name)
        actor = auth.actor_for(session, principal=principal, project=project)
        projects.set_content_capture(
            session, actor=actor, project=project, mode=body.content_capture
        )
        return ProjectPublic.model_validate(project, from_attributes=True)


@router.get("/environments", summary="List the project's environments")
def list_environments(ctx: ContextDep) -> list[EnvironmentPublic]:
    with ctx.transaction(write=False) as (session, project, _actor):
        return [
            EnvironmentPublic.model_validate(e, from_attributes=True)
            for e in projects.list_environments(session, project=project)
        ]


@router.post("/environments", status_code=status.HTTP_201_CREATED, summary="Create an environment")
def create_environment(body: EnvironmentCreate, ctx: ContextDep) -> EnvironmentPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        env = projects.create_environment(
            session, actor=actor, project=project, name=body.name, protected=body.protected
        )
        return EnvironmentPublic.model_validate(env, from_attributes=True)


@router.patch("/environments/{name}", summary="Protect an environment or lift its protection")
def update_environment(
    name: EnvironmentName, body: EnvironmentUpdate, ctx: ContextDep
) -> EnvironmentPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        env = projects.set_protection(
            session, actor=actor, project=project, name=name, protected=body.protected
        )
        return EnvironmentPublic.model_validate(env, from_attributes=True)
