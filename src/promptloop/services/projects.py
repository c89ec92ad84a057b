"""Projects and their environments."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from promptloop.core.errors import Conflict, NotFound
from promptloop.core.paths import validate_environment_name, validate_project_name
from promptloop.services.storage import insert_or_get
from promptloop.store.models import Environment, Project

# (name, protected): production is protected so the access-control layer can gate deploys to it.
DEFAULT_ENVIRONMENTS = (("development", False), ("staging", False), ("production", True))


def ensure_project(session: Session, *, name: str) -> Project:
    """Return the project called `name`, creating it with the default environments if needed."""
    validate_project_name(name)
    project, created = insert_or_get(
        session, Project(name=name), select(Project).where(Project.name == name)
    )
    if created:
        for env_name, protected in DEFAULT_ENVIRONMENTS:
            session.add(Environment(project_id=project.id, name=env_name, protected=protected))
        session.flush()
    return project


def create_project(session: Session, *, name: str) -> Project:
    """Create a project with the default environments; Conflict if the name is taken."""
    validate_project_name(name)
    if session.scalars(select(Project).where(Project.name == name)).first():
        raise Conflict(f"A project named {name!r} already exists.")
    return ensure_project(session, name=name)


def get_project(session: Session, *, name: str) -> Project:
    project = session.scalars(select(Project).where(Project.name == name)).first()
    if project is None:
        raise NotFound(f"No project named {name!r}. List projects with GET /api/v1/projects.")
    return project


def list_projects(session: Session) -> Sequence[Project]:
    return session.scalars(select(Project).order_by(Project.name)).all()


def list_environments(session: Session, *, project: Project) -> Sequence[Environment]:
    return session.scalars(
        select(Environment).where(Environment.project_id == project.id).order_by(Environment.id)
    ).all()


def get_environment(session: Session, *, project: Project, name: str) -> Environment:
    """The environment called `name`; NotFound lists the ones that exist."""
    environment = session.scalars(
        select(Environment).where(Environment.project_id == project.id, Environment.name == name)
    ).first()
    if environment is None:
        known = ", ".join(e.name for e in list_environments(session, project=project))
        raise NotFound(
            f"No environment named {name!r} in project {project.name!r}; it has: {known}.",
            details={"environments": known.split(", ")},
        )
    return environment


def create_environment(
    session: Session, *, project: Project, name: str, protected: bool = False
) -> Environment:
    """Add an environment to the project; Conflict if one has that name."""
    validate_environment_name(name)
    environment, created = insert_or_get(
        session,
        Environment(project_id=project.id, name=name, protected=protected),
        select(Environment).where(Environment.project_id == project.id, Environment.name == name),
    )
    if not created:
        raise Conflict(f"Environment {name!r} already exists in project {project.name!r}.")
    return environment
