"""Request bodies and small helpers the API tests share."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

BASE = "/api/v1"


def kernel_body(
    content: str = "Answer {{ question }} for {{ customer }}.", **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": content},
        ],
    }
    body.update(overrides)
    return body


def save(
    client: TestClient,
    path: str,
    content: str = "Answer {{ question }} for {{ customer }}.",
    **extra: Any,
) -> dict[str, Any]:
    response = client.post(f"{BASE}/prompts/{path}/-/versions", json=kernel_body(content, **extra))
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


def deploy(
    client: TestClient, path: str, version: str, environment: str = "production"
) -> dict[str, Any]:
    response = client.put(
        f"{BASE}/prompts/{path}/-/deployments/{environment}", json={"version": version}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_error(response: Any, status: int, code: str, *fragments: str) -> dict[str, Any]:
    """The response is the one error shape with this status and code, and mentions each fragment."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    for fragment in fragments:
        assert fragment in body["error"]["message"], body["error"]["message"]
    assert "Traceback" not in response.text
    error: dict[str, Any] = body["error"]
    return error
