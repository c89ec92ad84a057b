"""Logs and monitoring in a real browser: find a log with the filters, open it, vote and correct
it on the page (no reload), and see the monitoring charts drawn."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import UiServer


def _seed(ui: UiServer, path: str, end_user: str) -> list[str]:
    with ui.api() as api:
        saved = api.post(
            f"/prompts/{path}/-/versions",
            json={
                "provider": "openai",
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "Capital of {{ country }}?"}],
            },
        )
        assert saved.status_code in (200, 201), saved.text
        version = saved.json()["id"]
        ids = []
        for output, user in (("Paris is in Germany.", end_user), ("Rome.", "someone-else")):
            response = api.post(
                "/logs",
                json={
                    "prompt": path,
                    "version": version,
                    "environment": "production",
                    "messages": [{"role": "user", "content": "Capital of France?"}],
                    "output": output,
                    "prompt_tokens": 9,
                    "output_tokens": 6,
                    "latency_ms": 420,
                    "end_user": user,
                },
            )
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
    return ids


def test_find_a_log_open_it_vote_and_correct_it(ui: UiServer, admin_page: Any) -> None:
    page = admin_page
    path = f"browser-logs/{uuid.uuid4().hex[:8]}"
    end_user = f"user-{uuid.uuid4().hex[:8]}"
    wanted, _ = _seed(ui, path, end_user)

    page.goto(ui.path("/p/default/logs"))
    page.evaluate("window.stillHere = true")  # gone if the page reloads
    page.get_by_label("End user").fill(end_user)
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(ui.path(f"/p/default/logs?end_user={end_user}"), timeout=10_000)
    results = page.locator("#log-results")
    expect(results.locator("tbody tr")).to_have_count(1)
    expect(results).to_contain_text("Paris is in Germany.")
    assert page.evaluate("window.stillHere") is True

    results.locator(f'a[href="/p/default/logs/{wanted}"]').click()
    expect(page).to_have_url(ui.path(f"/p/default/logs/{wanted}"))
    expect(page.get_by_role("heading", name="Output")).to_be_visible()
    page.evaluate("window.stillHere = true")

    page.get_by_role("button", name="Vote up").click()
    feedback = page.locator("#feedback")
    expect(feedback).to_contain_text("Vote recorded.")
    expect(feedback.locator("table")).to_contain_text("up")

    page.get_by_text("Correct the output").click()
    box = page.get_by_label("Corrected output")
    expect(box).to_have_value("Paris is in Germany.")
    box.fill("Paris is in France.")
    page.get_by_role("button", name="Save correction").click()
    expect(feedback).to_contain_text("Correction saved.")
    expect(feedback.locator("table")).to_contain_text("+Paris is in France.")
    assert page.evaluate("window.stillHere") is True

    with ui.api() as api:
        stored = api.get(f"/logs/{wanted}/feedback").json()
    assert [(f["name"], f["value"], f["source"]) for f in stored] == [
        ("rating", True, "ui"),
        ("correction", "Paris is in France.", "ui"),
    ]
    page.reload()  # and the page shows them after a reload too
    expect(page.locator("#feedback table tbody tr")).to_have_count(2)


def test_monitoring_draws_charts(ui: UiServer, admin_page: Any) -> None:
    page = admin_page
    path = f"browser-monitoring/{uuid.uuid4().hex[:8]}"
    _seed(ui, path, "monitored-user")
    page.goto(ui.path(f"/p/default/monitoring?prompt={path}"))
    charts = page.locator("#charts")
    expect(charts.locator("figure.chart")).to_have_count(7)
    expect(charts.locator("figure.chart canvas").first).to_be_visible()
    assert charts.locator("canvas").count() >= 7
    expect(page.locator("table.by-version")).to_contain_text(path)
    expect(page.locator("table.by-version")).to_contain_text("420 ms")
