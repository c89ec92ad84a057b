"""The demo project (`promptloop serve --demo`, on in scripts/run): seeded at start-up on a fresh
server only, once; its background job logs calls with feedback, builds the fine-tuning set from
the reviewed logs, and queues the fine-tune and an evaluation of two prompt versions.

Most tests stand a fake provider in for the offline model; the last one runs the whole flywheel
for real on the local model with a tiny LoRA (SQLite only; skipped without the local model
stack unless PROMPTLOOP_REQUIRE_LOCAL_MODEL=1).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from promptloop.finetune.demo import extraction_examples
from promptloop.providers.base import ChatRequest
from promptloop.services import demo
from promptloop.settings import Settings
from promptloop.store.db import Database
from promptloop.store.models import Job, Membership, User
from tests.conftest import Server, _running
from tests.fakes import FakeProvider, registered
from tests.helpers import BASE
from tests.test_local_provider import needs_model

SMALL = demo.Plan(real_calls=6, synthetic_logs=30, golden=4, max_steps=2, watch_s=1, poll_s=0.1)
REAL = [e.messages[1:] for e in extraction_examples(SMALL.real_calls, seed=7)]
# Every order text the demo may send, with its right JSON.
ANSWERS = {
    e.messages[1]["content"]: e.messages[2]["content"]
    for e in extraction_examples(SMALL.synthetic_logs, seed=1)
    + extraction_examples(SMALL.golden, seed=2024)
    + extraction_examples(SMALL.real_calls, seed=7)
}


def fake_answer(request: ChatRequest) -> str:
    """Right for the golden set and the even real calls; prose for the odd ones."""
    text = str((request.messages or [])[-1]["content"])
    index = next((i for i, (user, _) in enumerate(REAL) if user["content"] == text), 0)
    return ANSWERS[text] if index % 2 == 0 else f"The order is: {text}"


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    """The demo's prompts call a fake provider, and the demo is small."""
    monkeypatch.setattr(demo, "PROVIDER", "fake")
    monkeypatch.setattr(demo, "MODEL", "fake-1")
    monkeypatch.setattr(demo, "DEFAULT_PLAN", SMALL)
    with registered(FakeProvider(respond=fake_answer)) as provider:
        yield provider


@contextmanager
def serving(settings: Settings) -> Iterator[tuple[TestClient, Server]]:
    """The app running with `settings`; the client holds an admin key of the demo project."""
    for client, server in _running(settings):
        client.headers["Authorization"] = f"Bearer {server.key(project=demo.PROJECT)}"
        yield client, server


def demo_jobs(db: Database) -> list[Job]:
    with db.session(write=False) as session:
        found = list(session.scalars(select(Job).where(Job.kind == demo.JOB_KIND)))
        session.expunge_all()
        return found


