"""Deploying versions to environments, the deployment history, and rollback.

Every change of what an environment serves appends a DeploymentEvent in the same transaction
that changes the Deployment row, with the row locked, so the history is a consistent chain:
each event's `previous_version_pk` is the version the event before it deployed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from promptloop.core.access import Actor, Permission
from promptloop.core.errors import Conflict
from promptloop.services import audit, catalogue
from promptloop.services.pagination import Page, paginate
from promptloop.services.projects import get_environment, list_environments
from promptloop.services.prompts import get_prompt, get_version
from promptloop.services.storage import insert_or_get
from promptloop.store.models import (
    Deployment,
    DeploymentEvent,
    Environment,
    Project,
    Prompt,
    PromptVersion,
)
from promptloop.store.types import utcnow

DEPLOY = "deploy"
ROLLBACK = "rollback"


@dataclass(frozen=True)
class Deployed:
    """The event that put the version in place; `changed` is False when it was already there."""

    event: DeploymentEvent
    changed: bool


@dataclass(frozen=True)
class EnvironmentState:
    """What one environment serves for a prompt (version None: nothing deployed)."""

    environment: Environment
    deployment: Deployment | None
    version: PromptVersion | None


def deploy(
    session: Session,
    *,
    project: Project,
    path: str,
    version: str,
    environment: str,
    actor: Actor,
    message: str | None = None,
) -> Deployed:
    """Make `environment` serve `version` of the prompt. Deploying what it already serves
    records nothing and returns the event that deployed it."""
    prompt = get_prompt(session, project=project, path=path)
    target = get_version(session, prompt=prompt, ref=version)
    env = get_environment(session, project=project, name=environment)
    _require_deploy(actor, env)
    kernel = target.kernel
    catalogue.check_access(
        session, project=project, provider=kernel["provider"], name=kernel["model"]
    )
    current, previous = _lock_or_create(
        session, prompt=prompt, environment=env, version=target, actor=actor
    )
    if previous == target.id:
        latest = _latest_event(session, prompt=prompt, environment=env)
        if latest is not None:
            return Deployed(event=latest, changed=False)
    _move(current, target.id, actor)
    event = _record(
        session, current, action=DEPLOY, previous=previous, actor=actor, message=message
    )
    _audit(session, actor, project, prompt, env, event, versions=(previous, target.id))
    return Deployed(event=event, changed=True)


def rollback(
    session: Session,
    *,
    project: Project,
    path: str,
    environment: str,
    actor: Actor,
    message: str | None = None,
) -> DeploymentEvent:
    """Undo the latest deploy to `environment` that is not undone yet (repeat to go further back)."""
    prompt = get_prompt(session, project=project, path=path)
    env = get_environment(session, project=project, name=environment)
    _require_deploy(actor, env)
    current = session.scalars(
        select(Deployment)
        .where(Deployment.prompt_id == prompt.id, Deployment.environment_id == env.id)
        .with_for_update()
    ).first()
    target = _rollback_target(session, prompt=prompt, environment=env)
    if current is None or target is None:
        raise Conflict(
            f"Nothing to roll back to in {environment!r} for {path!r}: no earlier deployment."
        )
    previous = current.version_pk
    _move(current, target, actor)
    event = _record(
        session, current, action=ROLLBACK, previous=previous, actor=actor, message=message
    )
    _audit(session, actor, project, prompt, env, event, versions=(previous, target))
    return event


def environment_states(session: Session, *, project: Project, path: str) -> list[EnvironmentState]:
    """Every environment of the project with what it serves for the prompt."""
    prompt = get_prompt(session, project=project, path=path)
    rows = session.execute(
        select(Deployment, PromptVersion)
        .join(PromptVersion, PromptVersion.id == Deployment.version_pk)
        .where(Deployment.prompt_id == prompt.id)
    ).all()
    by_env = {d.environment_id: (d, v) for d, v in rows}
    states = []
    for env in list_environments(session, project=project):
        deployment, version = by_env.get(env.id, (None, None))
        states.append(EnvironmentState(environment=env, deployment=deployment, version=version))
    return states


def rollback_targets(session: Session, *, project: Project, path: str) -> dict[int, int]:
    """Environment id → the version a rollback there would serve, for the environments where
    `rollback` would succeed (earlier rollbacks counted, as `rollback` counts them)."""
    prompt = get_prompt(session, project=project, path=path)
    targets = {}
    for env in list_environments(session, project=project):
        target = _rollback_target(session, prompt=prompt, environment=env)
        if target is not None:
            targets[env.id] = target
    return targets


def history(
    session: Session,
    *,
    project: Project,
    path: str,
    environment: str | None,
    cursor: str | None,
    limit: int,
) -> Page[DeploymentEvent]:
    """Deployment events for the prompt, newest first; optionally of one environment."""
    prompt = get_prompt(session, project=project, path=path)
    query = select(DeploymentEvent).where(DeploymentEvent.prompt_id == prompt.id)
    if environment is not None:
        env = get_environment(session, project=project, name=environment)
        query = query.where(DeploymentEvent.environment_id == env.id)
    return paginate(
        session, query, key=DeploymentEvent.id, cursor=cursor, limit=limit, descending=True
    )


def environment_names(session: Session, *, project: Project) -> dict[int, str]:
    return {e.id: e.name for e in list_environments(session, project=project)}


def _lock_or_create(
    session: Session,
    *,
    prompt: Prompt,
    environment: Environment,
    version: PromptVersion,
    actor: Actor,
) -> tuple[Deployment, int | None]:
    """The prompt's deployment row in `environment`, locked for this transaction, and the version
    it served before (None when this call created the row, serving `version`)."""
    query = (
        select(Deployment)
        .where(Deployment.prompt_id == prompt.id, Deployment.environment_id == environment.id)
        .with_for_update()
    )
    deployment, created = insert_or_get(
        session,
        Deployment(
            prompt_id=prompt.id,
            environment_id=environment.id,
            version_pk=version.id,
            deployed_by=actor.name,
        ),
        query,
    )
    return deployment, None if created else deployment.version_pk


def _require_deploy(actor: Actor, environment: Environment) -> None:
    if environment.protected:
        actor.require(Permission.deploy_protected, detail=f"{environment.name!r} is protected")
    else:
        actor.require(Permission.deploy)


def _audit(
    session: Session,
    actor: Actor,
    project: Project,
    prompt: Prompt,
    environment: Environment,
    event: DeploymentEvent,
    *,
    versions: tuple[int | None, int],
) -> None:
    found = {
        v.id: v.version_id
        for v in session.scalars(
            select(PromptVersion).where(PromptVersion.id.in_([pk for pk in versions if pk]))
        )
    }
    audit.record(
        session,
        actor=actor,
        action=f"prompt.{event.action}",
        target=f"prompt:{prompt.path}",
        project=project,
        details={
            "environment": environment.name,
            "from": found.get(versions[0]) if versions[0] else None,
            "to": found[versions[1]],
        },
    )


def _move(deployment: Deployment, version_pk: int, actor: Actor) -> None:
    deployment.version_pk = version_pk
    deployment.deployed_by = actor.name
    deployment.deployed_at = utcnow()


def _record(
    session: Session,
    deployment: Deployment,
    *,
    action: str,
    previous: int | None,
    actor: Actor,
    message: str | None,
) -> DeploymentEvent:
    event = DeploymentEvent(
        prompt_id=deployment.prompt_id,
        environment_id=deployment.environment_id,
        action=action,
        version_pk=deployment.version_pk,
        previous_version_pk=previous,
        actor=actor.name,
        message=message,
    )
    session.add(event)
    session.flush()
    return event


def _latest_event(
    session: Session, *, prompt: Prompt, environment: Environment
) -> DeploymentEvent | None:
    return session.scalars(
        select(DeploymentEvent)
        .where(
            DeploymentEvent.prompt_id == prompt.id, DeploymentEvent.environment_id == environment.id
        )
        .order_by(DeploymentEvent.id.desc())
        .limit(1)
    ).first()


def _rollback_target(session: Session, *, prompt: Prompt, environment: Environment) -> int | None:
    events: Sequence[DeploymentEvent] = session.scalars(
        select(DeploymentEvent)
        .where(
            DeploymentEvent.prompt_id == prompt.id, DeploymentEvent.environment_id == environment.id
        )
        .order_by(DeploymentEvent.id.desc())
    ).all()
    undone = 0
    for event in events:
        if event.action == ROLLBACK:
            undone += 1
        elif undone:
            undone -= 1
        else:
            return event.previous_version_pk
    return None
