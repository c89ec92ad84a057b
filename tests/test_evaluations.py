"""Evaluation runs end to end through the API, on both databases: candidates against a control,
statistics and verdicts, code / LLM-judge / human evaluators, cancellation, resuming after a
restart, and local mode. The models are a fake provider whose answers depend on the model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from promptloop.api.app import create_app
from promptloop.providers.base import ChatRequest
from promptloop.settings import Settings
from tests.conftest import Server
from tests.fakes import FakeProvider, registered
from tests.helpers import BASE, assert_error, deploy, save

WORDS = [
    *("apple", "river", "stone", "cloud", "amber", "maple", "tiger", "ocean", "piano", "delta"),
    *("eagle", "frost", "grape", "honey", "ivory", "jelly", "koala", "lemon", "mango", "noble"),
]


def respond(request: ChatRequest) -> str:
    """`upper` models answer correctly (the word in capitals), `lower` ones do not, `judge`
    models give a verdict."""
    text = str((request.messages or [{}])[-1].get("content", ""))
    word = text.rsplit(" ", 1)[-1]
    if request.model == "judge":
        return "In capitals. Verdict: PASS" if word.isupper() else "Not capitals. Verdict: FAIL"
    if request.model == "upper":
        return word.upper()
    if request.model == "half":  # right on half the words
        return word.upper() if WORDS.index(word) % 2 == 0 else word
    return word.lower()


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with registered(FakeProvider(respond=respond)) as provider:
        yield provider


def version_with(client: TestClient, model: str, path: str = "shout") -> str:
    saved: str = save(client, path, "Shout {{ word }}", provider="fake", model=model)["id"]
    return saved


def dataset(client: TestClient, name: str = "words", words: list[str] = WORDS) -> str:
    response = client.post(
        f"{BASE}/datasets/{name}/-/versions",
        json={"datapoints": [{"inputs": {"word": w}, "target": w.upper()} for w in words]},
    )
    assert response.status_code in (200, 201), response.text
    version: str = response.json()["id"]
    return version


def evaluator(client: TestClient, name: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"{BASE}/evaluators/{name}/-/versions", json=body)
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


def start(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(f"{BASE}/evaluations", json=body)
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result


def finished(client: TestClient, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"{BASE}/evaluations/{run_id}").json()
        if run["status"] in ("completed", "failed", "cancelled"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def result_of(run: dict[str, Any], candidate: str, evaluator_name: str) -> dict[str, Any]:
    [found] = [
        r
        for r in run["summary"]["results"]
        if r["candidate"].startswith(candidate) and r["evaluator"] == evaluator_name
    ]
    return found


def test_a_candidate_is_compared_with_what_production_serves(
    fake: FakeProvider, client: TestClient
) -> None:
    control = version_with(client, "lower")
    deploy(client, "shout", control)
    candidate = version_with(client, "upper")
    dataset(client)
    evaluator(client, "exact", kind="builtin", builtin="exact_match")
    run = start(
        client,
        dataset="words",
        candidates=[{"prompt": "shout", "version": candidate}],
        evaluators=["exact"],
        concurrency=4,
        name="capitals",
    )
    assert run["status"] == "queued" and run["progress"]["total"] == 40
    assert [(c["version"], c["control"]) for c in run["candidates"]] == [
        (control, True),
        (candidate, False),
    ]
    run = finished(client, run["id"])
    assert run["status"] == "completed", run
    summary = run["summary"]
    assert summary["control"] == f"shout@{control} (production)"
    better = result_of(run, f"shout@{candidate}", "exact")
    assert (
        better["mean"]["value"] == 1.0
        and better["n"] == 20
        and better["interval"] == "Wilson score"
    )
    assert better["mean"]["low"] > 0.6  # Wilson: 20/20 → [0.84, 1]
    comparison = better["comparison"]
    assert (comparison["wins"], comparison["losses"], comparison["ties"]) == (20, 0, 0)
    assert comparison["verdict"] == "improved" and "sign test" in comparison["test"]
    assert comparison["mean_difference"]["value"] == 1.0
    base = result_of(run, f"shout@{control}", "exact")
    assert base["mean"]["value"] == 0.0 and base["comparison"] is None
    assert summary["verdict"] == "passed" and summary["failures"] == []
    totals = {c["label"]: c for c in summary["candidates"]}
    assert (
        totals[f"shout@{candidate}"]["logs"] == 20
        and totals[f"shout@{candidate}"]["output_tokens"] == 20
    )

    logs = client.get(f"{BASE}/logs", params={"source": "eval", "limit": 100}).json()["data"]
    assert len(logs) == 40 and all(log["metadata"]["evaluation"] == run["id"] for log in logs)
    rows = client.get(
        f"{BASE}/evaluations/{run['id']}/comparison", params={"evaluator": "exact"}
    ).json()
    assert len(rows) == 20 and all(r["difference"] == 1.0 for r in rows)
    assert {r["candidate_output"] for r in rows} == {w.upper() for w in WORDS}
    listed = client.get(f"{BASE}/evaluations").json()["data"]
    assert listed[0]["id"] == run["id"] and listed[0]["verdict"] == "passed"


def test_a_regression_or_a_missed_threshold_fails_the_run(
    fake: FakeProvider, client: TestClient
) -> None:
    good = version_with(client, "upper")
    deploy(client, "shout", good)
    worse = version_with(client, "half")
    dataset(client)
    evaluator(client, "exact", kind="builtin", builtin="exact_match")
    evaluator(client, "similar", kind="builtin", builtin="edit_similarity")
    run = finished(
        client,
        start(
            client,
            dataset="words",
            candidates=[{"prompt": "shout", "version": worse}],
            evaluators=["exact", "similar"],
            thresholds={"exact": 0.9},
        )["id"],
    )
    exact = result_of(run, f"shout@{worse}", "exact")
    assert exact["mean"]["value"] == 0.5
    assert (exact["comparison"]["wins"], exact["comparison"]["losses"]) == (0, 10)
    assert exact["comparison"]["verdict"] == "regressed"
    assert exact["passed_threshold"] is False
    similar = result_of(run, f"shout@{worse}", "similar")
    assert similar["interval"] == "Student t" and similar["mean"]["value"] == pytest.approx(0.5)
    assert similar["comparison"]["verdict"] == "regressed"
    summary = run["summary"]
    assert summary["verdict"] == "failed"
    assert any("exact regressed" in f for f in summary["failures"])
    assert any("exact is 0.5, needs >= 0.9" in f for f in summary["failures"])
    rows = client.get(
        f"{BASE}/evaluations/{run['id']}/comparison", params={"evaluator": "similar"}
    ).json()
    assert rows[0]["difference"] < 0 and rows[-1]["difference"] == 0  # regressions first


def test_a_model_swap_is_a_candidate_and_code_evaluators_run_sandboxed(
    fake: FakeProvider, client: TestClient, server: Server
) -> None:
    base = version_with(client, "lower")
    dataset(client, words=WORDS[:4])
    source = (
        "def evaluate(log, datapoint):\n"
        "    if datapoint['inputs']['word'] == 'river':\n"
        "        raise ValueError('no rivers')\n"
        "    return log['output'] == datapoint['target']\n"
    )
    member = server.client(server.key(role="member", name="member"))
    assert_error(
        member.post(
            f"{BASE}/evaluators/mine/-/versions",
            json={"kind": "code", "returns": "boolean", "source": source},
        ),
        403,
        "forbidden",
        "code evaluators",
    )
    assert_error(
        client.post(
            f"{BASE}/evaluators/broken/-/versions",
            json={
                "kind": "code",
                "returns": "boolean",
                "source": "def evaluate(log, datapoint):\n  return (\n",
            },
        ),
        400,
        "invalid_input",
        "line",
    )
    evaluator(client, "mine", kind="code", returns="boolean", source=source)
    run = finished(
        client,
        start(
            client,
            dataset="words",
            candidates=[
                {"prompt": "shout", "version": base},
                {"prompt": "shout", "version": base, "model": "fake/upper"},
            ],
            evaluators=["mine"],
            control=0,
        )["id"],
    )
    swapped = result_of(run, f"shout@{base} with fake/upper", "mine")
    assert swapped["n"] == 3 and swapped["errors"] == 1 and swapped["mean"]["value"] == 1.0
    assert {r.model for r, _ in fake.requests} == {"lower", "upper"}


def test_an_llm_judge_keeps_its_reasoning_and_humans_judge_later(
    fake: FakeProvider, client: TestClient
) -> None:
    answer = version_with(client, "upper")
    judge = save(
        client,
        "judges/capitals",
        "Is this in capitals? {{ output }}",
        provider="fake",
        model="judge",
    )["id"]
    dataset(client, words=WORDS[:3])
    evaluator(
        client,
        "capitals",
        kind="llm",
        returns="boolean",
        judge={"prompt": "judges/capitals", "version": judge},
    )
    evaluator(client, "review", kind="human", returns="number")
    run = finished(
        client,
        start(
            client,
            dataset="words",
            candidates=[{"prompt": "shout", "version": answer}],
            evaluators=["capitals", "review"],
        )["id"],
    )
    judged = result_of(run, "shout", "capitals")
    assert judged["mean"]["value"] == 1.0 and judged["n"] == 3
    review = result_of(run, "shout", "review")
    assert review["pending"] == 3 and review["n"] == 0

    pending = client.get(f"{BASE}/judgments/pending", params={"run": run["id"]}).json()
    assert len(pending) == 3 and pending[0]["output"] in {w.upper() for w in WORDS[:3]}
    assert_error(
        client.post(f"{BASE}/judgments/{pending[0]['id']}", json={"value": "great"}),
        400,
        "invalid_input",
        "a number",
    )
    for score, item in zip([4, 5, 3], pending, strict=True):
        given = client.post(
            f"{BASE}/judgments/{item['id']}", json={"value": score, "explanation": "ok"}
        )
        assert given.status_code == 200, given.text
    run = client.get(f"{BASE}/evaluations/{run['id']}").json()
    review = result_of(run, "shout", "review")
    assert review["pending"] == 0 and review["mean"]["value"] == 4.0 and review["mean"]["n"] == 3
    assert client.get(f"{BASE}/judgments/pending").json() == []


def test_try_an_evaluator_on_a_log_before_saving_it(fake: FakeProvider, client: TestClient) -> None:
    version = version_with(client, "upper")
    deploy(client, "shout", version)
    log_id = client.post(f"{BASE}/prompts/shout/-/call", json={"inputs": {"word": "stone"}}).json()[
        "log_id"
    ]
    tried = client.post(
        f"{BASE}/evaluators/-/try",
        json={
            "log_id": log_id,
            "draft": {"kind": "builtin", "builtin": "exact_match"},
            "target": "STONE",
        },
    )
    assert tried.status_code == 200, tried.text
    assert tried.json()["value"] is True
    assert client.get(f"{BASE}/evaluators").json() == []  # nothing saved
    assert_error(
        client.post(
            f"{BASE}/evaluators/-/try",
            json={"log_id": "nope", "draft": {"kind": "builtin", "builtin": "exact_match"}},
        ),
        404,
        "not_found",
    )


def test_bad_runs_are_refused_with_what_to_fix(fake: FakeProvider, client: TestClient) -> None:
    version = version_with(client, "upper")
    dataset(client)
    evaluator(client, "exact", kind="builtin", builtin="exact_match")
    body = {
        "dataset": "words",
        "candidates": [{"prompt": "shout", "version": version}],
        "evaluators": ["exact"],
    }
    for change, status, code in [
        ({"dataset": "nope"}, 404, "not_found"),
        ({"evaluators": ["missing"]}, 404, "not_found"),
        ({"evaluators": ["exact", "exact"]}, 400, "invalid_input"),
        ({"control": 5}, 400, "invalid_input"),
        ({"thresholds": {"other": 1}}, 400, "invalid_input"),
        ({"concurrency": 0}, 422, "validation_error"),
        ({"candidates": [{"prompt": "shout", "version": "ffffffff"}]}, 404, "not_found"),
        ({"candidates": []}, 422, "validation_error"),
    ]:
        assert_error(client.post(f"{BASE}/evaluations", json={**body, **change}), status, code)
    assert_error(
        client.post(f"{BASE}/evaluators/x/-/versions", json={"kind": "builtin", "builtin": "nope"}),
        400,
        "invalid_input",
        "exact_match",
    )
    assert client.get(f"{BASE}/evaluations").json()["data"] == []


def test_a_run_can_be_cancelled(client: TestClient) -> None:
    with registered(FakeProvider(respond=respond, delay=0.3)):
        version = version_with(client, "upper")
        dataset(client)
        evaluator(client, "exact", kind="builtin", builtin="exact_match")
        run = start(
            client,
            dataset="words",
            candidates=[{"prompt": "shout", "version": version}],
            evaluators=["exact"],
            concurrency=1,
        )
        time.sleep(0.5)
        cancelled = client.post(f"{BASE}/evaluations/{run['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        run = finished(client, run["id"])
    assert run["status"] == "cancelled"
    assert run["progress"]["done"] < run["progress"]["total"]
    assert_error(
        client.post(f"{BASE}/evaluations/{run['id']}/cancel"), 400, "invalid_input", "already"
    )


def test_a_run_resumes_after_a_restart_without_repeating_finished_work(
    settings: Settings,
) -> None:
    slow = FakeProvider(respond=respond, delay=0.1)
    settings = settings.model_copy(update={"job_stale_after_s": 1.0})
    with registered(slow):
        app = create_app(settings)
        with TestClient(app) as first:
            server = Server(settings, app)
            first.headers["Authorization"] = f"Bearer {server.key()}"
            version = version_with(first, "upper")
            dataset(first, words=WORDS + WORDS[:10])  # 30 datapoints (repeats are fine)
            evaluator(first, "exact", kind="builtin", builtin="exact_match")
            run = start(
                first,
                dataset="words",
                candidates=[{"prompt": "shout", "version": version}],
                evaluators=["exact"],
                concurrency=2,
            )
            deadline = time.monotonic() + 30
            while first.get(f"{BASE}/evaluations/{run['id']}").json()["progress"]["done"] < 6:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        # The server stopped mid-run; a new one takes the job over once its heartbeat is stale.
        calls_before = len(slow.requests)
        assert calls_before < 30
        with TestClient(create_app(settings)) as second:
            second.headers["Authorization"] = first.headers["Authorization"]
            done = finished(second, run["id"])
    assert done["status"] == "completed", done
    assert result_of(done, "shout", "exact")["n"] == 30
    # Every datapoint was called once; only calls in flight at the stop were repeated.
    assert 30 <= len(slow.requests) <= 30 + 2


def test_local_mode_runs_your_function_and_the_server_evaluates(
    fake: FakeProvider, client: TestClient
) -> None:
    dataset(client, words=WORDS[:4])
    evaluator(client, "exact", kind="builtin", builtin="exact_match")
    run = start(
        client,
        dataset="words",
        candidates=[{"label": "my-function"}],
        evaluators=["exact"],
        mode="local",
    )
    plan = client.get(f"{BASE}/evaluations/{run['id']}/datapoints").json()
    assert plan["candidates"] == ["my-function"] and len(plan["datapoints"]) == 4
    outputs = [
        {
            "datapoint": p["key"],
            "output": p["inputs"]["word"].upper() if i < 3 else "wrong",
            "latency_ms": 5,
        }
        for i, p in enumerate(plan["datapoints"])
    ]
    recorded = client.post(f"{BASE}/evaluations/{run['id']}/outputs", json={"outputs": outputs})
    assert recorded.status_code == 201 and recorded.json() == {"recorded": 4}
    assert_error(
        client.post(f"{BASE}/evaluations/{run['id']}/outputs", json={"outputs": outputs[:1]}),
        400,
        "invalid_input",
        "already has an output",
    )
    assert client.post(f"{BASE}/evaluations/{run['id']}/finish").status_code == 200
    run = finished(client, run["id"])
    assert run["status"] == "completed"
    exact = result_of(run, "my-function", "exact")
    assert exact["mean"]["value"] == 0.75 and exact["n"] == 4
    assert fake.requests == []  # promptloop called no model


def test_open_local_runs_do_not_hold_up_other_runs(fake: FakeProvider, client: TestClient) -> None:
    """A local run waiting for outputs holds no worker slot: more of them than the worker has
    slots, and a server run still completes; one finished right away completes too."""
    version = version_with(client, "upper")
    dataset(client, words=WORDS[:2])
    evaluator(client, "exact", kind="builtin", builtin="exact_match")
    local = {"dataset": "words", "candidates": [{"label": "f"}], "evaluators": ["exact"]}
    waiting = [start(client, **local, mode="local")["id"] for _ in range(6)]
    served = start(
        client,
        dataset="words",
        candidates=[{"prompt": "shout", "version": version}],
        evaluators=["exact"],
    )
    assert finished(client, served["id"], timeout=20)["status"] == "completed"
    assert {client.get(f"{BASE}/evaluations/{r}").json()["status"] for r in waiting} <= {
        "queued",
        "running",
    }
    # Finished before the worker looked at it: it still completes (nothing was evaluated).
    quick = start(client, **local, mode="local")["id"]
    assert client.post(f"{BASE}/evaluations/{quick}/finish").status_code == 200
    assert finished(client, quick, timeout=20)["status"] == "completed"
    cancelled = client.post(f"{BASE}/evaluations/{waiting[0]}/cancel").json()
    assert cancelled["status"] == "cancelled"
