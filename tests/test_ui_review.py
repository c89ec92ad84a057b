"""The review page in-process, on both databases: pending human judgments oldest first with
what to judge, a judgment given through the form leaves the queue (bad values are refused next
to the field and stay pending), and viewers read the queue but cannot judge."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from promptloop.providers.base import ChatRequest
from tests.conftest import Server
from tests.fakes import FakeProvider, registered
from tests.helpers import BASE, save

WORDS = ["apple", "river", "stone"]
REVIEW = "/p/default/review"


def respond(request: ChatRequest) -> str:
    text = str((request.messages or [{}])[-1].get("content", ""))
    return text.rsplit(" ", 1)[-1].upper()


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with registered(FakeProvider(respond=respond)) as provider:
        yield provider


def pending(client: TestClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get(f"{BASE}/judgments/pending").json()
    return found


def run_with_human_review(client: TestClient) -> str:
    """A finished run over three words whose `quality` judgments (a number) wait for people."""
    version = save(client, "shout", "Shout {{ word }}", provider="fake", model="upper")["id"]
    response = client.post(
        f"{BASE}/datasets/words/-/versions",
        json={"datapoints": [{"inputs": {"word": w}, "target": w.upper()} for w in WORDS]},
    )
    assert response.status_code in (200, 201), response.text
    response = client.post(
        f"{BASE}/evaluators/quality/-/versions",
        json={
            "kind": "human",
            "returns": "number",
            "description": "How well is the word shouted, 1 to 5?",
        },
    )
    assert response.status_code in (200, 201), response.text
    response = client.post(
        f"{BASE}/evaluations",
        json={
            "dataset": "words",
            "candidates": [{"prompt": "shout", "version": version}],
            "evaluators": ["quality"],
        },
    )
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"{BASE}/evaluations/{run_id}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return run_id


def test_a_judgment_given_through_the_queue_leaves_it(
    fake: FakeProvider, client: TestClient, server: Server
) -> None:
    run_id = run_with_human_review(client)
    waiting = pending(client)
    assert len(waiting) == 3
    browser = server.browser()
    page = browser.get(REVIEW)
    assert page.status_code == 200
    text = page.text
    # Oldest first, each with its question, inputs, output, target and a number field.
    ids = re.findall(r'<article class="card review-item" id="judgment-([0-9a-f]+)"', text)
    assert ids == [w["id"] for w in waiting]
    assert "How well is the word shouted, 1 to 5?" in text
    first = text[text.index(f'id="judgment-{ids[0]}"') :].split("</article>")[0]
    assert "&#34;apple&#34;" in first or '"apple"' in first
    assert first.count("APPLE") == 2  # the output and the target
    assert 'name="value"' in first and "Score" in first and f"/logs/{waiting[0]['log_id']}" in first

    bad = browser.post(
        f"{REVIEW}/{ids[0]}",
        data={"value": "great", "returns": "number", "explanation": "typed"},
        headers={"HX-Request": "true"},
    )
    assert bad.status_code == 400
    assert bad.text.lstrip().startswith('<div id="review-queue">')
    assert f'id="error-{ids[0]}">&#39;great&#39; is not a number.' in bad.text
    assert 'aria-invalid="true"' in bad.text and ">typed</textarea>" in bad.text
    assert len(pending(client)) == 3

    given = browser.post(
        f"{REVIEW}/{ids[0]}",
        data={"value": "4", "returns": "number", "explanation": "loud"},
        headers={"HX-Request": "true"},
    )
    assert given.status_code == 200
    assert "Judgment saved." in given.text
    assert f"judgment-{ids[0]}" not in given.text and f"judgment-{ids[1]}" in given.text
    assert [w["id"] for w in pending(client)] == ids[1:]

    # Without htmx: post, then back to the queue (of this run).
    plain = browser.post(
        f"{REVIEW}/{ids[1]}",
        data={"value": "5", "returns": "number", "run": run_id},
        follow_redirects=False,
    )
    assert plain.status_code == 303 and plain.headers["location"] == f"{REVIEW}?run={run_id}"
    browser.post(f"{REVIEW}/{ids[2]}", data={"value": "3", "returns": "number"})
    assert pending(client) == []
    assert "Nothing waiting for review." in browser.get(REVIEW).text
    summary = client.get(f"{BASE}/evaluations/{run_id}").json()["summary"]
    [result] = summary["results"]
    assert result["pending"] == 0 and result["mean"]["value"] == 4.0


def test_boolean_evaluators_get_yes_and_no_buttons(
    fake: FakeProvider, client: TestClient, server: Server
) -> None:
    version = save(client, "shout", "Shout {{ word }}", provider="fake", model="upper")["id"]
    client.post(
        f"{BASE}/datasets/one/-/versions", json={"datapoints": [{"inputs": {"word": "apple"}}]}
    )
    client.post(f"{BASE}/evaluators/ok/-/versions", json={"kind": "human", "returns": "boolean"})
    client.post(
        f"{BASE}/evaluations",
        json={
            "dataset": "one",
            "candidates": [{"prompt": "shout", "version": version}],
            "evaluators": ["ok"],
        },
    )
    deadline = time.monotonic() + 60
    while not pending(client):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    [item] = pending(client)
    browser = server.browser()
    page = browser.get(REVIEW).text
    assert 'name="value" value="true"' in page and 'name="value" value="false"' in page
    given = browser.post(
        f"{REVIEW}/{item['id']}",
        data={"value": "false", "returns": "boolean"},
        follow_redirects=False,
    )
    assert given.status_code == 303
    assert pending(client) == []


def test_viewers_read_the_queue_but_cannot_judge(
    fake: FakeProvider, client: TestClient, server: Server
) -> None:
    run_with_human_review(client)
    response = client.post(f"{BASE}/members", json={"email": "v@example.com", "role": "viewer"})
    assert response.status_code == 201, response.text
    reader = server.browser("v@example.com")
    page = reader.get(REVIEW)
    assert page.status_code == 200
    assert "can read this queue but not give judgments" in page.text
    assert (
        "How well is the word shouted" in page.text
        and '<form method="post" action="/p/default/review/' not in page.text
    )
    item = pending(client)[0]
    refused = reader.post(f"{REVIEW}/{item['id']}", data={"value": "5", "returns": "number"})
    assert refused.status_code == 403
    assert len(pending(client)) == 3


def test_choice_and_text_evaluators_get_buttons_and_a_text_box(
    fake: FakeProvider, client: TestClient, server: Server
) -> None:
    version = save(client, "shout", "Shout {{ word }}", provider="fake", model="upper")["id"]
    client.post(
        f"{BASE}/datasets/one/-/versions", json={"datapoints": [{"inputs": {"word": "apple"}}]}
    )
    client.post(
        f"{BASE}/evaluators/tone/-/versions",
        json={"kind": "human", "returns": "choice", "choices": ["calm", "loud"]},
    )
    client.post(f"{BASE}/evaluators/note/-/versions", json={"kind": "human", "returns": "text"})
    response = client.post(
        f"{BASE}/evaluations",
        json={
            "dataset": "one",
            "candidates": [{"prompt": "shout", "version": version}],
            "evaluators": ["tone", "note"],
        },
    )
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 60
    while len(pending(client)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    by_name = {p["evaluator"]: p["id"] for p in pending(client)}
    browser = server.browser()
    page = browser.get(REVIEW).text
    tone = page[page.index(f'id="judgment-{by_name["tone"]}"') :].split("</article>")[0]
    assert 'name="value" value="calm"' in tone and 'name="value" value="loud"' in tone
    note = page[page.index(f'id="judgment-{by_name["note"]}"') :].split("</article>")[0]
    assert '<textarea name="value"' in note

    empty = browser.post(f"{REVIEW}/{by_name['note']}", data={"value": "  ", "returns": "text"})
    assert empty.status_code == 400 and "non-empty text" in empty.text
    wrong = browser.post(f"{REVIEW}/{by_name['tone']}", data={"value": "x", "returns": "choice"})
    assert wrong.status_code == 400 and "one of calm, loud" in wrong.text
    assert len(pending(client)) == 2

    browser.post(f"{REVIEW}/{by_name['tone']}", data={"value": "loud", "returns": "choice"})
    browser.post(f"{REVIEW}/{by_name['note']}", data={"value": "Very loud.", "returns": "text"})
    assert pending(client) == []
