"""Turn service results (store rows) into public response bodies."""

from __future__ import annotations

from collections.abc import Mapping

from promptloop.api.schemas import DeploymentEventPublic, VersionPublic
from promptloop.core import templates
from promptloop.services.prompts import kernel_of
from promptloop.store.models import DeploymentEvent, PromptVersion


def version_public(
    version: PromptVersion, *, path: str, environments: list[str] | None = None
) -> VersionPublic:
    kernel = kernel_of(version)
    return VersionPublic(
        **kernel.model_dump(),
        id=version.version_id,
        prompt_path=path,
        content_hash=version.content_hash,
        name=version.name,
        message=version.message,
        author=version.author,
        created_at=version.created_at,
        variables=templates.variables(kernel),
        environments=environments or [],
    )


def event_public(
    event: DeploymentEvent,
    *,
    versions: Mapping[int, PromptVersion],
    environments: Mapping[int, str],
) -> DeploymentEventPublic:
    previous = versions.get(event.previous_version_pk) if event.previous_version_pk else None
    return DeploymentEventPublic(
        id=event.id,
        environment=environments[event.environment_id],
        action=event.action,
        version_id=versions[event.version_pk].version_id,
        previous_version_id=previous.version_id if previous else None,
        actor=event.actor,
        message=event.message,
        created_at=event.created_at,
    )
