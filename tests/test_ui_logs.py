"""The logs pages, in-process on both databases: filters narrow the table, pages follow the
cursor, one log shows its fields and feedback, and feedback given from the page is stored
(source "ui"), refused with a field error when empty, and refused to viewers."""

from __future__ import annotations

import html
import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Server
from tests.helpers import BASE, save

PROMPT = "ui-logs/answer"


def _log(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "environment": "production",
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "output": "4",
        "prompt_tokens": 12,
        "output_tokens": 3,
        "latency_ms": 250,
    }
    body.update(fields)
    return body


def _post_logs(client: TestClient, logs: list[dict[str, Any]]) -> list[str]:
    response = client.post(f"{BASE}/logs/batch", json={"logs": logs})
    assert response.status_code == 201, response.text
    ids: list[str] = response.json()["ids"]
    return ids


def _uids(html: str) -> set[str]:
    """The log ids the table links to."""
    return set(re.findall(r'href="/p/default/logs/([0-9a-zA-Z_\-]+)"', html))


@pytest.fixture
def seeded(client: TestClient) -> dict[str, Any]:
    v1 = save(client, PROMPT, "First {{ q }}")["id"]
    v2 = save(client, PROMPT, "Second {{ q }}")["id"]
    ids = _post_logs(
        client,
        [
            _log(
                id="log-prod-v1-a",
                prompt=PROMPT,
                version=v1,
                end_user="alice",
                created_at="2026-11-01T10:00:00Z",
            ),
            _log(
                id="log-prod-v1-b",
                prompt=PROMPT,
                version=v1,
                source="sdk",
                created_at="2026-11-02T10:00:00Z",
            ),
            _log(
                id="log-staging-v2",
                prompt=PROMPT,
                version=v2,
                environment="staging",
                output="five",
                created_at="2026-11-03T10:00:00Z",
            ),
            _log(
                id="log-failed-v2",
                prompt=PROMPT,
                version=v2,
                output=None,
                error="upstream timed out",
                created_at="2026-11-04T10:00:00Z",
            ),
        ],
    )
    return {"v1": v1, "v2": v2, "ids": ids}


def test_filters_narrow_the_table(server: Server, seeded: dict[str, Any]) -> None:
    browser = server.browser()
    page = browser.get("/p/default/logs")
    assert page.status_code == 200, page.text
    everything = {"log-prod-v1-a", "log-prod-v1-b", "log-staging-v2", "log-failed-v2"}
    assert _uids(page.text) == everything
    assert "upstream timed out" in page.text  # the error marker's title
    cases = {
        "environment=staging": {"log-staging-v2"},
        "error=true": {"log-failed-v2"},
        "error=false": everything - {"log-failed-v2"},
        "source=sdk": {"log-prod-v1-b"},
        "end_user=alice": {"log-prod-v1-a"},
        f"prompt={PROMPT}&version={seeded['v2']}": {"log-staging-v2", "log-failed-v2"},
        "since=2026-11-02T00:00&until=2026-11-04T00:00": {"log-prod-v1-b", "log-staging-v2"},
        "feedback=none": everything,
        "feedback=up": set(),
        "prompt=&environment=&source=": everything,  # empty fields filter nothing
    }
    for query, expected in cases.items():
        response = browser.get(f"/p/default/logs?{query}")
        assert response.status_code == 200, (query, response.text)
        assert _uids(response.text) == expected, query

    vote = browser.post(
        "/p/default/logs/log-prod-v1-b/feedback", data={"kind": "vote", "value": "up"}
    )
    assert vote.status_code == 200  # followed the redirect to the log
    assert _uids(browser.get("/p/default/logs?feedback=up").text) == {"log-prod-v1-b"}
    assert _uids(browser.get("/p/default/logs?feedback=none").text) == everything - {
        "log-prod-v1-b"
    }


def test_filter_changes_answer_the_results_only_and_keep_filters_in_links(
    server: Server, seeded: dict[str, Any]
) -> None:
    browser = server.browser()
    fragment = browser.get(
        "/p/default/logs?environment=staging", headers={"HX-Request": "true"}
    ).text
    assert fragment.lstrip().startswith('<section id="log-results"')
    assert "<html" not in fragment
    assert _uids(fragment) == {"log-staging-v2"}
    # the dataset link carries the same filters
    assert "/p/default/datasets/-/new?from=logs&amp;environment=staging" in fragment


