"""Deploying, history and rollback, over HTTP and under concurrency, on both databases."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from promptloop.core.access import SYSTEM
from promptloop.core.kernel import Kernel
from promptloop.services import deployments, projects, prompts
from promptloop.store.db import Database
from promptloop.store.models import Deployment, DeploymentEvent, PromptVersion
from tests.helpers import BASE, assert_error, deploy, save


def history(
    client: TestClient, path: str, environment: str | None = None
) -> list[dict[str, object]]:
    params = {"environment": environment} if environment else {}
    data: list[dict[str, object]] = client.get(
        f"{BASE}/prompts/{path}/-/history", params=params
    ).json()["data"]
    return data


def served(client: TestClient, path: str, environment: str) -> str:
    response = client.get(f"{BASE}/prompts/{path}/-/version", params={"environment": environment})
    assert response.status_code == 200, response.text
    version: str = response.json()["id"]
    return version


def test_deploy_history_and_rollback_walks_back(client: TestClient) -> None:
    a, b, c = (save(client, "support/answer", f"v{i} {{{{ q }}}}")["id"] for i in range(3))
    for version in (a, b, c):
        deploy(client, "support/answer", version)
    deploy(client, "support/answer", a, environment="staging")
    assert served(client, "support/answer", "production") == c

    rolled = client.post(
        f"{BASE}/prompts/support/answer/-/deployments/production/rollback", json={"message": "bad"}
    )
    assert rolled.status_code == 200
    assert (
        rolled.json()["action"],
        rolled.json()["version_id"],
        rolled.json()["previous_version_id"],
    ) == (
        "rollback",
        b,
        c,
    )
    assert served(client, "support/answer", "production") == b
    client.post(f"{BASE}/prompts/support/answer/-/deployments/production/rollback", json={})
    assert served(client, "support/answer", "production") == a
    assert_error(
        client.post(f"{BASE}/prompts/support/answer/-/deployments/production/rollback", json={}),
        409,
        "conflict",
        "Nothing to roll back to",
    )
    assert served(client, "support/answer", "staging") == a

    production = history(client, "support/answer", "production")
    assert [(e["action"], e["version_id"]) for e in production] == [
        ("rollback", a),
        ("rollback", b),
        ("deploy", c),
        ("deploy", b),
        ("deploy", a),
    ]
    assert production[3]["previous_version_id"] == a
    assert production[1]["message"] == "bad"
    assert len(history(client, "support/answer")) == 6


def test_redeploying_the_served_version_changes_nothing(client: TestClient) -> None:
    a = save(client, "support/answer")["id"]
    first = deploy(client, "support/answer", a)
    again = deploy(client, "support/answer", a)
    assert again["id"] == first["id"]
    assert (first["changed"], again["changed"]) == (True, False)
    assert len(history(client, "support/answer")) == 1


def test_deployments_list_every_environment(client: TestClient) -> None:
    a = save(client, "support/answer")["id"]
    deploy(client, "support/answer", a, environment="staging")
    states = client.get(f"{BASE}/prompts/support/answer/-/deployments").json()
    assert [(s["environment"], s["version_id"]) for s in states] == [
        ("development", None),
        ("staging", a),
        ("production", None),
    ]
    assert states[1]["deployed_by"]


def test_custom_environment_can_be_deployed_to(client: TestClient) -> None:
    assert client.post(f"{BASE}/environments", json={"name": "canary"}).status_code == 201
    a = save(client, "support/answer")["id"]
    deploy(client, "support/answer", a, environment="canary")
    assert served(client, "support/answer", "canary") == a


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.migrate()
    with db.session(write=True) as session:
        projects.ensure_project(session, name="default")
    yield db
    db.dispose()


def _kernel(text: str) -> Kernel:
    return Kernel(provider="openai", model="m", messages=[{"role": "user", "content": text}])  # type: ignore[list-item]


def _race(workers: int, work: Callable[[int], None]) -> None:
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


def test_concurrent_saves_of_the_same_content_create_one_version(database: Database) -> None:
    results: list[tuple[str, bool]] = []

    def work(i: int) -> None:
        with database.session(write=True) as session:
            project = projects.get_project(session, name="default")
            saved = prompts.save_version(
                session,
                project=project,
                path="race/same",
                kernel=_kernel("Same {{ x }}"),
                author=f"w{i}",
                actor=SYSTEM,
            )
            results.append((saved.version.version_id, saved.created))

    _race(8, work)
    assert len({vid for vid, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with database.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(PromptVersion)) == 1


def test_concurrent_deploys_leave_a_consistent_history(database: Database) -> None:
    with database.session(write=True) as session:
        project = projects.get_project(session, name="default")
        ids = [
            prompts.save_version(
                session, project=project, path="race/deploy", kernel=_kernel(f"V{i}"), actor=SYSTEM
            ).version.version_id
            for i in range(6)
        ]

    def work(i: int) -> None:
        for round_ in range(3):
            with database.session(write=True) as session:
                project = projects.get_project(session, name="default")
                deployments.deploy(
                    session,
                    project=project,
                    path="race/deploy",
                    version=ids[(i + round_) % len(ids)],
                    environment="production",
                    actor=SYSTEM,
                )

    _race(6, work)
    with database.session(write=False) as session:
        events = session.scalars(select(DeploymentEvent).order_by(DeploymentEvent.id)).all()
        current = session.scalars(select(Deployment)).one()
    assert len(events) >= 2
    assert events[0].previous_version_pk is None
    for before, after in itertools.pairwise(events):
        assert after.previous_version_pk == before.version_pk
        assert after.version_pk != before.version_pk
    assert current.version_pk == events[-1].version_pk
