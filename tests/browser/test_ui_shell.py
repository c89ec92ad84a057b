"""The frame every page shares: signing in, the project's sections, errors as pages."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import UiServer


def test_signed_out_visitor_is_sent_to_sign_in_and_back(ui: UiServer, page: Any) -> None:
    page.goto(ui.path("/p/default"))
    expect(page).to_have_url(ui.path("/sign-in?next=/p/default"))
    expect(page.get_by_label("Email")).to_be_visible()


def test_project_home_lists_sections_and_unknown_project_is_a_404_page(
    ui: UiServer, admin_page: Any
) -> None:
    page = admin_page
    page.goto(ui.path("/"))
    page.goto(ui.path("/"))
    expect(page.get_by_role("link", name="default")).to_be_visible()
    page.goto(ui.path("/audit?project=default"))
    nav = page.get_by_role("navigation", name="Project sections")
    for label in ("Prompts", "Playground", "Logs", "Datasets", "Evaluations"):
        expect(nav.get_by_role("link", name=label)).to_be_visible()
    response = page.goto(ui.path("/p/no-such-project"))
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def test_unknown_page_is_a_page_and_unknown_api_path_stays_json(ui: UiServer, page: Any) -> None:
    response = page.goto(ui.path("/no/such/page"))
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    with ui.api() as api:
        answer = api.get("/no-such-endpoint")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
