"""`client.datasets`, `client.evaluators` and `client.evaluations` against the real app.

As in test_sdk_feedback.py, one app serves the module and each test has its own project;
`Client` sends through a Starlette TestClient and `AsyncClient` through `httpx.ASGITransport`.
Server-mode runs call tests/fakes.py's FakeProvider, whose answer depends on the model: `upper`
answers right (the word in capitals), `half` on every other word, `lower` never.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from promptloop import (
    AsyncClient,
    BadRequestError,
    Client,
    Datapoint,
    EvaluationRun,
    NotFoundError,
    RunResult,
)
from promptloop.api.app import create_app
from promptloop.core.access import SYSTEM
from promptloop.providers.base import ChatRequest
from promptloop.services import api_keys, projects
from promptloop.settings import Settings
from tests.fakes import FakeProvider, registered

URL = "http://testserver"
WORDS = ["apple", "river", "stone", "cloud", "amber", "maple", "tiger", "ocean"]
SHOUT = [{"role": "user", "content": "Shout {{ word }}"}]


def respond(request: ChatRequest) -> str:
    word = str((request.messages or [{}])[-1].get("content", "")).rsplit(" ", 1)[-1]
    if request.model == "upper":
        return word.upper()
    if request.model == "half":
        return word.upper() if WORDS.index(word) % 2 == 0 else word
    return word.lower()


@pytest.fixture(autouse=True)
def _no_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROMPTLOOP_URL", "PROMPTLOOP_API_KEY", "PROMPTLOOP_PROJECT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    with registered(FakeProvider(respond=respond)):
        yield create_app(Settings(data_dir=tmp_path_factory.mktemp("server")))


@pytest.fixture(scope="module")
def server(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def project(server: TestClient, request: pytest.FixtureRequest) -> tuple[str, str]:
    """A new project for this test, and an admin API key of it."""
    name = "t-" + request.node.name.removeprefix("test_").replace("_", "-")[:50]
    with server.app.state.db.session(write=True) as session:  # type: ignore[attr-defined]
        found = projects.ensure_project(session, name=name)
        key = api_keys.create_key(session, actor=SYSTEM, project=found, name="sdk", role="admin")
    return name, key.secret


@pytest.fixture
def sdk(server: TestClient, project: tuple[str, str]) -> Iterator[Client]:
    name, key = project
    with Client(URL, http_client=server, api_key=key, project=name) as client:
        yield client


@pytest.fixture
async def async_sdk(app: FastAPI, project: tuple[str, str]) -> AsyncIterator[AsyncClient]:
    name, key = project
    transport = httpx.ASGITransport(app=app)
    async with AsyncClient(URL, transport=transport, api_key=key, project=name) as client:
        yield client


def words(client: Client, name: str = "words", chosen: list[str] = WORDS) -> str:
    points = [{"inputs": {"word": w}, "target": w.upper()} for w in chosen]
    return client.datasets.create(name, points, message="the words").id


def result(run: EvaluationRun, candidate: str, evaluator: str) -> RunResult:
    assert run.summary is not None, run
    [found] = [
        r
        for r in run.summary.results
        if r.candidate.startswith(candidate) and r.evaluator == evaluator
    ]
    return found


# --- datasets ---------------------------------------------------------------------------------


def test_a_dataset_round_trips_through_edits_downloads_and_uploads(
    sdk: Client, tmp_path: Path
) -> None:
    points = [
        {"inputs": {"question": "Where is my order?"}, "target": "It ships today."},
        {"inputs": {}, "messages": [{"role": "user", "content": "Hi"}], "target": "Hello!"},
        {"inputs": {"question": "Refund?"}},
    ]
    first = sdk.datasets.create("support/questions", points, message="v1", description="Qs")
    assert (first.created, first.count, first.dataset, first.message) == (
        True,
        3,
        "support/questions",
        "v1",
    )
    assert sdk.datasets.create("support/questions", points).created is False

    read = list(sdk.datasets.datapoints("support/questions"))
    assert all(isinstance(d, Datapoint) for d in read)
    assert [d.position for d in read] == [0, 1, 2] and read[1].messages == points[1]["messages"]
    edited = sdk.datasets.edit(
        "support/questions",
        remove=[read[2]],  # a datapoint read back, or its key
        add=[{"inputs": {"question": "Cancel?"}, "target": "Done."}],
        message="swap one",
    )
    assert edited.created and edited.count == 3 and edited.id != first.id
    assert [d.inputs for d in sdk.datasets.datapoints("support/questions", first.id)][2] == {
        "question": "Refund?"
    }
    assert sdk.datasets.version("support/questions").id == edited.id
    assert [v.id for v in sdk.datasets.versions("support/questions")] == [edited.id, first.id]
    dataset = sdk.datasets.get("support/questions")
    assert (dataset.latest_version, dataset.count, dataset.description) == (edited.id, 3, "Qs")

    # A download uploads back to the same content, hence the same content-addressed id.
    jsonl = sdk.datasets.download("support/questions", first.id)
    assert isinstance(jsonl, bytes) and len(jsonl.splitlines()) == 3
    assert json.loads(jsonl.splitlines()[0])["target"] == "It ships today."
    copy = sdk.datasets.upload("copies/questions", jsonl, format="jsonl", message="copied")
    assert (copy.id, copy.created, copy.source) == (first.id, True, "upload")
    # Datapoints read from one dataset can seed another.
    seeded = sdk.datasets.create("copies/seeded", read)
    assert seeded.id == first.id

    sheet = tmp_path / "sheet.csv"
    sheet.write_text("question,target\nWhere?,Here.\nWhen?,Now.\n")
    uploaded = sdk.datasets.upload("support/sheet", sheet)
    assert uploaded.count == 2
    assert [d.inputs for d in sdk.datasets.datapoints("support/sheet")] == [
        {"question": "Where?"},
        {"question": "When?"},
    ]
    csv = sdk.datasets.download("support/sheet", format="csv")
    assert csv.decode().splitlines()[0].split(",")[-1] == "target"
    assert {d.name for d in sdk.datasets.list(prefix="support/")} == {
        "support/questions",
        "support/sheet",
    }

    with pytest.raises(ValueError, match="format="):
        sdk.datasets.upload("support/sheet", b"question\nWhere?\n")
    with pytest.raises(BadRequestError) as bad:
        sdk.datasets.upload("support/bad", b'{"inputs": 1}\nnot json\n', format="jsonl")
    assert "Line 1" in str(bad.value) and bad.value.details
    with pytest.raises(NotFoundError):
        sdk.datasets.get("support/nope")


def test_a_dataset_is_made_from_logs(sdk: Client) -> None:
    version = sdk.prompts.save("shout", provider="fake", model="upper", messages=SHOUT).id
    for word in WORDS[:3]:
        sdk.prompts.call("shout", {"word": word}, version=version)
    made = sdk.datasets.from_logs("from-logs", prompt="shout", limit=2, message="recent")
    assert made.created and made.count == 2 and made.source == "logs" and made.skipped == 0
    targets = {d.target for d in sdk.datasets.datapoints("from-logs")}
    assert targets <= {w.upper() for w in WORDS[:3]} and len(targets) == 2


# --- evaluators -------------------------------------------------------------------------------


def test_evaluators_are_saved_listed_and_tried_on_a_log(sdk: Client) -> None:
    saved = sdk.evaluators.save("exact", "builtin", builtin="exact_match", message="first")
    assert (saved.created, saved.kind, saved.returns, saved.higher_is_better) == (
        True,
        "builtin",
        "boolean",
        True,
    )
    again = sdk.evaluators.save("exact", "builtin", builtin="exact_match")
    assert (again.created, again.version) == (False, saved.version)
    loose = sdk.evaluators.save(
        "exact", "builtin", builtin="exact_match", config={"case_sensitive": False}
    )
    assert loose.created and loose.version != saved.version
    assert [e.version for e in sdk.evaluators.versions("exact")] == [loose.version, saved.version]
    assert [(e.name, e.version) for e in sdk.evaluators.list()] == [("exact", loose.version)]

    version = sdk.prompts.save("shout", provider="fake", model="lower", messages=SHOUT).id
    log_id = sdk.prompts.call("shout", {"word": "Stone"}, version=version).log_id
    assert sdk.evaluators.try_on(log_id, "exact", target="STONE").value is True
    strict = sdk.evaluators.try_on(log_id, f"exact@{saved.version}", target="STONE")
    assert strict.value is False and strict.error is None
    draft = sdk.evaluators.try_on(
        log_id, draft={"kind": "builtin", "builtin": "contains", "config": {"value": "st"}}
    )
    assert draft.value is True
    assert [e.name for e in sdk.evaluators.list()] == ["exact"]  # the draft was not saved
    with pytest.raises(BadRequestError, match="exact_match"):
        sdk.evaluators.save("bad", "builtin", builtin="nope")


# --- runs on the server -----------------------------------------------------------------------


def test_a_server_run_is_started_waited_for_and_passes(sdk: Client) -> None:
    control = sdk.prompts.save("shout", provider="fake", model="lower", messages=SHOUT).id
    sdk.prompts.deploy("shout", control, environment="production")
    candidate = sdk.prompts.save("shout", provider="fake", model="upper", messages=SHOUT).id
    words(sdk)
    sdk.evaluators.save("exact", "builtin", builtin="exact_match")

    started = sdk.evaluations.start(
        "words", [{"prompt": "shout", "version": candidate}], ["exact"], name="capitals"
    )
    assert started.status == "queued" and not started.finished
    assert [(c.version, c.control) for c in started.candidates] == [
        (control, True),
        (candidate, False),
    ]
    seen: list[EvaluationRun] = []
    run = sdk.evaluations.wait(started.id, timeout=60, poll=0.1, on_progress=seen.append)
    assert run.status == "completed" and run.passed and run.finished
    assert seen[-1] == run and run.progress["done"] == run.progress["total"] == 16
    better = result(run, f"shout@{candidate}", "exact")
    assert better.mean.value == 1.0 and better.n == 8 and not better.failed
    assert better.comparison is not None and better.comparison.verdict == "improved"
    assert (better.comparison.wins, better.comparison.losses) == (8, 0)
    assert run.summary is not None and run.summary.control == f"shout@{control} (production)"
    totals = {t.label: t for t in run.summary.candidates}
    assert totals[f"shout@{candidate}"].logs == 8

    rows = sdk.evaluations.comparison(run.id, "exact")
    assert len(rows) == 8 and all(r.difference == 1.0 for r in rows)
    assert {r.candidate_output for r in rows} == {w.upper() for w in WORDS}
    listed = list(sdk.evaluations.list())
    assert listed[0].id == run.id and listed[0].verdict == "passed"


def test_a_regression_or_a_missed_threshold_fails_the_run(sdk: Client) -> None:
    good = sdk.prompts.save("shout", provider="fake", model="upper", messages=SHOUT).id
    worse = sdk.prompts.save("shout", provider="fake", model="half", messages=SHOUT).id
    words(sdk)
    sdk.evaluators.save("exact", "builtin", builtin="exact_match")
    started = sdk.evaluations.start(
        "words",
        [{"prompt": "shout", "version": worse}, {"prompt": "shout", "version": good}],
        ["exact"],
        control=1,
        thresholds={"exact": 0.9},
    )
    run = sdk.evaluations.wait(started.id, timeout=60, poll=0.1)
    assert run.status == "completed" and not run.passed
    exact = result(run, f"shout@{worse}", "exact")
    assert exact.mean.value == 0.5 and exact.passed_threshold is False and exact.failed
    assert run.summary is not None and run.summary.verdict == "failed"
    assert any("needs >= 0.9" in f for f in run.summary.failures)


def test_waiting_gives_up_after_the_timeout_and_a_run_can_be_cancelled(sdk: Client) -> None:
    words(sdk)
    sdk.evaluators.save("exact", "builtin", builtin="exact_match")
    started = sdk.evaluations.start("words", [{"label": "mine"}], ["exact"], mode="local")
    with pytest.raises(TimeoutError, match=r"still (running|queued)"):
        sdk.evaluations.wait(started.id, timeout=0.3, poll=0.1)
    assert sdk.evaluations.cancel(started.id).id == started.id
    assert sdk.evaluations.wait(started.id, timeout=30, poll=0.1).status == "cancelled"


# --- local runs -------------------------------------------------------------------------------


def test_a_local_run_calls_a_function_and_counts_its_exceptions(sdk: Client) -> None:
    words(sdk)
    sdk.evaluators.save("exact", "builtin", builtin="exact_match")
    seen: list[tuple[dict[str, Any], Any]] = []

    def shout(inputs: dict[str, Any], messages: list[dict[str, Any]] | None) -> str:
        seen.append((inputs, messages))
        if inputs["word"] == "river":
            raise RuntimeError("no rivers")
        return str(inputs["word"]).upper() if inputs["word"] != "stone" else "pebble"

    run = sdk.evaluations.run(
        shout,
        dataset="words",
        evaluators=["exact"],
        label="my-function",
        thresholds={"exact": 0.5},
        concurrency=3,
        name="local",
        poll=0.1,
    )
    assert run.status == "completed" and run.mode == "local" and run.passed
    assert sorted(i["word"] for i, _ in seen) == sorted(WORDS) and seen[0][1] is None
    exact = result(run, "my-function", "exact")
    assert (exact.n, exact.errors, exact.mean.value) == (7, 1, pytest.approx(6 / 7))
    assert run.summary is not None
    [totals] = run.summary.candidates
    assert totals.logs == 8 and totals.errors == 1 and totals.latency_ms["p50"] is not None
    failed = [log for log in sdk.logs.list(source="eval") if log.metadata["evaluation"] == run.id]
    assert [log.error for log in failed if log.error] == ["RuntimeError: no rivers"]


def test_a_local_run_that_breaks_off_is_cancelled(sdk: Client) -> None:
    words(sdk)
    sdk.evaluators.save("exact", "builtin", builtin="exact_match")

    class Stop(BaseException):
        pass

    def interrupted(inputs: dict[str, Any], messages: Any) -> str:
        raise Stop

    with pytest.raises(Stop):
        sdk.evaluations.run(interrupted, dataset="words", evaluators=["exact"], concurrency=1)
    [listed] = list(sdk.evaluations.list())
    assert sdk.evaluations.wait(listed.id, timeout=30, poll=0.1).status == "cancelled"


async def test_the_async_client_runs_coroutine_and_plain_functions(
    async_sdk: AsyncClient,
) -> None:
    points = [{"inputs": {"word": w}, "target": w.upper()} for w in WORDS]
    await async_sdk.datasets.create("words", points)
    await async_sdk.evaluators.save("exact", "builtin", builtin="exact_match")
    running = 0
    most = 0

    async def shout(inputs: dict[str, Any], messages: Any) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return str(inputs["word"]).upper()

    run = await async_sdk.evaluations.run(
        shout, dataset="words", evaluators=["exact"], concurrency=2, poll=0.1, timeout=30
    )
    assert run.passed and result(run, "local", "exact").mean.value == 1.0
    assert most == 2

    def whisper(inputs: dict[str, Any], messages: Any) -> dict[str, str]:
        return {"word": str(inputs["word"])}  # not text: sent as JSON

    quiet = await async_sdk.evaluations.run(
        whisper, dataset="words", evaluators=["exact"], label="whisper", poll=0.1
    )
    assert result(quiet, "whisper", "exact").mean.value == 0.0
    rows = [r async for r in async_sdk.evaluations.list()]
    assert [r.id for r in rows] == [quiet.id, run.id]
    sheet = await async_sdk.datasets.upload("sheet", b"word,target\nhi,HI\n", format="csv")
    assert sheet.count == 1 and await async_sdk.datasets.download("sheet") != b""
    assert [d.inputs async for d in async_sdk.datasets.datapoints("sheet")] == [{"word": "hi"}]


async def test_both_clients_have_the_same_evaluation_methods() -> None:
    def methods(namespace: object) -> set[str]:
        return {name for name in dir(namespace) if not name.startswith("_")}

    with Client("http://sdk.test") as sync:
        async with AsyncClient("http://sdk.test") as asynchronous:
            for namespace in ("datasets", "evaluators", "evaluations"):
                assert methods(getattr(sync, namespace)) == methods(
                    getattr(asynchronous, namespace)
                )
    assert sync.evaluations.run.__qualname__ == "Evaluations.run"
    assert list(inspect.signature(sync.datasets.download).parameters) == [
        "name",
        "version",
        "format",
    ]
