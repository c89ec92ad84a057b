"""The data flywheel's first half, on both databases: logs filtered by evaluator judgments
(with feedback and errors), and a preview of a dataset from logs that matches what is then
saved."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from promptloop import Client
from promptloop.cli import main as cli_main
from tests.conftest import Server
from tests.helpers import BASE, assert_error

WORDS = ["apple", "river", "stone", "cloud", "amber", "maple"]


def _judged_logs(client: TestClient) -> dict[str, str]:
    """Six evaluation logs (a local run): 'review' scores 5, 4, 3, 2, 4, 5 given by a person,
    'exact' judged by the server ('stone' answered wrong); the fifth call failed.
    Returns the log id of each word."""
    points = [{"inputs": {"word": w}, "target": w.upper()} for w in WORDS]
    saved = client.post(f"{BASE}/datasets/words/-/versions", json={"datapoints": points})
    assert saved.status_code == 201, saved.text
    for name, body in [
        ("exact", {"kind": "builtin", "builtin": "exact_match"}),
        ("review", {"kind": "human", "returns": "number"}),
    ]:
        made = client.post(f"{BASE}/evaluators/{name}/-/versions", json=body)
        assert made.status_code in (200, 201), made.text
    run = client.post(
        f"{BASE}/evaluations",
        json={
            "dataset": "words",
            "candidates": [{"label": "mine"}],
            "evaluators": ["exact", "review"],
            "mode": "local",
        },
    ).json()
    plan = client.get(f"{BASE}/evaluations/{run['id']}/datapoints").json()
    by_word = {p["inputs"]["word"]: p["key"] for p in plan["datapoints"]}
    outputs: list[dict[str, Any]] = []
    for word in WORDS:
        if word == "amber":
            outputs.append({"datapoint": by_word[word], "error": "timeout"})
        else:
            answer = word.upper() if word != "stone" else "wrong"
            outputs.append({"datapoint": by_word[word], "output": answer})
    recorded = client.post(f"{BASE}/evaluations/{run['id']}/outputs", json={"outputs": outputs})
    assert recorded.status_code == 201, recorded.text
    assert client.post(f"{BASE}/evaluations/{run['id']}/finish").status_code == 200
    deadline = time.monotonic() + 60
    pending: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        pending = client.get(f"{BASE}/judgments/pending", params={"run": run["id"]}).json()
        if len(pending) >= 5:
            break
        time.sleep(0.1)
    scores = dict(zip(WORDS, [5, 4, 3, 2, 4, 5], strict=True))
    logs = {log["inputs"]["word"]: log["id"] for log in client.get(f"{BASE}/logs").json()["data"]}
    for item in pending:
        word = item["inputs"]["word"]
        given = client.post(f"{BASE}/judgments/{item['id']}", json={"value": scores[word]})
        assert given.status_code == 200, given.text
    return logs


def _words(client: TestClient, **params: Any) -> set[str]:
    response = client.get(f"{BASE}/logs", params=params)
    assert response.status_code == 200, response.text
    return {log["inputs"]["word"] for log in response.json()["data"]}


def test_logs_filter_by_judgment_score_and_combine_with_errors_and_feedback(
    client: TestClient,
) -> None:
    logs = _judged_logs(client)
    assert len(logs) == 6
    assert _words(client, judgment="review>=4") == {"apple", "river", "amber", "maple"}
    assert _words(client, judgment="review>=4", error="false") == {"apple", "river", "maple"}
    assert _words(client, judgment="review<3") == {"cloud"}
    assert _words(client, judgment=["review>=4", "exact=true"], error="false") == {
        "apple",
        "river",
        "maple",
    }
    assert _words(client, judgment="exact=false") == {"stone"}
    assert _words(client, judgment="review!=5", error="false") == {"river", "stone", "cloud"}
    for word, vote in [("river", "down"), ("apple", "up")]:
        given = client.post(
            f"{BASE}/logs/{logs[word]}/feedback", json={"name": "rating", "value": vote}
        )
        assert given.status_code == 201, given.text
    assert _words(client, judgment="review>=4", feedback="up") == {"apple"}

    assert_error(
        client.get(f"{BASE}/logs", params={"judgment": "nobody>=4"}),
        400,
        "invalid_input",
        "Unknown evaluator 'nobody'",
    )
    for bad in ["review", "review>=high", "review=>4", ">=4"]:
        assert_error(
            client.get(f"{BASE}/logs", params={"judgment": bad}), 400, "invalid_input", bad
        )


def test_a_preview_shows_what_from_logs_then_saves(client: TestClient) -> None:
    logs = _judged_logs(client)
    # A person corrected one answer: the correction replaces the output.
    corrected = client.post(
        f"{BASE}/logs/{logs['river']}/feedback",
        json={"name": "correction", "value": "RIVER!"},
    )
    assert corrected.status_code in (200, 201), corrected.text
    body = {
        "filters": {"source": "eval", "judgments": ["review>=4"]},
        "target": "corrected",
    }
    preview = client.post(f"{BASE}/datasets/-/preview", json={**body, "name": "tuning"})
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    # apple, river (corrected) and maple; amber was judged 4 but its call failed.
    assert shown["count"] == 3 and shown["exists"] is False
    assert shown["skipped_reasons"] == {"error": 1}
    assert shown["train"] + shown["held_out"] == 3 and shown["held_out"] >= 1
    targets = {d["inputs"]["word"]: (d["target"], d["source"]) for d in shown["sample"]}
    assert targets["river"] == ("RIVER!", "correction")
    assert targets["apple"] == ("APPLE", "log")
    assert {d["log_id"] for d in shown["sample"]} <= set(logs.values())
    assert client.get(f"{BASE}/datasets/tuning").status_code == 404  # nothing saved

    saved = client.post(f"{BASE}/datasets/tuning/-/from-logs", json=body)
    assert saved.status_code == 201, saved.text
    assert saved.json()["id"] == shown["version"] and saved.json()["count"] == shown["count"]
    stored = client.get(f"{BASE}/datasets/tuning/-/versions/latest/datapoints").json()["data"]
    assert [(d["key"], d["target"], d["source"], d["log_id"]) for d in stored] == [
        (d["key"], d["target"], d["source"], d["log_id"]) for d in shown["sample"]
    ]
    again = client.post(f"{BASE}/datasets/-/preview", json={**body, "name": "tuning", "sample": 1})
    assert again.json()["exists"] is True and len(again.json()["sample"]) == 1

    nothing = client.post(
        f"{BASE}/datasets/-/preview", json={"filters": {"judgments": ["review>=6"]}}
    )
    assert nothing.status_code == 200
    assert nothing.json()["count"] == 0 and nothing.json()["version"] is None
    assert_error(
        client.post(f"{BASE}/datasets/-/preview", json={"filters": {"judgments": ["x"]}}),
        400,
        "invalid_input",
        "must look like",
    )


def test_the_sdk_and_the_command_line_preview_then_save(
    client: TestClient, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _judged_logs(client)
    key = server.key(role="member", name="sdk")
    with Client("http://testserver", http_client=client, api_key=key) as sdk:
        shown = sdk.datasets.preview(
            name="judged", source="eval", judgment="review>=4", error=False, sample=2
        )
        assert (shown.count, shown.exists, len(shown.sample)) == (3, False, 2)
        assert {p.source for p in shown.sample} == {"log"}
        assert {log.inputs["word"] for log in sdk.logs.list(judgment=["review>=4", "exact=true"])}
        saved = sdk.datasets.from_logs("judged", source="eval", judgment="review>=4", error=False)
        assert saved.id == shown.version and saved.count == 3

    def local_client(url: str, **kwargs: Any) -> Client:
        return Client(url, http_client=client, **kwargs)

    monkeypatch.setattr(cli_main, "Client", local_client)
    runner = CliRunner()
    base = ["--url", "http://testserver", "--api-key", key, "datasets", "from-logs", "cli"]
    filters = ["--source", "eval", "--judgment", "review>=5"]
    previewed = runner.invoke(cli_main.app, [*base, *filters, "--preview"])
    assert previewed.exit_code == 0, previewed.output
    assert previewed.stdout.startswith("2 datapoints from 2 matching logs. Version ")
    assert '{"word": "apple"} -> "APPLE"  (log ' in previewed.stdout
    assert client.get(f"{BASE}/datasets/cli").status_code == 404
    created = runner.invoke(cli_main.app, [*base, *filters, "-m", "the best"])
    assert created.exit_code == 0, created.output
    assert (
        created.stdout.startswith("created") and "(2 datapoints, 0 logs skipped)" in created.stdout
    )
