"""API keys: project-scoped, one role each, shown once, stored hashed, revocable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from promptloop.core.access import Actor, Permission, Role
from promptloop.core.errors import Forbidden, InvalidInput, NotFound
from promptloop.services import audit
from promptloop.services.auth import API_KEY_PREFIX, digest, new_api_key_secret
from promptloop.store.models import ApiKey, Project
from promptloop.store.types import utcnow


@dataclass(frozen=True)
class CreatedKey:
    """A new key and its secret, which is never shown again."""

    key: ApiKey
    secret: str


def create_key(
    session: Session, *, actor: Actor, project: Project, name: str, role: str
) -> CreatedKey:
    """A new key for `project`; nobody can create a key with more power than their own role."""
    actor.require(Permission.manage_api_keys)
    wanted = Role.parse(role)
    if wanted > actor.role:
        raise Forbidden(
            f"Your role '{actor.role.name}' cannot create a key with role '{wanted.name}': "
            "a key's role can be at most your own."
        )
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("Give the key a name of 1-200 characters that says what uses it.")
    secret = new_api_key_secret()
    key = ApiKey(
        project_id=project.id,
        name=name,
        role=wanted.name,
        prefix=secret[: len(API_KEY_PREFIX) + 6],
        key_hash=digest(secret),
        created_by=actor.name,
    )
    session.add(key)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="api_key.create",
        target=f"api_key:{key.id}",
        project=project,
        details={"name": name, "role": wanted.name, "prefix": key.prefix},
    )
    return CreatedKey(key=key, secret=secret)


def list_keys(session: Session, *, actor: Actor, project: Project) -> Sequence[ApiKey]:
    actor.require(Permission.manage_api_keys)
    return session.scalars(
        select(ApiKey).where(ApiKey.project_id == project.id).order_by(ApiKey.id)
    ).all()


def revoke_key(session: Session, *, actor: Actor, project: Project, key_id: int) -> ApiKey:
    """Revoke a key of this project; a revoked key stops working on its next request."""
    actor.require(Permission.manage_api_keys)
    key = session.scalars(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.project_id == project.id)
    ).first()
    if key is None:
        raise NotFound(f"No API key {key_id} in project {project.name!r}.")
    if Role[key.role] > actor.role:
        raise Forbidden(
            f"Your role '{actor.role.name}' cannot revoke a key with role '{key.role}'."
        )
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit.record(
            session,
            actor=actor,
            action="api_key.revoke",
            target=f"api_key:{key.id}",
            project=project,
            details={"name": key.name, "prefix": key.prefix},
        )
    return key
