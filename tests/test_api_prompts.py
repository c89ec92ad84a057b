"""The prompt registry over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Server
from tests.helpers import BASE, assert_error, deploy, kernel_body, save


def test_health_needs_no_credentials_and_names_the_database(client: TestClient) -> None:
    response = client.get(f"{BASE}/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["database"] in ("sqlite", "postgresql")


def test_default_project_and_environments_exist_on_first_start(client: TestClient) -> None:
    assert [p["name"] for p in client.get(f"{BASE}/projects").json()] == ["default"]
    environments = client.get(f"{BASE}/environments").json()
    assert [(e["name"], e["protected"]) for e in environments] == [
        ("development", False),
        ("staging", False),
        ("production", True),
    ]


def test_saving_identical_content_returns_the_existing_version(client: TestClient) -> None:
    first = client.post(
        f"{BASE}/prompts/support/answer/-/versions", json={**kernel_body(), "message": "first try"}
    )
    assert first.status_code == 201
    assert first.json()["created"] is True
    assert first.json()["variables"] == ["question", "customer"]
    again = client.post(
        f"{BASE}/prompts/support/answer/-/versions", json={**kernel_body(), "message": "same again"}
    )
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["message"] == "first try"
    versions = client.get(f"{BASE}/prompts/support/answer/-/versions").json()["data"]
    assert len(versions) == 1


def test_versions_newest_first_with_cursor_pagination(client: TestClient) -> None:
    ids = [save(client, "support/answer", f"Variant {i}: {{{{ q }}}}")["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get(f"{BASE}/prompts/support/answer/-/versions", params=params).json()
        seen += [v["id"] for v in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3


def test_prompts_list_by_folder_prefix(client: TestClient) -> None:
    for path in ("support/triage", "support_old/x", "sales/pitch", "support/answer"):
        save(client, path)
    listed = client.get(f"{BASE}/prompts", params={"prefix": "support/"}).json()
    assert [p["path"] for p in listed["data"]] == ["support/answer", "support/triage"]
    first = client.get(f"{BASE}/prompts", params={"limit": 2}).json()
    rest = client.get(f"{BASE}/prompts", params={"cursor": first["next_cursor"]}).json()
    assert [p["path"] for p in first["data"] + rest["data"]] == [
        "sales/pitch",
        "support/answer",
        "support/triage",
        "support_old/x",
    ]
    assert rest["next_cursor"] is None


def test_create_prompt_then_conflict(client: TestClient) -> None:
    created = client.post(
        f"{BASE}/prompts", json={"path": "support/answer", "description": "Replies"}
    )
    assert created.status_code == 201
    assert client.get(f"{BASE}/prompts/support/answer").json()["description"] == "Replies"
    assert_error(client.post(f"{BASE}/prompts", json={"path": "support/answer"}), 409, "conflict")
    assert_error(
        client.get(f"{BASE}/prompts/support/answer/-/version"), 404, "not_found", "no versions"
    )


def test_render_and_variables(client: TestClient) -> None:
    version = save(client, "support/answer")
    rendered = client.post(
        f"{BASE}/prompts/support/answer/-/render",
        json={
            "inputs": {"question": "Where is my order?", "customer": "Ada"},
            "version": version["id"],
        },
    )
    assert rendered.status_code == 200
    assert rendered.json()["messages"][1] == {
        "role": "user",
        "content": "Answer Where is my order? for Ada.",
    }
    missing = client.post(f"{BASE}/prompts/support/answer/-/render", json={"inputs": {}})
    error = assert_error(missing, 400, "missing_inputs", "question", "customer")
    assert error["details"] == {"missing": ["question", "customer"]}


def test_template_syntax_error_is_refused_with_the_line(client: TestClient) -> None:
    response = client.post(
        f"{BASE}/prompts/support/answer/-/versions", json=kernel_body("Fine\nBroken {{ question }")
    )
    error = assert_error(response, 400, "template_syntax_error", "line 2")
    assert error["details"]["line"] == 2
    assert_error(client.get(f"{BASE}/prompts/support/answer"), 404, "not_found")


def test_get_by_environment_returns_the_deployed_version(client: TestClient) -> None:
    old = save(client, "support/answer", "Old {{ q }}")
    new = save(client, "support/answer", "New {{ q }}")
    assert_error(
        client.get(
            f"{BASE}/prompts/support/answer/-/version", params={"environment": "production"}
        ),
        404,
        "not_found",
        "Nothing is deployed to 'production'",
    )
    deploy(client, "support/answer", old["id"])
    served = client.get(
        f"{BASE}/prompts/support/answer/-/version", params={"environment": "production"}
    )
    assert served.json()["id"] == old["id"]
    assert served.json()["environments"] == ["production"]
    latest = client.get(f"{BASE}/prompts/support/answer/-/version").json()
    assert latest["id"] == new["id"]
    by_prefix = client.get(
        f"{BASE}/prompts/support/answer/-/version", params={"version": old["id"][:6]}
    )
    assert by_prefix.json()["id"] == old["id"]


def test_diff_two_versions(client: TestClient) -> None:
    a = save(client, "support/answer", "Hello {{ q }}", parameters={"temperature": 0.1})
    b = save(client, "support/answer", "Hi {{ q }}", parameters={"temperature": 0.9})
    diff = client.get(
        f"{BASE}/prompts/support/answer/-/diff", params={"from": a["id"], "to": b["id"]}
    ).json()
    assert "-Hello {{ q }}" in diff["template"] and "+Hi {{ q }}" in diff["template"]
    assert diff["changes"] == [{"field": "parameters.temperature", "before": 0.1, "after": 0.9}]


def test_projects_isolate_prompts(client: TestClient, server: Server) -> None:
    browser = server.browser()
    assert browser.post(f"{BASE}/projects", json={"name": "team-b"}).status_code == 201
    save(client, "support/answer")
    other = {"Promptloop-Project": "team-b"}
    assert_error(browser.get(f"{BASE}/prompts/support/answer", headers=other), 404, "not_found")
    assert browser.get(f"{BASE}/prompts", headers=other).json()["data"] == []
    assert browser.get(f"{BASE}/prompts/support/answer").status_code == 200
    ghost = {"Promptloop-Project": "ghost"}
    assert_error(browser.get(f"{BASE}/prompts", headers=ghost), 404, "not_found")
    assert_error(browser.post(f"{BASE}/projects", json={"name": "team-b"}), 409, "conflict")
