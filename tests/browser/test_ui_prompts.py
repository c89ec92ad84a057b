"""Prompts in a real browser: create, edit and save a prompt, read its history and a diff,
deploy it to production after confirming; a member sees no production deploy button."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import UiServer


def _member(ui: UiServer, role: str) -> str:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    with ui.api() as api:
        response = api.post("/members", json={"email": email, "role": role})
        assert response.status_code == 201, response.text
    return email


def test_create_edit_history_diff_and_deploy(ui: UiServer, admin_page: Any) -> None:
    page = admin_page
    path = f"journey/{uuid.uuid4().hex[:8]}"
    page.goto(ui.path("/p/default/prompts"))
    page.get_by_role("link", name="New prompt").click()
    expect(page.get_by_role("heading", name="New prompt")).to_be_visible()

    page.get_by_label("Path").fill(path)
    page.get_by_label("Content of message 1", exact=True).fill("You are a kind support agent.")
    page.get_by_label("Content of message 2", exact=True).fill(
        "Help {{ customer }} with {{ issue }}."
    )
    preview = page.locator("#variables .variables-line")
    expect(preview.locator(".var")).to_have_text(["customer", "issue"])  # live, before saving
    page.get_by_label("Model").select_option("openai/gpt-4o-mini")
    page.get_by_label("Temperature").fill("0.3")
    page.get_by_label("Commit message").fill("first draft")
    page.get_by_role("button", name="Save version").click()
    expect(page.get_by_role("status").filter(has_text="Saved version")).to_be_visible()
    expect(page.get_by_role("heading", name=path)).to_be_visible()
    expect(page).to_have_url(re.compile(r"version=[0-9a-f]{12}&saved=new$"))

    # A third message, moved above the second, then saved: a new version.
    page.get_by_role("button", name="Add message").click()
    third = page.get_by_label("Content of message 3", exact=True)
    expect(third).to_be_visible()
    third.fill("Answer in one paragraph.")
    page.get_by_role("button", name="Move message 3 up").click()
    expect(page.get_by_label("Content of message 2", exact=True)).to_have_value(
        "Answer in one paragraph."
    )
    page.get_by_label("Commit message").fill("one paragraph")
    page.get_by_role("button", name="Save version").click()
    expect(page.get_by_role("status").filter(has_text="Saved version")).to_be_visible()

    # Saving the same content again says so instead of adding a version.
    page.get_by_role("button", name="Save version").click()
    expect(page.get_by_role("status").filter(has_text="Unchanged: this is version")).to_be_visible()

    page.get_by_role("navigation", name="This prompt").get_by_role("link", name="History").click()
    rows = page.locator("table.versions tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("one paragraph")
    page.get_by_role("button", name="Compare A → B").click()
    diff = page.get_by_role("region", name="Template changes")
    expect(diff.locator(".add")).to_contain_text(["+Answer in one paragraph."])

    page.goto(ui.path(f"/p/default/prompts/{path}/-/deploy"))
    production = page.locator("section.environment", has=page.locator("#env-production"))
    questions: list[str] = []

    def accept(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    production.get_by_role("button", name="Deploy to production").click()
    expect(page.get_by_role("status")).to_contain_text("production now serves")
    assert questions == [f"Deploy the chosen version of {path} to production?"]
    expect(production.locator(".serving")).to_contain_text("Serves")
    expect(page.locator("table.deploy-history tbody tr")).to_have_count(1)
    expect(page).to_have_url(ui.path(f"/p/default/prompts/{path}/-/deploy"))


def test_search_filters_the_tree_as_you_type(ui: UiServer, admin_page: Any) -> None:
    page = admin_page
    word = uuid.uuid4().hex[:8]
    with ui.api() as api:
        for path in (f"find-{word}/alpha", f"find-{word}/beta"):
            body = {
                "provider": "openai",
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "Hi {{ name }}"}],
            }
            assert api.post(f"/prompts/{path}/-/versions", json=body).status_code == 201
    page.goto(ui.path("/p/default/prompts"))
    page.get_by_label("Search prompts").fill(f"{word}/bet")
    tree = page.locator("#prompt-tree")
    expect(tree.get_by_role("link", name="beta")).to_be_visible()
    expect(tree.get_by_role("link", name="alpha")).to_have_count(0)
    expect(page).to_have_url(re.compile(rf"q={word}%2Fbet$"))
    page.reload()  # the filter lives in the URL
    expect(page.locator("#prompt-tree").get_by_role("link", name="alpha")).to_have_count(0)


def test_member_sees_no_production_deploy_button(ui: UiServer, page: Any) -> None:
    path = f"guarded/{uuid.uuid4().hex[:8]}"
    with ui.api() as api:
        body = {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Hi {{ name }}"}],
        }
        assert api.post(f"/prompts/{path}/-/versions", json=body).status_code == 201
    ui.sign_in(page, _member(ui, "member"))
    page.goto(ui.path(f"/p/default/prompts/{path}/-/deploy"))
    expect(page.get_by_role("button", name="Deploy to staging")).to_be_visible()
    expect(page.get_by_role("button", name="Deploy to production")).to_have_count(0)
    expect(page.get_by_text("cannot deploy to production")).to_be_visible()
