"""Datasets and evaluators in a real browser: build a dataset from the logs a filter matches,
browse it, edit a datapoint into a new version; create an evaluator after trying it on a log."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import UiServer


def test_build_a_dataset_from_logs_browse_it_and_edit_a_datapoint(
    ui: UiServer, admin_page: Any
) -> None:
    page = admin_page
    user = f"shopper-{uuid.uuid4().hex[:8]}"
    name = f"browser/{uuid.uuid4().hex[:8]}"
    with ui.api() as api:
        for question, answer in (("Where is my order?", "On its way."), ("Refund?", "Done.")):
            logged = api.post(
                "/logs", json={"inputs": {"q": question}, "output": answer, "end_user": user}
            )
            assert logged.status_code == 201, logged.text

    page.goto(ui.path(f"/p/default/datasets/-/new?from=logs&end_user={user}"))
    expect(page.locator("#match-count")).to_contain_text("2 logs match")
    expect(page.get_by_role("cell", name="On its way.")).to_be_visible()
    page.get_by_label("Name").fill(name)
    page.get_by_label("A person's correction").check()  # htmx: the preview follows at once
    expect(page.locator("#match-count")).to_contain_text("0 datapoints")
    expect(page).to_have_url(re.compile(r"target=correction"))
    page.get_by_label("The correction where there is one").check()
    expect(page.locator("#match-count")).to_contain_text("2 datapoints")
    expect(page.get_by_label("Name")).to_have_value(name)  # what was typed stays
    page.get_by_role("button", name="Save dataset from these logs").click()

    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Saved version")
    rows = page.locator("table.points tbody tr")
    expect(rows).to_have_count(2)
    source_link = page.locator("table.points a[title='The log it came from']").first
    assert (source_link.get_attribute("href") or "").startswith("/p/default/logs/")
    first_version = page.locator("h2 code").first.inner_text()

    page.get_by_role("link", name="Edit").first.click()  # htmx: the row becomes a form
    target = page.get_by_label("Target", exact=True)
    expect(target).to_have_value("Done.")
    target.fill("Refunded within 5 days.")
    page.get_by_role("button", name="Save as a new version").click()

    expect(page.get_by_role("status")).to_contain_text("Earlier versions are unchanged")
    expect(page.get_by_text("Refunded within 5 days.")).to_be_visible()
    expect(page.locator("aside table.versions tbody tr")).to_have_count(2)
    with ui.api() as api:
        old = api.get(f"/datasets/{name}/-/versions/{first_version}/datapoints").json()["data"]
        new = api.get(f"/datasets/{name}/-/versions/latest/datapoints").json()["data"]
    assert [p["target"] for p in old] == ["Done.", "On its way."]
    assert [p["target"] for p in new] == ["Refunded within 5 days.", "On its way."]


def test_create_an_evaluator_after_trying_it_on_a_log(ui: UiServer, admin_page: Any) -> None:
    page = admin_page
    name = f"paris-{uuid.uuid4().hex[:8]}"
    with ui.api() as api:
        logged = api.post("/logs", json={"inputs": {"q": "capital?"}, "output": "Paris, France."})
        assert logged.status_code == 201, logged.text
        log_id = logged.json()["id"]

    page.goto(ui.path("/p/default/evaluators/-/new"))
    page.get_by_label("Name").fill(name)
    page.get_by_label("Built-in evaluator").select_option("contains")
    settings = page.locator('[data-builtin="contains"]')
    expect(settings).to_be_visible()
    expect(page.locator('[data-builtin="regex"]')).to_be_hidden()
    expect(page.get_by_label("Source")).to_be_hidden()  # the code fields belong to another kind
    settings.get_by_label("value").fill("Paris")
    page.get_by_label("Log id").fill(log_id)
    page.get_by_role("button", name="Try on the log").click()

    expect(page.locator("#try-value")).to_have_text("true")
    expect(page.get_by_text("Nothing was saved.")).to_be_visible()
    with ui.api() as api:
        assert name not in {e["name"] for e in api.get("/evaluators").json()}

    page.get_by_role("button", name="Create evaluator").click()
    expect(page.get_by_role("heading", name=f"Evaluator {name}")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Saved version")
    with ui.api() as api:
        [saved] = [e for e in api.get("/evaluators").json() if e["name"] == name]
    assert saved["spec"]["builtin"] == "contains" and saved["spec"]["config"]["value"] == "Paris"
    page.goto(ui.path("/p/default/evaluators"))
    expect(page.get_by_role("link", name=name)).to_be_visible()
