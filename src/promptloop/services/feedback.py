"""Feedback on logs: votes, implicit actions, corrections and comments, checked against the
kinds a project declares, and the rates that summarise them per version and environment.

A piece of feedback is stored as a `Judgment` (the shape evaluator judgments share), with a
`score` on 0..1 where 1 is good, so that "voted up" means the same for a thumbs-up and a
five-star rating.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, func, select, update
from sqlalchemy.orm import Session

from promptloop.core.access import SYSTEM, Actor, Permission
from promptloop.core.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from promptloop.core.paths import validate_kind_name
from promptloop.core.similarity import similarity, unified_diff
from promptloop.core.stats import Interval, proportion
from promptloop.services import audit
from promptloop.services.secrets import SecretBox
from promptloop.store.logs import FEEDBACK_WORDS
from promptloop.store.models import FeedbackKind, Judgment, Log, Project, Prompt, PromptVersion
from promptloop.store.types import utcnow

CATEGORIES = ("vote", "action", "correction", "comment")
TYPES = ("boolean", "number", "choice", "text")
SOURCES = ("api", "sdk", "cli", "ui", "browser")
MAX_TEXT = 1_000_000

# What every project starts with: (name, category, type, higher_is_better, description).
DEFAULT_KINDS = (
    ("rating", "vote", "boolean", True, "Thumbs up or down."),
    ("copied", "action", "number", True, "The user copied the output."),
    ("accepted", "action", "number", True, "The user accepted the suggestion."),
    ("rejected", "action", "number", False, "The user dismissed the suggestion."),
    ("regenerated", "action", "number", False, "The user asked for another answer."),
    ("shared", "action", "number", True, "The user shared the output."),
    (
        "retained",
        "action",
        "number",
        True,
        "Share of the output still in the user's text after `delay_s` seconds (0..1).",
    ),
    ("correction", "correction", "text", True, "The text the user ended up with."),
    ("comment", "comment", "text", True, "Free text."),
)


# Kinds ---------------------------------------------------------------------------------------


def seed_kinds(session: Session, *, project: Project) -> None:
    """Give a project the default kinds it lacks (idempotent)."""
    have = set(
        session.scalars(select(FeedbackKind.name).where(FeedbackKind.project_id == project.id))
    )
    for name, category, type_, higher, description in DEFAULT_KINDS:
        if name not in have:
            session.add(
                FeedbackKind(
                    project_id=project.id,
                    name=name,
                    category=category,
                    type=type_,
                    higher_is_better=higher,
                    description=description,
                    created_by=SYSTEM.name,
                )
            )
    session.flush()


def list_kinds(session: Session, *, actor: Actor, project: Project) -> Sequence[FeedbackKind]:
    actor.require(Permission.read)
    return session.scalars(
        select(FeedbackKind).where(FeedbackKind.project_id == project.id).order_by(FeedbackKind.id)
    ).all()


@dataclass(frozen=True)
class KindSpec:
    name: str
    category: str
    type: str | None = None
    choices: list[str] | None = None
    minimum: float | None = None
    maximum: float | None = None
    higher_is_better: bool = True
    description: str | None = None


def create_kind(
    session: Session, *, actor: Actor, project: Project, spec: KindSpec
) -> FeedbackKind:
    """Declare a kind of feedback. Its category fixes what its values may be:
    votes are boolean (up/down), a number on a declared scale, or a choice; actions carry an
    optional number; corrections and comments are text."""
    actor.require(Permission.edit)
    validate_kind_name(spec.name)
    if spec.name in FEEDBACK_WORDS:
        raise InvalidInput(
            f"{spec.name!r} is reserved as a filter word ({', '.join(FEEDBACK_WORDS)}); choose another name."
        )
    type_ = _checked_type(spec)
    if session.scalars(
        select(FeedbackKind.id).where(
            FeedbackKind.project_id == project.id, FeedbackKind.name == spec.name
        )
    ).first():
        raise Conflict(f"Project {project.name!r} already has a feedback kind {spec.name!r}.")
    kind = FeedbackKind(
        project_id=project.id,
        name=spec.name,
        category=spec.category,
        type=type_,
        choices=spec.choices if type_ == "choice" else None,
        minimum=spec.minimum,
        maximum=spec.maximum,
        higher_is_better=spec.higher_is_better,
        description=spec.description,
        created_by=actor.name,
    )
    session.add(kind)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="feedback_kind.create",
        target=f"feedback_kind:{spec.name}",
        project=project,
        details={"category": spec.category, "type": type_},
    )
    return kind


def _checked_type(spec: KindSpec) -> str:
    if spec.category not in CATEGORIES:
        raise InvalidInput(
            f"Unknown feedback category {spec.category!r}: use one of {', '.join(CATEGORIES)}."
        )
    allowed = {
        "vote": ("boolean", "number", "choice"),
        "action": ("number",),
        "correction": ("text",),
        "comment": ("text",),
    }[spec.category]
    type_ = spec.type or _implied_type(spec) or allowed[0]
    if type_ not in allowed:
        raise InvalidInput(
            f"A {spec.category} takes values of type {' or '.join(allowed)}, not {type_!r}."
        )
    if type_ == "choice":
        if not spec.choices or len(set(spec.choices)) != len(spec.choices):
            raise InvalidInput("A choice vote needs a list of distinct choices.")
    elif spec.choices:
        raise InvalidInput("Only choice votes take choices.")
    bounded = spec.minimum is not None or spec.maximum is not None
    if bounded and type_ != "number":
        raise InvalidInput("Only number kinds take a minimum and maximum.")
    rating = type_ == "number" and spec.category == "vote"
    if rating and (spec.minimum is None or spec.maximum is None):
        raise InvalidInput("A rating scale needs a minimum and a maximum (e.g. 1 and 5).")
    if spec.minimum is not None and spec.maximum is not None and spec.minimum >= spec.maximum:
        raise InvalidInput("The minimum must be below the maximum.")
    return type_


def _implied_type(spec: KindSpec) -> str | None:
    """A vote's type when none is given: a scale if it has bounds, a choice if it has choices."""
    if spec.category != "vote":
        return None
    if spec.minimum is not None or spec.maximum is not None:
        return "number"
    return "choice" if spec.choices else None


