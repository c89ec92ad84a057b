"""Fixtures: every storage test runs on SQLite and on PostgreSQL (`database_url` is parametrized).

PostgreSQL is started once per test run (tests/pg.py); each test gets a fresh database. If it
cannot start, PostgreSQL tests are skipped, unless PROMPTLOOP_REQUIRE_POSTGRES=1 (as in CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from promptloop.api.app import create_app
from promptloop.settings import Settings
from tests.pg import PostgresUnavailable, TestPostgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    url = os.environ.get("PROMPTLOOP_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    server = None
    try:
        server = TestPostgres()
        yield server.start()
    except PostgresUnavailable as exc:
        if os.environ.get("PROMPTLOOP_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here but did not start: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    finally:
        if server is not None:
            server.stop()


def fresh_postgres_database(server_url: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'promptloop.db'}"
    return fresh_postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The real app in-process, on both databases."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def sqlite_client(tmp_path: Path) -> Iterator[TestClient]:
    """The real app on SQLite only, for behaviour that does not touch storage differences."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"))) as test_client:
        yield test_client
