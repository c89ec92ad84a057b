"""The log store: where logs are written in bulk and read back with filters.

Services talk to the `LogStore` interface only, so a column store can take the log volume later
without touching them. `GroupCommitWriter` makes many concurrent writers share transactions:
each caller's rows are acknowledged only after the transaction holding them has committed.
"""

from __future__ import annotations

import json
import operator
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from psycopg.types.json import Jsonb
from sqlalchemy import ColumnElement, Select, select

from promptloop.core.errors import InvalidInput
from promptloop.store.db import Database
from promptloop.store.models import Judgment, Log
from promptloop.store.types import JSONType


@dataclass(frozen=True)
class LogQuery:
    """Filters over one project's logs; None means no filter."""

    project_id: int
    prompt_id: int | None = None
    version_pk: int | None = None
    environment: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    has_error: bool | None = None
    end_user: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    trace_id: str | None = None
    feedback: tuple[str, ...] = ()  # filter words; all must hold (see `feedback_condition`)
    judgments: tuple[JudgmentFilter, ...] = ()  # evaluator judgments; all must hold


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
}
_JUDGMENT = re.compile(r"([a-z][a-z0-9_-]{0,63})(>=|<=|!=|>|<|=)(.+)")


@dataclass(frozen=True)
class JudgmentFilter:
    """An evaluator's judgment a log must have: `helpful>=4`, `exact=true`, `toxic<0.5`.

    It compares the judgment's score: numbers as they are, booleans as 1 and 0. Only finished
    judgments count: a failed evaluator or a human judgment still to give matches nothing."""

    evaluator: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> JudgmentFilter:
        found = _JUDGMENT.fullmatch(text.strip())
        if found is None:
            raise InvalidInput(
                f"Judgment filter {text!r} must look like <evaluator><op><value> with op one of "
                ">=, <=, >, <, =, != (e.g. helpful>=4 or exact=true)."
            )
        name, op, raw = found.groups()
        word = raw.strip().lower()
        if word in ("true", "false"):
            return cls(name, op, 1.0 if word == "true" else 0.0)
        try:
            value = float(word)
        except ValueError:
            value = float("nan")
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidInput(
                f"Judgment filter {text!r}: the value must be a number, true or false."
            )
        return cls(name, op, value)

    def __str__(self) -> str:
        return f"{self.evaluator}{self.op}{self.value:g}"


class LogStore(Protocol):
    def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store rows durably before returning; rows whose (project, uid) exists already are skipped."""
        ...

    def get(self, *, project_id: int, uid: str) -> Log | None: ...

    def query(self, query: LogQuery, *, before_id: int | None, limit: int) -> list[Log]:
        """Matching logs, newest first, with `id` below `before_id` (the cursor)."""
        ...


_COLUMNS = [c for c in Log.__table__.columns if c.name != "id"]
_JSON_COLUMNS = {
    c.name for c in _COLUMNS if c.type is JSONType or isinstance(c.type, type(JSONType))
}


class SqlLogStore:
    """Logs in the main SQL database (SQLite or PostgreSQL).

    Inserts go straight to the driver's executemany with values prepared here: at thousands of
    rows per batch, SQLAlchemy's per-value processing would cost more than the write itself.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        names = ", ".join(f'"{c.name}"' for c in _COLUMNS)
        marker = "?" if db.is_sqlite else "%s"
        values = ", ".join(marker for _ in _COLUMNS)
        self._sql = (
            f"INSERT INTO logs ({names}) VALUES ({values}) ON CONFLICT (project_id, uid) DO NOTHING"
        )
        self._prepare = _sqlite_values if db.is_sqlite else _postgres_values

    def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        values = [self._prepare(row) for row in rows]
        with self.db.write_engine.begin() as connection:
            connection.exec_driver_sql(self._sql, values)

    def get(self, *, project_id: int, uid: str) -> Log | None:
        with self.db.session(write=False) as session:
            return session.scalars(
                select(Log).where(Log.project_id == project_id, Log.uid == uid)
            ).first()

    def query(self, query: LogQuery, *, before_id: int | None, limit: int) -> list[Log]:
        statement = _filtered(select(Log), query, is_sqlite=self.db.is_sqlite)
        if before_id is not None:
            statement = statement.where(Log.id < before_id)
        with self.db.session(write=False) as session:
            return list(session.scalars(statement.order_by(Log.id.desc()).limit(limit)))


def _sqlite_values(row: dict[str, Any]) -> tuple[Any, ...]:
    out = []
    for column in _COLUMNS:
        value = row.get(column.name)
        if value is not None:
            if column.name in _JSON_COLUMNS:
                value = json.dumps(value)
            elif isinstance(value, datetime):
                value = _sqlite_datetime(value)
        out.append(value)
    return tuple(out)


