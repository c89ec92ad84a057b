"""Evaluators: versioned like prompts, and run over logs.

Four kinds: `builtin` (exact match, regex, JSON schema, similarity, limits…), `code` (your
`def evaluate(log, datapoint)`, run in a sandboxed process), `llm` (a prompt version as a judge,
its answer parsed into the return type, its reasoning kept) and `human` (a reviewer's judgment,
pending until given). Their judgments have the same shape as feedback.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from promptloop.core.access import Actor, Permission
from promptloop.core.errors import Conflict, InvalidInput, NotFound
from promptloop.core.kernel import canonical
from promptloop.core.paths import validate_kind_name
from promptloop.evaluators.base import RETURN_TYPES, EvalInput, Outcome
from promptloop.evaluators.judge import parse_judgment
from promptloop.evaluators.registry import get_builtin
from promptloop.evaluators.sandbox import CodeSandbox
from promptloop.services import audit, prompts
from promptloop.services.storage import insert_or_get
from promptloop.store.models import Evaluator, EvaluatorVersion, Project

KINDS = ("builtin", "code", "llm", "human")
MIN_PREFIX = 4


@dataclass(frozen=True)
class EvaluatorSpec:
    """What an evaluator version is; its hash is the version id."""

    kind: str
    returns: str | None = None
    higher_is_better: bool | None = None
    builtin: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    judge: dict[str, Any] | None = None  # {prompt, version | environment}
    choices: list[str] | None = None
    timeout_s: float | None = None  # code: per datapoint


@dataclass(frozen=True)
class SavedEvaluator:
    version: EvaluatorVersion
    created: bool


def checked(session: Session, *, project: Project, spec: EvaluatorSpec) -> dict[str, Any]:
    """The normalised spec to store, or InvalidInput saying what to fix."""
    if spec.kind not in KINDS:
        raise InvalidInput(f"Unknown evaluator kind {spec.kind!r}: use one of {', '.join(KINDS)}.")
    out: dict[str, Any] = {"kind": spec.kind}
    if spec.kind == "builtin":
        if not spec.builtin:
            raise InvalidInput("A builtin evaluator names its builtin, e.g. 'exact_match'.")
        builtin = get_builtin(spec.builtin)
        out |= {
            "builtin": builtin.name,
            "config": builtin.check_config(dict(spec.config)),
            "returns": builtin.returns,
            "higher_is_better": builtin.higher_is_better
            if spec.higher_is_better is None
            else spec.higher_is_better,
        }
        return out
    returns = spec.returns
    if returns not in RETURN_TYPES:
        raise InvalidInput(
            f"A {spec.kind} evaluator declares what it returns: one of {', '.join(RETURN_TYPES)}."
        )
    if returns == "choice" and not spec.choices:
        raise InvalidInput("An evaluator returning a choice lists its choices.")
    out |= {
        "returns": returns,
        "choices": spec.choices if returns == "choice" else None,
        "higher_is_better": True if spec.higher_is_better is None else spec.higher_is_better,
    }
    if spec.kind == "code":
        if not spec.source:
            raise InvalidInput("A code evaluator needs its source: def evaluate(log, datapoint).")
        CodeSandbox(spec.source).check()
        timeout = spec.timeout_s or 5.0
        if not 0 < timeout <= 60:
            raise InvalidInput("timeout_s must be between 0 and 60 seconds.")
        out |= {"source": spec.source, "timeout_s": timeout}
    elif spec.kind == "llm":
        judge = spec.judge or {}
        if not judge.get("prompt"):
            raise InvalidInput(
                "An LLM judge names a prompt: judge={'prompt': 'evals/judge', 'version': '…'}."
            )
        version = prompts.resolve_version(
            session,
            project=project,
            path=judge["prompt"],
            environment=judge.get("environment"),
            version=judge.get("version"),
        )
        # Pinned to the exact version, so the evaluator version means one judge forever.
        out["judge"] = {"prompt": judge["prompt"], "version": version.version_id}
    return out


def save_version(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    name: str,
    spec: EvaluatorSpec,
    message: str | None = None,
    description: str | None = None,
) -> SavedEvaluator:
    """Save an evaluator version (creating the evaluator); identical content returns the
    existing version. Code evaluators need a developer: their code runs on the server."""
    actor.require(Permission.edit)
    if spec.kind == "code":
        actor.require(Permission.write_code)
    validate_kind_name(name)
    stored = checked(session, project=project, spec=spec)
    evaluator, _ = insert_or_get(
        session,
        Evaluator(project_id=project.id, name=name, description=description),
        select(Evaluator).where(Evaluator.project_id == project.id, Evaluator.name == name),
    )
    digest = hashlib.sha256(canonical(stored).encode()).hexdigest()
    version, created = insert_or_get(
        session,
        EvaluatorVersion(
            evaluator_id=evaluator.id,
            version_id=digest[:12],
            content_hash=digest,
            kind=stored["kind"],
            returns=stored["returns"],
            higher_is_better=stored["higher_is_better"],
            spec=stored,
            message=message,
            author=actor.name,
        ),
        select(EvaluatorVersion).where(
            EvaluatorVersion.evaluator_id == evaluator.id,
            EvaluatorVersion.version_id == digest[:12],
        ),
    )
    if version.content_hash != digest:
        raise Conflict(f"Version id {digest[:12]} of evaluator {name!r} names other content.")
    if created:
        audit.record(
            session,
            actor=actor,
            action="evaluator.save",
            target=f"evaluator:{name}@{version.version_id}",
            project=project,
            details={"kind": stored["kind"]},
        )
    return SavedEvaluator(version=version, created=created)


def get_evaluator(session: Session, *, project: Project, name: str) -> Evaluator:
    found = session.scalars(
        select(Evaluator).where(Evaluator.project_id == project.id, Evaluator.name == name)
    ).first()
    if found is None:
        raise NotFound(f"No evaluator {name!r} in project {project.name!r}.")
    return found


def list_evaluators(
    session: Session, *, actor: Actor, project: Project
) -> list[tuple[Evaluator, EvaluatorVersion]]:
    """Each evaluator with its latest version."""
    actor.require(Permission.read)
    out = []
    for evaluator in session.scalars(
        select(Evaluator).where(Evaluator.project_id == project.id).order_by(Evaluator.name)
    ):
        latest = session.scalars(
            select(EvaluatorVersion)
            .where(EvaluatorVersion.evaluator_id == evaluator.id)
            .order_by(EvaluatorVersion.id.desc())
            .limit(1)
        ).first()
        if latest is not None:
            out.append((evaluator, latest))
    return out


def list_versions(
    session: Session, *, actor: Actor, project: Project, name: str
) -> Sequence[EvaluatorVersion]:
    actor.require(Permission.read)
    evaluator = get_evaluator(session, project=project, name=name)
    return session.scalars(
        select(EvaluatorVersion)
        .where(EvaluatorVersion.evaluator_id == evaluator.id)
        .order_by(EvaluatorVersion.id.desc())
    ).all()


def resolve(session: Session, *, project: Project, ref: str) -> EvaluatorVersion:
    """`name` (its latest version) or `name@version` (an id or a unique prefix)."""
    name, _, version = ref.partition("@")
    evaluator = get_evaluator(session, project=project, name=name)
    query = select(EvaluatorVersion).where(EvaluatorVersion.evaluator_id == evaluator.id)
    if not version:
        found = session.scalars(query.order_by(EvaluatorVersion.id.desc()).limit(1)).first()
        if found is None:
            raise NotFound(f"Evaluator {name!r} has no versions.")
        return found
    if len(version) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in version):
        raise InvalidInput(f"Version id {version!r} is not valid: give at least 4 hex digits.")
    matches = session.scalars(
        query.where(EvaluatorVersion.version_id.startswith(version)).limit(2)
    ).all()
    if not matches:
        raise NotFound(f"Evaluator {name!r} has no version {version!r}.")
    if len(matches) > 1:
        raise InvalidInput(f"Version id {version!r} of evaluator {name!r} is ambiguous.")
    return matches[0]


def name_of(session: Session, version: EvaluatorVersion) -> str:
    evaluator = session.get(Evaluator, version.evaluator_id)
    assert evaluator is not None
    return evaluator.name


class Runner:
    """Runs one evaluator version over batches of items, for one evaluation run (or one try).

    Code evaluators keep one sandboxed process for the whole run; LLM judges call their prompt
    through the caller, concurrently.
    """

    def __init__(
        self,
        version: EvaluatorVersion,
        *,
        name: str,
        judge: Any = None,  # async (path, version, inputs) -> (text | None, error | None)
        blocked_paths: Sequence[Path] = (),
    ) -> None:
        self.version = version
        self.name = name
        self.spec = version.spec
        self._judge = judge
        self._blocked = tuple(blocked_paths)
        self._sandbox: CodeSandbox | None = None
        self._lock = threading.Lock()

    @property
    def human(self) -> bool:
        return self.version.kind == "human"

    async def evaluate(self, items: Sequence[EvalInput]) -> list[Outcome]:
        kind = self.version.kind
        if kind == "builtin":
            builtin = get_builtin(self.spec["builtin"])
            return await asyncio.to_thread(builtin.evaluate, items, self.spec.get("config", {}))
        if kind == "code":
            return await asyncio.to_thread(self._run_code, items)
        if kind == "llm":
            return list(await asyncio.gather(*(self._ask_judge(item) for item in items)))
        return [Outcome() for _ in items]  # human: pending until a reviewer judges

    def _run_code(self, items: Sequence[EvalInput]) -> list[Outcome]:
        with self._lock:
            if self._sandbox is None:
                self._sandbox = CodeSandbox(
                    self.spec["source"],
                    timeout_s=float(self.spec.get("timeout_s", 5.0)),
                    blocked_paths=self._blocked,
                )
            return self._sandbox.run(items)

    async def _ask_judge(self, item: EvalInput) -> Outcome:
        judge = self.spec["judge"]
        inputs = {
            "output": item.output or "",
            "target": item.target if item.target is not None else "",
            "inputs": item.inputs,
            **{k: v for k, v in item.inputs.items() if k not in ("output", "target", "inputs")},
        }
        text, error = await self._judge(judge["prompt"], judge["version"], inputs)
        if error is not None:
            return Outcome(error=f"the judge failed: {error}")
        return parse_judgment(text or "", self.version.returns, self.spec.get("choices"))

    def close(self) -> None:
        with self._lock:
            if self._sandbox is not None:
                self._sandbox.close()
                self._sandbox = None


def score_of(value: Any) -> float | None:
    """The number statistics use: booleans as 1/0, numbers as they are; none for choices and
    text (they are counted instead)."""
    return float(value) if isinstance(value, bool | int | float) else None
