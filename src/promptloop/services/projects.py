"""Projects and their environments."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from promptloop.core.access import Actor, Permission, Role
from promptloop.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from promptloop.core.paths import validate_environment_name, validate_project_name
from promptloop.services import audit, feedback
from promptloop.services.auth import Principal
from promptloop.services.storage import insert_or_get
from promptloop.store.models import Environment, Membership, Project

# When log inputs and outputs are stored (see `services.logs.withholds`).
CAPTURE_MODES = ("always", "unless_declined", "with_consent")
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
    feedback.seed_kinds(session, project=project)
    return project


def set_content_capture(session: Session, *, actor: Actor, project: Project, mode: str) -> Project:
    """When the inputs and outputs of logs are stored: `always`, `unless_declined` (not for end
    users who declined consent) or `with_consent` (only for end users who consented).
    Applies to logs written from now on."""
    actor.require(Permission.manage_project)
    if mode not in CAPTURE_MODES:
        raise InvalidInput(
            f"Unknown content capture {mode!r}: use one of {', '.join(CAPTURE_MODES)}."
        )
    before = project.content_capture
    project.content_capture = mode
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="project.content_capture",
        target=f"project:{project.name}",
        project=project,
        details={"from": before, "to": mode},
    )
    return project


def create_project(session: Session, *, principal: Principal, name: str) -> Project:
    """Create a project with the default environments, its creator as admin. Signed-in users
    may; API keys, which belong to one project, may not."""
    if principal.user is None:
        raise Forbidden("API keys belong to one project and cannot create projects; sign in.")
    validate_project_name(name)
    if session.scalars(select(Project).where(Project.name == name)).first():
        raise Conflict(f"A project named {name!r} already exists.")
    project = ensure_project(session, name=name)
    session.add(Membership(project_id=project.id, user_id=principal.user.id, role=Role.admin.name))
    creator = Actor(
        kind="user",
        id=principal.user.id,
        name=principal.name,
        role=Role.admin,
        address=principal.address,
    )
    audit.record(
        session, actor=creator, action="project.create", target=f"project:{name}", project=project
    )
    return project


def get_project(session: Session, *, name: str) -> Project:
    project = session.scalars(select(Project).where(Project.name == name)).first()
    if project is None:
        raise NotFound(f"No project named {name!r}. List projects with GET /api/v1/projects.")
    return project


def list_projects(session: Session, *, principal: Principal) -> Sequence[Project]:
    """The projects the principal can see: its key's one, a user's memberships, or all for
    server admins."""
    query = select(Project).order_by(Project.name)
    if principal.api_key is not None:
        query = query.where(Project.id == principal.api_key.project_id)
    elif principal.user is not None and not principal.user.server_admin:
        query = query.join(Membership, Membership.project_id == Project.id).where(
            Membership.user_id == principal.user.id
        )
    return session.scalars(query).all()


def list_all_projects(session: Session) -> Sequence[Project]:
    """Every project on the server (for start-up maintenance, not for users)."""
    return session.scalars(select(Project).order_by(Project.id)).all()


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
    session: Session, *, actor: Actor, project: Project, name: str, protected: bool = False
) -> Environment:
    """Add an environment to the project; Conflict if one has that name."""
    actor.require(Permission.manage_environments)
    validate_environment_name(name)
    environment, created = insert_or_get(
        session,
        Environment(project_id=project.id, name=name, protected=protected),
        select(Environment).where(Environment.project_id == project.id, Environment.name == name),
    )
    if not created:
        raise Conflict(f"Environment {name!r} already exists in project {project.name!r}.")
    audit.record(
        session,
        actor=actor,
        action="environment.create",
        target=f"environment:{name}",
        project=project,
        details={"protected": protected},
    )
    return environment


def set_protection(
    session: Session, *, actor: Actor, project: Project, name: str, protected: bool
) -> Environment:
    """Protect an environment (deploys need a developer or admin) or lift the protection."""
    actor.require(Permission.manage_environments)
    environment = get_environment(session, project=project, name=name)
    if environment.protected != protected:
        environment.protected = protected
        audit.record(
            session,
            actor=actor,
            action="environment.protect",
            target=f"environment:{name}",
            project=project,
            details={"protected": protected},
        )
    return environment
