"""Fine-tuning through OpenAI's fine-tuning API (method `openai`), against a fake of that API on
loopback (nothing here may call OpenAI): the job uploads the set, follows OpenAI's job with its
progress, registers the model OpenAI made with its lineage in its own project; cancelling
cancels it there; an upstream failure fails the job with OpenAI's message."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from promptloop import Client
from promptloop.cli import main as cli_main
from promptloop.services.finetunes import Trainer
from tests.conftest import Server
from tests.fake_finetuning import FakeFineTuning
from tests.helpers import BASE, assert_error, save

BASE_MODEL = "openai/gpt-4o-mini-2024-07-18"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFineTuning]:
    monkeypatch.setattr(Trainer, "openai_poll_s", 0.05)
    with FakeFineTuning(steps=3) as fake:
        yield fake


def _setup(client: TestClient, fake: FakeFineTuning, *, key: bool = True) -> dict[str, Any]:
    if key:
        stored = client.put(
            f"{BASE}/provider-keys/openai",
            json={"api_key": "sk-test-finetune", "base_url": fake.openai_url},
        )
        assert stored.status_code == 200, stored.text
    version = save(client, "orders/extract", "Extract: {{ text }}")["id"]
    points = [{"inputs": {"text": f"order {i}"}, "target": json.dumps({"n": i})} for i in range(10)]
    saved = client.post(f"{BASE}/datasets/orders/-/versions", json={"datapoints": points})
    assert saved.status_code == 201, saved.text
    return {
        "name": "orders-ft",
        "dataset": "orders",
        "prompt": "orders/extract",
        "version": version,
        "method": "openai",
        "base_model": BASE_MODEL,
        "hyperparameters": {"n_epochs": 2},
    }


def _wait(client: TestClient, tune_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] = client.get(f"{BASE}/fine-tunes/{tune_id}").json()
        if found["status"] in ("completed", "failed", "cancelled"):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def test_an_openai_fine_tune_uploads_follows_and_registers_the_model(
    client: TestClient, server: Server, fake: FakeFineTuning
) -> None:
    body = _setup(client, fake)
    started = client.post(f"{BASE}/fine-tunes", json=body)
    assert started.status_code == 202, started.text
    assert started.json()["model"] is None and started.json()["method"] == "openai"
    assert (started.json()["dataset"], started.json()["prompt"]) == ("orders", "orders/extract")
    assert started.json()["prompt_version"] == body["version"]
    tune = _wait(client, started.json()["id"])
    assert tune["status"] == "completed", tune

    [job] = fake.jobs.values()
    assert fake.keys == {"Bearer sk-test-finetune"}
    assert job.model == "gpt-4o-mini-2024-07-18" and job.suffix == "orders-ft"
    assert job.method == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 2}},
    }
    _name, training = fake.files[job.training_file]
    lines = [json.loads(line) for line in training.decode().splitlines()]
    assert job.validation_file is not None
    held_out = fake.files[job.validation_file][1].decode().splitlines()
    assert len(lines) + len(held_out) == 10 and held_out
    assert lines[0]["messages"][-1]["role"] == "assistant"
    assert lines[0]["messages"][-2]["content"].startswith("Extract: order ")

    model = f"ft:gpt-4o-mini-2024-07-18:promptloop:orders-ft:{job.id[-8:]}"
    assert tune["model"] == f"openai/{model}"
    assert tune["progress"]["step"] == 3 and tune["progress"]["total_steps"] == 3
    assert tune["progress"]["openai_job"] == job.id
    assert tune["progress"]["remaining_s"] == 0.0 and tune["progress"]["elapsed_s"] > 0
    metrics = tune["metrics"]
    assert metrics["train_examples"] == len(lines) and metrics["held_out_examples"] == len(held_out)
    assert metrics["train_loss"] == round(2.0 / 3, 4) and metrics["held_out_loss"] is not None
    artifacts = Path(metrics["artifacts"])
    assert artifacts.is_relative_to(server.settings.data_dir)
    assert (artifacts / "train.jsonl").read_bytes() == training
    assert json.loads((artifacts / "result.json").read_text())["status"] == "succeeded"

    catalogue = client.get(f"{BASE}/models", params={"provider": "openai"}).json()
    [registered] = [m for m in catalogue if m["name"] == model]
    assert client.post(f"{BASE}/fine-tunes", json=body).status_code == 409  # names are unique
    # Another project neither sees it nor may call it.
    server.project("other")
    outsider = server.client(server.key(project="other", role="admin", name="other-admin"))
    others = outsider.get(f"{BASE}/models", params={"provider": "openai"}).json()
    assert model not in {m["name"] for m in others} and registered


def test_cancelling_an_openai_fine_tune_cancels_it_there(
    client: TestClient, fake: FakeFineTuning
) -> None:
    fake.hold = True
    started = client.post(f"{BASE}/fine-tunes", json=_setup(client, fake)).json()
    deadline = time.monotonic() + 30
    while not fake.jobs or next(iter(fake.jobs.values())).step < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    running = client.get(f"{BASE}/fine-tunes/{started['id']}").json()
    assert running["status"] == "running"
    cancelled = client.post(f"{BASE}/fine-tunes/{started['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    tune = _wait(client, started["id"])
    assert tune["status"] == "cancelled" and tune["model"] is None
    assert fake.cancelled == list(fake.jobs)
    assert next(iter(fake.jobs.values())).status == "cancelled"


def test_an_upstream_failure_fails_the_job_with_its_message(
    client: TestClient, fake: FakeFineTuning
) -> None:
    fake.fail_at, fake.failure = 2, "Training file has examples over the token limit."
    body = _setup(client, fake)
    tune = _wait(client, client.post(f"{BASE}/fine-tunes", json=body).json()["id"])
    assert tune["status"] == "failed" and tune["model"] is None
    assert "Training file has examples over the token limit." in tune["error"]

    fake.fail_at, fake.refuse = None, (400, "Model gpt-4o-mini-2024-07-18 is not available.")
    refused = client.post(f"{BASE}/fine-tunes", json={**body, "name": "second"}).json()
    tune = _wait(client, refused["id"])
    assert tune["status"] == "failed"
    assert "answered 400" in tune["error"] and "is not available" in tune["error"]


def test_bad_openai_fine_tunes_are_refused_with_what_to_fix(
    client: TestClient, server: Server, fake: FakeFineTuning
) -> None:
    body = _setup(client, fake, key=False)
    assert_error(client.post(f"{BASE}/fine-tunes", json=body), 400, "invalid_input", "'openai' key")
    client.put(
        f"{BASE}/provider-keys/openai", json={"api_key": "sk-x", "base_url": fake.openai_url}
    )
    for change, fragment in [
        ({"base_model": "local/smollm2-135m"}, "openai/<a model"),
        ({"hyperparameters": {"r": 8}}, "unknown r"),
        ({"hyperparameters": {"n_epochs": 0}}, "above 0"),
        ({"hyperparameters": {"n_epochs": 1.5}}, "whole number"),
        ({"method": "magic"}, "'lora'"),
    ]:
        assert_error(
            client.post(f"{BASE}/fine-tunes", json={**body, **change}),
            400,
            "invalid_input",
            fragment,
        )
    member = server.client(server.key(role="member", name="member"))
    assert_error(member.post(f"{BASE}/fine-tunes", json=body), 403, "forbidden")
    assert fake.jobs == {} and client.get(f"{BASE}/fine-tunes").json()["data"] == []


def test_the_sdk_and_the_command_line_start_follow_and_export(
    client: TestClient, server: Server, fake: FakeFineTuning, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _setup(client, fake)
    key = server.key(role="developer", name="sdk")
    with Client("http://testserver", http_client=client, api_key=key) as sdk:
        started = sdk.fine_tunes.start(
            "sdk-ft",
            dataset="orders",
            prompt="orders/extract",
            version=body["version"],
            method="openai",
            base_model=BASE_MODEL,
        )
        seen: list[str] = []
        done = sdk.fine_tunes.wait(
            started.id, poll=0.05, on_progress=lambda t: seen.append(t.status)
        )
        assert done.status == "completed" and done.model and done.model.startswith("openai/ft:")
        assert seen[-1] == "completed" and [t.id for t in sdk.fine_tunes.list()] == [started.id]
        exported = sdk.fine_tunes.export("orders", "orders/extract", version=body["version"])
        assert len(exported.decode().splitlines()) == 10

    def local_client(url: str, **kwargs: Any) -> Client:
        return Client(url, http_client=client, **kwargs)

    monkeypatch.setattr(cli_main, "Client", local_client)
    runner = CliRunner()
    base = ["--url", "http://testserver", "--api-key", key, "fine-tunes"]
    start = [*base, "start", "cli-ft", "--dataset", "orders", "--prompt", "orders/extract"]
    options = ["--version", body["version"], "--method", "openai", "--base-model", BASE_MODEL]
    ran = runner.invoke(
        cli_main.app, [*start, *options, "--hyperparameters", '{"n_epochs": 1}', "--wait"]
    )
    assert ran.exit_code == 0, ran.output
    assert " cli-ft " in ran.stdout and "completed" in ran.stdout and "openai/ft:" in ran.stdout
    listed = runner.invoke(cli_main.app, [*base, "list"])
    assert listed.stdout.count("completed") == 2
    tune_id = ran.stdout.split()[0]
    shown = runner.invoke(cli_main.app, [*base, "show", tune_id])
    assert "train_examples" in shown.stdout
    bad = runner.invoke(cli_main.app, [*start, "--hyperparameters", "[1]"])
    assert bad.exit_code != 0 and "JSON object" in bad.output
