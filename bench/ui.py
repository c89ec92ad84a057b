"""Page speed of the logs and monitoring pages with a full log store.

    uv run python bench/ui.py [--logs 100000] [--requests 30]

Builds a SQLite store with `--logs` logs (3 prompts x 3 versions, 3 environments, 30 days,
2% errors, 1,000 end users, votes on ~6% and corrections on ~1% of the logs), written in bulk
through the log store, then times signed-in page requests in-process (TestClient, the whole
app: routing, session, queries, templates) and prints p50/p95 per page and the ratio to the
200 ms target.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The offline model's one-time conversion would run in the background and skew the timings.
os.environ.setdefault("PROMPTLOOP_WARM_LOCAL_MODEL", "0")

from promptloop.api.app import create_app
from promptloop.services import auth, local
from promptloop.settings import Settings
from promptloop.store.db import Database
from promptloop.store.models import FeedbackKind, Judgment, Log, Project
from promptloop.store.types import utcnow

TARGET_MS = 200.0
PROMPTS = ("support/answer", "support/triage", "sales/reply")
ENVIRONMENTS = ("production", "production", "production", "staging", "development")
SOURCES = ("sdk", "sdk", "api", "gateway", "playground")


def build(client: TestClient, app: Any, *, count: int, seed: int = 7) -> dict[str, Any]:
    """Prompts and versions through the API; logs and feedback in bulk through the store."""
    versions: list[tuple[str, str]] = []
    for path in PROMPTS:
        for n in range(3):
            body = {
                "provider": "openai",
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"v{n} of {path}: {{{{ question }}}}"}],
            }
            response = client.post(f"/api/v1/prompts/{path}/-/versions", json=body)
            assert response.status_code in (200, 201), response.text
            versions.append((path, response.json()["id"]))
    db: Database = app.state.db
    with db.session(write=False) as session:
        project = session.scalars(select(Project).where(Project.name == "default")).one()
        from promptloop.store.models import Prompt, PromptVersion

        pks = {
            (path, vid): (prompt_id, pk)
            for path, vid, prompt_id, pk in session.execute(
                select(Prompt.path, PromptVersion.version_id, Prompt.id, PromptVersion.id).join(
                    PromptVersion, PromptVersion.prompt_id == Prompt.id
                )
            )
        }
        kinds = {
            name: kid
            for name, kid in session.execute(
                select(FeedbackKind.name, FeedbackKind.id).where(
                    FeedbackKind.project_id == project.id
                )
            )
        }
        project_id = project.id
    rng = random.Random(seed)
    now = utcnow()
    start = now - timedelta(days=30)
    span = (now - start).total_seconds()
    # oldest first, so that ids grow with time as they do in production
    times = sorted(start + timedelta(seconds=rng.random() * span) for _ in range(count))
    store = app.state.logger.store
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for i, created in enumerate(times):
        path, vid = versions[min(int(rng.paretovariate(1.2)) - 1, len(versions) - 1)]
        prompt_id, version_pk = pks[(path, vid)]
        failed = rng.random() < 0.02
        prompt_tokens = rng.randint(40, 900)
        output_tokens = 0 if failed else rng.randint(5, 400)
        rows.append(
            {
                "uid": uuid.uuid4().hex,
                "project_id": project_id,
                "prompt_id": prompt_id,
                "version_pk": version_pk,
                "environment": rng.choice(ENVIRONMENTS),
                "source": rng.choice(SOURCES),
                "provider": "openai",
                "model": "gpt-4o-mini",
                "inputs": {"question": f"Question {i} about order {rng.randint(1, 99999)}"},
                "messages": [{"role": "user", "content": f"Question {i} about an order"}],
                "output": None if failed else f"Answer {i}: " + "your order ships soon. " * 8,
                "finish_reason": None if failed else "stop",
                "prompt_tokens": prompt_tokens,
                "output_tokens": output_tokens,
                "cost": None
                if rng.random() < 0.05
                else (prompt_tokens * 0.15 + output_tokens * 0.6) / 1e6,
                "latency_ms": round(rng.lognormvariate(6.2, 0.6), 1),
                "ttft_ms": round(rng.lognormvariate(5.0, 0.5), 1),
                "error": "upstream timed out after 30 s" if failed else None,
                "end_user": f"user-{rng.randint(1, 1000)}",
                "metadata": {"team": rng.choice(("eu", "us", "apac"))},
                "created_at": created,
            }
        )
        if len(rows) == 5000:
            store.insert(rows)
            rows = []
    store.insert(rows)
    written = time.perf_counter() - started
    with db.session(write=True) as session:
        ids = list(session.scalars(select(Log.id).where(Log.project_id == project_id)))
        judgments: list[dict[str, Any]] = []
        for log_id in ids:
            roll = rng.random()
            if roll < 0.06:
                up = rng.random() < 0.8
                judgments.append(
                    _judgment(project_id, log_id, kinds["rating"], "rating", "vote", up, float(up))
                )
            elif roll < 0.07:
                judgments.append(
                    _judgment(
                        project_id,
                        log_id,
                        kinds["correction"],
                        "correction",
                        "correction",
                        "A better answer.",
                        None,
                    )
                )
        session.execute(insert(Judgment), judgments)
    return {
        "logs": len(ids),
        "judgments": len(judgments),
        "write_s": written,
    }


def _judgment(
    project_id: int,
    log_id: int,
    kind_id: int,
    name: str,
    category: str,
    value: Any,
    score: float | None,
) -> dict[str, Any]:
    return {
        "uid": uuid.uuid4().hex,
        "project_id": project_id,
        "log_id": log_id,
        "kind_id": kind_id,
        "name": name,
        "category": category,
        "value": value,
        "score": score,
        "recorded_by": "bench",
        "reviewer": "bench",
        "source": "ui",
        "current": True,
        "withheld": False,
        "pending": False,
        "created_at": datetime.now(UTC),
    }


# Migration 0007's indexes, and the one it replaced.
UI_INDEXES = {
    "ix_logs_monitoring": "logs (project_id, created_at, prompt_id, version_pk, environment, "
    "latency_ms, prompt_tokens, output_tokens, cost)",
    "ix_logs_project_id_errors": "logs (project_id, created_at, prompt_id, version_pk, "
    "environment) WHERE error IS NOT NULL",
    "ix_logs_project_id_end_user_id": "logs (project_id, end_user, id)",
}
BEFORE = {"ix_logs_project_id_created_at": "logs (project_id, created_at)"}


def _use_ui_indexes(db: Database, wanted: bool) -> None:
    """Put the store's log indexes as they are with migration 0007, or as they were before."""
    add, drop = (UI_INDEXES, BEFORE) if wanted else (BEFORE, UI_INDEXES)
    with db.write_engine.begin() as connection:
        for name in drop:
            connection.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        for name, definition in add.items():
            connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")
    print("indexes:", "as of migration 0007" if wanted else "as before migration 0007")


