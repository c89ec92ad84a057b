"""Calling prompts and logging calls, on both databases, with a fake provider."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from promptloop.providers.base import ProviderError
from tests.fakes import FakeProvider, registered
from tests.helpers import BASE, assert_error, deploy, save


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with registered(FakeProvider()) as provider:
        yield provider


@pytest.fixture
def app_client(fake: FakeProvider, client: TestClient) -> TestClient:
    # The fake registers before the app starts, so the catalogue knows its prices.
    return client


def test_call_the_deployed_version_and_find_its_log(fake: FakeProvider, client: TestClient) -> None:
    version = save(client, "support/answer", provider="fake", model="fake-1")["id"]
    deploy(client, "support/answer", version)
    client.put(f"{BASE}/models/fake/fake-1", json={"input_price": 1.0, "output_price": 2.0})
    fake.queue("Your order ships today.")
    response = client.post(
        f"{BASE}/prompts/support/answer/-/call",
        json={
            "inputs": {"question": "Where is my order?", "customer": "Ada"},
            "end_user": "u-1",
            "metadata": {"team": "eu"},
        },
    )
    assert response.status_code == 200, response.text
    call = response.json()
    assert call["output"] == "Your order ships today." and call["version"] == version
    assert call["usage"] == {"prompt_tokens": 10, "output_tokens": 4}
    assert call["cost"] == pytest.approx((10 * 1.0 + 4 * 2.0) / 1e6)
    request, _ = fake.requests[0]
    assert (
        request.messages is not None
        and request.messages[1]["content"] == "Answer Where is my order? for Ada."
    )
    log = client.get(f"{BASE}/logs/{call['log_id']}").json()
    assert (log["prompt"], log["version"], log["environment"], log["source"]) == (
        "support/answer",
        version,
        "production",
        "api",
    )
    assert log["output"] == "Your order ships today." and log["end_user"] == "u-1"
    assert log["inputs"] == {"question": "Where is my order?", "customer": "Ada"}
    assert log["latency_ms"] > 0 and log["cost"] == call["cost"]
    listed = client.get(
        f"{BASE}/logs", params={"prompt": "support/answer", "metadata": "team:eu"}
    ).json()
    assert [entry["id"] for entry in listed["data"]] == [call["log_id"]]
    assert client.get(f"{BASE}/logs", params={"metadata": "team:us"}).json()["data"] == []


def test_a_provider_failure_is_logged_and_answered_with_its_status(
    fake: FakeProvider, client: TestClient
) -> None:
    version = save(client, "a", provider="fake", model="fake-1")["id"]
    fake.queue(ProviderError("upstream overloaded", status=503, kind="overloaded"))
    response = client.post(
        f"{BASE}/prompts/a/-/call",
        json={"version": version, "inputs": {"question": "q", "customer": "c"}},
    )
    error = assert_error(response, 503, "overloaded", "upstream overloaded")
    log = client.get(f"{BASE}/logs/{error['details']['log_id']}").json()
    assert "upstream overloaded" in log["error"] and log["output"] is None
    assert [
        entry["id"] for entry in client.get(f"{BASE}/logs", params={"error": True}).json()["data"]
    ] == [log["id"]]


def test_streaming_sends_deltas_then_done_with_the_log_id(
    fake: FakeProvider, client: TestClient
) -> None:
    version = save(client, "a", provider="fake", model="fake-1")["id"]
    fake.queue("one two three")
    with client.stream(
        "POST",
        f"{BASE}/prompts/a/-/call",
        json={"version": version, "stream": True, "inputs": {"question": "q", "customer": "c"}},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [block for block in response.read().decode().split("\n\n") if block]
    kinds = [block.split("\n")[0] for block in events]
    assert kinds == ["event: delta"] * 3 + ["event: done"]
    done = json.loads(events[-1].split("data: ", 1)[1])
    log = client.get(f"{BASE}/logs/{done['log_id']}").json()
    assert log["output"] == "one two three" and log["ttft_ms"] is not None


def test_playground_drafts_are_logged_and_linked_to_the_matching_version(
    fake: FakeProvider, client: TestClient
) -> None:
    body = {
        "provider": "fake",
        "model": "fake-1",
        "messages": [{"role": "user", "content": "Hi {{ name }}"}],
    }
    saved = client.post(f"{BASE}/prompts/greet/-/versions", json=body).json()
    draft = client.post(
        f"{BASE}/playground/call", json={**body, "prompt": "greet", "inputs": {"name": "Bo"}}
    ).json()
    log = client.get(f"{BASE}/logs/{draft['log_id']}").json()
    assert (log["source"], log["prompt"], log["version"]) == ("playground", "greet", saved["id"])
    changed = {**body, "messages": [{"role": "user", "content": "Hello {{ name }}"}]}
    other = client.post(
        f"{BASE}/playground/call", json={**changed, "prompt": "greet", "inputs": {"name": "Bo"}}
    ).json()
    unsaved = client.get(f"{BASE}/logs/{other['log_id']}").json()
    assert (
        unsaved["version"] is None
        and unsaved["kernel"]["messages"][0]["content"] == "Hello {{ name }}"
    )


def test_logs_from_your_own_code_single_and_batch_with_safe_retries(client: TestClient) -> None:
    save(client, "support/answer")
    client.put(
        f"{BASE}/models/openai/gpt-4o-mini", json={"input_price": 0.15, "output_price": 0.60}
    )
    one = client.post(
        f"{BASE}/logs",
        json={
            "prompt": "support/answer",
            "output": "hi",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "prompt_tokens": 1000,
            "output_tokens": 1000,
        },
    )
    assert one.status_code == 201
    log = client.get(f"{BASE}/logs/{one.json()['id']}").json()
    assert log["cost"] == pytest.approx(0.00075)  # from the catalogue's prices
    batch = [
        {
            "id": f"client-id-{i:04d}",
            "output": f"o{i}",
            "source": "sdk",
            "end_user": "u2" if i % 2 else "u1",
        }
        for i in range(50)
    ]
    first = client.post(f"{BASE}/logs/batch", json={"logs": batch})
    again = client.post(f"{BASE}/logs/batch", json={"logs": batch})  # a retry after a lost answer
    assert first.status_code == again.status_code == 201
    everything = client.get(f"{BASE}/logs", params={"source": "sdk", "limit": 200}).json()["data"]
    assert len(everything) == 50
    assert (
        len(client.get(f"{BASE}/logs", params={"end_user": "u1", "limit": 200}).json()["data"])
        == 25
    )
    unknown = client.post(
        f"{BASE}/logs",
        json={
            "output": "x",
            "provider": "nobody",
            "model": "m",
            "prompt_tokens": 1,
            "output_tokens": 1,
        },
    )
    assert client.get(f"{BASE}/logs/{unknown.json()['id']}").json()["cost"] is None


def test_log_pagination_and_bad_input(client: TestClient) -> None:
    client.post(f"{BASE}/logs/batch", json={"logs": [{"output": str(i)} for i in range(7)]})
    page = client.get(f"{BASE}/logs", params={"limit": 3}).json()
    rest = client.get(f"{BASE}/logs", params={"limit": 10, "cursor": page["next_cursor"]}).json()
    assert [e["output"] for e in page["data"] + rest["data"]] == [
        str(i) for i in reversed(range(7))
    ]
    assert_error(
        client.post(f"{BASE}/logs", json={"prompt": "no/such", "output": "x"}), 404, "not_found"
    )
    assert_error(
        client.post(f"{BASE}/logs", json={"output": "x", "prompt_tokens": -1}),
        422,
        "validation_error",
    )
    assert_error(client.post(f"{BASE}/logs/batch", json={"logs": []}), 422, "validation_error")
    assert_error(
        client.get(f"{BASE}/logs", params={"metadata": "nocolon"}),
        400,
        "invalid_input",
        "key:value",
    )
    assert_error(client.get(f"{BASE}/logs/nope"), 404, "not_found")
    assert client.get(f"{BASE}/logs", params={"limit": 200}).json()["data"].__len__() == 7


def test_calling_a_provider_without_a_key_says_how_to_add_one(client: TestClient) -> None:
    save(client, "a")  # provider openai
    response = client.post(
        f"{BASE}/prompts/a/-/call",
        json={"inputs": {"question": "q", "customer": "c"}, "environment": None},
    )
    assert response.status_code in (400, 404)


def test_times_without_a_zone_are_utc(client: TestClient) -> None:
    client.post(f"{BASE}/logs", json={"output": "x", "created_at": "2026-01-02T03:04:05"})
    found = client.get(
        f"{BASE}/logs", params={"since": "2026-01-02T03:00:00", "until": "2026-01-02T04:00:00"}
    )
    assert found.status_code == 200
    assert [log["created_at"] for log in found.json()["data"]] == ["2026-01-02T03:04:05Z"]


def test_a_stream_the_client_abandons_is_still_logged(
    fake: FakeProvider, client: TestClient
) -> None:
    version = save(client, "a", provider="fake", model="fake-1")["id"]
    fake.queue(" ".join(f"w{i}" for i in range(2000)))
    body = {"version": version, "stream": True, "inputs": {"question": "q", "customer": "c"}}
    with client.stream("POST", f"{BASE}/prompts/a/-/call", json=body) as response:
        first = next(response.iter_lines())
        assert first == "event: delta"
    deadline = time.monotonic() + 10
    logs: list[dict[str, object]] = []
    while time.monotonic() < deadline and not logs:
        logs = client.get(f"{BASE}/logs", params={"prompt": "a"}).json()["data"]
        time.sleep(0.05)
    assert len(logs) == 1
    assert "client_disconnected" in str(logs[0]["error"])
