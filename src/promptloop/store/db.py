"""The database handle: engines, sessions, and migrations applied on start.

On SQLite every write transaction starts with `BEGIN IMMEDIATE`, so concurrent writers queue
on the database lock instead of failing half-way with "database is locked" when a read turns
into a write; reads start a plain deferred transaction and never block writers (WAL).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 7_215_001  # pg_advisory_lock key: one migrator at a time across replicas


class Database:
    """Two engines on one database: `write` sessions take the write lock first, `read` do not."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database:
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        self.write_engine = self._engine(immediate=True, pool_size=pool_size)
        self.read_engine = self._engine(immediate=False, pool_size=pool_size)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)

    def _engine(self, *, immediate: bool, pool_size: int) -> Engine:
        if not self.is_sqlite:
            return create_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
        engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30})
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA cache_size=-16384")  # 16 MiB: index pages of bulk log inserts
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)

        return engine

    @contextmanager
    def session(self, *, write: bool) -> Iterator[Session]:
        """A session in one transaction, committed when the block ends without error."""
        with (self._write if write else self._read)() as session, session.begin():
            yield session

    def migrate(self) -> None:
        """Apply every pending migration (idempotent; safe with several replicas starting)."""
        with self.write_engine.begin() as connection:
            if not self.is_sqlite:
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def dispose(self) -> None:
        self.write_engine.dispose()
        self.read_engine.dispose()


def alembic_config() -> Config:
    """Alembic configuration pointing at the packaged migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
