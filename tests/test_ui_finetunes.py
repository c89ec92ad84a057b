"""The fine-tunes pages in-process, on both databases: the list, the start form (field errors,
nothing stored on bad input, developers only), a job's live status through to its registered
model and its training set downloads, and cancelling. Jobs run with method `openai` against a
fake of OpenAI's fine-tuning API, so they finish in a moment."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from promptloop.services.finetunes import Trainer
from tests.conftest import Server
from tests.fake_finetuning import FakeFineTuning
from tests.helpers import BASE, save

UI = "/p/default/fine-tunes"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFineTuning]:
    monkeypatch.setattr(Trainer, "openai_poll_s", 0.05)
    with FakeFineTuning(steps=3) as fake:
        yield fake


def _setup(client: TestClient, fake: FakeFineTuning) -> str:
    stored = client.put(
        f"{BASE}/provider-keys/openai", json={"api_key": "sk-ui", "base_url": fake.openai_url}
    )
    assert stored.status_code == 200, stored.text
    version: str = save(client, "orders/extract", "Extract: {{ text }}")["id"]
    points = [{"inputs": {"text": f"order {i}"}, "target": f"#{i}"} for i in range(8)]
    saved = client.post(f"{BASE}/datasets/orders/-/versions", json={"datapoints": points})
    assert saved.status_code == 201, saved.text
    made = client.post(
        f"{BASE}/evaluators/exact/-/versions", json={"kind": "builtin", "builtin": "exact_match"}
    )
    assert made.status_code == 201, made.text
    return version


def _form(version: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": "orders-ui",
        "dataset": "orders",
        "prompt": "orders/extract",
        "version": version,
        "method": "openai",
        "base_model": "openai/gpt-4o-mini-2024-07-18",
        "hyperparameters": '{"n_epochs": 1}',
        "held_out": "0.25",
        **changes,
    }


def _status(browser: TestClient, tune_id: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        html = browser.get(f"{UI}/{tune_id}/-/status").text
        found = re.search(r'data-status="(\w+)"', html)
        assert found, html
        if found.group(1) in ("completed", "failed", "cancelled"):
            return html
        assert time.monotonic() < deadline, html
        time.sleep(0.05)


def _tunes(client: TestClient) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = client.get(f"{BASE}/fine-tunes").json()["data"]
    return data


def test_the_start_form_refuses_bad_input_next_to_the_field_and_stores_nothing(
    client: TestClient, server: Server, fake: FakeFineTuning
) -> None:
    version = _setup(client, fake)
    browser = server.browser()
    empty = browser.get(UI)
    assert empty.status_code == 200 and "No fine-tunes yet." in empty.text
    assert f'href="{UI}/-/new"' in empty.text
    form = browser.get(f"{UI}/-/new", params={"dataset": "orders", "method": "openai"})
    assert form.status_code == 200
    assert 'value="orders"' in form.text and 'value="openai/gpt-4o-mini-2024-07-18"' in form.text
    assert 'name="evaluator" value="exact"' in form.text

    bad = browser.post(
        f"{UI}/-/new",
        data=_form(version, name="", hyperparameters="{not json", held_out="2"),
    )
    assert bad.status_code == 400
    assert bad.text.count('class="field-error"') == 3 and 'aria-invalid="true"' in bad.text
    assert "Give the name." in bad.text and "A JSON object" in bad.text
    assert "between 0 and 1" in bad.text
    assert "{not json" in bad.text and 'value="orders/extract"' in bad.text  # kept as typed

    for changes, field, fragment in [
        ({"base_model": "local/smollm2-135m"}, "base_model", "openai/&lt;a model"),
        ({"hyperparameters": '{"r": 8}'}, "hyperparameters", "unknown r"),
        ({"dataset": "nope"}, "dataset", "No dataset"),
        ({"prompt": "nope/nope"}, "prompt", "nope/nope"),
        ({"name": "Bad Name"}, "name", "not allowed"),
        ({"evaluator": "ghost"}, "evaluators", "ghost"),
    ]:
        refused = browser.post(f"{UI}/-/new", data=_form(version, **changes))
        assert refused.status_code == 400, (changes, refused.text)
        assert f'id="{field}-error"' in refused.text, (changes, refused.text)
        assert fragment in refused.text, (changes, refused.text)
    assert _tunes(client) == [] and fake.jobs == {}


def test_a_started_job_shows_progress_then_its_model_lineage_and_downloads(
    client: TestClient, server: Server, fake: FakeFineTuning
) -> None:
    version = _setup(client, fake)
    browser = server.browser()
    started = browser.post(
        f"{UI}/-/new", data=_form(version, evaluator="exact"), follow_redirects=False
    )
    assert started.status_code == 303, started.text
    [tune] = _tunes(client)
    assert started.headers["location"] == f"{UI}/{tune['id']}"
    detail = browser.get(started.headers["location"])
    assert detail.status_code == 200 and "Fine-tune orders-ui" in detail.text
    assert "orders/extract" in detail.text and "openai/gpt-4o-mini-2024-07-18" in detail.text

    html = _status(browser, tune["id"])
    assert 'data-status="completed"' in html
    assert "hx-trigger" not in html  # finished: the page stops polling
    model = _tunes(client)[0]["model"]
    assert model.startswith("openai/ft:gpt-4o-mini-2024-07-18:promptloop:orders-ui:")
    assert f'<code data-fact="model">{model}</code>' in html
    assert '<dd data-fact="step">3 / 3</dd>' in html
    evaluation = _tunes(client)[0]["evaluation"]
    assert evaluation and f'href="/p/default/evaluations/{evaluation}"' in html
    listed = browser.get(UI).text
    assert "orders-ui" in listed and model in listed and "completed" in listed

    chat = browser.get(f"{UI}/{tune['id']}/-/export", params={"format": "openai"})
    assert chat.status_code == 200
    lines = [json.loads(line) for line in chat.text.splitlines()]
    assert len(lines) == 8 and lines[0]["messages"][-1]["role"] == "assistant"
    plain = browser.get(f"{UI}/{tune['id']}/-/export", params={"format": "jsonl"})
    rows = [json.loads(line) for line in plain.text.splitlines()]
    assert len(rows) == 8 and rows[0]["target"].startswith("#")


def test_cancel_with_confirmation_and_roles(
    client: TestClient, server: Server, fake: FakeFineTuning
) -> None:
    fake.hold = True
    version = _setup(client, fake)
    browser = server.browser()
    assert browser.post(f"{UI}/-/new", data=_form(version)).status_code == 200
    [tune] = _tunes(client)
    deadline = time.monotonic() + 30
    while not fake.jobs:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    running = browser.get(f"{UI}/{tune['id']}").text
    assert 'hx-trigger="every 2s"' in running and "Cancel fine-tune" in running
    assert 'hx-confirm="Cancel fine-tune orders-ui?' in running

    email = "member-ft@example.com"
    added = client.post(f"{BASE}/members", json={"email": email, "role": "member"})
    assert added.status_code in (200, 201), added.text
    member = server.browser(email)
    page = member.get(f"{UI}/{tune['id']}").text
    assert "Cancel fine-tune" not in page
    assert f'href="{UI}/-/new"' not in member.get(UI).text
    assert member.get(f"{UI}/-/new").status_code == 403
    assert member.post(f"{UI}/-/new", data=_form(version, name="other")).status_code == 403
    assert member.post(f"{UI}/{tune['id']}/-/cancel").status_code == 403

    no_csrf = server.client()
    no_csrf.cookies = browser.cookies
    assert no_csrf.post(f"{UI}/{tune['id']}/-/cancel").status_code == 403

    cancelled = browser.post(f"{UI}/{tune['id']}/-/cancel", headers={"HX-Request": "true"})
    assert cancelled.status_code == 200, cancelled.text
    assert 'id="fine-tune-status"' in cancelled.text
    html = _status(browser, tune["id"])
    assert 'data-status="cancelled"' in html and "Cancel fine-tune" not in html
    assert fake.cancelled == list(fake.jobs)
    assert [t["name"] for t in _tunes(client)] == ["orders-ui"]  # the member started nothing
