"""Signing in, sessions, CSRF, API keys, members, audit and provider keys, end to end."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from promptloop.api.app import create_app
from promptloop.settings import Settings
from tests.conftest import Server
from tests.helpers import BASE, assert_error, deploy, save

PASSWORD = "correct horse battery"


def first_link(capsys: pytest.CaptureFixture[str]) -> str:
    printed = capsys.readouterr().err
    match = re.search(r"(http://\S+/sign-in/link\?token=(\S+))", printed)
    assert match, printed
    return match.group(2)


def test_first_start_prints_a_one_time_link_that_sets_up_the_admin(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=f"{tmp_path}/data")
    with TestClient(create_app(settings), follow_redirects=False) as browser:
        token = first_link(capsys)
        page = browser.get(f"/sign-in/link?token={token}")
        assert page.status_code == 200 and "Continue" in page.text  # GET alone does not sign in
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        redeemed = browser.post("/sign-in/link", data={"token": token, "csrf_token": csrf})
        assert redeemed.status_code == 303 and redeemed.headers["location"] == "/account"
        cookie = redeemed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        account = browser.get("/account")
        assert "Choose your email and a password" in account.text
        session_csrf = re.search(r'name="csrf_token" value="([^"]+)"', account.text).group(1)  # type: ignore[union-attr]
        short = browser.post(
            "/account",
            data={"email": "ada@example.com", "new_password": "short", "csrf_token": session_csrf},
        )
        assert short.status_code == 400 and "at least 10 characters" in short.text
        saved = browser.post(
            "/account",
            data={
                "email": "ada@example.com",
                "name": "Ada",
                "new_password": PASSWORD,
                "csrf_token": session_csrf,
            },
        )
        assert saved.status_code == 200 and "Saved." in saved.text
        # The link was single-use.
        again = browser.post("/api/v1/auth/sign-in-link", json={"token": token})
        assert_error(again, 401, "unauthenticated", "invalid, used or expired")
        # And now a password sign-in works from a fresh browser.
        other = TestClient(browser.app, follow_redirects=False)
        form = other.get("/sign-in")
        form_csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        signed = other.post(
            "/sign-in",
            data={"email": "ADA@example.com", "password": PASSWORD, "csrf_token": form_csrf},
        )
        assert signed.status_code == 303
        assert "ada@example.com" in other.get("/projects").text
    # Once someone can sign in, a restart prints no link.
    with TestClient(create_app(settings)):
        assert "sign-in/link" not in capsys.readouterr().err


def test_the_api_requires_credentials_except_health(sqlite_client: TestClient) -> None:
    anonymous = TestClient(sqlite_client.app)
    assert anonymous.get(f"{BASE}/health").status_code == 200
    error = assert_error(
        anonymous.get(f"{BASE}/prompts"), 401, "unauthenticated", "promptloop keys create"
    )
    assert error["details"] is None
    assert anonymous.get(f"{BASE}/prompts").headers["www-authenticate"] == "Bearer"
    assert_error(
        anonymous.get(f"{BASE}/prompts", headers={"Authorization": "Basic abc"}),
        401,
        "unauthenticated",
        "Bearer",
    )
    assert_error(
        anonymous.get(f"{BASE}/prompts", headers={"Authorization": "Bearer plk_guess"}),
        401,
        "unauthenticated",
    )


def test_sign_in_errors_never_say_which_part_was_wrong_and_are_rate_limited(server: Server) -> None:
    browser = server.browser()
    browser.post(f"{BASE}/auth/password", json={"new_password": PASSWORD})
    anonymous = server.client()
    wrong_user = anonymous.post(
        f"{BASE}/auth/sign-in", json={"email": "nobody@x.org", "password": PASSWORD}
    )
    wrong_pass = anonymous.post(
        f"{BASE}/auth/sign-in", json={"email": "admin@localhost", "password": "nope"}
    )
    assert (
        wrong_user.json()["error"]["message"]
        == wrong_pass.json()["error"]["message"]
        == "Wrong email or password."
    )
    ok = anonymous.post(
        f"{BASE}/auth/sign-in", json={"email": "admin@localhost", "password": PASSWORD}
    )
    assert ok.status_code == 200 and ok.json()["csrf_token"]
    for _ in range(10):
        last = anonymous.post(
            f"{BASE}/auth/sign-in", json={"email": "admin@localhost", "password": "nope"}
        )
    error = assert_error(last, 429, "rate_limited", "try again in")
    assert int(last.headers["retry-after"]) >= 1 and error["details"]["retry_after"] >= 1
    # Even the right password is refused while the limit holds.
    blocked = anonymous.post(
        f"{BASE}/auth/sign-in", json={"email": "admin@localhost", "password": PASSWORD}
    )
    assert blocked.status_code == 429


def test_cookie_sessions_need_the_csrf_token_for_writes_and_end_on_sign_out(server: Server) -> None:
    browser = server.browser()
    csrf = browser.headers.pop("X-CSRF-Token")
    assert browser.get(f"{BASE}/prompts").status_code == 200
    refused = browser.post(f"{BASE}/prompts", json={"path": "a"})
    assert_error(refused, 403, "forbidden", "CSRF")
    wrong = browser.post(f"{BASE}/prompts", json={"path": "a"}, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    assert (
        browser.post(
            f"{BASE}/prompts", json={"path": "a"}, headers={"X-CSRF-Token": csrf}
        ).status_code
        == 201
    )
    me = browser.get(f"{BASE}/auth/me").json()
    assert me["email"] == "admin@localhost" and me["csrf_token"] == csrf
    assert me["projects"] == [{"project": "default", "role": "admin"}]
    cookie = browser.cookies["promptloop_session"]
    assert browser.post(f"{BASE}/auth/sign-out", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert_error(browser.get(f"{BASE}/prompts"), 401, "unauthenticated")
    # The old cookie is dead on the server too, not only forgotten by this browser.
    replay = server.client()
    replay.cookies.set("promptloop_session", cookie)
    assert_error(replay.get(f"{BASE}/prompts"), 401, "unauthenticated", "expired")


def test_changing_the_password_ends_other_sessions(server: Server) -> None:
    first = server.browser()
    first.post(f"{BASE}/auth/password", json={"new_password": PASSWORD})
    second = server.browser()
    response = second.post(
        f"{BASE}/auth/password",
        json={"current_password": "wrong wrong", "new_password": "another long one"},
    )
    assert_error(response, 400, "invalid_input", "current password is wrong")
    ok = second.post(
        f"{BASE}/auth/password",
        json={"current_password": PASSWORD, "new_password": "another long one"},
    )
    assert ok.status_code == 204
    assert first.get(f"{BASE}/prompts").status_code == 401


def test_api_keys_are_shown_once_stored_hashed_and_revocable(
    client: TestClient, settings: Settings
) -> None:
    created = client.post(f"{BASE}/api-keys", json={"name": "ci", "role": "member"})
    assert created.status_code == 201
    secret = created.json()["key"]
    assert secret.startswith("plk_") and len(secret) > 40
    assert created.json()["prefix"] == secret[:10]
    listed = client.get(f"{BASE}/api-keys").json()
    assert secret not in json.dumps(listed)
    ci = TestClient(client.app, headers={"Authorization": f"Bearer {secret}"})
    assert ci.get(f"{BASE}/prompts").status_code == 200
    used = next(k for k in client.get(f"{BASE}/api-keys").json() if k["name"] == "ci")
    assert used["last_used_at"] is not None
    engine = create_engine(settings.resolved_database_url())
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT key_hash FROM api_keys WHERE name = 'ci'")
        ).scalar_one()
    engine.dispose()
    assert secret not in stored and len(stored) == 64
    revoked = client.delete(f"{BASE}/api-keys/{created.json()['id']}")
    assert revoked.json()["revoked_at"] is not None
    assert_error(ci.get(f"{BASE}/prompts"), 401, "unauthenticated", "revoked")


def test_members_get_a_sign_in_link_and_the_last_admin_stays(server: Server) -> None:
    admin = server.browser()
    added = admin.post(
        f"{BASE}/members", json={"email": "Bo@Example.com", "role": "member", "name": "Bo"}
    )
    assert added.status_code == 201
    body = added.json()
    assert body["email"] == "bo@example.com" and body["sign_in_url"]
    bo = server.client()
    token = body["sign_in_url"].split("token=")[1]
    me = bo.post(f"{BASE}/auth/sign-in-link", json={"token": token}).json()
    assert (
        me["projects"] == [{"project": "default", "role": "member"}] and me["has_password"] is False
    )
    assert_error(
        admin.post(f"{BASE}/members", json={"email": "bo@example.com", "role": "viewer"}),
        409,
        "conflict",
    )
    assert (
        admin.patch(f"{BASE}/members/bo@example.com", json={"role": "viewer"}).json()["role"]
        == "viewer"
    )
    assert_error(
        admin.patch(f"{BASE}/members/admin@localhost", json={"role": "member"}),
        409,
        "conflict",
        "at least one admin",
    )
    assert_error(
        admin.post(f"{BASE}/members", json={"email": "x@y.z", "role": "owner"}),
        400,
        "invalid_input",
        "Unknown role",
    )
    assert admin.delete(f"{BASE}/members/bo@example.com").status_code == 204
    assert [m["email"] for m in admin.get(f"{BASE}/members").json()] == ["admin@localhost"]


def test_audit_log_records_who_did_what_from_where_and_exports(
    client: TestClient, server: Server
) -> None:
    version = save(client, "support/answer")["id"]
    deploy(client, "support/answer", version)
    key = client.post(f"{BASE}/api-keys", json={"name": "ci", "role": "viewer"}).json()
    client.delete(f"{BASE}/api-keys/{key['id']}")
    client.put(f"{BASE}/provider-keys/openai", json={"api_key": "sk-secret-9876"})
    server.browser().post(f"{BASE}/members", json={"email": "cy@example.com", "role": "member"})
    events = client.get(f"{BASE}/audit").json()["data"]
    actions = [e["action"] for e in events]
    assert actions == [
        "member.add",
        "provider_key.set",
        "api_key.revoke",
        "api_key.create",
        "prompt.deploy",
        "api_key.create",  # the tests' own key, made by `promptloop keys create`'s code path
    ]
    assert (events[-1]["actor_kind"], events[-1]["actor"]) == ("system", "system")
    deployed = events[-2]
    assert deployed["actor"] == "key:tests" and deployed["actor_kind"] == "api_key"
    assert deployed["details"] == {"environment": "production", "from": None, "to": version}
    assert deployed["address"] == "testclient"
    assert "sk-secret" not in json.dumps(events)
    lines = client.get(f"{BASE}/audit/export", params={"format": "jsonl"}).text.splitlines()
    assert [json.loads(line)["action"] for line in lines] == list(reversed(actions))
    exported = client.get(f"{BASE}/audit/export", params={"format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows[1]["action"] == "prompt.deploy" and json.loads(rows[1]["details"])["to"] == version


def test_provider_keys_are_encrypted_at_rest_and_never_returned(
    client: TestClient, settings: Settings
) -> None:
    stored = client.put(f"{BASE}/provider-keys/openai", json={"api_key": "sk-live-abcdefgh-4321"})
    assert stored.status_code == 200
    assert stored.json()["hint"] == "4321" and "sk-live" not in stored.text
    assert [k["provider"] for k in client.get(f"{BASE}/provider-keys").json()] == ["openai"]
    engine = create_engine(settings.resolved_database_url())
    with engine.connect() as connection:
        ciphertext = connection.execute(
            text("SELECT ciphertext FROM provider_credentials")
        ).scalar_one()
    engine.dispose()
    assert "sk-live" not in ciphertext and "abcdefgh" not in ciphertext
    key_file = settings.data_dir / "secret.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert client.delete(f"{BASE}/provider-keys/openai").status_code == 204
    assert_error(client.delete(f"{BASE}/provider-keys/openai"), 404, "not_found")
    assert_error(
        client.put(f"{BASE}/provider-keys/Bad Name", json={"api_key": "x"}), 422, "validation_error"
    )


def test_protected_environments_gate_deploys_by_role(client: TestClient, server: Server) -> None:
    version = save(client, "support/answer")["id"]
    member = server.client(server.key(role="member"))
    refused = member.put(
        f"{BASE}/prompts/support/answer/-/deployments/production", json={"version": version}
    )
    error = assert_error(refused, 403, "forbidden", "protected", "developer")
    assert error["details"] == {"role": "member", "needed": "developer"}
    assert (
        member.put(
            f"{BASE}/prompts/support/answer/-/deployments/staging", json={"version": version}
        ).status_code
        == 200
    )
    assert (
        client.patch(f"{BASE}/environments/staging", json={"protected": True}).json()["protected"]
        is True
    )
    again = member.put(
        f"{BASE}/prompts/support/answer/-/deployments/staging", json={"version": version}
    )
    assert_error(again, 403, "forbidden", "'staging' is protected")


def test_admins_read_the_audit_log_in_the_browser(client: TestClient, server: Server) -> None:
    version = save(client, "support/answer")["id"]
    deploy(client, "support/answer", version)
    admin = server.browser()
    page = admin.get("/audit")
    assert page.status_code == 200
    assert "prompt.deploy" in page.text and "key:tests" in page.text
    exported = admin.get("/audit/export", params={"format": "csv"})
    assert (
        exported.headers["content-type"].startswith("text/csv") and "prompt.deploy" in exported.text
    )
    admin.post(f"{BASE}/members", json={"email": "vi@example.com", "role": "viewer"})
    viewer = server.client()
    link = admin.post(f"{BASE}/members/vi@example.com/sign-in-link").json()["sign_in_url"]
    viewer.post(f"{BASE}/auth/sign-in-link", json={"token": link.split("token=")[1]})
    refused = viewer.get("/audit")
    assert refused.status_code == 403 and "cannot read the audit log" in refused.text
    assert viewer.get("/audit/export").status_code == 403
