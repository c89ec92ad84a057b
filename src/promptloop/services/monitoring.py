"""Figures over a project's logs, for watching a prompt in production: volume, errors, latency
percentiles, tokens, cost and feedback rates, per time bucket and per prompt version; and the
short feedback summary each row of a log listing shows.

Buckets are whole multiples of the bucket size since the Unix epoch (in UTC); latency
percentiles are exact nearest-rank values. The same code serves SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, case, func, literal_column, select
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
    hour = _hour_key(is_sqlite=session.get_bind().dialect.name == "sqlite")
    # hour key ('2026-11-28 09', UTC) → bucket index: the database names the hour, Python buckets
    step = 3600
    bucket_of = {
        datetime.fromtimestamp(h * step, UTC).strftime("%Y-%m-%d %H"): (h * step) // size
        for h in range(first * size // step, (last + 1) * size // step)
    }
    groups: dict[tuple[int | None, int | None], dict[int, Figures]] = {}
    latencies: dict[tuple[int | None, int | None, int], list[float]] = {}

    def figures(p: int | None, v: int | None, b: int) -> Figures:
        by_bucket = groups.get((p, v))
        if by_bucket is None:
            by_bucket = groups[(p, v)] = {}
        found = by_bucket.get(b)
        if found is None:
            found = by_bucket[b] = Figures()
        return found

    # One pass over the window's logs, read from a covering index: per (hour, prompt, version)
    # the count, token and cost sums and the latencies, for exact percentiles. On 100,000 logs in
    # SQLite this costs a fraction of ranking them with window functions or of a GROUP BY's sort
    # (bench/ui.py); the loop does as little per row as it can.
    cells: dict[tuple[str, int | None, int | None], list[Any]] = {}
    result = session.connection().execute(
        select(
            hour,
            Log.prompt_id,
            Log.version_pk,
            Log.latency_ms,
            Log.prompt_tokens,
            Log.output_tokens,
            Log.cost,
        ).where(*conditions)
    )
    try:
        # The driver's own tuples: at 100,000 rows, building SQLAlchemy rows costs about as much
        # as the scan, and these columns (text, integers, floats) need no conversion.
        rows = result.cursor.fetchall()
    finally:
        result.close()
    for h, p, v, latency, pt, ot, cost in rows:
        cell = cells.get((h, p, v))
        if cell is None:
            cell = cells[(h, p, v)] = [0, 0, 0, 0.0, 0, []]
        cell[0] += 1
        if pt:
            cell[1] += pt
        if ot:
            cell[2] += ot
        if cost is not None:
            cell[3] += cost
            cell[4] += 1
        if latency is not None:
            cell[5].append(latency)
    for (h, p, v), (n, pt, ot, cost, n_cost, values) in cells.items():
        b = bucket_of.get(h)
        if b is None:
            continue
        f = figures(p, v, b)
        f.logs += n
        f.prompt_tokens += pt
        f.output_tokens += ot
        if n_cost:
            f.cost = (f.cost or 0.0) + cost
        f.cost_unknown += n - n_cost
        if values:
            latencies.setdefault((p, v, b), []).extend(values)

    for h, p, v, n in session.execute(
        select(hour, Log.prompt_id, Log.version_pk, func.count())
        .where(*conditions, Log.error.is_not(None))
        .group_by(hour, Log.prompt_id, Log.version_pk)
    ):
        if (b := bucket_of.get(h)) is not None:
            figures(p, v, b).errors += n

    up = func.sum(case(((Judgment.category == "vote") & (Judgment.score > 0.5), 1), else_=0))
    down = func.sum(case(((Judgment.category == "vote") & (Judgment.score < 0.5), 1), else_=0))
    corrected = func.count(
        func.distinct(case((Judgment.category == "correction", Judgment.log_id)))
    )
    for h, p, v, n_up, n_down, n_corrected in session.execute(
        select(hour, Log.prompt_id, Log.version_pk, up, down, corrected)
        .join(Log, Log.id == Judgment.log_id)
        .where(
            *conditions,
            Judgment.project_id == project.id,
            Judgment.current.is_(True),
            Judgment.kind_id.is_not(None),
        )
        .group_by(hour, Log.prompt_id, Log.version_pk)
    ):
        if (b := bucket_of.get(h)) is not None:
            f = figures(p, v, b)
            f.votes_up += int(n_up or 0)
            f.votes_down += int(n_down or 0)
            f.corrected += n_corrected

    totals: dict[tuple[int | None, int | None], Figures] = {}
    per_series: dict[tuple[int | None, int | None], list[float]] = {}
    for (p, v, b), values in latencies.items():
        values.sort()
        f = figures(p, v, b)
        f.p50_ms, f.p95_ms = _rank(values, 50), _rank(values, 95)
        per_series.setdefault((p, v), []).extend(values)
    for key, by_bucket in groups.items():
        total = totals[key] = Figures()
        for f in by_bucket.values():
            total.add(f)
        values = sorted(per_series.get(key, ()))
        total.p50_ms, total.p95_ms = _rank(values, 50), _rank(values, 95)
    everything = Figures()
    for total in totals.values():
        everything.add(total)
    every = sorted(x for values in per_series.values() for x in values)
    everything.p50_ms, everything.p95_ms = _rank(every, 50), _rank(every, 95)

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


def _hour_key(*, is_sqlite: bool) -> ColumnElement[str]:
    """A log's hour as text, 'YYYY-MM-DD HH' in UTC, the same on both databases."""
    if is_sqlite:
        # SQLite keeps times as ISO text in UTC: the hour is its first 13 characters.
        return func.substr(Log.created_at, 1, 13, type_=String)
    utc_time = func.timezone(literal_column("'UTC'"), Log.created_at)
    return func.to_char(utc_time, literal_column("'YYYY-MM-DD HH24'"), type_=String)


def _rank(ordered: Sequence[float], pct: int) -> float | None:
    """The nearest-rank percentile of sorted values: the value at rank ceil(pct·n/100)."""
    if not ordered:
        return None
    return float(ordered[(pct * len(ordered) + 99) // 100 - 1])


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
