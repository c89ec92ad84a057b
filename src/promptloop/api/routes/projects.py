from __future__ import annotations

from fastapi import APIRouter, status

from promptloop.api.deps import ContextDep, DbDep
from promptloop.api.schemas import (
    EnvironmentCreate,
    EnvironmentPublic,
    ProjectCreate,
    ProjectPublic,
)
from promptloop.services import projects

router = APIRouter(tags=["projects"])


@router.get("/projects", summary="List projects")
def list_projects(db: DbDep) -> list[ProjectPublic]:
    with db.session(write=False) as session:
        return [
            ProjectPublic.model_validate(p, from_attributes=True)
            for p in projects.list_projects(session)
        ]


@router.post("/projects", status_code=status.HTTP_201_CREATED, summary="Create a project")
def create_project(body: ProjectCreate, db: DbDep) -> ProjectPublic:
    with db.session(write=True) as session:
        project = projects.create_project(session, name=body.name)
        return ProjectPublic.model_validate(project, from_attributes=True)


@router.get("/environments", summary="List the project's environments")
def list_environments(ctx: ContextDep) -> list[EnvironmentPublic]:
    with ctx.transaction(write=False) as (session, project):
        return [
            EnvironmentPublic.model_validate(e, from_attributes=True)
            for e in projects.list_environments(session, project=project)
        ]


@router.post("/environments", status_code=status.HTTP_201_CREATED, summary="Create an environment")
def create_environment(body: EnvironmentCreate, ctx: ContextDep) -> EnvironmentPublic:
    with ctx.transaction(write=True) as (session, project):
        env = projects.create_environment(
            session, project=project, name=body.name, protected=body.protected
        )
        return EnvironmentPublic.model_validate(env, from_attributes=True)
