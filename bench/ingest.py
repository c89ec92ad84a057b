"""Ingestion throughput: acknowledged-and-persisted logs per second, through the batch and the
single-log endpoints of a real `promptloop serve` process, on SQLite and PostgreSQL.

    uv run python bench/ingest.py [--seconds 5] [--clients 4] [--batch 1000] [--database both]

Baseline, in the same run: the same rows written straight into the log store (no HTTP, no
validation), so the ratio shows what the API layer costs. Every figure counts only logs the
server answered 201 for, and the run checks they are all in the database afterwards.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.pg import TestPostgres
from tests.serving import ServeProcess

from promptloop.services import local
from promptloop.settings import Settings
from promptloop.store.db import Database
from promptloop.store.logs import SqlLogStore
from promptloop.store.models import Log
from promptloop.store.types import utcnow


def log_body(i: int) -> dict[str, object]:
    return {
        "id": uuid.uuid4().hex,
        "source": "sdk",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Question number {i} about an order"}],
        "output": f"Answer {i}: your order ships tomorrow morning.",
        "prompt_tokens": 12,
        "output_tokens": 9,
        "latency_ms": 321.5,
        "metadata": {"team": "eu", "i": i},
    }


def drive(url: str, key: str, *, seconds: float, clients: int, batch: int) -> tuple[int, list[str]]:
    """Clients post for `seconds`; returns the count and ids of acknowledged logs."""
    acknowledged: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    payloads = [[log_body(i) for i in range(batch)] for _ in range(4)]

    def client(index: int) -> None:
        n = 0
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as http:
            while time.monotonic() < deadline:
                logs = [{**body, "id": uuid.uuid4().hex} for body in payloads[n % 4]]
                n += 1
                if batch == 1:
                    response = http.post("/api/v1/logs", json=logs[0])
                else:
                    response = http.post("/api/v1/logs/batch", json={"logs": logs})
                if response.status_code == 201:
                    with lock:
                        acknowledged.extend(log["id"] for log in logs)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return int(len(acknowledged) / elapsed), acknowledged


def baseline(database_url: str, *, rows: int) -> int:
    """Rows per second written straight into the store in batches of 1,000."""
    db = Database(database_url)
    store = SqlLogStore(db)
    with db.session(write=False) as session:
        project_id = session.execute(text("SELECT id FROM projects LIMIT 1")).scalar_one()
    template = {c.name: None for c in Log.__table__.columns if c.name != "id"}
    started = time.monotonic()
    for start in range(0, rows, 1000):
        batch = []
        for i in range(start, start + 1000):
            body = log_body(i)
            batch.append(
                {
                    **template,
                    **{k: v for k, v in body.items() if k in template},
                    "uid": uuid.uuid4().hex,
                    "project_id": project_id,
                    "metadata": body["metadata"],
                    "created_at": utcnow(),
                }
            )
        store.insert(batch)
    elapsed = time.monotonic() - started
    db.dispose()
    return int(rows / elapsed)


def run(
    label: str, database_url: str | None, args: argparse.Namespace
) -> list[tuple[str, str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServeProcess(Path(tmp), database_url=database_url).start()
        settings = Settings(data_dir=Path(tmp), database_url=database_url)
        key = local.create_api_key(settings, project="default", role="member", name="bench").secret
        try:
            batched, ids = drive(
                server.url, key, seconds=args.seconds, clients=args.clients, batch=args.batch
            )
            single, single_ids = drive(
                server.url, key, seconds=args.seconds, clients=args.clients * 4, batch=1
            )
        finally:
            server.stop()
        engine = create_engine(settings.resolved_database_url())
        with engine.connect() as connection:
            stored = connection.execute(select(func.count()).select_from(Log)).scalar_one()
        engine.dispose()
        assert stored >= len(ids) + len(single_ids), "acknowledged logs missing from the database"
        direct = baseline(settings.resolved_database_url(), rows=max(20_000, args.batch * 20))
    return [
        (label, f"batch of {args.batch}, {args.clients} clients", batched),
        (label, f"single log, {args.clients * 4} clients", single),
        (label, "baseline: store.insert, no HTTP", direct),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    results: list[tuple[str, str, int]] = []
    if args.database in ("sqlite", "both"):
        results += run("sqlite", None, args)
    if args.database in ("postgresql", "both"):
        pg = TestPostgres()
        try:
            results += run("postgresql", pg.start(), args)
        finally:
            pg.stop()
    print(f"\n{'database':<11} {'workload':<36} {'logs/s':>10} {'vs baseline':>12}")
    for database, workload, rate in results:
        base = next(r for d, w, r in results if d == database and w.startswith("baseline"))
        print(f"{database:<11} {workload:<36} {rate:>10,} {rate / base:>11.2f}x")


if __name__ == "__main__":
    main()
