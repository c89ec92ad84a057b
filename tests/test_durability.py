"""An acknowledged log survives `kill -9` of the server, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select

from promptloop.services import local
from promptloop.settings import Settings
from promptloop.store.models import Log
from tests.serving import ServeProcess

WRITERS = 6
RUN_SECONDS = 2.0


def _writer(url: str, key: str, index: int, acknowledged: list[str], stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
        n = 0
        while not stop.is_set():
            n += 1
            batch = index % 2 == 0
            ids = [f"w{index}-{n}-{j}-{uuid.uuid4().hex[:6]}" for j in range(50 if batch else 1)]
            try:
                if batch:
                    response = http.post(
                        "/api/v1/logs/batch", json={"logs": [{"id": i, "output": i} for i in ids]}
                    )
                else:
                    response = http.post("/api/v1/logs", json={"id": ids[0], "output": ids[0]})
            except httpx.TransportError:
                return  # the server is gone: whatever was not acknowledged may be lost
            if response.status_code == 201:
                acknowledged.extend(ids)


def test_every_acknowledged_log_survives_sigkill(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "data"
    server = ServeProcess(
        data_dir, database_url=None if database_url.startswith("sqlite") else database_url
    )
    server.start()
    settings = Settings(data_dir=data_dir, database_url=server.database_url)
    key = local.create_api_key(settings, project="default", role="member", name="durability").secret
    acknowledged: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_writer, args=(server.url, key, i, acknowledged, stop))
        for i in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(RUN_SECONDS)
        server.kill()  # while the writers are mid-request
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.kill()
    assert len(acknowledged) > 500, (
        "the writers should have been acknowledged many logs before the kill"
    )
    engine = create_engine(settings.resolved_database_url())
    with engine.connect() as connection:
        stored = set(connection.execute(select(Log.uid)).scalars())
    engine.dispose()
    missing = [uid for uid in acknowledged if uid not in stored]
    assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged logs were lost"