def signed_in(app: Any, settings: Settings) -> TestClient:
    browser = TestClient(app)
    token = local.sign_in_link(settings, email=auth.FIRST_ADMIN_EMAIL)
    response = browser.post("/api/v1/auth/sign-in-link", json={"token": token})
    assert response.status_code == 200, response.text
    return browser


def timed(browser: TestClient, url: str, requests: int) -> tuple[float, float, float]:
    """p50 and p95 wall-clock milliseconds of a page, and its median CPU milliseconds (this
    process's, all threads): the CPU figure holds steady when other work shares the machine."""
    for _ in range(3):  # warm: templates compiled, statements cached
        response = browser.get(url)
        assert response.status_code == 200, (url, response.status_code, response.text[:500])
    samples, cpu = [], []
    for _ in range(requests):
        started, cpu_started = time.perf_counter(), time.process_time()
        response = browser.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
        assert response.status_code == 200
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * len(samples)) - 1)]
    return statistics.median(samples), p95, statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--data", type=Path, help="keep the store in this folder (reused when it has one)"
    )
    parser.add_argument(
        "--without-ui-indexes",
        action="store_true",
        help="measure with the log indexes of before migration 0007 (for the comparison)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data_dir = args.data or Path(folder) / "data"
        existing = (data_dir / "promptloop.db").exists()
        settings = Settings(data_dir=data_dir)
        app = create_app(settings)
        with TestClient(app) as client:
            key = local.create_api_key(settings, project="default", role="admin", name="bench")
            client.headers["Authorization"] = f"Bearer {key.secret}"
            started = time.perf_counter()
            if existing:
                print(f"store: reusing {data_dir}")
            else:
                built = build(client, app, count=args.logs)
                print(
                    f"store: {built['logs']:,} logs, {built['judgments']:,} feedback entries "
                    f"(SQLite; logs written in {built['write_s']:.1f} s, "
                    f"everything in {time.perf_counter() - started:.1f} s)"
                )
            _use_ui_indexes(app.state.db, not args.without_ui_indexes)
            browser = signed_in(app, settings)
            first = client.get("/api/v1/logs?limit=1").json()["data"][0]["id"]
            since = (utcnow() - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
            pages = [
                ("logs list", "/p/default/logs"),
                ("logs list, older page", None),
                (
                    "logs filtered (prompt+version+env)",
                    "/p/default/logs?prompt=support/answer&environment=staging&error=false",
                ),
                ("logs filtered (voted down)", "/p/default/logs?feedback=down"),
                ("logs filtered (end user)", "/p/default/logs?end_user=user-77"),
                ("logs filtered (errors, 3 days)", f"/p/default/logs?error=true&since={since}"),
                ("log detail", f"/p/default/logs/{first}"),
                ("monitoring 24h", "/p/default/monitoring"),
                ("monitoring 7d", "/p/default/monitoring?window=7d"),
                ("monitoring 30d", "/p/default/monitoring?window=30d"),
                (
                    "monitoring 30d, one prompt+env",
                    "/p/default/monitoring?window=30d&prompt=support/answer&environment=production",
                ),
            ]
            first_page = browser.get("/p/default/logs").text
            marker = 'href="/p/default/logs?cursor='
            older = first_page[first_page.index(marker) + 6 :].split('"', 1)[0]
            print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            print(
                f"{'page':<36} {'p50 ms':>8} {'p95 ms':>8} {'p95/200ms':>10} {'CPU ms':>8} "
                f"{'CPU/200ms':>10}"
            )
            for name, url in pages:
                p50, p95, cpu = timed(browser, url or older.replace("&amp;", "&"), args.requests)
                print(
                    f"{name:<36} {p50:8.1f} {p95:8.1f} {p95 / TARGET_MS:10.2f} {cpu:8.1f} "
                    f"{cpu / TARGET_MS:10.2f}"
                )


if __name__ == "__main__":
    main()
