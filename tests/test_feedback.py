"""Feedback on logs: votes, actions, corrections and comments; declared kinds; browser feedback
tokens; consent; filters and rates. On both databases, with a fake provider."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from promptloop.services import feedback
from tests.conftest import Server
from tests.fakes import FakeProvider, registered
from tests.helpers import BASE, assert_error, deploy, save

INPUTS = {"question": "Where is my order?", "customer": "Ada"}


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with registered(FakeProvider()) as provider:
        yield provider


def call(
    client: TestClient, fake: FakeProvider, output: str = "It ships today.", **body: Any
) -> dict[str, Any]:
    fake.queue(output)
    response = client.post(f"{BASE}/prompts/support/answer/-/call", json={"inputs": INPUTS, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def give(client: TestClient, log_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"{BASE}/logs/{log_id}/feedback", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def feedback_of(client: TestClient, log_id: str) -> list[dict[str, Any]]:
    response = client.get(f"{BASE}/logs/{log_id}/feedback")
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def log_ids(client: TestClient, **params: Any) -> list[str]:
    response = client.get(f"{BASE}/logs", params=params)
    assert response.status_code == 200, response.text
    return [log["id"] for log in response.json()["data"]]


@pytest.fixture
def deployed(fake: FakeProvider, client: TestClient) -> str:
    version: str = save(client, "support/answer", provider="fake", model="fake-1")["id"]
    deploy(client, "support/answer", version)
    return version


def test_votes_actions_corrections_and_comments_are_kept_with_who_and_when(
    fake: FakeProvider, client: TestClient, deployed: str
) -> None:
    log_id = call(client, fake, "Your order ships on Monday.")["log_id"]
    vote = give(client, log_id, name="rating", value="down", end_user="u-7")
    assert (vote["value"], vote["score"], vote["end_user"], vote["reviewer"]) == (
        False,
        0.0,
        "u-7",
        None,
    )
    assert vote["recorded_by"] == "key:tests" and vote["source"] == "api" and vote["current"]
    copied = give(client, log_id, name="copied", delay_s=4.5, source="sdk")
    assert copied["delay_s"] == 4.5 and copied["score"] == 1.0 and copied["reviewer"] == "key:tests"
    correction = give(client, log_id, name="correction", value="Your order ships on Tuesday.")
    assert 0.8 < correction["similarity"] < 1.0
    assert "-Your order ships on Monday." in correction["diff"]
    assert "+Your order ships on Tuesday." in correction["diff"]
    give(client, log_id, name="comment", value="Wrong day.")

    listed = feedback_of(client, log_id)
    assert [f["name"] for f in listed] == ["rating", "copied", "correction", "comment"]
    assert all(datetime.fromisoformat(f["created_at"]) <= datetime.now(UTC) for f in listed)

    other = call(client, fake)["log_id"]
    give(client, other, name="rating", value="up")
    silent = call(client, fake)["log_id"]
    assert log_ids(client, feedback="down") == [log_id]
    assert log_ids(client, feedback="up") == [other]
    assert log_ids(client, feedback=["correction", "copied"]) == [log_id]
    assert log_ids(client, feedback="none") == [silent]
    assert set(log_ids(client, feedback="any")) == {log_id, other}
    assert_error(
        client.get(f"{BASE}/logs", params={"feedback": "thumbs"}),
        400,
        "invalid_input",
        "Unknown feedback filter 'thumbs'",
        "copied",
    )


def test_a_newer_vote_by_the_same_person_replaces_the_older_in_rates_and_filters(
    fake: FakeProvider, client: TestClient, deployed: str
) -> None:
    log_id = call(client, fake)["log_id"]
    give(client, log_id, name="rating", value="up", end_user="u-1")
    give(client, log_id, name="rating", value="down", end_user="u-1")
    give(client, log_id, name="rating", value="up", end_user="u-2")
    listed = feedback_of(client, log_id)
    assert [(f["value"], f["current"]) for f in listed] == [
        (True, False),
        (False, True),
        (True, True),
    ]
    [group] = client.get(f"{BASE}/feedback/stats").json()
    [rating] = group["kinds"]
    assert (rating["count"], rating["up"], rating["down"]) == (2, 1, 1)
    assert log_ids(client, feedback="down") == [log_id]


def test_declared_kinds_check_every_value_and_refuse_bad_ones_without_storing(
    fake: FakeProvider, client: TestClient, server: Server, deployed: str
) -> None:
    created = client.post(
        f"{BASE}/feedback-kinds",
        json={"name": "stars", "category": "vote", "type": "number", "minimum": 1, "maximum": 5},
    )
    assert created.status_code == 201, created.text
    assert created.json()["higher_is_better"] is True
    client.post(
        f"{BASE}/feedback-kinds",
        json={"name": "tone", "category": "vote", "type": "choice", "choices": ["curt", "kind"]},
    )
    names = [k["name"] for k in client.get(f"{BASE}/feedback-kinds").json()]
    assert {"rating", "copied", "retained", "correction", "comment", "stars", "tone"} <= set(names)

    log_id = call(client, fake)["log_id"]
    assert give(client, log_id, name="stars", value=4)["score"] == 0.75
    assert give(client, log_id, name="tone", value="kind")["value"] == "kind"
    for body, fragment in [
        ({"name": "stars", "value": 6}, "from 1 to 5, not 6"),
        ({"name": "stars", "value": "great"}, "takes a number"),
        ({"name": "rating", "value": "sideways"}, "'up' or 'down'"),
        ({"name": "tone", "value": "rude"}, "one of curt, kind"),
        ({"name": "comment", "value": "  "}, "non-empty text"),
        ({"name": "thumbs", "value": "up"}, "no feedback kind 'thumbs'"),
        ({"name": "rating", "value": "up", "delay_s": 3}, "Only actions take delay_s"),
    ]:
        response = client.post(f"{BASE}/logs/{log_id}/feedback", json=body)
        assert_error(response, 400, "invalid_input", fragment)
    assert_error(
        client.post(f"{BASE}/logs/{log_id}/feedback", json={"name": "copied", "delay_s": -1}),
        422,
        "validation_error",
    )
    assert_error(
        client.post(f"{BASE}/logs/nope/feedback", json={"name": "rating", "value": "up"}),
        404,
        "not_found",
        "No log 'nope'",
    )
    assert len(feedback_of(client, log_id)) == 2  # nothing from the refused ones

    for body, status, fragment in [
        ({"name": "stars", "category": "vote", "minimum": 1, "maximum": 5}, 409, "already has"),
        ({"name": "up", "category": "vote"}, 400, "reserved"),
        ({"name": "Bad Name", "category": "vote"}, 400, "not allowed"),
        ({"name": "x", "category": "vote", "type": "number"}, 400, "minimum and a maximum"),
        ({"name": "y", "category": "comment", "type": "boolean"}, 400, "text"),
        ({"name": "z", "category": "vote", "type": "choice"}, 400, "distinct choices"),
        (
            {"name": "w", "category": "vote", "type": "number", "minimum": 5, "maximum": 1},
            400,
            "below",
        ),
    ]:
        response = client.post(f"{BASE}/feedback-kinds", json=body)
        assert response.status_code == status, (body, response.text)
        assert fragment in response.json()["error"]["message"]

    viewer = server.client(server.key(role="viewer", name="viewer"))
    assert_error(
        viewer.post(f"{BASE}/feedback-kinds", json={"name": "v", "category": "vote"}),
        403,
        "forbidden",
    )
    assert_error(
        viewer.post(f"{BASE}/logs/{log_id}/feedback", json={"name": "rating", "value": "up"}),
        403,
        "forbidden",
        "give feedback",
    )
    member = server.client(server.key(role="member", name="member"))
    assert give(member, log_id, name="rating", value="up")["reviewer"] == "key:member"


def test_a_feedback_token_works_from_a_browser_for_its_log_alone(
    fake: FakeProvider, client: TestClient, server: Server, deployed: str
) -> None:
    answered = call(client, fake, feedback_token=True, end_user="u-9")
    token = answered["feedback_token"]
    assert token.startswith("plf_")
    other_log = call(client, fake)["log_id"]
    browser = server.client()  # no API key, no session
    preflight = browser.options(
        f"{BASE}/feedback",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"

    response = browser.post(
        f"{BASE}/feedback", json={"token": token, "name": "rating", "value": "up"}
    )
    assert response.status_code == 201, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    given = response.json()
    assert (given["log_id"], given["source"], given["end_user"]) == (
        answered["log_id"],
        "browser",
        "u-9",
    )
    assert given["recorded_by"] == "feedback token"

    # Not for another log, not forged, not expired, not as an API key.
    assert_error(
        browser.post(
            f"{BASE}/feedback",
            json={"token": token, "log_id": other_log, "name": "rating", "value": "up"},
        ),
        403,
        "forbidden",
        "another log",
    )
    body, _, tag = token[4:].partition(".")
    payload = json.loads(feedback._unb64(body))
    payload["l"] = other_log
    forged = "plf_" + feedback._b64(json.dumps(payload, separators=(",", ":")).encode()) + "." + tag
    assert_error(
        browser.post(f"{BASE}/feedback", json={"token": forged, "name": "rating", "value": "up"}),
        401,
        "unauthenticated",
        "not genuine",
    )
    box = server.app.state.secret_box
    with server.app.state.db.session(write=False) as session:
        from promptloop.services.projects import get_project

        project = get_project(session, name="default")
    old = feedback.issue_token(
        box,
        project=project,
        log_uid=answered["log_id"],
        ttl_s=60,
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    refused = browser.post(
        f"{BASE}/feedback", json={"token": old.token, "name": "rating", "value": "up"}
    )
    error = assert_error(refused, 401, "unauthenticated", "expired")
    assert refused.headers["access-control-allow-origin"] == "*" and error
    as_key = server.client(token).get(f"{BASE}/logs")
    assert_error(as_key, 401, "unauthenticated", "feedback token", "POST /api/v1/feedback")
    bad_value = browser.post(
        f"{BASE}/feedback", json={"token": token, "name": "rating", "value": 3}
    )
    assert_error(bad_value, 400, "invalid_input", "'up' or 'down'")
    assert len(feedback_of(client, answered["log_id"])) == 1
    assert feedback_of(client, other_log) == []

    # Tokens for logs recorded by the application's own code.
    minted = client.post(f"{BASE}/logs/{other_log}/feedback-token")
    assert minted.status_code == 201, minted.text
    assert minted.json()["log_id"] == other_log
    viewer = server.client(server.key(role="viewer", name="viewer"))
    assert_error(viewer.post(f"{BASE}/logs/{other_log}/feedback-token"), 403, "forbidden")
    assert_error(client.post(f"{BASE}/logs/missing/feedback-token"), 404, "not_found")


def test_token_feedback_is_rate_limited(
    fake: FakeProvider, client: TestClient, server: Server, deployed: str
) -> None:
    server.app.state.feedback_limiter.limit = 3
    token = call(client, fake, feedback_token=True)["feedback_token"]
    browser = server.client()
    statuses = [
        browser.post(f"{BASE}/feedback", json={"token": token, "name": "copied"}).status_code
        for _ in range(4)
    ]
    assert statuses == [201, 201, 201, 429]


def test_streamed_and_gateway_calls_return_feedback_tokens(
    fake: FakeProvider, client: TestClient, server: Server, deployed: str
) -> None:
    fake.queue("streamed")
    with client.stream(
        "POST",
        f"{BASE}/prompts/support/answer/-/call",
        json={"inputs": INPUTS, "stream": True, "feedback_token": True},
    ) as response:
        text = "".join(response.iter_text())
    done = json.loads(text.split("event: done\ndata: ")[1].split("\n")[0])
    assert done["feedback_token"].startswith("plf_")
    fake.queue("via the gateway")
    response = client.post(
        "/v1/chat/completions",
        json={"model": "prompt:support/answer", "inputs": INPUTS, "feedback_token": True},
    )
    assert response.status_code == 200, response.text
    token = response.headers["x-promptloop-feedback-token"]
    given = server.client().post(f"{BASE}/feedback", json={"token": token, "name": "copied"})
    assert given.json()["log_id"] == response.headers["x-promptloop-log-id"]


def test_content_of_users_without_consent_stays_out_of_storage(
    fake: FakeProvider, client: TestClient, server: Server, deployed: str
) -> None:
    member = server.client(server.key(role="member", name="member"))
    assert_error(
        member.patch(f"{BASE}/projects/default", json={"content_capture": "with_consent"}),
        403,
        "forbidden",
        "project settings",
    )
    changed = client.patch(f"{BASE}/projects/default", json={"content_capture": "with_consent"})
    assert changed.status_code == 200 and changed.json()["content_capture"] == "with_consent"
    assert_error(
        client.patch(f"{BASE}/projects/default", json={"content_capture": "sometimes"}),
        422,
        "validation_error",
    )

    unstated = call(client, fake, "secret answer", end_user="u-1")
    consented = call(client, fake, "kept answer", end_user="u-2", consent=True)
    assert unstated["output"] == "secret answer"  # the caller still gets the answer
    withheld = client.get(f"{BASE}/logs/{unstated['log_id']}").json()
    assert (withheld["inputs"], withheld["messages"], withheld["output"]) == (None, None, None)
    assert withheld["withheld"] is True and withheld["consent"] is None
    assert withheld["output_tokens"] == 2 and withheld["end_user"] == "u-1"
    kept = client.get(f"{BASE}/logs/{consented['log_id']}").json()
    assert kept["output"] == "kept answer" and kept["inputs"] == INPUTS and not kept["withheld"]

    correction = give(client, unstated["log_id"], name="correction", value="my private text")
    assert correction["withheld"] and correction["value"] is None and correction["diff"] is None
    assert log_ids(client, feedback="correction") == [unstated["log_id"]]

    client.patch(f"{BASE}/projects/default", json={"content_capture": "unless_declined"})
    declined = call(client, fake, end_user="u-3", consent=False)["log_id"]
    unknown = call(client, fake, end_user="u-4")["log_id"]
    logged = client.post(
        f"{BASE}/logs", json={"output": "from my code", "consent": False, "metadata": {"k": "v"}}
    ).json()["id"]
    assert client.get(f"{BASE}/logs/{declined}").json()["output"] is None
    assert client.get(f"{BASE}/logs/{unknown}").json()["output"] == "It ships today."
    own = client.get(f"{BASE}/logs/{logged}").json()
    assert own["output"] is None and own["metadata"] == {"k": "v"}
    events = client.get(f"{BASE}/audit").json()["data"]
    assert [e["details"] for e in events if e["action"] == "project.content_capture"][:2] == [
        {"from": "with_consent", "to": "unless_declined"},
        {"from": "always", "to": "with_consent"},
    ]


def test_rates_per_version_and_environment_carry_counts_and_intervals(
    client: TestClient, fake: FakeProvider, deployed: str
) -> None:
    second = save(
        client,
        "support/answer",
        "Reply to {{ question }} for {{ customer }}.",
        provider="fake",
        model="fake-1",
    )["id"]
    batch = [
        {"prompt": "support/answer", "version": version, "environment": env, "output": "o"}
        for version, env, count in [(deployed, "production", 40), (second, "staging", 10)]
        for _ in range(count)
    ]
    ids = client.post(f"{BASE}/logs/batch", json={"logs": batch}).json()["ids"]
    first_ids, second_ids = ids[:40], ids[40:]
    for i, log_id in enumerate(first_ids[:20]):
        give(client, log_id, name="rating", value="up" if i < 15 else "down")
    for log_id in first_ids[:8]:
        give(client, log_id, name="copied")
        give(client, log_id, name="copied")  # twice on one log: one log, two actions
    give(client, second_ids[0], name="correction", value="better")

    groups = {
        g["version"]: g
        for g in client.get(f"{BASE}/feedback/stats", params={"prompt": "support/answer"}).json()
    }
    first = groups[deployed]
    assert first["logs"] == 40 and first["prompt"] == "support/answer"
    kinds = {k["name"]: k for k in first["kinds"]}
    rating = kinds["rating"]
    assert (rating["logs"], rating["up"], rating["down"]) == (20, 15, 5)
    assert rating["rate"]["value"] == pytest.approx(0.5) and rating["rate"]["n"] == 40
    assert rating["rate"]["low"] < 0.5 < rating["rate"]["high"]
    assert rating["up_share"]["value"] == pytest.approx(0.75) and rating["up_share"]["n"] == 20
    assert (kinds["copied"]["logs"], kinds["copied"]["count"]) == (8, 16)
    assert kinds["copied"]["rate"]["value"] == pytest.approx(0.2)
    assert kinds["copied"]["up_share"] is None
    corrected = {k["name"]: k for k in groups[second]["kinds"]}["correction"]
    assert corrected["rate"]["value"] == pytest.approx(0.1) and corrected["mean_similarity"] < 0.5

    by_env = {
        g["environment"]: g
        for g in client.get(f"{BASE}/feedback/stats", params={"by": "environment"}).json()
    }
    assert by_env["production"]["logs"] == 40 and by_env["staging"]["logs"] == 10
    assert by_env["production"]["version"] is None
    assert_error(
        client.get(f"{BASE}/feedback/stats", params={"by": "day"}), 422, "validation_error"
    )
