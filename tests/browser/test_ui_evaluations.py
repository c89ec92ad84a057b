"""Evaluation runs in a real browser against the offline local model: start a run from the form,
watch it finish without reloading the page, read the comparison with the control; a run with a
human evaluator puts its judgments in the review queue, where judging one removes it in place."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import UiServer

MODEL = {"provider": "local", "model": "smollm2-135m"}
# The first call of a session loads the model, and converts it first unless an earlier run left
# it converted in PROMPTLOOP_TEST_MODELS_DIR (about a minute); after that, 6 calls take seconds.
RUN_TIMEOUT_MS = 150_000


def _version(api: Any, path: str, max_tokens: int) -> str:
    body = {
        **MODEL,
        "messages": [{"role": "user", "content": "Say a word about {{ topic }}."}],
        "parameters": {"max_tokens": max_tokens, "temperature": 0},
    }
    response = api.post(f"/prompts/{path}/-/versions", json=body)
    assert response.status_code in (200, 201), response.text
    version: str = response.json()["id"]
    return version


def _seed(ui: UiServer, evaluator: dict[str, Any]) -> tuple[str, str, str, str]:
    """A prompt whose production version may write 8 tokens and a newer one 2, a dataset of 3
    topics and an evaluator; returns (path, dataset, evaluator, the newer version)."""
    tag = uuid.uuid4().hex[:8]
    path, dataset, name = f"evals/{tag}", f"topics-{tag}", f"ev-{tag}"
    with ui.api() as api:
        control = _version(api, path, 8)
        response = api.put(f"/prompts/{path}/-/deployments/production", json={"version": control})
        assert response.status_code == 200, response.text
        candidate = _version(api, path, 2)
        topics = ["cats", "rain", "tea"]
        response = api.post(
            f"/datasets/{dataset}/-/versions",
            json={"datapoints": [{"inputs": {"topic": t}} for t in topics]},
        )
        assert response.status_code in (200, 201), response.text
        response = api.post(f"/evaluators/{name}/-/versions", json=evaluator)
        assert response.status_code in (200, 201), response.text
    return path, dataset, name, candidate


def test_start_a_run_watch_it_finish_and_read_the_comparison(ui: UiServer, admin_page: Any) -> None:
    page = admin_page
    path, dataset, name, candidate = _seed(
        ui, {"kind": "builtin", "builtin": "tokens", "config": {"max_output_tokens": 3}}
    )
    page.goto(ui.path(f"/p/default/evaluations/-/new?prompt={path}&dataset={dataset}"))
    expect(page.get_by_role("heading", name="New evaluation run")).to_be_visible()
    expect(page.get_by_role("checkbox", name=candidate)).to_be_checked()  # newest, not production
    page.get_by_label("Name").fill("short answers")
    page.get_by_role("checkbox", name=name, exact=True).check()
    page.get_by_role("button", name="Start run").click()

    expect(page.get_by_role("heading", name="Run short answers")).to_be_visible()
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#run-status")).to_have_text("completed", timeout=RUN_TIMEOUT_MS)
    assert page.evaluate("window.__notReloaded === true")  # it finished in place
    expect(page.locator("#run-progress")).to_contain_text("6 / 6")
    results = page.get_by_role("table", name=f"Results for {name}")
    expect(results.get_by_role("row")).to_have_count(3)  # header, control, candidate
    expect(results.locator(".ci-bar")).to_have_count(2)
    comparison = page.get_by_role("table", name="Comparison by datapoint")
    expect(comparison.locator("tbody tr")).to_have_count(3)
    expect(comparison).to_contain_text("cats")
    expect(page.get_by_role("table", name="Cost, latency and tokens")).to_contain_text("tokens")

    page.get_by_role("link", name="Evaluations", exact=True).click()
    row = page.get_by_role("row").filter(has_text="short answers")
    expect(row).to_contain_text("completed")
    expect(row).to_contain_text(dataset)


def test_judging_in_the_review_queue_removes_the_item_in_place(
    ui: UiServer, admin_page: Any
) -> None:
    page = admin_page
    path, dataset, name, candidate = _seed(
        ui, {"kind": "human", "returns": "boolean", "description": "Is it about the topic?"}
    )
    with ui.api() as api:
        response = api.post(
            "/evaluations",
            json={
                "dataset": dataset,
                "candidates": [{"prompt": path, "version": candidate}],
                "evaluators": [name],
                "control": 0,
            },
        )
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
    page.goto(ui.path(f"/p/default/evaluations/{run_id}"))
    expect(page.locator("#run-status")).to_have_text("completed", timeout=RUN_TIMEOUT_MS)

    page.goto(ui.path(f"/p/default/review?run={run_id}"))
    items = page.locator("article.review-item")
    expect(items).to_have_count(3)
    expect(items.first).to_contain_text("Is it about the topic?")
    expect(items.first).to_contain_text("cats")
    page.evaluate("window.__notReloaded = true")
    items.first.get_by_role("button", name=f"Yes ({name})").click()
    expect(page.get_by_role("status")).to_contain_text("Judgment saved.")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("rain")
    assert page.evaluate("window.__notReloaded === true")


def test_cancel_a_running_run_after_confirming(ui: UiServer, admin_page: Any) -> None:
    page = admin_page
    path, _, name, candidate = _seed(
        ui, {"kind": "builtin", "builtin": "tokens", "config": {"max_output_tokens": 3}}
    )
    dataset = f"many-{uuid.uuid4().hex[:8]}"
    with ui.api() as api:
        response = api.post(
            f"/datasets/{dataset}/-/versions",
            json={"datapoints": [{"inputs": {"topic": f"topic {i}"}} for i in range(40)]},
        )
        assert response.status_code in (200, 201), response.text
        response = api.post(
            "/evaluations",
            json={
                "dataset": dataset,
                "candidates": [{"prompt": path, "version": candidate}],
                "evaluators": [name],
                "concurrency": 1,
            },
        )
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
    page.goto(ui.path(f"/p/default/evaluations/{run_id}"))
    cancel = page.get_by_role("button", name="Cancel run")
    page.once("dialog", lambda dialog: dialog.dismiss())
    cancel.click()
    page.wait_for_timeout(500)
    with ui.api() as api:  # dismissed: nothing was sent
        assert api.get(f"/evaluations/{run_id}").json()["status"] != "cancelled"
    page.once("dialog", lambda dialog: dialog.accept())
    cancel.click()
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=30_000)
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    with ui.api() as api:
        run = api.get(f"/evaluations/{run_id}").json()
    assert run["status"] == "cancelled" and run["progress"]["done"] < 80
