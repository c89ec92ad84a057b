"""The playground pages, in-process on both databases, with a fake provider: runs of a draft on
several models (plain form and streamed), their logs, field errors, saving, and roles."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html import unescape as html_unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient

from promptloop.providers.base import ChatRequest, ProviderError
from tests.conftest import Server
from tests.fakes import FakeProvider, registered
from tests.helpers import BASE

PAGE = "/p/default/playground"
KERNEL = {
    "provider": "fake",
    "model": "fake-1",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Greet {{ name }} from {{ city }}"},
    ],
    "parameters": {"temperature": 0.5},
}


def _answer(request: ChatRequest) -> str:
    if request.model == "broken":
        raise ProviderError("invalid API key", status=401, kind="authentication")
    said = request.messages[-1]["content"] if request.messages else request.prompt
    return f"{request.model} says {said}"


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with registered(FakeProvider(respond=_answer)) as provider:
        yield provider


@pytest.fixture
def browser(fake: FakeProvider, server: Server, client: TestClient) -> TestClient:
    # The fake registers before the app starts, so the catalogue knows fake-1's prices.
    return server.browser()


def _save(client: TestClient, path: str, kernel: dict[str, Any] = KERNEL) -> str:
    response = client.post(f"{BASE}/prompts/{path}/-/versions", json=kernel)
    assert response.status_code in (200, 201), response.text
    version: str = response.json()["id"]
    return version


def _form(browser: TestClient, path: str, **changes: Any) -> dict[str, Any]:
    """The fields the playground page would post for the draft of `path`, as a user left them."""
    token = browser.headers["X-CSRF-Token"]
    form: dict[str, Any] = {
        "csrf_token": token,
        "prompt": path,
        "version": "",
        "kept": "{}",
        "model": "fake/fake-1",
        "role": ["system", "user"],
        "content": ["Be brief.", "Greet {{ name }} from {{ city }}"],
        "temperature": "0.5",
        "input.name": "Ada",
        "input.city": "Lyon",
        "action": "run",
    }
    form.update(changes)
    return form


def _logs(client: TestClient, **filters: str) -> list[dict[str, Any]]:
    response = client.get(f"{BASE}/logs", params={"limit": 100, **filters})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]
    return items


def test_the_page_opens_a_version_as_a_draft_with_its_variables(
    browser: TestClient, client: TestClient
) -> None:
    version = _save(client, "pg/open")
    page = browser.get(PAGE, params={"prompt": "pg/open"})
    assert page.status_code == 200, page.text
    html = page.text
    assert "Greet {{ name }} from {{ city }}</textarea>" in html
    assert 'name="input.name"' in html and 'name="input.city"' in html
    assert re.search(r'id="pg-model"[^>]*value="fake/fake-1"', html)
    assert re.search(r'id="pg-temperature"[^>]*value="0.5"', html)
    assert f"matches version {version}" in html
    assert 'value="run"' in html and "Save as new version" in html
    blank = browser.get(PAGE, params={"model": "fake/tuned-1"})
    assert blank.status_code == 200 and "A blank draft" in blank.text
    assert re.search(r'id="pg-model"[^>]*value="fake/tuned-1"', blank.text)
    missing = browser.get(PAGE, params={"prompt": "pg/none"})
    assert missing.status_code == 404
    # As the draft changes, the page learns whether it still matches a saved version.
    same = browser.post(f"{PAGE}/-/inputs", data=_form(browser, "pg/open"))
    assert f"matches version {version}" in same.text and 'hx-swap-oob="true"' in same.text
    edited = browser.post(f"{PAGE}/-/inputs", data=_form(browser, "pg/open", temperature="0.9"))
    assert "unsaved changes" in edited.text and "matches version" not in edited.text


def test_a_run_on_two_models_logs_both_linked_to_the_matching_version(
    browser: TestClient, client: TestClient
) -> None:
    version = _save(client, "pg/two")
    response = browser.post(PAGE, data=_form(browser, "pg/two", compare=["fake/fake-2"]))
    assert response.status_code == 200, response.text
    html = response.text
    assert "fake-1 says Greet Ada from Lyon" in html
    assert "fake-2 says Greet Ada from Lyon" in html
    links = re.findall(r'href="/p/default/logs/([0-9a-f]+)"', html)
    assert len(links) == 2
    logs = {log["id"]: log for log in _logs(client, prompt="pg/two")}
    assert set(links) == set(logs)
    by_model = {log["model"]: log for log in logs.values()}
    assert {log["source"] for log in logs.values()} == {"playground"}
    # The draft's own model runs the saved content: linked to that version. The other column
    # is the same draft on another model: other content, so no version.
    assert by_model["fake-1"]["version"] == version
    assert by_model["fake-2"]["version"] is None
    assert by_model["fake-1"]["inputs"] == {"name": "Ada", "city": "Lyon"}
    # fake-1 has prices in the catalogue, fake-2 none: its cost stays unknown.
    assert "$0.000018" in html and "unknown" in html
    assert html.count("First token") == 2


def test_a_changed_draft_is_logged_without_a_version(
    browser: TestClient, client: TestClient
) -> None:
    _save(client, "pg/changed")
    form = _form(browser, "pg/changed", content=["Be brief.", "Wave at {{ name }} in {{ city }}"])
    response = browser.post(PAGE, data=form)
    assert response.status_code == 200, response.text
    assert "fake-1 says Wave at Ada in Lyon" in response.text
    [log] = _logs(client, prompt="pg/changed")
    assert log["version"] is None and log["source"] == "playground"


def test_the_stream_sends_columns_then_text_then_each_columns_figures(
    browser: TestClient, client: TestClient
) -> None:
    version = _save(client, "pg/stream")
    form = _form(browser, "pg/stream", compare=["fake/fake-2"])
    with browser.stream("POST", f"{PAGE}/-/stream", data=form) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.iter_text())
    events = [
        (block.split("\n")[0].removeprefix("event: "), json.loads(block.split("data: ", 1)[1]))
        for block in "".join(chunks).strip().split("\n\n")
    ]
    names = [name for name, _ in events]
    assert names[0] == "columns" and names[-1] == "finished"
    assert 'data-column="1"' in events[0][1]["html"]
    deltas = [data for name, data in events if name == "delta"]
    assert len(deltas) >= 10  # word by word, from both columns
    for column, model in ((0, "fake-1"), (1, "fake-2")):
        text = "".join(d["text"] for d in deltas if d["column"] == column)
        assert text.strip() == f"{model} says Greet Ada from Lyon"
    ends = {data["column"]: data for name, data in events if name == "end"}
    assert set(ends) == {0, 1}
    log_id = re.findall(r"/p/default/logs/([0-9a-f]+)", ends[0]["html"])[0]
    log = client.get(f"{BASE}/logs/{log_id}").json()
    assert (log["source"], log["version"], log["model"]) == ("playground", version, "fake-1")
    assert log["ttft_ms"] is not None and "First token" in ends[0]["html"]


def test_provider_errors_stay_in_their_column(browser: TestClient, client: TestClient) -> None:
    _save(client, "pg/errors")
    form = _form(browser, "pg/errors", compare=["fake/broken", "nope/model"])
    response = browser.post(PAGE, data=form)
    assert response.status_code == 200, response.text
    html = response.text
    assert "fake-1 says Greet Ada from Lyon" in html
    assert "The fake provider failed: invalid API key" in html
    assert "Unknown provider &#39;nope&#39;" in html
    logs = _logs(client, prompt="pg/errors")
    # The failed call is logged; the unknown provider was never called.
    assert sorted(log["model"] for log in logs) == ["broken", "fake-1"]
    assert next(log["error"] for log in logs if log["model"] == "broken").startswith(
        "authentication (401)"
    )


def test_missing_variables_are_field_errors_and_nothing_is_called(
    fake: FakeProvider, browser: TestClient, client: TestClient
) -> None:
    _save(client, "pg/missing")
    form = _form(browser, "pg/missing")
    form["input.city"] = "  "
    response = browser.post(PAGE, data=form)
    assert response.status_code == 400
    assert "Fill in city: the template uses it." in response.text
    assert (
        'name="input.city" id="pg-input-1" rows="2" class="pg-input" aria-invalid="true"'
        in response.text
    )
    assert ">Ada</textarea>" in response.text  # what the user typed stays
    streamed = browser.post(f"{PAGE}/-/stream", data=form)
    assert streamed.status_code == 400 and "Fill in city" in streamed.text
    bad = _form(browser, "pg/missing", model="fake", temperature="hot", content=["{{ oops", "x"])
    response = browser.post(PAGE, data=bad)
    assert response.status_code == 400
    assert "Give the model as provider/model" in response.text
    assert "Enter a number." in response.text
    assert fake.requests == [] and _logs(client, prompt="pg/missing") == []


def test_messages_and_models_are_added_and_removed_and_inputs_follow_the_text(
    browser: TestClient,
) -> None:
    form = _form(browser, "", action="add-message")
    page = browser.post(PAGE, data=form)
    assert page.status_code == 200 and page.text.count('name="content"') == 3
    form = _form(browser, "", action="add-model", compare=["fake/fake-2"])
    assert browser.post(PAGE, data=form).text.count('name="compare"') == 2
    form = _form(browser, "", action="remove-message-0")
    page = browser.post(PAGE, data=form)
    assert page.text.count('name="content"') == 1 and "Be brief." not in page.text
    inputs = browser.post(
        f"{PAGE}/-/inputs",
        data={"role": ["user"], "content": ["{{ topic }} for {{ audience }}"], "model": "x/y"},
        headers={"HX-Request": "true"},
    )
    assert inputs.status_code == 200
    assert 'name="input.topic"' in inputs.text and 'name="input.audience"' in inputs.text


def test_save_as_new_version_then_unchanged(browser: TestClient, client: TestClient) -> None:
    first = _save(client, "pg/save")
    form = _form(
        browser,
        "pg/save",
        content=["Be brief.", "Say hi to {{ name }} of {{ city }}"],
        save_path="pg/save",
        commit_message="Friendlier greeting",
        action="save",
    )
    saved = browser.post(f"{PAGE}/-/save", data=form, follow_redirects=False)
    assert saved.status_code == 303
    assert "saved=created" in saved.headers["location"]
    versions = client.get(f"{BASE}/prompts/pg/save/-/versions").json()["data"]
    assert len(versions) == 2 and versions[0]["message"] == "Friendlier greeting"
    new = versions[0]["id"]
    assert new != first and f"version={new}" in saved.headers["location"]
    page = browser.get(saved.headers["location"])
    assert f"Saved as version {new} of pg/save." in page.text
    again = browser.post(f"{PAGE}/-/save", data=form, headers={"HX-Request": "true"})
    assert again.status_code == 200 and "Unchanged: the draft is version" in again.text
    assert len(client.get(f"{BASE}/prompts/pg/save/-/versions").json()["data"]) == 2
    nameless = browser.post(f"{PAGE}/-/save", data={**form, "save_path": ""})
    assert nameless.status_code == 400 and "Name the prompt to save" in nameless.text


def test_viewers_see_no_run_or_save_and_the_server_refuses(
    fake: FakeProvider, browser: TestClient, server: Server, client: TestClient
) -> None:
    _save(client, "pg/viewer")
    email = "viewer-pg@example.com"
    added = client.post(f"{BASE}/members", json={"email": email, "role": "viewer"})
    assert added.status_code == 201, added.text
    viewer = server.browser(email)
    page = viewer.get(PAGE, params={"prompt": "pg/viewer"})
    assert page.status_code == 200
    assert 'value="run"' not in page.text and "Save as new version" not in page.text
    form = _form(viewer, "pg/viewer", save_path="pg/viewer", commit_message="x")
    assert viewer.post(PAGE, data=form).status_code == 403
    assert viewer.post(f"{PAGE}/-/stream", data=form).status_code == 403
    assert viewer.post(f"{PAGE}/-/save", data=form).status_code == 403
    assert fake.requests == [] and _logs(client, prompt="pg/viewer") == []
    assert len(client.get(f"{BASE}/prompts/pg/viewer/-/versions").json()["data"]) == 1


def test_settings_the_form_does_not_edit_are_kept_and_completion_templates_run(
    fake: FakeProvider, browser: TestClient, client: TestClient
) -> None:
    kernel = {
        **KERNEL,
        "parameters": {"temperature": 0.2, "stop": ["END"], "extras": {"top_k": 5}},
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
    }
    version = _save(client, "pg/kept", kernel)
    page = browser.get(PAGE, params={"prompt": "pg/kept"})
    assert f"matches version {version}" in page.text and "kept as they are" in page.text
    kept = re.search(r'name="kept" value="([^"]*)"', page.text)
    assert kept is not None
    form = _form(browser, "pg/kept", temperature="0.2", kept=html_unescape(kept.group(1)))
    assert browser.post(PAGE, data=form).status_code == 200
    [log] = _logs(client, prompt="pg/kept")
    assert log["version"] == version  # the same content: tools and options survived the form
    request, _ = fake.requests[-1]
    assert request.parameters.stop == ["END"] and request.tools[0]["function"]["name"] == "lookup"

    completion = {"provider": "fake", "model": "fake-1", "template": "Complete: {{ text }}"}
    version = _save(client, "pg/completion", completion)
    page = browser.get(PAGE, params={"prompt": "pg/completion"})
    assert "Complete: {{ text }}</textarea>" in page.text and 'name="input.text"' in page.text
    form = {
        "csrf_token": browser.headers["X-CSRF-Token"],
        "prompt": "pg/completion",
        "kept": "{}",
        "model": "fake/fake-1",
        "template": "Complete: {{ text }}",
        "input.text": "the sky is",
        "action": "run",
    }
    response = browser.post(PAGE, data=form)
    assert response.status_code == 200, response.text
    [log] = _logs(client, prompt="pg/completion")
    assert log["version"] == version and fake.requests[-1][0].prompt == "Complete: the sky is"


def test_saving_to_a_bad_path_is_a_field_error_and_saves_nothing(
    browser: TestClient, client: TestClient
) -> None:
    form = _form(browser, "", save_path="Bad Path!", commit_message="x", action="save")
    response = browser.post(f"{PAGE}/-/save", data=form)
    assert response.status_code == 400
    assert 'id="pg-save-path" value="Bad Path!"' in response.text
    assert 'aria-invalid="true"' in response.text and "field-error" in response.text
    assert client.get(f"{BASE}/prompts").json()["data"] == []
