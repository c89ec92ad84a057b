"""Prompts and their immutable, content-addressed versions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from promptloop.core import templates
from promptloop.core.access import Actor, Permission
from promptloop.core.diff import KernelDiff, diff_kernels
from promptloop.core.errors import Conflict, InvalidInput, NotFound
from promptloop.core.kernel import Kernel, content_hash, version_id
from promptloop.core.paths import validate_prompt_path
from promptloop.services.pagination import Page, paginate
from promptloop.services.projects import get_environment
from promptloop.services.storage import insert_or_get
from promptloop.store.models import Deployment, Environment, Project, Prompt, PromptVersion

MIN_VERSION_PREFIX = 4


@dataclass(frozen=True)
class SavedVersion:
    """The version a save resolved to, and whether the save created it."""

    version: PromptVersion
    created: bool


def get_prompt(session: Session, *, project: Project, path: str) -> Prompt:
    validate_prompt_path(path)
    prompt = session.scalars(
        select(Prompt).where(Prompt.project_id == project.id, Prompt.path == path)
    ).first()
    if prompt is None:
        raise NotFound(
            f"No prompt at {path!r} in project {project.name!r}. Saving a version creates it."
        )
    return prompt


def create_prompt(
    session: Session, *, actor: Actor, project: Project, path: str, description: str | None = None
) -> Prompt:
    """Create an empty prompt; Conflict if the path is taken."""
    actor.require(Permission.edit)
    prompt, created = _upsert_prompt(session, project=project, path=path, description=description)
    if not created:
        raise Conflict(f"A prompt already exists at {path!r} in project {project.name!r}.")
    return prompt


def list_prompts(
    session: Session, *, project: Project, prefix: str | None, cursor: str | None, limit: int
) -> Page[Prompt]:
    """Prompts in path order; `prefix` (a folder like `support/`) narrows the list."""
    query = select(Prompt).where(Prompt.project_id == project.id)
    if prefix:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Prompt.path.like(f"{escaped}%", escape="\\"))
    return paginate(session, query, key=Prompt.path, cursor=cursor, limit=limit, descending=False)


def save_version(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    path: str,
    kernel: Kernel,
    author: str | None = None,
    name: str | None = None,
    message: str | None = None,
    description: str | None = None,
) -> SavedVersion:
    """Save a version of the prompt at `path` (creating the prompt if needed); the author is
    the actor unless given.

    Saving content that already exists returns that version unchanged: its name, message and
    author stay those of the first save.
    """
    actor.require(Permission.edit)
    templates.check_syntax(kernel)
    prompt, _ = _upsert_prompt(session, project=project, path=path, description=description)
    digest = content_hash(kernel)
    short = version_id(kernel)
    version, created = insert_or_get(
        session,
        PromptVersion(
            prompt_id=prompt.id,
            version_id=short,
            content_hash=digest,
            kernel=kernel.model_dump(mode="json"),
            name=name,
            message=message,
            author=author or actor.name,
        ),
        select(PromptVersion).where(
            PromptVersion.prompt_id == prompt.id, PromptVersion.version_id == short
        ),
    )
    if version.content_hash != digest:
        raise Conflict(
            f"Version id {short} of {path!r} already names different content (a hash prefix "
            "collision); change the content slightly and save again."
        )
    return SavedVersion(version=version, created=created)


def list_versions(
    session: Session, *, project: Project, path: str, cursor: str | None, limit: int
) -> Page[PromptVersion]:
    """A prompt's versions, newest first."""
    prompt = get_prompt(session, project=project, path=path)
    query = select(PromptVersion).where(PromptVersion.prompt_id == prompt.id)
    return paginate(
        session, query, key=PromptVersion.id, cursor=cursor, limit=limit, descending=True
    )


def get_version(session: Session, *, prompt: Prompt, ref: str) -> PromptVersion:
    """The version whose id is `ref` or starts with it (at least 4 hex digits, like git)."""
    if len(ref) < MIN_VERSION_PREFIX or not all(c in "0123456789abcdef" for c in ref):
        raise InvalidInput(
            f"Version id {ref!r} is not valid: give at least {MIN_VERSION_PREFIX} lowercase hex digits."
        )
    matches = session.scalars(
        select(PromptVersion)
        .where(PromptVersion.prompt_id == prompt.id, PromptVersion.version_id.startswith(ref))
        .limit(2)
    ).all()
    if not matches:
        raise NotFound(f"Prompt {prompt.path!r} has no version {ref!r}.")
    if len(matches) > 1:
        raise InvalidInput(f"Version id {ref!r} of {prompt.path!r} is ambiguous: give more digits.")
    return matches[0]


def latest_version(session: Session, *, prompt: Prompt) -> PromptVersion:
    version = session.scalars(
        select(PromptVersion)
        .where(PromptVersion.prompt_id == prompt.id)
        .order_by(PromptVersion.id.desc())
        .limit(1)
    ).first()
    if version is None:
        raise NotFound(f"Prompt {prompt.path!r} has no versions yet.")
    return version


def resolve_version(
    session: Session,
    *,
    project: Project,
    path: str,
    environment: str | None = None,
    version: str | None = None,
) -> PromptVersion:
    """The version to use: by id, by what an environment serves, or else the latest saved."""
    if environment is not None and version is not None:
        raise InvalidInput("Give an environment or a version id, not both.")
    prompt = get_prompt(session, project=project, path=path)
    if version is not None:
        return get_version(session, prompt=prompt, ref=version)
    if environment is not None:
        return deployed_version(session, project=project, prompt=prompt, environment=environment)
    return latest_version(session, prompt=prompt)


