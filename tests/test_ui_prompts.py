"""The prompts pages, in-process on both databases: the tree and search, the editor (new
versions, unchanged saves, field errors), history and diffs, deploy and rollback by role."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient

from promptloop.ui import prompts as ui_prompts
from tests.conftest import Server
from tests.helpers import BASE, deploy, save

P = "/p/default/prompts"


def _member(client: TestClient, server: Server, role: str) -> TestClient:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    response = client.post(f"{BASE}/members", json={"email": email, "role": role})
    assert response.status_code == 201, response.text
    return server.browser(email)


def _form(path: str = "", **overrides: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "op": "save",
        "path": path,
        "kind": "chat",
        "role": ["system", "user"],
        "content": ["You are terse.", "Summarize {{ text }} in {{ words }} words."],
        "model": "openai/gpt-4o-mini",
        "temperature": "0.2",
        "max_tokens": "64",
        "stop": "END",
        "message": "first draft",
    }
    form.update(overrides)
    return form


class _FormFields(HTMLParser):
    """The fields a browser would submit from the page's editor form (no button pressed)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._open: tuple[str, str] | None = None  # (tag, name) of a textarea or select
        self._text = ""
        self._selected: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("name") and a.get("type") != "search":
            self.fields.append((a["name"], a.get("value", "")))
        elif tag in ("textarea", "select") and a.get("name"):
            self._open, self._text, self._selected = (tag, a["name"]), "", None
        elif tag == "option" and self._open and ("selected" in a or self._selected is None):
            self._selected = a.get("value", "")

    def handle_data(self, data: str) -> None:
        if self._open and self._open[0] == "textarea":
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag == self._open[0]:
            value = self._text if tag == "textarea" else self._selected or ""
            self.fields.append((self._open[1], value))
            self._open = None


def _fields_on(html: str) -> dict[str, list[str]]:
    parser = _FormFields()
    parser.feed(html)
    fields: dict[str, list[str]] = {}
    for name, value in parser.fields:
        fields.setdefault(name, []).append(value)
    return fields


def _versions(client: TestClient, path: str) -> list[dict[str, Any]]:
    response = client.get(f"{BASE}/prompts/{path}/-/versions")
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def _serving(client: TestClient, path: str, environment: str) -> str | None:
    states = client.get(f"{BASE}/prompts/{path}/-/deployments").json()
    found: str | None = next(s["version_id"] for s in states if s["environment"] == environment)
    return found


