"""Fixtures: every storage test runs on SQLite and on PostgreSQL (`database_url` is parametrized).

PostgreSQL is started once per test run (tests/pg.py); each test gets a fresh database. If it
cannot start, PostgreSQL tests are skipped, unless PROMPTLOOP_REQUIRE_POSTGRES=1 (as in CI).
"""

from __future__ import annotations

import os

# Apps in tests start by the hundred: none of them preloads the local model (its tests load it).
os.environ["PROMPTLOOP_WARM_LOCAL_MODEL"] = "0"
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from promptloop.api.app import create_app
from promptloop.services import auth, local, projects
from promptloop.settings import Settings
from tests.pg import PostgresUnavailable, TestPostgres


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread
    from its first test to the end of the session, which the asyncio tests cannot share."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid)


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


class Server:
    """The running app and shortcuts that act on its database directly, as an operator would."""

    def __init__(self, settings: Settings, app: FastAPI) -> None:
        self.settings = settings
        self.app = app

    def key(self, *, project: str = "default", role: str = "admin", name: str = "tests") -> str:
        """A new API key (through `promptloop keys create`'s code path)."""
        return local.create_api_key(self.settings, project=project, role=role, name=name).secret

    def project(self, name: str) -> str:
        db = local.open_database(self.settings)
        try:
            with db.session(write=True) as session:
                projects.ensure_project(session, name=name)
        finally:
            db.dispose()
        return name

    def client(self, key: str | None = None) -> TestClient:
        """Another client of the same running app, with `key` as its credentials."""
        other = TestClient(self.app)
        if key:
            other.headers["Authorization"] = f"Bearer {key}"
        return other

    def browser(self, email: str = auth.FIRST_ADMIN_EMAIL) -> TestClient:
        """A client signed in as `email` through a one-time link, with its CSRF header set."""
        browser = self.client()
        token = local.sign_in_link(self.settings, email=email)
        response = browser.post("/api/v1/auth/sign-in-link", json={"token": token})
        assert response.status_code == 200, response.text
        browser.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        return browser


def _running(settings: Settings) -> Iterator[tuple[TestClient, Server]]:
    app = create_app(settings)
    with TestClient(app) as test_client:
        server = Server(settings, app)
        test_client.headers["Authorization"] = f"Bearer {server.key()}"
        yield test_client, server


@pytest.fixture
def running(settings: Settings) -> Iterator[tuple[TestClient, Server]]:
    yield from _running(settings)


@pytest.fixture
def client(running: tuple[TestClient, Server]) -> TestClient:
    """The real app in-process, on both databases, as an admin API key of `default`."""
    return running[0]


@pytest.fixture
def server(running: tuple[TestClient, Server]) -> Server:
    return running[1]


@pytest.fixture
def sqlite_client(tmp_path: Path) -> Iterator[TestClient]:
    """The real app on SQLite only, for behaviour that does not touch storage differences."""
    for test_client, _ in _running(Settings(data_dir=tmp_path / "data")):
        yield test_client
