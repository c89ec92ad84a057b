"""Fine-tunes in a real browser: the start form shows what is wrong next to the field without a
reload, a started job's page follows its status live, and cancelling asks first. The job uses
method `openai` against a fake of OpenAI's fine-tuning API on loopback, in a project of its own
(its openai key must not reach the other tests' prompts)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import expect

from promptloop.services import local, projects
from tests.browser.conftest import UiServer
from tests.fake_finetuning import FakeFineTuning
from tests.helpers import kernel_body


def test_start_a_fine_tune_follow_it_and_cancel_it(ui: UiServer, admin_page: Any) -> None:
    page = admin_page
    project = f"ft-{uuid.uuid4().hex[:8]}"
    db = local.open_database(ui.settings)
    try:
        with db.session(write=True) as session:
            projects.ensure_project(session, name=project)
    finally:
        db.dispose()
    key = local.create_api_key(ui.settings, project=project, role="admin", name="ft").secret
    with FakeFineTuning(steps=50) as fake, ui.api(key) as api:
        fake.hold = True
        stored = api.put(
            "/provider-keys/openai", json={"api_key": "sk-browser", "base_url": fake.openai_url}
        )
        assert stored.status_code == 200, stored.text
        saved = api.post(
            "/prompts/orders/extract/-/versions", json=kernel_body("Extract: {{ text }}")
        )
        assert saved.status_code == 201, saved.text
        version = saved.json()["id"]
        points = [{"inputs": {"text": f"order {i}"}, "target": f"#{i}"} for i in range(6)]
        made = api.post("/datasets/orders/-/versions", json={"datapoints": points})
        assert made.status_code == 201, made.text

        page.goto(ui.path(f"/p/{project}/fine-tunes"))
        expect(page.get_by_text("No fine-tunes yet.")).to_be_visible()
        page.get_by_role("link", name="Start a fine-tune").click()
        page.get_by_label("Name", exact=False).first.fill("Not A Name")
        page.get_by_label("Dataset", exact=True).fill("orders")
        page.get_by_label("Prompt", exact=False).first.fill("orders/extract")
        page.get_by_label("Prompt version").fill(version)
        page.get_by_label("OpenAI fine-tuning API").check()
        page.get_by_label("Base model").fill("openai/gpt-4o-mini-2024-07-18")
        page.get_by_role("button", name="Start fine-tune").click()
        expect(page.locator("#name-error")).to_contain_text("not allowed")
        expect(page).to_have_url(ui.path(f"/p/{project}/fine-tunes/-/new"))
        expect(page.get_by_label("Prompt version")).to_have_value(version)  # kept as typed

        page.get_by_label("Name", exact=False).first.fill("orders-browser")
        page.get_by_role("button", name="Start fine-tune").click()
        expect(page).to_have_url(re.compile(rf"/p/{project}/fine-tunes/[0-9a-f]{{32}}$"))
        expect(page.get_by_role("heading", name="Fine-tune orders-browser")).to_be_visible()
        status = page.locator("#fine-tune-status .badge")
        expect(status).to_have_text("running", timeout=15_000)  # polled, no reload

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Cancel fine-tune").click()
        expect(status).to_have_text("cancelled", timeout=15_000)
        expect(page.get_by_role("button", name="Cancel fine-tune")).to_have_count(0)
        assert fake.cancelled == list(fake.jobs)