def get_kind(session: Session, *, project: Project, name: str) -> FeedbackKind:
    kind = session.scalars(
        select(FeedbackKind).where(FeedbackKind.project_id == project.id, FeedbackKind.name == name)
    ).first()
    if kind is None:
        names = session.scalars(
            select(FeedbackKind.name)
            .where(FeedbackKind.project_id == project.id)
            .order_by(FeedbackKind.id)
        ).all()
        raise InvalidInput(
            f"Project {project.name!r} has no feedback kind {name!r}. Declared kinds: "
            f"{', '.join(names) or 'none'}; declare new ones with POST /api/v1/feedback-kinds."
        )
    return kind


# Recording -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackInput:
    """One piece of feedback as a client gives it."""

    name: str
    value: Any = None
    delay_s: float | None = None
    end_user: str | None = None
    source: str = "api"
    metadata: dict[str, Any] = field(default_factory=dict)


def record(
    session: Session, *, actor: Actor, project: Project, log_uid: str, given: FeedbackInput
) -> Judgment:
    """Store feedback on a log. Who gave it: the end user when one is named, else the caller
    (a reviewer). A newer vote or correction of the same kind by the same person supersedes the
    older one in statistics; both are kept."""
    actor.require(Permission.write_logs)
    log = _log(session, project=project, uid=log_uid)
    return _store(
        session,
        project=project,
        log=log,
        given=given,
        recorded_by=actor.name,
        reviewer=None if given.end_user else actor.name,
    )


