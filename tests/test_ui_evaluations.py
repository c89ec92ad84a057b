"""The evaluations pages in-process, on both databases: the new-run form starts a run (and bad
input starts none, with errors next to the fields), a running run's page polls a small progress
fragment and can be cancelled, a finished run shows intervals, verdicts and the per-datapoint
comparison with its regressions first, and viewers cannot start or cancel runs."""

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
from tests.helpers import BASE, deploy, save

WORDS = ["apple", "river", "stone", "cloud", "amber", "maple", "tiger", "ocean", "piano", "delta"]
WORDS += ["eagle", "frost", "grape", "honey", "ivory", "jelly", "koala", "lemon", "mango", "noble"]
NEW = "/p/default/evaluations/-/new"


def respond(request: ChatRequest) -> str:
    """`half` is right (the word in capitals) on every other word, starting with the first;
    `most` is right on every word but the first: against `half` it wins 9 and regresses once."""
    text = str((request.messages or [{}])[-1].get("content", ""))
    word = text.rsplit(" ", 1)[-1]
    if request.model == "half":
        return word.upper() if WORDS.index(word) % 2 == 0 else word
    if request.model == "most":
        return word if word == WORDS[0] else word.upper()
    return word.upper()


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with registered(FakeProvider(respond=respond)) as provider:
        yield provider


def setup_project(client: TestClient) -> tuple[str, str]:
    """A prompt with `half` in production and `most` as the newest version, a 20-word dataset
    and an exact-match evaluator."""
    control: str = save(client, "shout", "Shout {{ word }}", provider="fake", model="half")["id"]
    deploy(client, "shout", control)
    candidate: str = save(client, "shout", "Shout {{ word }}", provider="fake", model="most")["id"]
    response = client.post(
        f"{BASE}/datasets/words/-/versions",
        json={"datapoints": [{"inputs": {"word": w}, "target": w.upper()} for w in WORDS]},
    )
    assert response.status_code in (200, 201), response.text
    response = client.post(
        f"{BASE}/evaluators/exact/-/versions", json={"kind": "builtin", "builtin": "exact_match"}
    )
    assert response.status_code in (200, 201), response.text
    return control, candidate