def test_bad_filters_are_field_errors(server: Server, seeded: dict[str, Any]) -> None:
    browser = server.browser()
    for query, fragment in (
        (f"version={seeded['v1']}", "needs the prompt too"),
        ("since=yesterday", "like 2026-11-28T09:30"),
        ("prompt=no/such/prompt", "no/such/prompt"),
        ("feedback=sideways", "Unknown feedback filter"),
        ("source=fax", "Choose one of"),
    ):
        response = browser.get(f"/p/default/logs?{query}")
        assert response.status_code == 400, query
        assert fragment in response.text, query
        assert 'aria-invalid="true"' in response.text, query
        assert _uids(response.text) == set(), query


def _judged(client: TestClient) -> dict[str, str]:
    """Three evaluation logs judged by the built-in `exact` evaluator: 'wrong' answered wrong.
    Returns the log id of each word, once the server has judged them all."""
    words = ["right", "also-right", "wrong"]
    points = [{"inputs": {"word": w}, "target": w.upper()} for w in words]
    saved = client.post(f"{BASE}/datasets/ui-logs/judged/-/versions", json={"datapoints": points})
    assert saved.status_code == 201, saved.text
    made = client.post(
        f"{BASE}/evaluators/exact/-/versions", json={"kind": "builtin", "builtin": "exact_match"}
    )
    assert made.status_code in (200, 201), made.text
    run = client.post(
        f"{BASE}/evaluations",
        json={
            "dataset": "ui-logs/judged",
            "candidates": [{"label": "mine"}],
            "evaluators": ["exact"],
            "mode": "local",
        },
    ).json()
    plan = client.get(f"{BASE}/evaluations/{run['id']}/datapoints").json()
    outputs = [
        {"datapoint": p["key"], "output": "no" if p["inputs"]["word"] == "wrong" else None}
        for p in plan["datapoints"]
    ]
    for output, point in zip(outputs, plan["datapoints"], strict=True):
        if output["output"] is None:
            output["output"] = point["inputs"]["word"].upper()
    recorded = client.post(f"{BASE}/evaluations/{run['id']}/outputs", json={"outputs": outputs})
    assert recorded.status_code == 201, recorded.text
    assert client.post(f"{BASE}/evaluations/{run['id']}/finish").status_code == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the server judges in the background
        judged = client.get(f"{BASE}/logs", params={"judgment": ["exact>=0"]}).json()["data"]
        if len(judged) == len(words):
            break
        time.sleep(0.1)
    logs = client.get(f"{BASE}/logs").json()["data"]
    return {log["inputs"]["word"]: log["id"] for log in logs}


def test_the_logs_page_filters_by_judgment_and_passes_it_on(
    client: TestClient, server: Server
) -> None:
    ids = _judged(client)
    browser = server.browser()
    right = browser.get("/p/default/logs?judgment=exact%3Dtrue")
    assert right.status_code == 200, right.text
    assert _uids(right.text) == {ids["right"], ids["also-right"]}
    assert 'name="judgment" value="exact=true"' in right.text  # shown back in its field
    link = re.search(r'href="(/p/default/datasets/-/new\?from=logs[^"]*)"', right.text)
    assert link is not None
    assert "judgment=exact%3Dtrue" in link.group(1)
    # the dataset page it opens previews the same two logs
    preview = browser.get(html.unescape(link.group(1)))
    count = re.search(r'id="match-count"><strong>(\d+)</strong>', preview.text)
    assert count is not None and count.group(1) == "2", preview.text
    assert _uids(browser.get("/p/default/logs?judgment=exact<1").text) == {ids["wrong"]}
    # repeatable, all must hold (repeated in the URL or comma-separated in the field)
    for query in ("judgment=exact>0&judgment=exact<1", "judgment=exact>0,+exact<1"):
        both = browser.get(f"/p/default/logs?{query}")
        assert both.status_code == 200, query
        assert _uids(both.text) == set(), query
    # and a fragment for htmx pushes the filter into the address bar
    fragment = browser.get("/p/default/logs?judgment=exact%3Dfalse", headers={"HX-Request": "true"})
    assert _uids(fragment.text) == {ids["wrong"]}
    assert fragment.headers["HX-Push-Url"] == "/p/default/logs?judgment=exact%3Dfalse"


def _field_error(page: str, field: str) -> str:
    found = re.search(rf'<span class="field-error" id="{field}-error">(.*?)</span>', page, re.S)
    assert found is not None, f"no error next to {field}"
    return html.unescape(found.group(1))


