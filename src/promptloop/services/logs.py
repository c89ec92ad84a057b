"""Logging calls: turning submitted logs into rows, writing them durably, and reading them back.

`record` returns only after the rows are committed (group commit makes that cheap under load).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from promptloop.core.access import Actor, Permission
from promptloop.core.errors import InvalidInput, NotFound
from promptloop.core.kernel import Kernel, content_hash
from promptloop.services.catalogue import Prices
from promptloop.services.pagination import Page, decode_cursor, encode_cursor
from promptloop.services.prompts import get_prompt, get_version
from promptloop.store.db import Database
from promptloop.store.logs import FEEDBACK_WORDS, GroupCommitWriter, LogQuery, LogStore
from promptloop.store.models import FeedbackKind, Log, Project, Prompt, PromptVersion
from promptloop.store.types import utcnow

SOURCES = ("playground", "sdk", "api", "gateway", "eval")


@dataclass
class LogEntry:
    """One call to record. `prompt`/`version` name a saved version; `kernel` a draft."""

    source: str = "api"
    uid: str | None = None
    prompt: str | None = None
    version: str | None = None
    environment: str | None = None
    kernel: Kernel | None = None
    provider: str | None = None
    model: str | None = None
    inputs: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    output: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    error: str | None = None
    end_user: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    trace_id: str | None = None
    parent_id: str | None = None
    consent: bool | None = None  # the end user's consent to capture; None: not stated
    created_at: datetime | None = None
    # The prompt and version rows, when the caller looked them up already (no session needed).
    resolved: tuple[Prompt, PromptVersion] | None = None


class Logger:
    """Writes logs for one server process: resolves names, prices calls, commits in groups."""

    def __init__(self, store: LogStore, prices: Prices) -> None:
        self.store = store
        self.prices = prices
        self.writer = GroupCommitWriter(store)

    async def record(
        self, db: Database, *, actor: Actor, project: Project, entries: Sequence[LogEntry]
    ) -> list[str]:
        """Store `entries` and return their ids once committed."""
        actor.require(Permission.write_logs)
        if any(_needs_session(entry) for entry in entries):
            rows = await asyncio.to_thread(self._rows, db, project, entries)
        else:  # nothing to look up: no session, no thread hop
            now = utcnow()
            resolver = _Resolver(None, project)
            rows = [self._row(project, entry, resolver, now) for entry in entries]
        await asyncio.wrap_future(self.writer.submit(rows))
        return [row["uid"] for row in rows]

    def close(self) -> None:
        self.writer.close()

    def _rows(
        self, db: Database, project: Project, entries: Sequence[LogEntry]
    ) -> list[dict[str, Any]]:
        with db.session(write=False) as session:
            resolver = _Resolver(session, project)
            now = utcnow()
            return [self._row(project, entry, resolver, now) for entry in entries]

    def _row(
        self, project: Project, entry: LogEntry, resolver: _Resolver, now: datetime
    ) -> dict[str, Any]:
        if entry.source not in SOURCES:
            raise InvalidInput(
                f"Unknown log source {entry.source!r}: use one of {', '.join(SOURCES)}."
            )
        prompt, version = resolver.resolve(entry)
        kernel = entry.kernel or (resolver.kernel_of(version) if version else None)
        provider = entry.provider or (kernel.provider if kernel else None)
        model = entry.model or (kernel.model if kernel else None)
        cost = (
            entry.cost
            if entry.cost is not None
            else self.prices.cost(provider, model, entry.prompt_tokens, entry.output_tokens)
        )
        draft_hash = content_hash(entry.kernel) if entry.kernel else None
        withheld = withholds(project, entry.source, entry.consent)
        return {
            "uid": entry.uid or uuid.uuid4().hex,
            "project_id": project.id,
            "prompt_id": prompt.id if prompt else None,
            "version_pk": version.id if version else resolver.version_with_hash(prompt, draft_hash),
            "content_hash": draft_hash or (version.content_hash if version else None),
            "kernel": entry.kernel.model_dump(mode="json") if entry.kernel else None,
            "environment": entry.environment,
            "source": entry.source,
            "provider": provider,
            "model": model,
            "inputs": None if withheld else entry.inputs,
            "messages": None if withheld else entry.messages,
            "output": None if withheld else entry.output,
            "tool_calls": None if withheld else entry.tool_calls,
            "finish_reason": entry.finish_reason,
            "prompt_tokens": entry.prompt_tokens,
            "output_tokens": entry.output_tokens,
            "cost": cost,
            "latency_ms": entry.latency_ms,
            "ttft_ms": entry.ttft_ms,
            "error": entry.error,
            "end_user": entry.end_user,
            "metadata": entry.metadata or None,
            "trace_id": entry.trace_id,
            "parent_id": entry.parent_id,
            "consent": entry.consent,
            "withheld": withheld or None,
            "created_at": entry.created_at or now,
        }


_TEAM_SOURCES = ("playground", "eval")  # the team's own runs: no end user to consent


def withholds(project: Project, source: str, consent: bool | None) -> bool:
    """Whether the project's content-capture setting keeps this log's inputs and outputs out of
    storage (its metadata, tokens, cost and latency are stored regardless)."""
    if source in _TEAM_SOURCES or project.content_capture == "always":
        return False
    if project.content_capture == "unless_declined":
        return consent is False
    return consent is not True


def _needs_session(entry: LogEntry) -> bool:
    """Whether recording the entry looks anything up: a prompt named but not resolved, or a
    draft to link to the version it matches."""
    if entry.prompt is None:
        return False
    return entry.resolved is None or entry.kernel is not None


class _Resolver:
    """Prompt paths and version ids of one batch, each looked up once (a batch that names no
    prompt needs no session)."""

    def __init__(self, session: Session | None, project: Project) -> None:
        self._session = session
        self.project = project
        self._prompts: dict[str, Prompt] = {}
        self._versions: dict[tuple[int, str], PromptVersion] = {}
        self._kernels: dict[int, Kernel] = {}

    def resolve(self, entry: LogEntry) -> tuple[Prompt | None, PromptVersion | None]:
        if entry.resolved is not None:
            return entry.resolved
        if entry.prompt is None:
            if entry.version is not None:
                raise InvalidInput("A log that names a version must name its prompt too.")
            return None, None
        prompt = self._prompts.get(entry.prompt)
        if prompt is None:
            prompt = self._prompts[entry.prompt] = get_prompt(
                self.session, project=self.project, path=entry.prompt
            )
        if entry.version is None:
            return prompt, None
        key = (prompt.id, entry.version)
        if key not in self._versions:
            self._versions[key] = get_version(self.session, prompt=prompt, ref=entry.version)
        return prompt, self._versions[key]

    @property
    def session(self) -> Session:
        assert self._session is not None, "logs naming a prompt need a session"
        return self._session

    def kernel_of(self, version: PromptVersion) -> Kernel:
        if version.id not in self._kernels:
            self._kernels[version.id] = Kernel.model_validate(version.kernel)
        return self._kernels[version.id]

    def version_with_hash(self, prompt: Prompt | None, digest: str | None) -> int | None:
        """The saved version whose content a draft matches, so playground runs link to it."""
        if prompt is None or digest is None:
            return None
        found = self.session.scalars(
            select(PromptVersion.id).where(
                PromptVersion.prompt_id == prompt.id, PromptVersion.content_hash == digest
            )
        ).first()
        return found


def list_logs(
    session: Session,
    store: LogStore,
    *,
    actor: Actor,
    project: Project,
    prompt: str | None = None,
    version: str | None = None,
    cursor: str | None,
    limit: int,
    **filters: Any,
) -> Page[Log]:
    """Logs of the project, newest first, filtered."""
    actor.require(Permission.read)
    prompt_row = get_prompt(session, project=project, path=prompt) if prompt else None
    if version is not None and prompt_row is None:
        raise InvalidInput("Filtering by version needs the prompt too.")
    version_row = (
        get_version(session, prompt=prompt_row, ref=version) if version and prompt_row else None
    )
    words = filters.get("feedback", ())
    if words:
        known = set(FEEDBACK_WORDS) | set(
            session.scalars(select(FeedbackKind.name).where(FeedbackKind.project_id == project.id))
        )
        for word in words:
            if word not in known:
                raise InvalidInput(
                    f"Unknown feedback filter {word!r}: use up, down, any, none or a feedback "
                    f"kind of this project ({', '.join(sorted(known - set(FEEDBACK_WORDS)))})."
                )
    query = LogQuery(
        project_id=project.id,
        prompt_id=prompt_row.id if prompt_row else None,
        version_pk=version_row.id if version_row else None,
        **filters,
    )
    before = decode_cursor(cursor, int) if cursor else None
    rows = store.query(
        query, before_id=before if isinstance(before, int) else None, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(items=rows, next_cursor=encode_cursor(rows[-1].id) if more and rows else None)


def get_log(store: LogStore, *, actor: Actor, project: Project, uid: str) -> Log:
    actor.require(Permission.read)
    log = store.get(project_id=project.id, uid=uid)
    if log is None:
        raise NotFound(f"No log {uid!r} in project {project.name!r}.")
    return log


@dataclass(frozen=True)
class Names:
    """Prompt paths and version ids for log rows, looked up once per page."""

    prompts: dict[int, str]
    versions: dict[int, str]

    def of(self, log: Log) -> tuple[str | None, str | None]:
        prompt = self.prompts.get(log.prompt_id) if log.prompt_id else None
        version = self.versions.get(log.version_pk) if log.version_pk else None
        return prompt, version


def names_for(session: Session, rows: Sequence[Log]) -> Names:
    prompt_ids = {r.prompt_id for r in rows if r.prompt_id}
    version_pks = {r.version_pk for r in rows if r.version_pk}
    prompts: dict[int, str] = {}
    versions: dict[int, str] = {}
    if prompt_ids:
        query = select(Prompt.id, Prompt.path).where(Prompt.id.in_(prompt_ids))
        prompts = {pk: path for pk, path in session.execute(query)}
    if version_pks:
        query = select(PromptVersion.id, PromptVersion.version_id).where(
            PromptVersion.id.in_(version_pks)
        )
        versions = {pk: vid for pk, vid in session.execute(query)}
    return Names(prompts=prompts, versions=versions)
