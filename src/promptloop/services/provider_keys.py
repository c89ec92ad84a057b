"""Provider API keys per project: encrypted at rest, never returned, only a hint shown."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from promptloop.core.access import Actor, Permission
from promptloop.core.errors import InvalidInput, NotFound
from promptloop.services import audit
from promptloop.services.secrets import SecretBox
from promptloop.services.storage import insert_or_get
from promptloop.store.models import Project, ProviderCredential
from promptloop.store.types import utcnow


def set_key(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    box: SecretBox,
    provider: str,
    secret: str,
    base_url: str | None = None,
) -> ProviderCredential:
    """Store (or replace) the project's key for `provider`, encrypted, and the server URL for
    OpenAI-compatible servers (vLLM, Ollama, llama.cpp, LM Studio…)."""
    actor.require(Permission.manage_provider_keys)
    secret = secret.strip()
    if not secret:
        raise InvalidInput("The provider key is empty.")
    credential, created = insert_or_get(
        session,
        ProviderCredential(
            project_id=project.id,
            provider=provider,
            ciphertext=box.encrypt(secret),
            hint=_hint(secret),
            base_url=base_url,
            updated_by=actor.name,
        ),
        select(ProviderCredential).where(
            ProviderCredential.project_id == project.id, ProviderCredential.provider == provider
        ),
    )
    if not created:
        credential.ciphertext = box.encrypt(secret)
        credential.hint = _hint(secret)
        credential.base_url = base_url
        credential.updated_by = actor.name
        credential.updated_at = utcnow()
    audit.record(
        session,
        actor=actor,
        action="provider_key.set",
        target=f"provider:{provider}",
        project=project,
        details={"replaced": not created},
    )
    return credential


def list_keys(session: Session, *, actor: Actor, project: Project) -> Sequence[ProviderCredential]:
    actor.require(Permission.read)
    return session.scalars(
        select(ProviderCredential)
        .where(ProviderCredential.project_id == project.id)
        .order_by(ProviderCredential.provider)
    ).all()


def delete_key(session: Session, *, actor: Actor, project: Project, provider: str) -> None:
    actor.require(Permission.manage_provider_keys)
    credential = _get(session, project=project, provider=provider)
    session.delete(credential)
    audit.record(
        session,
        actor=actor,
        action="provider_key.delete",
        target=f"provider:{provider}",
        project=project,
    )


def stored(session: Session, *, project: Project, provider: str) -> ProviderCredential:
    """The stored (encrypted) credential, for calling the provider from the server only."""
    return _get(session, project=project, provider=provider)


def _get(session: Session, *, project: Project, provider: str) -> ProviderCredential:
    credential = session.scalars(
        select(ProviderCredential).where(
            ProviderCredential.project_id == project.id, ProviderCredential.provider == provider
        )
    ).first()
    if credential is None:
        raise NotFound(f"No {provider!r} key in project {project.name!r}.")
    return credential


def _hint(secret: str) -> str:
    """The last four characters, only when they are a small part of the key."""
    return secret[-4:] if len(secret) >= 16 else ""