def test_tree_lists_prompts_by_folder_with_versions_and_deployments_and_search_narrows(
    client: TestClient, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = save(client, "support/answer")
    save(client, "support/escalate", "Escalate {{ ticket }}.")
    save(client, "sales/pitch", "Pitch {{ product }}.")
    deploy(client, "support/answer", answer["id"], "production")
    newer = save(client, "support/answer", "A newer answer to {{ question }}.")
    browser = server.browser()

    page = browser.get(P)
    assert page.status_code == 200
    html = page.text
    assert "support/</summary>" in html and "sales/</summary>" in html
    assert f'href="{P}/support/answer"' in html
    assert f"latest <code>{newer['id']}</code>" in html
    assert f"production: {answer['id']} (not latest)" in html
    assert 'href="/p/default/prompts/-/new"' in html

    found = browser.get(P, params={"q": "PITCH"}).text
    assert f'href="{P}/sales/pitch"' in found
    assert "support/escalate" not in found and "1 prompt matching" in found
    assert "No prompt matches" in browser.get(P, params={"q": "nothing-like-this"}).text

    fragment = browser.get(
        P, params={"q": "escal"}, headers={"HX-Request": "true", "HX-Target": "prompt-tree"}
    )
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and 'id="prompt-tree"' in fragment.text
    assert f'href="{P}/support/escalate"' in fragment.text
    assert "sales/pitch" not in fragment.text

    monkeypatch.setattr(ui_prompts, "LIST_LIMIT", 2)
    capped = browser.get(P).text
    assert "The first 2 prompts in path order: search to narrow the list." in capped
    assert "sales/pitch" in capped and "support/escalate" not in capped


def test_create_edit_and_unchanged_save(client: TestClient, server: Server) -> None:
    browser = server.browser()
    new = browser.get(f"{P}/-/new")
    assert new.status_code == 200 and "openai/gpt-4o-mini" in new.text
    assert "local/smollm2-135m" in new.text  # the offline model is in the catalogue

    created = browser.post(f"{P}/-/new", data=_form("docs/summary"), follow_redirects=False)
    assert created.status_code == 303, created.text
    [first] = _versions(client, "docs/summary")
    assert created.headers["location"] == f"{P}/docs/summary?version={first['id']}&saved=new"
    assert first["message"] == "first draft"
    assert first["parameters"]["temperature"] == 0.2 and first["parameters"]["stop"] == ["END"]
    assert first["variables"] == ["text", "words"]
    shown = browser.get(created.headers["location"]).text
    assert f"Saved version {first['id']}." in shown
    assert "Summarize {{ text }} in {{ words }} words." in shown
    assert '<span class="var">text</span>' in shown

    edited = _form(content=["You are terse.", "Summarize {{ text }} briefly."], message="shorter")
    response = browser.post(f"{P}/docs/summary", data=edited, follow_redirects=False)
    assert response.status_code == 303
    versions = _versions(client, "docs/summary")
    assert len(versions) == 2 and versions[0]["message"] == "shorter"
    assert "saved=new" in response.headers["location"]

    again = browser.post(
        f"{P}/docs/summary", data=_form(message="same again"), follow_redirects=False
    )
    assert again.status_code == 303
    assert again.headers["location"] == f"{P}/docs/summary?version={first['id']}&saved=unchanged"
    assert len(_versions(client, "docs/summary")) == 2
    page = browser.get(again.headers["location"]).text
    assert f"Unchanged: this is version {first['id']}" in page
    assert "an older version" in page  # the form holds the first version, not the latest

    # Through htmx the editor answers with where to go instead of a redirect.
    htmx = browser.post(f"{P}/docs/summary", data=edited, headers={"HX-Request": "true"})
    assert htmx.status_code == 204
    assert htmx.headers["HX-Location"].endswith(f"version={versions[0]['id']}&saved=unchanged")


def test_bad_input_shows_field_errors_and_stores_nothing(
    client: TestClient, server: Server
) -> None:
    browser = server.browser()
    bad = _form(
        "bad/template",
        content=["You are terse.", "Hello {{ name"],
        temperature="hot",
        top_p="1.5",
        model="",
    )
    response = browser.post(f"{P}/-/new", data=bad)
    assert response.status_code == 400
    html = response.text
    assert "Nothing was saved" in html
    assert re.search(r'id="err-content-1">Template syntax error on line 1', html)
    assert 'id="err-temperature">Enter a number.' in html
    assert 'id="err-top_p">' in html and "less than or equal to 1" in html
    assert 'id="err-model">Choose a model.' in html
    assert html.count('aria-invalid="true"') >= 4
    assert "Hello {{ name</textarea>" in html and 'value="hot"' in html  # what was typed stays
    assert _versions(client, "bad/template") == []

    missing = browser.post(f"{P}/-/new", data=_form("bad/model", model="openai/no-such-model"))
    assert missing.status_code == 400 and "not in this project&#39;s model catalogue" in (
        missing.text
    )
    assert _versions(client, "bad/model") == []

    save(client, "taken/path")
    for path, fragment in (
        ("bad//path", "empty segment"),
        ("", "Prompt path is empty"),
        ("taken/path", "A prompt already exists"),
    ):
        answer = browser.post(f"{P}/-/new", data=_form(path))
        assert answer.status_code == 400, path
        assert 'id="err-path"' in answer.text and fragment in answer.text
    assert len(_versions(client, "taken/path")) == 1

    existing = browser.post(f"{P}/taken/path", data=_form(max_tokens="0"))
    assert existing.status_code == 400 and 'id="err-max_tokens"' in existing.text
    assert len(_versions(client, "taken/path")) == 1


def test_message_buttons_reorder_add_and_remove_without_saving(
    client: TestClient, server: Server
) -> None:
    browser = server.browser()
    form = _form("ops/prompt", role=["system", "user"], content=["first", "second"])
    moved = browser.post(f"{P}/-/new", data={**form, "op": "up-1"})
    assert moved.status_code == 200
    assert moved.text.index(">second</textarea>") < moved.text.index(">first</textarea>")
    added = browser.post(f"{P}/-/new", data={**form, "op": "add"}, headers={"HX-Request": "true"})
    assert "<html" not in added.text and added.text.count(' name="content"') == 3
    assert "Content of message 3" in added.text
    removed = browser.post(f"{P}/-/new", data={**form, "op": "remove-0"})
    assert ">first</textarea>" not in removed.text and ">second</textarea>" in removed.text
    assert _versions(client, "ops/prompt") == []


def test_preview_lists_and_marks_variables(server: Server) -> None:
    browser = server.browser()
    response = browser.post(
        f"{P}/-/preview",
        data={"role": ["user"], "content": ["Hi {{ name }}, about {{ topic | upper }}"]},
    )
    assert response.status_code == 200
    assert '<span class="var">name</span> <span class="var">topic</span>' in response.text
    assert '<span class="var">{{ topic | upper }}</span>' in response.text
    broken = browser.post(f"{P}/-/preview", data={"role": ["user"], "content": ["{{ oops"]})
    assert "Template syntax error" in broken.text


def test_older_version_opens_in_the_editor_and_viewers_cannot_save(
    client: TestClient, server: Server
) -> None:
    old = save(client, "read/only", "Old {{ a }}.")
    save(client, "read/only", "New {{ b }}.")
    browser = server.browser()
    page = browser.get(f"{P}/read/only", params={"version": old["id"][:6]}).text
    assert "Old {{ a }}." in page and "New {{ b }}." not in page
    assert "an older version" in page
    assert f"/p/default/playground?prompt=read%2Fonly&amp;version={old['id']}" in page
    assert browser.get(f"{P}/read/only", params={"version": "ffffff"}).status_code == 404
    added = browser.post(
        f"{P}/read/only", data=_form(op="add", base=old["id"]), headers={"HX-Request": "true"}
    )
    assert added.status_code == 200 and "an older version" in added.text
    assert f'name="base" value="{old["id"]}"' in added.text

    viewer = _member(client, server, "viewer")
    seen = viewer.get(f"{P}/read/only")
    assert seen.status_code == 200
    assert "New {{ b }}." in seen.text
    assert "Save version" not in seen.text and 'value="save"' not in seen.text
    assert '<fieldset class="plain" disabled>' in seen.text
    assert "New prompt" not in viewer.get(P).text
    refused = viewer.post(f"{P}/read/only", data=_form(content=["x", "changed {{ c }}"]))
    assert refused.status_code == 403 and "cannot change prompts" in refused.text
    assert len(_versions(client, "read/only")) == 2


def test_history_lists_versions_and_diff_shows_changes(client: TestClient, server: Server) -> None:
    first = save(client, "hist/p", "Line one {{ x }}.", parameters={"temperature": 0.1})
    second = save(client, "hist/p", "Line two {{ x }}.", parameters={"temperature": 0.9})
    deploy(client, "hist/p", first["id"], "staging")
    browser = server.browser()
    page = browser.get(f"{P}/hist/p/-/history")
    assert page.status_code == 200
    html = page.text
    assert html.index(second["id"]) < html.index(first["id"])  # newest first
    assert 'class="badge staging">staging' in html
    assert f'name="a" value="{first["id"]}"' in html and f'name="b" value="{second["id"]}"' in html

    diff = browser.get(f"{P}/hist/p/-/diff", params={"a": first["id"], "b": second["id"]})
    assert diff.status_code == 200
    assert '<span class="del">-Line one {{ x }}.</span>' in diff.text
    assert '<span class="add">+Line two {{ x }}.</span>' in diff.text
    assert "<code>parameters.temperature</code>" in diff.text
    assert "<code>0.1</code>" in diff.text and "<code>0.9</code>" in diff.text
    same = browser.get(f"{P}/hist/p/-/diff", params={"a": first["id"], "b": first["id"]})
    assert "the same version" in same.text
    assert browser.get(f"{P}/hist/p/-/diff").status_code == 400


def test_deploy_and_rollback_show_what_changed(client: TestClient, server: Server) -> None:
    one = save(client, "dep/p", "One {{ x }}.")
    two = save(client, "dep/p", "Two {{ x }}.")
    browser = server.browser()
    page = browser.get(f"{P}/dep/p/-/deploy").text
    assert "Deploy to production" in page and "Never deployed." in page
    assert 'hx-confirm="Deploy the chosen version of dep/p to production?"' in page

    plain = browser.post(
        f"{P}/dep/p/-/deploy",
        data={"environment": "production", "version": one["id"], "message": "launch"},
        follow_redirects=False,
    )
    assert plain.status_code == 303 and plain.headers["location"] == f"{P}/dep/p/-/deploy"
    assert _serving(client, "dep/p", "production") == one["id"]
    first = browser.get(f"{P}/dep/p/-/deploy").text
    assert "launch" in first and "Roll back production" not in first  # nothing before it

    htmx = {"HX-Request": "true"}
    moved = browser.post(
        f"{P}/dep/p/-/deploy",
        data={"environment": "production", "version": two["id"]},
        headers=htmx,
    )
    assert moved.status_code == 200 and "<html" not in moved.text
    assert f"production now serves {two['id']} (was {one['id']})." in moved.text
    assert "launch" in moved.text and "Roll back production" in moved.text
    assert _serving(client, "dep/p", "production") == two["id"]

    back = browser.post(f"{P}/dep/p/-/rollback", data={"environment": "production"}, headers=htmx)
    assert back.status_code == 200
    assert f"Rolled back production: it now serves {one['id']} (was {two['id']})." in back.text
    assert _serving(client, "dep/p", "production") == one["id"]
    assert back.text.count("<td>rollback</td>") == 1 and back.text.count("<td>deploy</td>") == 2
    # The first deployment had nothing before it: no button for a rollback the server refuses.
    assert "Roll back production" not in back.text

    nothing = browser.post(f"{P}/dep/p/-/rollback", data={"environment": "staging"}, headers=htmx)
    assert nothing.status_code == 409 and "Nothing to roll back" in nothing.text
    assert nothing.headers["HX-Retarget"] == "#flash"


def test_member_cannot_deploy_to_production(client: TestClient, server: Server) -> None:
    one = save(client, "guard/p", "One {{ x }}.")
    two = save(client, "guard/p", "Two {{ x }}.")
    deploy(client, "guard/p", one["id"], "production")
    member = _member(client, server, "member")
    page = member.get(f"{P}/guard/p/-/deploy").text
    assert "Deploy to staging" in page and "Deploy to development" in page
    assert "Deploy to production" not in page and "Roll back production" not in page
    assert "cannot deploy to production" in page

    for url, data in (
        (f"{P}/guard/p/-/deploy", {"environment": "production", "version": two["id"]}),
        (f"{P}/guard/p/-/rollback", {"environment": "production"}),
    ):
        refused = member.post(url, data=data)
        assert refused.status_code == 403 and "protected" in refused.text
    assert _serving(client, "guard/p", "production") == one["id"]

    allowed = member.post(
        f"{P}/guard/p/-/deploy", data={"environment": "staging", "version": two["id"]}
    )
    assert allowed.status_code == 200  # followed the redirect to the deploy page
    assert _serving(client, "guard/p", "staging") == two["id"]


def test_forms_without_the_csrf_token_are_refused(client: TestClient, server: Server) -> None:
    one = save(client, "csrf/p", "One {{ x }}.")
    browser = server.browser()
    del browser.headers["X-CSRF-Token"]
    refused = browser.post(
        f"{P}/csrf/p/-/deploy", data={"environment": "staging", "version": one["id"]}
    )
    assert refused.status_code == 403 and "The form expired" in refused.text
    assert _serving(client, "csrf/p", "staging") is None
    saved = browser.post(f"{P}/csrf/p", data=_form(content=["x", "y {{ z }}"]))
    assert saved.status_code == 403
    assert len(_versions(client, "csrf/p")) == 1


def test_a_prompt_without_versions_opens_a_blank_form_and_saves_its_first(
    client: TestClient, server: Server
) -> None:
    assert client.post(f"{BASE}/prompts", json={"path": "empty/one"}).status_code == 201
    browser = server.browser()
    assert "no versions yet" in browser.get(P).text
    page = browser.get(f"{P}/empty/one")
    assert page.status_code == 200 and "no versions yet" in page.text
    assert page.text.count(' name="content"') == 2
    assert '<option value="openai/gpt-4o-mini" selected>' in page.text
    saved = browser.post(f"{P}/empty/one", data=_form(), follow_redirects=False)
    assert saved.status_code == 303 and "saved=new" in saved.headers["location"]
    assert len(_versions(client, "empty/one")) == 1


def test_opening_a_version_and_saving_it_untouched_says_unchanged(
    client: TestClient, server: Server
) -> None:
    """Every setting survives the form: a chat kernel with each parameter, tools and a stop
    sequence holding a newline, and a completion template."""
    chat = save(
        client,
        "round/chat",
        "Use {{ tool_hint }}.\n\nThen answer {{ q }}.",
        parameters={
            "temperature": 0.7,
            "max_tokens": 300,
            "top_p": 0.9,
            "stop": ["\n\n", "END\\n", "tab\there"],
            "seed": 7,
            "presence_penalty": -0.5,
            "frequency_penalty": 1.5,
            "response_format": {"type": "json_object"},
            "extras": {"logprobs": True},
        },
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Find an order",
                    "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
                },
            }
        ],
    )
    completion = client.post(
        f"{BASE}/prompts/round/completion/-/versions",
        json={"provider": "local", "model": "smollm2-135m", "template": "Complete: {{ x }}"},
    )
    assert completion.status_code == 201, completion.text
    browser = server.browser()
    for path, version in (
        ("round/chat", chat["id"]),
        ("round/completion", completion.json()["id"]),
    ):
        page = browser.get(f"{P}/{path}")
        fields = _fields_on(page.text)
        assert "op" not in fields  # what a browser sends comes from the button it pressed
        answer = browser.post(f"{P}/{path}", data={**fields, "op": "save"}, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"].endswith(f"version={version}&saved=unchanged"), path
        assert len(_versions(client, path)) == 1
    assert "Complete: {{ x }}</textarea>" in browser.get(f"{P}/round/completion").text