def runs(client: TestClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get(f"{BASE}/evaluations").json()["data"]
    return found


def finished(client: TestClient, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"{BASE}/evaluations/{run_id}").json()
        if run["status"] in ("completed", "failed", "cancelled"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish")


def form(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": "start",
        "name": "capitals",
        "prompt": "shout",
        "candidate": [],
        "dataset": "words",
        "dataset_version": "",
        "control": "",
        "evaluator": ["exact"],
        "threshold_name": ["exact"],
        "threshold_value": ["0.5"],
        "concurrency": "4",
    }
    body.update(changes)
    return body


def viewer(client: TestClient, server: Server) -> TestClient:
    email = "viewer@example.com"
    response = client.post(f"{BASE}/members", json={"email": email, "role": "viewer"})
    assert response.status_code == 201, response.text
    return server.browser(email)


def test_the_form_starts_a_run_whose_page_shows_intervals_verdicts_and_regressions_first(
    fake: FakeProvider, client: TestClient, server: Server
) -> None:
    control, candidate = setup_project(client)
    browser = server.browser()
    page = browser.get(NEW, params={"prompt": "shout", "dataset": "words"})
    assert page.status_code == 200, page.text
    # Both versions are offered; the newest (not what production serves) is checked.
    assert f'value="{candidate}" checked' in page.text
    assert f'value="{control}">' in page.text and "production" in page.text

    started = browser.post(NEW, data=form(candidate=[candidate]), follow_redirects=False)
    assert started.status_code == 303, started.text
    [run] = runs(client)
    assert started.headers["location"] == f"/p/default/evaluations/{run['id']}"
    detail = client.get(f"{BASE}/evaluations/{run['id']}").json()
    assert detail["name"] == "capitals" and detail["thresholds"] == {"exact": 0.5}
    assert [(c["version"], c["control"]) for c in detail["candidates"]] == [
        (control, True),
        (candidate, False),
    ]
    assert finished(client, run["id"])["status"] == "completed"

    page = browser.get(f"/p/default/evaluations/{run['id']}")
    assert page.status_code == 200
    text = page.text
    assert 'hx-trigger="every 1s"' not in text  # finished: no more polling
    assert 'id="run-verdict">passed' in text
    # 19/20 right: the rate with its Wilson interval as numbers and a bar; against the
    # control (10/20) 10 wins, 1 loss, the sign test, and the verdict.
    assert "95%" in text and "[0.764, 0.991]" in text and 'class="ci-bar"' in text
    assert "10 / 1 / 9" in text and "sign test" in text
    assert re.search(r'class="badge verdict good">improved<', text)
    assert "passed</span>" in text  # the threshold
    # The comparison lists the one regression (the first word) first, with links to its logs.
    datapoints = re.findall(r'<tr class="(regressed|improved|tie)"', text)
    assert datapoints[0] == "regressed" and datapoints.count("regressed") == 1
    first_row = text[text.index('<tr class="regressed"') :].split("</tr>")[0]
    assert "apple" in first_row and "APPLE" in first_row
    assert re.search(r'href="/p/default/logs/[0-9a-f-]+">log</a>', first_row)

    assert f'href="{NEW}?prompt=shout&amp;dataset=words"' in text  # start another like it

    # Capped, with "show more": the first rows only, and a link for more that keeps the choice.
    capped = browser.get(f"/p/default/evaluations/{run['id']}", params={"limit": 5})
    assert len(re.findall(r'<tr class="(?:regressed|improved|tie)"', capped.text)) == 5
    assert "Show more datapoints" in capped.text and "limit=20" in capped.text
    more = browser.get(
        f"/p/default/evaluations/{run['id']}/-/comparison",
        params={"evaluator": "exact", "limit": 20},
        headers={"HX-Request": "true"},
    )
    assert more.text.lstrip().startswith('<section id="comparison"')
    assert len(re.findall(r'<tr class="(?:regressed|improved|tie)"', more.text)) == 20
    assert "Show more datapoints" not in more.text
    assert more.headers["HX-Push-Url"].startswith(f"/p/default/evaluations/{run['id']}?candidate=")

    listed = browser.get("/p/default/evaluations")
    assert listed.status_code == 200
    assert "capitals" in listed.text and "completed" in listed.text and "1 improved" in listed.text


def test_bad_input_puts_errors_next_to_the_fields_and_starts_nothing(
    fake: FakeProvider, client: TestClient, server: Server
) -> None:
    _, candidate = setup_project(client)
    browser = server.browser()
    no_dataset = browser.post(NEW, data=form(candidate=[candidate], dataset=""))
    assert no_dataset.status_code == 400
    assert re.search(r'name="dataset" aria-invalid="true"', no_dataset.text)
    assert "Choose the dataset to run on." in no_dataset.text
    assert 'value="capitals"' in no_dataset.text  # what was typed is kept
    assert f'value="{candidate}" checked' in no_dataset.text

    unknown = browser.post(NEW, data=form(candidate=["ffffffff"]))
    assert unknown.status_code == 400 and "has no version" in unknown.text
    assert '<span class="field-error" id="error-candidates">' in unknown.text

    wrong = browser.post(
        NEW,
        data=form(candidate=[candidate], threshold_value=["high"], dataset_version="abcd1234"),
    )
    assert wrong.status_code == 400
    assert 'id="error-threshold-exact">A threshold is a number' in wrong.text
    assert 'id="error-dataset_version"' in wrong.text

    swap = browser.post(NEW, data=form(swap_version=candidate, swap_model="upper"))
    assert swap.status_code == 400 and "provider/model" in swap.text

    nothing = browser.post(NEW, data=form(candidate=[], evaluator=[]))
    assert nothing.status_code == 400
    assert (
        "Choose at least one version" in nothing.text
        and "Choose at least one evaluator" in nothing.text
    )
    assert runs(client) == []


def test_changing_the_prompt_offers_its_versions_without_starting_a_run(
    fake: FakeProvider, client: TestClient, server: Server
) -> None:
    _, candidate = setup_project(client)
    browser = server.browser()
    refreshed = browser.post(
        NEW, data=form(action="refresh", name="kept"), headers={"HX-Request": "true"}
    )
    assert refreshed.status_code == 200
    assert refreshed.text.lstrip().startswith("<form")  # only the form, for htmx to swap
    assert f'value="{candidate}" checked' in refreshed.text and 'value="kept"' in refreshed.text
    assert refreshed.headers["HX-Push-Url"] == f"{NEW}?prompt=shout&dataset=words"
    assert runs(client) == []


def test_a_running_run_polls_its_progress_and_can_be_cancelled(
    client: TestClient, server: Server
) -> None:
    with registered(FakeProvider(respond=respond, delay=0.3)):
        _, candidate = setup_project(client)
        browser = server.browser()
        started = browser.post(
            NEW, data=form(candidate=[candidate], concurrency="1"), follow_redirects=False
        )
        assert started.status_code == 303, started.text
        url = started.headers["location"]
        page = browser.get(url)
        assert page.status_code == 200
        assert f'hx-get="{url}/-/live" hx-trigger="every 1s"' in page.text
        assert "Cancel run" in page.text
        live = browser.get(f"{url}/-/live", headers={"HX-Request": "true"})
        assert live.status_code == 200 and live.text.lstrip().startswith('<div id="run-body"')
        assert "<html" not in live.text and 'hx-trigger="every 1s"' in live.text
        assert re.search(r"\d+ / 40 datapoint calls done", live.text)

        cancelled = browser.post(f"{url}/-/cancel", data={}, headers={"HX-Request": "true"})
        assert cancelled.status_code == 200
        assert cancelled.text.lstrip().startswith('<div id="run-body"')  # swapped in place
        run_id = url.rsplit("/", 1)[-1]
        assert finished(client, run_id)["status"] == "cancelled"
    live = browser.get(f"{url}/-/live", headers={"HX-Request": "true"})
    assert 'hx-trigger="every 1s"' not in live.text and "cancelled" in live.text
    assert "Cancel run" not in live.text
    again = browser.post(f"{url}/-/cancel", data={}, headers={"HX-Request": "true"})
    assert "already cancelled" in again.text and again.headers["HX-Retarget"] == "#flash"


def test_viewers_see_runs_but_cannot_start_or_cancel_them(
    fake: FakeProvider, client: TestClient, server: Server
) -> None:
    _, candidate = setup_project(client)
    admin = server.browser()
    started = admin.post(NEW, data=form(candidate=[candidate]), follow_redirects=False)
    url = started.headers["location"]
    finished(client, url.rsplit("/", 1)[-1])
    reader = viewer(client, server)
    listed = reader.get("/p/default/evaluations")
    assert listed.status_code == 200 and "capitals" in listed.text
    assert "New run" not in listed.text
    assert reader.get(NEW).status_code == 403
    refused = reader.post(NEW, data=form(candidate=[candidate]), follow_redirects=False)
    assert refused.status_code == 403
    assert len(runs(client)) == 1
    assert reader.get(url).status_code == 200
    assert "Cancel run" not in reader.get(url).text
    assert reader.post(f"{url}/-/cancel", data={}).status_code == 403


def test_a_version_with_another_model_is_a_candidate(
    fake: FakeProvider, client: TestClient, server: Server
) -> None:
    control, candidate = setup_project(client)
    browser = server.browser()
    started = browser.post(
        NEW,
        data=form(candidate=[], swap_version=candidate, swap_model="fake/upper", control=control),
        follow_redirects=False,
    )
    assert started.status_code == 303, started.text
    [run] = runs(client)
    detail = client.get(f"{BASE}/evaluations/{run['id']}").json()
    assert [(c["version"], c["model"], c["control"]) for c in detail["candidates"]] == [
        (control, None, True),
        (candidate, {"provider": "fake", "model": "upper"}, False),
    ]
    assert finished(client, run["id"])["status"] == "completed"
    page = browser.get(f"/p/default/evaluations/{run['id']}").text
    assert f"shout@{candidate} with fake/upper" in page and "model fake/upper" in page