def record_with_token(
    session: Session, *, project_id: int, log_uid: str, given: FeedbackInput
) -> Judgment:
    """Feedback from a browser holding a feedback token (already verified) for this log."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound("The project of this feedback token no longer exists.")
    log = _log(session, project=project, uid=log_uid)
    return _store(
        session,
        project=project,
        log=log,
        given=FeedbackInput(
            name=given.name,
            value=given.value,
            delay_s=given.delay_s,
            end_user=given.end_user or log.end_user,
            source="browser",
        ),
        recorded_by="feedback token",
        reviewer=None,
    )


def get_log_for_token(session: Session, *, actor: Actor, project: Project, log_uid: str) -> Log:
    """The log a feedback token is about to be issued for: only callers who may log calls (the
    application's own key) hand out tokens."""
    actor.require(Permission.write_logs)
    return _log(session, project=project, uid=log_uid)


def _log(session: Session, *, project: Project, uid: str) -> Log:
    log = session.scalars(select(Log).where(Log.project_id == project.id, Log.uid == uid)).first()
    if log is None:
        raise NotFound(f"No log {uid!r} in project {project.name!r}.")
    return log


def _store(
    session: Session,
    *,
    project: Project,
    log: Log,
    given: FeedbackInput,
    recorded_by: str,
    reviewer: str | None,
) -> Judgment:
    if given.source not in SOURCES:
        raise InvalidInput(
            f"Unknown feedback source {given.source!r}: use one of {', '.join(SOURCES)}."
        )
    kind = get_kind(session, project=project, name=given.name)
    value, score = _checked_value(kind, given.value)
    if given.delay_s is not None and (not math.isfinite(given.delay_s) or given.delay_s < 0):
        raise InvalidInput("delay_s must be a number of seconds, 0 or more.")
    if given.delay_s is not None and kind.category != "action":
        raise InvalidInput(f"Only actions take delay_s; {kind.name!r} is a {kind.category}.")
    judgment = Judgment(
        uid=uuid.uuid4().hex,
        project_id=project.id,
        log_id=log.id,
        kind_id=kind.id,
        name=kind.name,
        category=kind.category,
        value=value,
        score=score,
        delay_s=given.delay_s,
        end_user=given.end_user,
        reviewer=reviewer,
        recorded_by=recorded_by,
        source=given.source,
    )
    if kind.category == "correction":
        assert isinstance(value, str)
        original = log.output or ""
        if log.withheld:
            # The end user did not consent to capture: count the correction, keep no text.
            judgment.value, judgment.withheld = None, True
        else:
            judgment.similarity = round(similarity(original, value), 4)
            judgment.diff = unified_diff(original, value)
    elif kind.category == "comment" and log.withheld:
        judgment.value, judgment.withheld = None, True
    if kind.category in ("vote", "correction"):
        session.execute(
            update(Judgment)
            .where(
                Judgment.log_id == log.id,
                Judgment.kind_id == kind.id,
                Judgment.current.is_(True),
                Judgment.end_user.is_not_distinct_from(given.end_user),
                Judgment.reviewer.is_not_distinct_from(reviewer),
            )
            .values(current=False)
        )
    session.add(judgment)
    session.flush()
    return judgment


def _checked_value(kind: FeedbackKind, value: Any) -> tuple[Any, float | None]:
    """The value to store and its score, or InvalidInput saying what the kind accepts."""
    if kind.type == "boolean":
        if value in ("up", "down"):
            value = value == "up"
        if not isinstance(value, bool):
            raise InvalidInput(
                f"{kind.name!r} takes 'up' or 'down' (or true/false), not {value!r}."
            )
        return value, float(value == kind.higher_is_better)
    if kind.type == "number":
        if value is None and kind.category == "action":
            return None, float(kind.higher_is_better)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidInput(f"{kind.name!r} takes a number, not {value!r}.")
        low, high = kind.minimum, kind.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            raise InvalidInput(
                f"{kind.name!r} takes a number from {_fmt(low)} to {_fmt(high)}, not {value!r}."
            )
        if kind.category == "action":
            return value, float(kind.higher_is_better)
        assert low is not None and high is not None
        share = (value - low) / (high - low)
        return value, share if kind.higher_is_better else 1 - share
    if kind.type == "choice":
        choices = kind.choices or []
        if value not in choices:
            raise InvalidInput(
                f"{kind.name!r} takes one of {', '.join(map(str, choices))}, not {value!r}."
            )
        return value, None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{kind.name!r} takes non-empty text.")
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"{kind.name!r} takes at most {MAX_TEXT:,} characters.")
    return value, None


def _fmt(bound: float | None) -> str:
    if bound is None:
        return "any"
    return str(int(bound)) if bound == int(bound) else str(bound)


def list_for_log(
    session: Session, *, actor: Actor, project: Project, log_uid: str
) -> Sequence[Judgment]:
    """All feedback on one log, oldest first, superseded entries included."""
    actor.require(Permission.read)
    log = _log(session, project=project, uid=log_uid)
    return session.scalars(
        select(Judgment).where(Judgment.log_id == log.id).order_by(Judgment.id)
    ).all()


# Statistics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindStats:
    """One kind of feedback in one group of logs."""

    name: str
    category: str
    logs: int  # logs with at least one current entry of this kind
    rate: Interval  # logs / the group's logs
    count: int  # current entries
    up: int  # current entries scoring above 0.5 (votes)
    down: int  # ... and below
    up_share: Interval | None  # up / (up + down), for votes with a score
    mean_similarity: float | None  # corrections


@dataclass(frozen=True)
class GroupStats:
    prompt: str | None
    version: str | None
    environment: str | None
    logs: int
    kinds: list[KindStats]


GROUPINGS = ("version", "environment")