def _sqlite_datetime(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime writes (years zero-padded), so comparisons agree."""
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}"
        f".{v.microsecond:06d}"
    )


def _postgres_values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        Jsonb(row[c.name])
        if c.name in _JSON_COLUMNS and row.get(c.name) is not None
        else row.get(c.name)
        for c in _COLUMNS
    )


def _filtered(statement: Select[Any], query: LogQuery, *, is_sqlite: bool) -> Select[Any]:
    conditions = [Log.project_id == query.project_id]
    for column, value in (
        (Log.prompt_id, query.prompt_id),
        (Log.version_pk, query.version_pk),
        (Log.environment, query.environment),
        (Log.source, query.source),
        (Log.end_user, query.end_user),
        (Log.trace_id, query.trace_id),
    ):
        if value is not None:
            conditions.append(column == value)
    if query.since is not None:
        conditions.append(Log.created_at >= query.since)
    if query.until is not None:
        conditions.append(Log.created_at < query.until)
    if query.has_error is not None:
        conditions.append(Log.error.is_not(None) if query.has_error else Log.error.is_(None))
    for key, value in query.metadata.items():
        conditions.append(Log.meta[key].as_string() == value)
    conditions.extend(feedback_condition(word) for word in query.feedback)
    conditions.extend(judgment_condition(judgment) for judgment in query.judgments)
    return statement.where(*conditions)


# Feedback filter words with a meaning of their own; no feedback kind may take these names.
FEEDBACK_WORDS = ("up", "down", "any", "none")


def feedback_condition(word: str) -> ColumnElement[bool]:
    """A condition on `logs` for one feedback filter word: `up` / `down` (a current vote scoring
    above / below the middle of its scale), `any`, `none` (no feedback yet), or the name of a
    feedback kind (`copied`, `correction`…): at least one current entry of it."""
    exists = select(Judgment.id).where(
        Judgment.log_id == Log.id, Judgment.current.is_(True), Judgment.kind_id.is_not(None)
    )
    if word == "up":
        return exists.where(Judgment.category == "vote", Judgment.score > 0.5).exists()
    if word == "down":
        return exists.where(Judgment.category == "vote", Judgment.score < 0.5).exists()
    if word == "any":
        return exists.exists()
    if word == "none":
        return ~exists.exists()
    return exists.where(Judgment.name == word).exists()


def judgment_condition(judgment: JudgmentFilter) -> ColumnElement[bool]:
    """A condition on `logs`: a current, finished judgment by the named evaluator whose score
    compares with the filter's value as asked."""
    compare = _OPERATORS[judgment.op]
    return (
        select(Judgment.id)
        .where(
            Judgment.log_id == Log.id,
            Judgment.evaluator_version_pk.is_not(None),
            Judgment.name == judgment.evaluator,
            Judgment.current.is_(True),
            Judgment.pending.is_(False),
            Judgment.error.is_(None),
            Judgment.score.is_not(None),
            compare(Judgment.score, judgment.value),
        )
        .exists()
    )


@dataclass
class _Pending:
    rows: Sequence[dict[str, Any]]
    future: Future[None]


class GroupCommitWriter:
    """Writes rows from many threads in shared transactions (group commit).

    `submit` returns a future that completes once the rows are committed, or fails with the
    storage error. While one transaction is in flight, everything submitted meanwhile gathers
    into the next, up to `max_rows`: throughput grows with load, and nothing is acknowledged
    before it is on disk.
    """

    def __init__(self, store: LogStore, *, max_rows: int = 5000) -> None:
        self.store = store
        self.max_rows = max_rows
        self._pending: deque[_Pending] = deque()
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="promptloop-log-writer", daemon=True)
        self._thread.start()

    def submit(self, rows: Sequence[dict[str, Any]]) -> Future[None]:
        future: Future[None] = Future()
        with self._condition:
            if self._closed:
                raise RuntimeError("the log writer is closed")
            self._pending.append(_Pending(rows, future))
            self._condition.notify()
        return future

    def close(self, timeout: float = 30.0) -> None:
        """Write what is pending, then stop."""
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._closed:
                    self._condition.wait()
                if not self._pending and self._closed:
                    return
                group = self._take()
            self._write(group)

    def _take(self) -> list[_Pending]:
        group: list[_Pending] = []
        count = 0
        while self._pending and (not group or count + len(self._pending[0].rows) <= self.max_rows):
            item = self._pending.popleft()
            group.append(item)
            count += len(item.rows)
        return group

    def _write(self, group: list[_Pending]) -> None:
        rows = [row for item in group for row in item.rows]
        try:
            self.store.insert(rows)
        except Exception as exc:
            for item in group:
                item.future.set_exception(exc)
            return
        for item in group:
            item.future.set_result(None)
