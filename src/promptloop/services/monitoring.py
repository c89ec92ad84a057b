"""Figures over a project's logs, for watching a prompt in production: volume, errors, latency
percentiles, tokens, cost and feedback rates, per time bucket and per prompt version; and the
short feedback summary each row of a log listing shows.

Everything is aggregated in the database (SQLite and PostgreSQL alike): buckets are whole
multiples of the bucket size since the Unix epoch, and latency percentiles are exact
nearest-rank values picked with window functions, so no latency list ever reaches Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Integer, case, cast, func, literal_column, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from promptloop.core.access import Actor, Permission
from promptloop.core.errors import InvalidInput
from promptloop.services.prompts import get_prompt
from promptloop.store.models import Judgment, Log, Project, Prompt, PromptVersion
from promptloop.store.types import utcnow

# window name → (its length, the size of one bucket in seconds)
WINDOWS: dict[str, tuple[timedelta, int]] = {
    "24h": (timedelta(hours=24), 3600),
    "7d": (timedelta(days=7), 6 * 3600),
    "30d": (timedelta(days=30), 86400),
}
PERCENTILES = (50, 95)


@dataclass
class Figures:
    """What happened in one group of logs (a bucket of one version, or a whole version)."""

    logs: int = 0
    errors: int = 0
    p50_ms: float | None = None  # nearest-rank latency percentiles; None without latencies
    p95_ms: float | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None  # the sum of known costs; None when no log's cost is known
    cost_unknown: int = 0  # logs whose cost is not known (not counted as zero)
    votes_up: int = 0  # current votes
    votes_down: int = 0
    corrected: int = 0  # logs with a current correction

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.logs if self.logs else None

    @property
    def up_share(self) -> float | None:
        """Up votes among the votes given; None without votes."""
        votes = self.votes_up + self.votes_down
        return self.votes_up / votes if votes else None

    @property
    def correction_rate(self) -> float | None:
        return self.corrected / self.logs if self.logs else None

    def add(self, other: Figures) -> None:
        """Add counts and sums (percentiles do not add up: they are computed per group)."""
        self.logs += other.logs
        self.errors += other.errors
        self.prompt_tokens += other.prompt_tokens
        self.output_tokens += other.output_tokens
        if other.cost is not None:
            self.cost = (self.cost or 0.0) + other.cost
        self.cost_unknown += other.cost_unknown
        self.votes_up += other.votes_up
        self.votes_down += other.votes_down
        self.corrected += other.corrected


@dataclass
class Series:
    """One prompt version (or the logs of a prompt without a version, or of no prompt)."""

    label: str
    prompt: str | None
    version: str | None
    buckets: list[Figures]
    total: Figures = field(default_factory=Figures)


@dataclass
class Overview:
    window: str
    since: datetime
    until: datetime
    bucket_s: int
    starts: list[datetime]  # the start of each bucket, oldest first
    series: list[Series]  # busiest first
    total: Figures


def overview(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    prompt: str | None = None,
    environment: str | None = None,
    window: str = "24h",
    now: datetime | None = None,
) -> Overview:
    """The project's logs over `window` (24h, 7d or 30d, ending now), bucketed in time and split
    by prompt version; optionally one prompt's and one environment's only."""
    actor.require(Permission.read)
    if window not in WINDOWS:
        raise InvalidInput(f"Unknown window {window!r}: use one of {', '.join(WINDOWS)}.")
    length, size = WINDOWS[window]
    now = (now or utcnow()).astimezone(UTC)
    last = int(now.timestamp()) // size
    count = int(length.total_seconds()) // size
    first = last - count + 1
    since = datetime.fromtimestamp(first * size, UTC)
    until = now
    conditions: list[ColumnElement[bool]] = [
        Log.project_id == project.id,
        Log.created_at >= since,
        Log.created_at < until,
    ]
    if prompt:
        conditions.append(Log.prompt_id == get_prompt(session, project=project, path=prompt).id)
    if environment:
        conditions.append(Log.environment == environment)
    is_sqlite = session.get_bind().dialect.name == "sqlite"
    bucket = _bucket(size, is_sqlite=is_sqlite).label("bucket")

    groups: dict[tuple[int | None, int | None], dict[int, Figures]] = {}

    def figures(p: int | None, v: int | None, b: int) -> Figures:
        return groups.setdefault((p, v), {}).setdefault(b, Figures())

    errors = func.sum(case((Log.error.is_not(None), 1), else_=0))
    for b, p, v, n, n_err, pt, ot, cost, n_cost in session.execute(
        select(
            bucket,
            Log.prompt_id,
            Log.version_pk,
            func.count(),
            errors,
            func.sum(Log.prompt_tokens),
            func.sum(Log.output_tokens),
            func.sum(Log.cost),
            func.count(Log.cost),
        )
        .where(*conditions)
        .group_by(bucket, Log.prompt_id, Log.version_pk)
    ):
        f = figures(p, v, b)
        f.logs, f.errors = n, int(n_err or 0)
        f.prompt_tokens, f.output_tokens = int(pt or 0), int(ot or 0)
        f.cost = float(cost) if n_cost else None
        f.cost_unknown = n - n_cost

    up = func.sum(case(((Judgment.category == "vote") & (Judgment.score > 0.5), 1), else_=0))
    down = func.sum(case(((Judgment.category == "vote") & (Judgment.score < 0.5), 1), else_=0))
    corrected = func.count(
        func.distinct(case((Judgment.category == "correction", Judgment.log_id)))
    )
    for b, p, v, n_up, n_down, n_corrected in session.execute(
        select(bucket, Log.prompt_id, Log.version_pk, up, down, corrected)
        .join(Log, Log.id == Judgment.log_id)
        .where(*conditions, Judgment.current.is_(True), Judgment.kind_id.is_not(None))
        .group_by(bucket, Log.prompt_id, Log.version_pk)
    ):
        f = figures(p, v, b)
        f.votes_up, f.votes_down, f.corrected = int(n_up or 0), int(n_down or 0), n_corrected

    totals: dict[tuple[int | None, int | None], Figures] = {}
    for key, by_bucket in groups.items():
        total = totals[key] = Figures()
        for f in by_bucket.values():
            total.add(f)
    split = [Log.prompt_id, Log.version_pk]
    for (b, p, v), pcts in _percentiles(session, conditions, [bucket, *split]).items():
        f = figures(p, v, b)
        f.p50_ms, f.p95_ms = pcts.get(50), pcts.get(95)
    for (p, v), pcts in _percentiles(session, conditions, split).items():
        total = totals.setdefault((p, v), Figures())
        total.p50_ms, total.p95_ms = pcts.get(50), pcts.get(95)

    everything = Figures()
    for total in totals.values():
        everything.add(total)
    for pcts in _percentiles(session, conditions, []).values():
        everything.p50_ms, everything.p95_ms = pcts.get(50), pcts.get(95)

    paths, versions = _names(session, list(groups))
    series = []
    for (p, v), by_bucket in groups.items():
        path, version = paths.get(p) if p else None, versions.get(v) if v else None
        series.append(
            Series(
                label=_label(path, version),
                prompt=path,
                version=version,
                buckets=[by_bucket.get(i, Figures()) for i in range(first, last + 1)],
                total=totals[(p, v)],
            )
        )
    series.sort(key=lambda s: (-s.total.logs, s.label))
    return Overview(
        window=window,
        since=since,
        until=until,
        bucket_s=size,
        starts=[datetime.fromtimestamp(i * size, UTC) for i in range(first, last + 1)],
        series=series,
        total=everything,
    )


def _bucket(size: int, *, is_sqlite: bool) -> ColumnElement[Any]:
    """The bucket of a log: whole `size`-second steps since the Unix epoch."""
    if is_sqlite:
        # SQLite keeps times as ISO text; strftime('%s') reads them back as epoch seconds.
        seconds = cast(func.strftime(literal_column("'%s'"), Log.created_at), Integer)
        return seconds // literal_column(str(int(size)))
    epoch = func.extract("epoch", Log.created_at)
    # literal sizes: PostgreSQL matches GROUP BY expressions by text, bound parameters differ
    return cast(func.floor(epoch / literal_column(str(int(size)))), BigInteger)


def _percentiles(
    session: Session, conditions: Sequence[ColumnElement[bool]], keys: Sequence[Any]
) -> dict[tuple[Any, ...], dict[int, float]]:
    """Nearest-rank latency percentiles per group of `keys`: the value at rank ceil(p·n) of the
    group's sorted latencies, picked with a window function (exact, and no list of latencies
    leaves the database)."""
    partition = list(keys) or None
    rank = func.row_number().over(partition_by=partition, order_by=Log.latency_ms)
    size = func.count().over(partition_by=partition)
    names = [f"k{i}" for i in range(len(keys))]
    ranked = (
        select(
            *[key.label(name) for key, name in zip(keys, names, strict=True)],
            Log.latency_ms.label("latency"),
            rank.label("rank"),
            size.label("n"),
        )
        .where(*conditions, Log.latency_ms.is_not(None))
        .subquery()
    )
    # ceil(p·n / 100) in integer arithmetic, the same on SQLite and PostgreSQL
    targets = [(pct, (pct * ranked.c.n + 99) // 100) for pct in PERCENTILES]
    out: dict[tuple[Any, ...], dict[int, float]] = {}
    query = select(
        *[ranked.c[name] for name in names],
        ranked.c.latency,
        ranked.c.rank,
        *[target for _, target in targets],
    ).where(or_(*[ranked.c.rank == target for _, target in targets]))
    for row in session.execute(query):
        values = tuple(row)
        head, latency, rank_value = values[: len(names)], values[len(names)], values[len(names) + 1]
        found = out.setdefault(head, {})
        for (pct, _), target in zip(targets, values[len(names) + 2 :], strict=True):
            if rank_value == target:
                found[pct] = float(latency)
    return out


def _names(
    session: Session, keys: Sequence[tuple[int | None, int | None]]
) -> tuple[dict[int, str], dict[int, str]]:
    prompt_ids = {p for p, _ in keys if p}
    version_pks = {v for _, v in keys if v}
    paths: dict[int, str] = {}
    versions: dict[int, str] = {}
    if prompt_ids:
        query = select(Prompt.id, Prompt.path).where(Prompt.id.in_(prompt_ids))
        paths = {pk: path for pk, path in session.execute(query)}
    if version_pks:
        query = select(PromptVersion.id, PromptVersion.version_id).where(
            PromptVersion.id.in_(version_pks)
        )
        versions = {pk: vid for pk, vid in session.execute(query)}
    return paths, versions


def _label(prompt: str | None, version: str | None) -> str:
    if prompt is None:
        return "(no prompt)"
    return f"{prompt}@{version}" if version else f"{prompt} (no saved version)"


# The feedback column of a log listing -------------------------------------------------------


@dataclass
class FeedbackSummary:
    """The current feedback on one log, counted by what it says."""

    up: int = 0
    down: int = 0
    corrections: int = 0
    comments: int = 0
    actions: int = 0

    @property
    def empty(self) -> bool:
        return not (self.up or self.down or self.corrections or self.comments or self.actions)


def feedback_summaries(
    session: Session, *, actor: Actor, project: Project, log_ids: Sequence[int]
) -> dict[int, FeedbackSummary]:
    """Per log id (the row id): its current feedback, in one grouped query for a whole page."""
    actor.require(Permission.read)
    if not log_ids:
        return {}
    score = Judgment.score
    rows = session.execute(
        select(
            Judgment.log_id,
            Judgment.category,
            func.sum(case((score > 0.5, 1), else_=0)),
            func.sum(case((score < 0.5, 1), else_=0)),
            func.count(),
        )
        .where(
            Judgment.project_id == project.id,
            Judgment.log_id.in_(list(log_ids)),
            Judgment.current.is_(True),
            Judgment.kind_id.is_not(None),
        )
        .group_by(Judgment.log_id, Judgment.category)
    )
    out: dict[int, FeedbackSummary] = {}
    for log_id, category, ups, downs, n in rows:
        summary = out.setdefault(log_id, FeedbackSummary())
        if category == "vote":
            summary.up += int(ups or 0)
            summary.down += int(downs or 0)
        elif category == "correction":
            summary.corrections += n
        elif category == "comment":
            summary.comments += n
        else:
            summary.actions += n
    return out


__all__ = [
    "WINDOWS",
    "FeedbackSummary",
    "Figures",
    "Overview",
    "Series",
    "feedback_summaries",
    "overview",
]