@pytest.mark.parametrize(
    ("query", "field", "fragment"),
    [
        ("judgment=helpful", "judgment", "must look like <evaluator><op><value>"),
        ("judgment=helpful>=high", "judgment", "must be a number, true or false"),
        ("judgment=nobody>=4", "judgment", "Unknown evaluator 'nobody'"),
        ("feedback=up&feedback=sideways", "feedback", "Unknown feedback filter 'sideways'"),
        ("error=maybe", "error", "Use true (failed calls only)"),
        ("since=yesterday", "since", "like 2026-11-28T09:30"),
        ("until=2026-13-01", "until", "like 2026-11-28T09:30"),
        ("source=fax", "source", "Choose one of"),
        ("version=abcdef12", "version", "needs the prompt too"),
        ("prompt=no/such/prompt", "prompt", "No prompt at 'no/such/prompt'"),
        ("prompt=a//b", "prompt", "empty segment"),
    ],
)
def test_a_bad_filter_gives_the_same_error_on_the_logs_and_dataset_pages(
    server: Server, query: str, field: str, fragment: str
) -> None:
    browser = server.browser()
    logs_page = browser.get(f"/p/default/logs?{query}")
    assert logs_page.status_code == 400, logs_page.text
    on_logs = _field_error(logs_page.text, field)
    dataset_page = browser.get(f"/p/default/datasets/-/new?from=logs&{query}")
    on_dataset = _field_error(dataset_page.text, f"filter_{field}")
    assert fragment in on_logs
    assert on_logs == on_dataset
    assert 'id="match-count"' not in dataset_page.text  # nothing previewed


def test_a_trace_filter_is_a_logs_page_filter_only(server: Server, client: TestClient) -> None:
    _post_logs(client, [_log(id="log-traced", trace_id="trace-ui-1"), _log(id="log-untraced")])
    browser = server.browser()
    page = browser.get("/p/default/logs?trace_id=trace-ui-1")
    assert page.status_code == 200
    assert _uids(page.text) == {"log-traced"}
    refused = browser.get("/p/default/datasets/-/new?from=logs&trace_id=trace-ui-1")
    assert "leave the trace filter out" in _field_error(refused.text, "filter_trace_id")


def test_pages_follow_the_cursor(client: TestClient, server: Server) -> None:
    _post_logs(
        client,
        [
            _log(id=f"paged-{i:03d}", created_at=f"2026-10-01T10:{i % 60:02d}:00Z")
            for i in range(60)
        ],
    )
    browser = server.browser()
    first = browser.get("/p/default/logs")
    shown = _uids(first.text)
    assert len(shown) == 50
    assert shown == {f"paged-{i:03d}" for i in range(10, 60)}  # newest first
    match = re.search(r'href="(/p/default/logs\?cursor=[^"]+)"', first.text)
    assert match, "no link to older logs"
    second = browser.get(match.group(1).replace("&amp;", "&"))
    assert _uids(second.text) == {f"paged-{i:03d}" for i in range(10)}
    assert "Older logs" not in second.text
    assert "Newest" in second.text


def test_one_log_shows_its_fields(client: TestClient, server: Server) -> None:
    version = save(client, PROMPT, "Details {{ q }}")["id"]
    _post_logs(
        client,
        [
            _log(
                id="log-detailed-1",
                prompt=PROMPT,
                version=version,
                output="The answer is 4.",
                finish_reason="stop",
                prompt_tokens=1234,
                output_tokens=56,
                provider="nowhere",
                model="unpriced-model",
                latency_ms=812,
                ttft_ms=95,
                end_user="bob@example.com",
                metadata={"ticket": "T-991"},
                trace_id="trace-abc",
                parent_id="log-parent-1",
            )
        ],
    )
    browser = server.browser()
    page = browser.get("/p/default/logs/log-detailed-1")
    assert page.status_code == 200, page.text
    html = page.text
    for expected in (
        "What is 2+2?",
        "The answer is 4.",
        "stop",
        "1,234 in",
        "56 out",
        "812 ms",
        "95 ms",
        "bob@example.com",
        "T-991",
        "trace-abc",
        "/p/default/logs/log-parent-1",
        f"/p/default/prompts/{PROMPT}?version={version}",
        "production",
    ):
        assert expected in html, expected
    assert re.search(r"<dt>Cost</dt><dd>unknown</dd>", html)  # unknown, never $0
    assert "No feedback yet." in html
    assert browser.get("/p/default/logs/no-such-log").status_code == 404


