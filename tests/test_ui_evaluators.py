"""The evaluators pages, in-process on both databases: the list, the editor (built-in settings,
code for developers only, LLM judges, field errors), and trying a draft on a log."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Server
from tests.fakes import FakeProvider, registered
from tests.helpers import BASE, save

UI = "/p/default/evaluators"


def member(client: TestClient, server: Server, role: str) -> TestClient:
    email = f"{role}@example.com"
    added = client.post(f"{BASE}/members", json={"email": email, "role": role})
    assert added.status_code == 201, added.text
    return server.browser(email)


def saved_evaluators(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get(f"{BASE}/evaluators")
    assert response.status_code == 200, response.text
    return {e["name"]: e for e in response.json()}


def post(browser: TestClient, url: str, **form: str) -> Any:
    return browser.post(
        url,
        data={"csrf_token": browser.headers["X-CSRF-Token"], **form},
        follow_redirects=False,
    )


def field_error(html: str, field: str) -> str:
    """The error text shown under a field (empty when none)."""
    found = re.search(
        rf'<span class="field-error" id="{re.escape(field)}-error">([^<]*)</span>', html
    )
    return found.group(1) if found else ""


def test_create_a_builtin_evaluator_then_a_new_version(client: TestClient, server: Server) -> None:
    browser = server.browser()
    page = browser.get(f"{UI}/-/new")
    assert page.status_code == 200
    for name in ("exact_match", "contains", "regex", "json_schema", "edit_similarity"):
        assert f'<option value="{name}"' in page.text
    assert 'name="cfg.regex.pattern"' in page.text and 'value="code"' in page.text

    created = post(
        browser,
        f"{UI}/-/new",
        name="mentions-paris",
        kind="builtin",
        builtin="contains",
        **{"cfg.contains.value": "Paris", "cfg.regex.pattern": "ignored"},
        message="first",
    )
    assert created.status_code == 303, created.text
    evaluator = saved_evaluators(client)["mentions-paris"]
    assert evaluator["spec"]["config"] == {"value": "Paris", "case_sensitive": False}
    assert created.headers["location"] == (
        f"{UI}/mentions-paris?version={evaluator['version']}&saved=new"
    )

    shown = browser.get(created.headers["location"])
    assert shown.status_code == 200 and "Saved version" in shown.text
    assert 'name="cfg.contains.value" value="Paris"' in shown.text  # the editor shows the version
    listing = browser.get(UI)
    assert ">mentions-paris</a>" in listing.text and evaluator["version"] in listing.text

    again = post(
        browser,
        f"{UI}/mentions-paris",
        kind="builtin",
        builtin="contains",
        **{"cfg.contains.value": "Paris", "cfg.contains.case_sensitive": "on"},
    )
    assert again.status_code == 303
    versions = client.get(f"{BASE}/evaluators/mentions-paris/-/versions").json()
    assert len(versions) == 2 and versions[0]["spec"]["config"]["case_sensitive"] is True
    assert versions[1]["version"] == evaluator["version"]
    first = browser.get(f"{UI}/mentions-paris?version={evaluator['version'][:6]}")
    assert f"Showing version <code>{evaluator['version']}</code>" in first.text
    assert 'name="cfg.contains.case_sensitive" checked' not in first.text
    assert 'name="cfg.contains.case_sensitive" checked' in browser.get(f"{UI}/mentions-paris").text
    assert browser.get(f"{UI}/no-such").status_code == 404


def test_field_errors_keep_the_form_and_save_nothing(client: TestClient, server: Server) -> None:
    browser = server.browser()
    cases: list[tuple[dict[str, str], str, str]] = [
        ({"name": "Bad Name", "kind": "human", "returns": "boolean"}, "name", "not allowed"),
        ({"name": "re", "kind": "builtin", "builtin": "regex"}, "cfg.regex.pattern", "required"),
        (
            {"name": "re", "kind": "builtin", "builtin": "regex", "cfg.regex.pattern": "("},
            "cfg.regex.pattern",
            "does not compile",
        ),
        (
            {"name": "lat", "kind": "builtin", "builtin": "latency", "cfg.latency.max_ms": "x"},
            "cfg.latency.max_ms",
            "A number",
        ),
        ({"name": "h", "kind": "human"}, "returns", "declares what it returns"),
        ({"name": "h", "kind": "human", "returns": "choice"}, "choices", "lists its choices"),
        ({"name": "j", "kind": "llm", "returns": "boolean"}, "judge_prompt", "names a prompt"),
        (
            {"name": "j", "kind": "llm", "returns": "boolean", "judge_prompt": "no/such"},
            "judge_prompt",
            "no/such",
        ),
        (
            {"name": "c", "kind": "code", "returns": "boolean", "source": "def evaluate(:"},
            "source",
            "does not compile",
        ),
    ]
    for form, field, fragment in cases:
        refused = post(browser, f"{UI}/-/new", **form)
        assert refused.status_code == 400, (form, refused.text)
        assert fragment in field_error(refused.text, field), (form, field)
        assert f'value="{form["name"]}"' in refused.text  # what was typed stays
    assert saved_evaluators(client) == {}


def test_code_evaluators_are_for_developers(client: TestClient, server: Server) -> None:
    code = "def evaluate(log, datapoint):\n    return len(log['output'] or '') < 20\n"
    body = {"kind": "code", "returns": "boolean", "source": code}
    developer = member(client, server, "developer")
    assert 'value="code"' in developer.get(f"{UI}/-/new").text
    logged = client.post(f"{BASE}/logs", json={"inputs": {}, "output": "Short."})
    tried = post(developer, f"{UI}/-/try", name="short", **body, try_log=logged.json()["id"])
    assert tried.status_code == 200 and "<strong>true</strong>" in tried.text
    assert saved_evaluators(client) == {}
    assert post(developer, f"{UI}/-/new", name="short", **body).status_code == 303
    assert saved_evaluators(client)["short"]["kind"] == "code"

    member_browser = member(client, server, "member")
    page = member_browser.get(f"{UI}/-/new")
    assert page.status_code == 200 and 'value="code"' not in page.text
    assert 'name="source"' not in page.text
    refused = post(member_browser, f"{UI}/-/new", name="sneaky", **body)
    assert refused.status_code == 403 and "developer" in refused.text
    not_tried = post(member_browser, f"{UI}/-/try", **body, try_log=logged.json()["id"])
    assert not_tried.status_code == 403
    assert "sneaky" not in saved_evaluators(client)
    builtin = post(
        member_browser, f"{UI}/-/new", name="exact", kind="builtin", builtin="exact_match"
    )
    assert builtin.status_code == 303

    viewer = member(client, server, "viewer")
    assert "New evaluator" not in viewer.get(UI).text
    assert viewer.get(f"{UI}/-/new").status_code == 403
    assert "Try it on a log" not in viewer.get(f"{UI}/short").text


def test_try_a_draft_on_a_log_stores_nothing(client: TestClient, server: Server) -> None:
    logged = client.post(f"{BASE}/logs", json={"inputs": {"q": "capital?"}, "output": "Paris."})
    assert logged.status_code == 201, logged.text
    log_id = logged.json()["id"]
    browser = server.browser()
    draft = {"kind": "builtin", "builtin": "edit_similarity", "name": "sim"}

    tried = post(browser, f"{UI}/-/try", **draft, try_log=log_id, try_target="Paris")
    assert tried.status_code == 200, tried.text
    value = re.search(r'id="try-value"><strong>([^<]*)</strong>', tried.text)
    assert value is not None and 0.8 < float(value.group(1)) < 1
    assert "Nothing was saved" in tried.text and f"/p/default/logs/{log_id}" in tried.text
    assert 'value="sim"' in tried.text  # the draft stays in the form

    no_target = post(browser, f"{UI}/-/try", **draft, try_log=log_id)
    assert no_target.status_code == 200 and "this datapoint has no target" in no_target.text

    save(client, "ui/answer")
    client.post(
        f"{BASE}/logs", json={"prompt": "ui/answer", "inputs": {"q": "x"}, "output": "Bonjour"}
    )
    latest = post(
        browser,
        f"{UI}/-/try",
        name="re",
        kind="builtin",
        builtin="regex",
        **{"cfg.regex.pattern": "^Bon"},
        try_prompt="ui/answer",
    )
    assert latest.status_code == 200 and "<strong>true</strong>" in latest.text

    missing = post(browser, f"{UI}/-/try", **draft)
    assert missing.status_code == 400 and "Give a log id" in field_error(missing.text, "try_log")
    unknown = post(browser, f"{UI}/-/try", **draft, try_log="nope")
    assert unknown.status_code == 400 and "No log" in field_error(unknown.text, "try_log")
    bad_draft = post(browser, f"{UI}/-/try", kind="builtin", builtin="regex", try_log=log_id)
    assert bad_draft.status_code == 400
    assert "required" in field_error(bad_draft.text, "cfg.regex.pattern")

    assert saved_evaluators(client) == {}
    runs = client.get(f"{BASE}/evaluations")
    assert runs.status_code == 200 and runs.json()["data"] == []


def test_an_llm_judge_is_tried_then_saved_pinned_to_its_prompt_version(
    client: TestClient, server: Server
) -> None:
    judge_version = save(client, "ui/judge", "Judge {{ output }}", provider="fake", model="j")["id"]
    logged = client.post(f"{BASE}/logs", json={"inputs": {"q": "hi"}, "output": "Hello!"})
    browser = server.browser()
    draft = {"kind": "llm", "returns": "boolean", "judge_prompt": "ui/judge", "name": "polite"}
    with registered(FakeProvider(respond=lambda _: "Friendly greeting. Verdict: PASS")) as fake:
        tried = post(browser, f"{UI}/-/try", **draft, try_log=logged.json()["id"])
    assert tried.status_code == 200, tried.text
    assert "<strong>true</strong>" in tried.text and "Friendly greeting" in tried.text
    assert "Judge Hello!" in str(fake.requests[0][0].messages)
    assert saved_evaluators(client) == {}
    created = post(browser, f"{UI}/-/new", **draft)
    assert created.status_code == 303, created.text
    assert saved_evaluators(client)["polite"]["spec"]["judge"] == {
        "prompt": "ui/judge",
        "version": judge_version,
    }
    page = browser.get(created.headers["location"])
    assert f'name="judge_version" value="{judge_version}"' in page.text