def wait_for(check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def items(response: Any) -> list[Any]:
    """A list response's items (paged lists hold them under `data`)."""
    assert response.status_code == 200, response.text
    body = response.json()
    return list(body["data"] if isinstance(body, dict) else body)


def counts(client: TestClient) -> dict[str, int]:
    versions = items(client.get(f"{BASE}/prompts/{demo.PROMPT}/-/versions"))
    datasets = items(client.get(f"{BASE}/datasets"))
    golden = items(client.get(f"{BASE}/datasets/{demo.GOLDEN}/-/versions"))
    evaluators = items(client.get(f"{BASE}/evaluators"))
    history = items(client.get(f"{BASE}/prompts/{demo.PROMPT}/-/history"))
    return {
        "versions": len(versions),
        "datasets": len(datasets),
        "golden": len(golden),
        "evaluators": len(evaluators),
        "deploys": len(history),
    }


def test_a_fresh_server_seeds_the_demo_project_once(
    settings: Settings, fake_model: FakeProvider
) -> None:
    quiet = settings.model_copy(update={"demo": True, "worker": False})
    with serving(quiet) as (client, server):
        prompts = {p["path"] for p in items(client.get(f"{BASE}/prompts"))}
        assert prompts == {demo.PROMPT, demo.REPLY_PROMPT}
        versions = items(client.get(f"{BASE}/prompts/{demo.PROMPT}/-/versions"))
        assert len(versions) == 3
        assert {v["author"] for v in versions} == {demo.SAM, demo.MARIA, demo.LEE}
        assert all(v["message"] for v in versions)
        short = next(v for v in versions if v["name"] == "short")
        served = items(client.get(f"{BASE}/prompts/{demo.PROMPT}/-/deployments"))
        assert {(e["environment"], e["version_id"]) for e in served} == {
            (env, short["id"]) for env in ("development", "staging", "production")
        }

        evaluators = {e["name"] for e in items(client.get(f"{BASE}/evaluators"))}
        assert evaluators == set(demo.EVALUATORS)
        golden = client.get(f"{BASE}/datasets/{demo.GOLDEN}").json()
        assert golden["count"] == SMALL.golden
        kinds = {k["name"] for k in items(client.get(f"{BASE}/feedback-kinds"))}
        assert {"stars", "rating", "correction", "copied"} <= kinds
        before = counts(client)
        assert before["deploys"] == 6  # the extraction prompt's three environments' histories

        db = server.app.state.db
        with db.session(write=False) as session:
            admin = session.scalars(select(User).where(User.server_admin.is_(True))).one()
            roles = session.scalars(
                select(Membership.role).where(Membership.user_id == admin.id)
            ).all()
            assert sorted(roles) == ["admin", "admin"]  # default and demo
        [job] = demo_jobs(db)
        assert job.status == "queued" and job.payload["plan"]["real_calls"] == SMALL.real_calls
        # The admin's browser sees the demo project.
        browser = server.browser()
        names = [p["name"] for p in items(browser.get(f"{BASE}/projects"))]
        assert demo.PROJECT in names
        # ... and opens on it: the home page leads to the demo project's prompts.
        landing = browser.get("/", follow_redirects=False)
        assert landing.headers["location"] == f"/p/{demo.PROJECT}/prompts"
        page = browser.get("/")
        assert page.status_code == 200 and demo.PROMPT in page.text

    with serving(quiet) as (client, server):  # a restart seeds nothing again
        assert counts(client) == before
        assert len(demo_jobs(server.app.state.db)) == 1


def test_the_seed_job_logs_reviews_builds_the_set_and_queues_the_flywheel(
    settings: Settings, fake_model: FakeProvider
) -> None:
    # The worker runs evaluations but not fine-tunes: training is the last test's business.
    running = settings.model_copy(update={"demo": True, "worker_jobs": ["evaluation_run"]})
    with serving(running) as (client, server):
        db = server.app.state.db
        [job] = wait_for(lambda: [j for j in demo_jobs(db) if j.status in ("completed", "failed")])
        assert job.status == "completed", job.error
        assert set(job.progress["timings"]) == {"calls", "synthetic", "dataset", "jobs", "watch"}
        assert job.progress["calls"] == SMALL.real_calls and job.progress["calls_right"] == 3

        logs = items(client.get(f"{BASE}/logs", params={"source": "sdk", "limit": 200}))
        real = [log for log in logs if (log.get("metadata") or {}).get("demo") == "model"]
        synthetic = [log for log in logs if (log.get("metadata") or {}).get("demo") == "synthetic"]
        assert len(real) == SMALL.real_calls and len(synthetic) == SMALL.synthetic_logs
        assert {log["model"] for log in real} == {"fake-1"}  # the model really answered these
        assert {log["model"] for log in synthetic} == {"synthetic"}

        # A wrong answer got a down vote, a correction with the right JSON and a comment.
        wrong = next(log for log in real if log["output"].startswith("The order is"))
        given = items(client.get(f"{BASE}/logs/{wrong['id']}/feedback"))
        by_name = {g["name"]: g for g in given}
        assert by_name["rating"]["value"] is False
        assert by_name["correction"]["value"] == ANSWERS[wrong["inputs"]["text"]]
        assert {"comment", "stars"} <= set(by_name)

        # The fine-tuning set: the rated logs only (every fifth real call was never reviewed),
        # each with the right JSON as its target.
        points = items(client.get(f"{BASE}/datasets/{demo.FLYWHEEL}/-/versions/latest/datapoints"))
        reviewed = SMALL.real_calls - SMALL.real_calls // 5
        assert len(points) == reviewed + SMALL.synthetic_logs
        for point in points:
            assert json.loads(point["target"]) == json.loads(ANSWERS[point["inputs"]["text"]])
        assert any(p["source"] == "correction" for p in points)

        [tune] = items(client.get(f"{BASE}/fine-tunes"))
        assert tune["model"] == f"local/{demo.PROJECT}/{demo.TUNED}" and tune["status"] == "queued"
        assert tune["evaluators"] == list(demo.EVALUATORS) and tune["method"] == "lora"

        runs = items(client.get(f"{BASE}/evaluations"))
        [run] = [r for r in runs if r["name"] == demo.RUN_NAME]
        run = wait_for(
            lambda: (
                (found := client.get(f"{BASE}/evaluations/{run['id']}").json())["status"]
                == "completed"
                and found
            )
        )
        results = run["summary"]["results"]
        assert {r["evaluator"] for r in results} == set(demo.EVALUATORS)
        assert all(r["mean"]["value"] == 1.0 for r in results)  # the fake knows the golden set

        # Run again (as a job resumed after a crash would): nothing is logged or given twice.
        before = (
            len(logs),
            sum(len(items(client.get(f"{BASE}/logs/{x['id']}/feedback"))) for x in logs),
        )
        with db.session(write=True) as session:
            from promptloop.services import jobs
            from promptloop.services.projects import get_project

            project = get_project(session, name=demo.PROJECT)
            jobs.enqueue(session, project=project, kind=demo.JOB_KIND, payload=job.payload)
        server.app.state.wake_worker()
        wait_for(lambda: all(j.status == "completed" for j in demo_jobs(db)))
        again = items(client.get(f"{BASE}/logs", params={"source": "sdk", "limit": 200}))
        after = (
            len(again),
            sum(len(items(client.get(f"{BASE}/logs/{x['id']}/feedback"))) for x in again),
        )
        assert after == before
        assert len(items(client.get(f"{BASE}/datasets/{demo.FLYWHEEL}/-/versions"))) == 1
        assert len(items(client.get(f"{BASE}/fine-tunes"))) == 1


def test_a_failing_seed_is_logged_and_the_server_starts(
    settings: Settings,
    fake_model: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo, "seed", broken)
    with caplog.at_level(logging.INFO, logger="promptloop.demo"):
        for client, _ in _running(settings.model_copy(update={"demo": True, "worker": False})):
            assert client.get(f"{BASE}/health").status_code == 200
    assert "seeding the 'demo' project failed" in caplog.text and "disk full" in caplog.text


# The real thing --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base model converted once for the module (or in PROMPTLOOP_TEST_MODELS_DIR)."""
    from promptloop.providers import _local_model, local

    configured = os.environ.get("PROMPTLOOP_TEST_MODELS_DIR")
    folder = (
        Path(configured) if configured else tmp_path_factory.mktemp("models")
    ) / "smollm2-135m"
    _local_model.ensure_converted(local.gguf_path(local.BASE_MODELS["smollm2-135m"]), folder)
    return folder


@needs_model
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_whole_flywheel_runs_for_real_on_the_local_model(
    settings: Settings, converted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptloop.providers import local

    tiny = demo.Plan(real_calls=2, synthetic_logs=16, golden=2, max_steps=2, poll_s=0.5)
    monkeypatch.setattr(demo, "DEFAULT_PLAN", tiny)
    models = settings.data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "smollm2-135m").symlink_to(converted, target_is_directory=True)
    registered = set(local.provider.adapters)
    try:
        with serving(settings.model_copy(update={"demo": True})) as (client, server):
            db = server.app.state.db
            [job] = wait_for(
                lambda: [j for j in demo_jobs(db) if j.status in ("completed", "failed")],
                timeout=300,
            )
            assert job.status == "completed", job.error
            [tune] = items(client.get(f"{BASE}/fine-tunes"))
            assert tune["status"] == "completed", tune
            model = f"{demo.PROJECT}/{demo.TUNED}"
            local_models = client.get(f"{BASE}/models", params={"provider": "local"}).json()
            assert model in {m["name"] for m in local_models}
            run = client.get(f"{BASE}/evaluations/{tune['evaluation']}").json()
            assert run["status"] == "completed", run
            labels = {r["candidate"] for r in run["summary"]["results"]}
            assert any(f"local/{model}" in label for label in labels) and len(labels) == 2
            assert {r["evaluator"] for r in run["summary"]["results"]} == set(demo.EVALUATORS)
            logs = items(client.get(f"{BASE}/logs", params={"source": "sdk", "limit": 100}))
            real = [x for x in logs if (x.get("metadata") or {}).get("demo") == "model"]
            assert len(real) == tiny.real_calls and {x["model"] for x in real} == {"smollm2-135m"}
    finally:
        for name in set(local.provider.adapters) - registered:  # the provider is process-wide
            del local.provider.adapters[name]