def test_withheld_content_is_shown_as_withheld(client: TestClient, server: Server) -> None:
    response = client.patch(f"{BASE}/projects/default", json={"content_capture": "with_consent"})
    assert response.status_code == 200, response.text
    _post_logs(client, [_log(id="log-withheld-1", output="secret answer", consent=False)])
    page = server.browser().get("/p/default/logs/log-withheld-1")
    assert "Withheld" in page.text
    assert "secret answer" not in page.text


def test_vote_correct_and_comment_are_stored_from_the_page(
    client: TestClient, server: Server
) -> None:
    _post_logs(client, [_log(id="log-feedback-1", output="Paris is in Germany.")])
    browser = server.browser()
    url = "/p/default/logs/log-feedback-1/feedback"
    # a plain form post: redirected back to the log (post/redirect/get)
    vote = browser.post(url, data={"kind": "vote", "value": "down"}, follow_redirects=False)
    assert vote.status_code == 303
    assert vote.headers["location"] == "/p/default/logs/log-feedback-1"
    # htmx posts answer the feedback section, with the new entry in it
    corrected = browser.post(
        url,
        data={"kind": "correction", "value": "Paris is in France."},
        headers={"HX-Request": "true"},
    )
    assert corrected.status_code == 200
    assert corrected.text.lstrip().startswith('<section id="feedback"')
    assert "Correction saved." in corrected.text
    assert "+Paris is in France." in corrected.text  # the diff
    comment = browser.post(
        url, data={"kind": "comment", "value": "Geography!"}, headers={"HX-Request": "true"}
    )
    assert "Geography!" in comment.text

    stored = client.get(f"{BASE}/logs/log-feedback-1/feedback").json()
    assert [(f["name"], f["value"], f["source"]) for f in stored] == [
        ("rating", False, "ui"),
        ("correction", "Paris is in France.", "ui"),
        ("comment", "Geography!", "ui"),
    ]
    assert all(f["reviewer"] == "admin@localhost" or f["reviewer"] for f in stored)
    page = browser.get("/p/default/logs/log-feedback-1").text
    assert "▼ down" in page and "Geography!" in page


def test_an_empty_correction_is_a_field_error_and_stores_nothing(
    client: TestClient, server: Server
) -> None:
    _post_logs(client, [_log(id="log-feedback-2", output="draft")])
    browser = server.browser()
    url = "/p/default/logs/log-feedback-2/feedback"
    for headers in ({"HX-Request": "true"}, {}):
        response = browser.post(url, data={"kind": "correction", "value": "   "}, headers=headers)
        assert response.status_code == 400
        assert 'class="field-error" id="correction-error"' in response.text
        assert 'aria-invalid="true"' in response.text
        assert "non-empty text" in response.text
    bad_vote = browser.post(url, data={"kind": "vote", "value": "sideways"})
    assert bad_vote.status_code == 400 and "sideways" in bad_vote.text
    assert client.get(f"{BASE}/logs/log-feedback-2/feedback").json() == []


def test_viewers_see_no_feedback_forms_and_are_refused(client: TestClient, server: Server) -> None:
    _post_logs(client, [_log(id="log-feedback-3")])
    email = "viewer-logs@example.com"
    response = client.post(f"{BASE}/members", json={"email": email, "role": "viewer"})
    assert response.status_code == 201, response.text
    viewer = server.browser(email)
    page = viewer.get("/p/default/logs/log-feedback-3")
    assert page.status_code == 200
    assert "Vote up" not in page.text and "Save correction" not in page.text
    refused = viewer.post(
        "/p/default/logs/log-feedback-3/feedback", data={"kind": "vote", "value": "up"}
    )
    assert refused.status_code == 403
    assert "viewer" in refused.text
    assert client.get(f"{BASE}/logs/log-feedback-3/feedback").json() == []
    # and the member's page has them
    assert "Vote up" in server.browser().get("/p/default/logs/log-feedback-3").text


def test_a_post_without_the_csrf_token_is_refused(client: TestClient, server: Server) -> None:
    _post_logs(client, [_log(id="log-feedback-4")])
    browser = server.browser()
    del browser.headers["X-CSRF-Token"]
    response = browser.post(
        "/p/default/logs/log-feedback-4/feedback", data={"kind": "vote", "value": "up"}
    )
    assert response.status_code == 403
    assert client.get(f"{BASE}/logs/log-feedback-4/feedback").json() == []