def render_version(
    session: Session,
    *,
    project: Project,
    path: str,
    inputs: dict[str, Any],
    environment: str | None = None,
    version: str | None = None,
) -> tuple[PromptVersion, templates.Rendered]:
    """Render the resolved version with `inputs`."""
    resolved = resolve_version(
        session, project=project, path=path, environment=environment, version=version
    )
    return resolved, templates.render(kernel_of(resolved), inputs)


def diff_versions(
    session: Session, *, project: Project, path: str, before: str, after: str
) -> tuple[PromptVersion, PromptVersion, KernelDiff]:
    """The two versions (refs may be prefixes) and what changed from `before` to `after`."""
    prompt = get_prompt(session, project=project, path=path)
    old = get_version(session, prompt=prompt, ref=before)
    new = get_version(session, prompt=prompt, ref=after)
    return (
        old,
        new,
        diff_kernels(
            kernel_of(old), kernel_of(new), before_label=old.version_id, after_label=new.version_id
        ),
    )


def deployed_version(
    session: Session, *, project: Project, prompt: Prompt, environment: str
) -> PromptVersion:
    """The version `environment` serves for `prompt`; NotFound if nothing is deployed there."""
    env = get_environment(session, project=project, name=environment)
    version = session.scalars(
        select(PromptVersion)
        .join(Deployment, Deployment.version_pk == PromptVersion.id)
        .where(Deployment.prompt_id == prompt.id, Deployment.environment_id == env.id)
    ).first()
    if version is None:
        raise NotFound(
            f"Nothing is deployed to {environment!r} for {prompt.path!r}. "
            f"Deploy a version with: promptloop deploy {prompt.path} VERSION_ID --env {environment}"
        )
    return version


def kernel_of(version: PromptVersion) -> Kernel:
    return Kernel.model_validate(version.kernel)


def environments_serving(session: Session, *, prompt_id: int) -> dict[int, list[str]]:
    """For each version of the prompt that an environment serves, the names of those environments."""
    rows = session.execute(
        select(Deployment.version_pk, Environment.name)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(Deployment.prompt_id == prompt_id)
        .order_by(Environment.id)
    ).all()
    serving: dict[int, list[str]] = {}
    for version_pk, env_name in rows:
        serving.setdefault(version_pk, []).append(env_name)
    return serving


def versions_by_pk(session: Session, pks: Sequence[int | None]) -> dict[int, PromptVersion]:
    wanted = {pk for pk in pks if pk is not None}
    if not wanted:
        return {}
    return {
        v.id: v for v in session.scalars(select(PromptVersion).where(PromptVersion.id.in_(wanted)))
    }


def _upsert_prompt(
    session: Session, *, project: Project, path: str, description: str | None
) -> tuple[Prompt, bool]:
    validate_prompt_path(path)
    return insert_or_get(
        session,
        Prompt(project_id=project.id, path=path, description=description),
        select(Prompt).where(Prompt.project_id == project.id, Prompt.path == path),
    )


@dataclass(frozen=True)
class PromptSummary:
    """A prompt as its project's list shows it: its latest version (None before the first
    save) and, per environment that serves one, the version id it serves."""

    prompt: Prompt
    latest: PromptVersion | None
    serving: list[tuple[str, str]]


def summaries(
    session: Session, *, project: Project, query: str | None = None, limit: int = 1000
) -> list[PromptSummary]:
    """The project's prompts in path order, those whose path or description contains `query`
    (ignoring case) when it is given, with their latest version and what each environment
    serves (three queries, whatever the number of prompts)."""
    found = select(Prompt).where(Prompt.project_id == project.id)
    if query and query.strip():
        escaped = query.strip().lower().replace("\\", "\\\\").replace("%", "\\%")
        pattern = "%" + escaped.replace("_", "\\_") + "%"
        found = found.where(
            or_(
                func.lower(Prompt.path).like(pattern, escape="\\"),
                func.lower(func.coalesce(Prompt.description, "")).like(pattern, escape="\\"),
            )
        )
    prompts = session.scalars(found.order_by(Prompt.path).limit(limit)).all()
    ids = [p.id for p in prompts]
    if not ids:
        return []
    newest = (
        select(func.max(PromptVersion.id))
        .where(PromptVersion.prompt_id.in_(ids))
        .group_by(PromptVersion.prompt_id)
    )
    latest = {
        v.prompt_id: v
        for v in session.scalars(select(PromptVersion).where(PromptVersion.id.in_(newest)))
    }
    serving: dict[int, list[tuple[str, str]]] = {}
    for prompt_id, env_name, short in session.execute(
        select(Deployment.prompt_id, Environment.name, PromptVersion.version_id)
        .join(Environment, Environment.id == Deployment.environment_id)
        .join(PromptVersion, PromptVersion.id == Deployment.version_pk)
        .where(Deployment.prompt_id.in_(ids))
        .order_by(Environment.id)
    ):
        serving.setdefault(prompt_id, []).append((env_name, short))
    return [
        PromptSummary(prompt=p, latest=latest.get(p.id), serving=serving.get(p.id, []))
        for p in prompts
    ]