def stats(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    by: str = "version",
    prompt_id: int | None = None,
    environment: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[GroupStats]:
    """Feedback rates per prompt version (or environment), with counts and 95% intervals, so a
    reader can tell 3 votes from 3,000."""
    actor.require(Permission.read)
    if by not in GROUPINGS:
        raise InvalidInput(f"Group feedback statistics by {' or '.join(GROUPINGS)}, not {by!r}.")
    conditions = [Log.project_id == project.id]
    if prompt_id is not None:
        conditions.append(Log.prompt_id == prompt_id)
    if environment is not None:
        conditions.append(Log.environment == environment)
    if since is not None:
        conditions.append(Log.created_at >= since)
    if until is not None:
        conditions.append(Log.created_at < until)
    second = Log.version_pk if by == "version" else Log.environment
    keys = (Log.prompt_id, second)

    totals = {
        (p, s): n
        for p, s, n in session.execute(
            select(*keys, func.count()).where(*conditions).group_by(*keys)
        )
    }
    up = func.sum(func.cast(Judgment.score > 0.5, Integer()))
    down = func.sum(func.cast(Judgment.score < 0.5, Integer()))
    rows = session.execute(
        select(
            *keys,
            Judgment.name,
            Judgment.category,
            func.count(func.distinct(Judgment.log_id)),
            func.count(),
            up,
            down,
            func.avg(Judgment.similarity),
        )
        .join(Log, Log.id == Judgment.log_id)
        .where(*conditions, Judgment.current.is_(True), Judgment.kind_id.is_not(None))
        .group_by(*keys, Judgment.name, Judgment.category)
        .order_by(Judgment.name)
    ).all()
    per_group: dict[tuple[Any, Any], list[KindStats]] = {key: [] for key in totals}
    for p, s, name, category, n_logs, count, ups, downs, mean_sim in rows:
        total = totals.get((p, s), 0)
        ups, downs = int(ups or 0), int(downs or 0)
        per_group.setdefault((p, s), []).append(
            KindStats(
                name=name,
                category=category,
                logs=n_logs,
                rate=proportion(min(n_logs, total), total),
                count=count,
                up=ups,
                down=downs,
                up_share=proportion(ups, ups + downs)
                if category == "vote" and ups + downs
                else None,
                mean_similarity=round(mean_sim, 4) if mean_sim is not None else None,
            )
        )
    prompt_ids = {p for p, _ in per_group if p is not None}
    paths: dict[int, str] = {}
    if prompt_ids:
        query = select(Prompt.id, Prompt.path).where(Prompt.id.in_(prompt_ids))
        paths = {pk: path for pk, path in session.execute(query)}
    versions: dict[int, str] = {}
    pks = {s for _, s in per_group if s is not None} if by == "version" else set()
    if pks:
        query = select(PromptVersion.id, PromptVersion.version_id).where(PromptVersion.id.in_(pks))
        versions = {pk: vid for pk, vid in session.execute(query)}
    groups = [
        GroupStats(
            prompt=paths.get(p) if p is not None else None,
            version=versions.get(s) if by == "version" and s is not None else None,
            environment=s if by == "environment" else None,
            logs=totals.get((p, s), 0),
            kinds=kinds,
        )
        for (p, s), kinds in per_group.items()
    ]
    groups.sort(key=lambda g: (-g.logs, g.prompt or "", g.version or g.environment or ""))
    return groups


# Feedback tokens -------------------------------------------------------------------------------

TOKEN_PREFIX = "plf_"
_TOKEN_PURPOSE = "feedback-token"


@dataclass(frozen=True)
class FeedbackToken:
    token: str
    expires_at: datetime


def issue_token(
    box: SecretBox, *, project: Project, log_uid: str, ttl_s: int, now: datetime | None = None
) -> FeedbackToken:
    """A signed token that lets a browser give feedback on this one log until it expires, and do
    nothing else: it names the project and log, and is signed for this purpose only."""
    expires = (now or utcnow()) + timedelta(seconds=ttl_s)
    payload = json.dumps(
        {"p": project.id, "l": log_uid, "e": int(expires.timestamp())}, separators=(",", ":")
    ).encode()
    tag = box.sign(_TOKEN_PURPOSE, payload)
    token = f"{TOKEN_PREFIX}{_b64(payload)}.{_b64(tag)}"
    return FeedbackToken(token=token, expires_at=expires.replace(microsecond=0))


def verify_token(box: SecretBox, token: str, *, now: datetime | None = None) -> tuple[int, str]:
    """The (project id, log id) a genuine, unexpired token was issued for; Unauthenticated
    otherwise."""
    if not token.startswith(TOKEN_PREFIX) or token.count(".") != 1:
        raise Unauthenticated("This is not a feedback token: it must look like 'plf_….…'.")
    body, _, tag = token[len(TOKEN_PREFIX) :].partition(".")
    try:
        payload, given = _unb64(body), _unb64(tag)
    except ValueError:
        raise Unauthenticated("This feedback token is malformed.") from None
    if not hmac.compare_digest(given, box.sign(_TOKEN_PURPOSE, payload)):
        raise Unauthenticated("This feedback token is not genuine (its signature does not match).")
    claims = json.loads(payload)
    if (now or utcnow()).timestamp() >= claims["e"]:
        expired = datetime.fromtimestamp(claims["e"], UTC)
        raise Unauthenticated(
            f"This feedback token expired at {expired:%Y-%m-%d %H:%M:%S} UTC; "
            "ask the application for a new one."
        )
    return int(claims["p"]), str(claims["l"])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from None
