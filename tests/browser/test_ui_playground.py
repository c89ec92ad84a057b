"""The playground in a real browser, against the real offline model (local/smollm2-135m, a few
tokens per run): open a prompt, fill its variable, watch the output stream in, follow the log."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import UiServer

MODEL = "smollm2-135m"
RUN_TIMEOUT_MS = 120_000  # the first run may convert the packaged model (about a minute)


def _save_prompt(ui: UiServer, path: str, content: str) -> str:
    with ui.api() as api:
        response = api.post(
            f"/prompts/{path}/-/versions",
            json={
                "provider": "local",
                "model": MODEL,
                "messages": [{"role": "user", "content": content}],
                "parameters": {"max_tokens": 8, "temperature": 0},
            },
        )
        assert response.status_code in (200, 201), response.text
        version: str = response.json()["id"]
        return version


def test_run_a_prompt_and_follow_its_log(ui: UiServer, admin_page: Any) -> None:
    page = admin_page
    version = _save_prompt(ui, "browser-pg/greet", "Say hello to {{ name }}.")
    page.goto(ui.path("/p/default/prompts/browser-pg/greet"))
    page.get_by_role("link", name="Try in playground").click()
    expect(page.get_by_text(f"matches version {version}")).to_be_visible()
    expect(page.get_by_label("Message 1", exact=True)).to_have_value("Say hello to {{ name }}.")

    page.get_by_label("name", exact=True).fill("Ada")
    page.get_by_role("button", name="Run", exact=True).click()
    column = page.get_by_role("article", name=f"Result of local/{MODEL}")
    expect(column.get_by_text("First token")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    output = column.locator(".pg-output")
    expect(output).not_to_have_text("")
    expect(column.get_by_text(re.compile(r"\d+ prompt · [1-8] output"))).to_be_visible()
    expect(column.get_by_text("$0", exact=True)).to_be_visible()  # local compute is free
    # Streamed in place: the page was not reloaded, so what was typed is still there.
    expect(page.get_by_label("name", exact=True)).to_have_value("Ada")

    link = column.get_by_role("link", name="Open the log")
    log_id = (link.get_attribute("href") or "").rsplit("/", 1)[-1]
    with ui.api() as api:
        log = api.get(f"/logs/{log_id}").json()
    assert (log["source"], log["prompt"], log["version"]) == (
        "playground",
        "browser-pg/greet",
        version,
    )
    assert log["inputs"] == {"name": "Ada"} and log["output"] == output.text_content()
    link.click()
    expect(page).to_have_url(ui.path(f"/p/default/logs/{log_id}"))


def test_missing_variable_and_a_failing_column(ui: UiServer, admin_page: Any) -> None:
    page = admin_page
    _save_prompt(ui, "browser-pg/topic", "One word about {{ topic }}.")
    page.goto(ui.path("/p/default/playground"))
    page.get_by_label("Prompt", exact=True).select_option("browser-pg/topic")
    page.get_by_role("button", name="Open", exact=True).click()
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_text("Fill in topic: the template uses it.")).to_be_visible()
    expect(page.get_by_label("topic", exact=True)).to_have_attribute("aria-invalid", "true")

    page.get_by_label("topic", exact=True).fill("tea")
    page.get_by_role("button", name="Add model").click()
    page.get_by_label("Model 2").fill("nope/nothing")
    page.get_by_role("button", name="Run", exact=True).click()
    failing = page.get_by_role("article", name="Result of nope/nothing")
    expect(failing.get_by_role("alert")).to_contain_text("Unknown provider 'nope'")
    working = page.get_by_role("article", name=f"Result of local/{MODEL}")
    expect(working.get_by_role("link", name="Open the log")).to_be_visible(timeout=RUN_TIMEOUT_MS)
