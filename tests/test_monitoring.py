"""Monitoring figures on known logs, on both databases: bucket counts, exact nearest-rank latency
percentiles, tokens, cost (unknown stays unknown), feedback rates, and the page that shows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from promptloop.core.access import SYSTEM
from promptloop.core.errors import InvalidInput
from promptloop.services import monitoring
from promptloop.services.monitoring import Overview
from promptloop.services.projects import get_project
from promptloop.store.db import Database
from tests.conftest import Server
from tests.helpers import BASE, save

PROMPT = "monitoring/answer"
NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


def _at(hour: int, minute: int = 0, day: int = 20) -> str:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC).isoformat()


@pytest.fixture
def known(client: TestClient) -> dict[str, str]:
    v1 = save(client, PROMPT, "One {{ q }}")["id"]
    v2 = save(client, PROMPT, "Two {{ q }}")["id"]
    logs: list[dict[str, Any]] = []

    def add(version: str, when: str, latency: float | None, **extra: Any) -> None:
        logs.append(
            {
                "id": f"monitor-{len(logs):03d}",
                "prompt": PROMPT,
                "version": version,
                "environment": "production",
                "output": "ok",
                "prompt_tokens": 5,
                "output_tokens": 7,
                "cost": 0.25,
                "latency_ms": latency,
                "created_at": when,
                **extra,
            }
        )

    # v1, 10:00 bucket: 4 logs, one failed; latencies 10, 20, 30, 40
    for i, latency in enumerate((40, 10, 30, 20)):
        add(v1, _at(10, i), latency, error="boom" if i == 0 else None)
    # v1, 11:00 bucket: 20 logs, 100..2000 ms; the cost of 5 of them is unknown
    for i in range(20):
        add(v1, _at(11, i), 100.0 * (i + 1), cost=None if i < 5 else 0.25, provider="nowhere")
    # v2, 12:00 bucket (the current one): 5, 6, 7 ms and one without a latency, in staging
    noon: tuple[float | None, ...] = (7, 5, None, 6)
    for i, maybe in enumerate(noon):
        add(v2, _at(12, i), maybe, environment="staging")
    # outside the 24 h window
    add(v1, _at(9, day=18), 1.0)
    add(v1, _at(13, day=20), 1.0)  # after `now`
    response = client.post(f"{BASE}/logs/batch", json={"logs": logs})
    assert response.status_code == 201, response.text

    def feedback(log: str, name: str, value: Any) -> None:
        answer = client.post(f"{BASE}/logs/{log}/feedback", json={"name": name, "value": value})
        assert answer.status_code == 201, answer.text

    feedback("monitor-000", "rating", "up")
    feedback("monitor-001", "rating", "up")
    feedback("monitor-002", "rating", "down")
    feedback("monitor-002", "rating", "up")  # supersedes the down vote
    feedback("monitor-010", "rating", "down")
    feedback("monitor-011", "correction", "okay")
    feedback("monitor-011", "correction", "okay!")  # still one corrected log
    feedback("monitor-012", "comment", "fine")
    return {"v1": v1, "v2": v2}


def _overview(server: Server, **kwargs: Any) -> Overview:
    db: Database = server.app.state.db
    with db.session(write=False) as session:
        project = get_project(session, name="default")
        return monitoring.overview(session, actor=SYSTEM, project=project, now=NOW, **kwargs)


def test_buckets_percentiles_and_rates_on_known_logs(server: Server, known: dict[str, str]) -> None:
    found = _overview(server, window="24h")
    assert found.bucket_s == 3600
    assert len(found.starts) == 24
    assert found.starts[0] == datetime(2026, 11, 19, 13, tzinfo=UTC)
    assert found.starts[-1] == datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert [s.label for s in found.series] == [f"{PROMPT}@{known['v1']}", f"{PROMPT}@{known['v2']}"]
    v1, v2 = found.series
    ten, eleven, noon = found.starts.index(NOW.replace(hour=10, minute=0)), 22, 23
    assert ten == 21

    assert [f.logs for f in v1.buckets] == [0] * 21 + [4, 20, 0]
    assert [f.logs for f in v2.buckets] == [0] * 23 + [4]
    b10, b11 = v1.buckets[ten], v1.buckets[eleven]
    assert (b10.errors, b10.p50_ms, b10.p95_ms) == (1, 20.0, 40.0)
    assert (b11.errors, b11.p50_ms, b11.p95_ms) == (0, 1000.0, 1900.0)
    assert (b10.prompt_tokens, b10.output_tokens, b10.cost, b10.cost_unknown) == (20, 28, 1.0, 0)
    assert b11.cost == pytest.approx(3.75) and b11.cost_unknown == 5
    assert v1.buckets[0].p50_ms is None and v1.buckets[0].cost is None
    assert (b10.votes_up, b10.votes_down, b10.up_share) == (3, 0, 1.0)
    assert (b11.votes_up, b11.votes_down, b11.up_share) == (0, 1, 0.0)
    assert (b11.corrected, b11.correction_rate) == (1, 1 / 20)
    noon_v2 = v2.buckets[noon]
    assert (noon_v2.logs, noon_v2.p50_ms, noon_v2.p95_ms) == (4, 6.0, 7.0)
    assert noon_v2.up_share is None  # no votes: no share, not 0

    # whole-window figures per version: percentiles over all of its latencies, not averaged
    assert (v1.total.logs, v1.total.errors) == (24, 1)
    assert (v1.total.p50_ms, v1.total.p95_ms) == (800.0, 1900.0)
    assert (v1.total.votes_up, v1.total.votes_down, v1.total.corrected) == (3, 1, 1)
    assert (v2.total.p50_ms, v2.total.p95_ms) == (6.0, 7.0)
    assert (found.total.logs, found.total.p50_ms, found.total.p95_ms) == (28, 700.0, 1900.0)


def test_filters_and_windows(server: Server, known: dict[str, str]) -> None:
    production = _overview(server, window="24h", environment="production")
    assert [s.version for s in production.series] == [known["v1"]]
    week = _overview(server, window="7d", prompt=PROMPT)
    assert (week.bucket_s, len(week.starts)) == (6 * 3600, 28)
    assert sum(s.total.logs for s in week.series) == 29  # the log of the 18th too
    month = _overview(server, window="30d")
    assert (month.bucket_s, len(month.starts)) == (86400, 30)
    assert [f.logs for f in month.series[0].buckets][-3:] == [1, 0, 24]
    with pytest.raises(InvalidInput, match="Unknown window"):
        _overview(server, window="1y")


def test_the_monitoring_page_shows_charts_data_and_a_table(
    server: Server, known: dict[str, str], client: TestClient
) -> None:
    # logs from now, so that they fall in the page's own window
    recent = datetime.now(UTC) - timedelta(minutes=5)
    response = client.post(
        f"{BASE}/logs",
        json={
            "prompt": PROMPT,
            "version": known["v2"],
            "environment": "production",
            "latency_ms": 321,
            "created_at": recent.isoformat(),
        },
    )
    assert response.status_code == 201, response.text
    browser = server.browser()
    page = browser.get(f"/p/default/monitoring?prompt={PROMPT}&window=24h")
    assert page.status_code == 200, page.text
    assert 'id="monitoring-data"' in page.text
    assert "uPlot-1.6.32.min.js" in page.text
    assert f"{PROMPT}@{known['v2']}" in page.text
    assert "321 ms" in page.text  # the table reads without JavaScript
    bad = browser.get("/p/default/monitoring?window=1y")
    assert bad.status_code == 400 and "Unknown window" in bad.text
    unknown = browser.get("/p/default/monitoring?prompt=no/such")
    assert unknown.status_code == 400 and 'aria-invalid="true"' in unknown.text
    empty = browser.get("/p/default/monitoring?environment=nowhere")
    assert empty.status_code == 200 and "No logs in this window" in empty.text
