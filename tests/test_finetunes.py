"""Fine-tuning through the API, for real on the CPU (a tiny LoRA job on the offline SmolLM2):
the job trains, registers its model with lineage, serves it in its own project only, and
queues an evaluation against production on the held-out data.

Needs the local model stack: skips without it, unless PROMPTLOOP_REQUIRE_LOCAL_MODEL=1 (CI).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from promptloop.finetune.demo import SYSTEM_PROMPT, extraction_examples
from tests.conftest import Server
from tests.helpers import BASE, assert_error, deploy, save
from tests.test_local_provider import needs_model

pytestmark = [needs_model, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base model converted once for the module (or in PROMPTLOOP_TEST_MODELS_DIR)."""
    from promptloop.providers import _local_model, local

    configured = os.environ.get("PROMPTLOOP_TEST_MODELS_DIR")
    folder = (
        Path(configured) if configured else tmp_path_factory.mktemp("models")
    ) / "smollm2-135m"
    _local_model.ensure_converted(local.gguf_path(local.BASE_MODELS["smollm2-135m"]), folder)
    return folder


@pytest.fixture
def app_client(converted: Path, client: TestClient, server: Server) -> Iterator[TestClient]:
    from promptloop.providers import local

    models = server.settings.data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "smollm2-135m").symlink_to(converted, target_is_directory=True)
    registered = set(local.provider.adapters)
    yield client
    for name in set(local.provider.adapters) - registered:  # the provider is process-wide
        del local.provider.adapters[name]


def wait(client: TestClient, url: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] = client.get(url).json()
        if found["status"] in ("completed", "failed", "cancelled"):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.5)


def test_a_fine_tune_trains_registers_serves_in_its_project_and_is_evaluated(
    app_client: TestClient, server: Server
) -> None:
    client = app_client
    examples = extraction_examples(12, seed=3)
    version = save(
        client,
        "orders/extract",
        "{{ text }}",
        provider="local",
        model="smollm2-135m",
        messages=[
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "{{ text }}"},
        ],
        parameters={"max_tokens": 8, "temperature": 0},
    )["id"]
    deploy(client, "orders/extract", version)
    points = [
        {"inputs": {"text": e.messages[1]["content"]}, "target": e.messages[2]["content"]}
        for e in examples
    ]
    assert (
        client.post(f"{BASE}/datasets/orders/-/versions", json={"datapoints": points}).status_code
        == 201
    )
    client.post(
        f"{BASE}/evaluators/exact/-/versions", json={"kind": "builtin", "builtin": "exact_match"}
    )
    body = {
        "name": "orders-tiny",
        "dataset": "orders",
        "prompt": "orders/extract",
        "hyperparameters": {"max_steps": 2, "batch_size": 2, "max_length": 64},
        "evaluators": ["exact"],
    }
    member = server.client(server.key(role="member", name="member"))
    assert_error(member.post(f"{BASE}/fine-tunes", json=body), 403, "forbidden", "fine-tuning")
    for change, fragment in [
        ({"hyperparameters": {"r": 0}}, "r must be at least 1"),
        ({"base_model": "openai/gpt-4o"}, "base_model"),
        ({"evaluators": ["nope"]}, "nope"),
    ]:
        refused = client.post(f"{BASE}/fine-tunes", json={**body, **change})
        assert refused.status_code in (400, 404), refused.text
        assert fragment in refused.text

    started = client.post(f"{BASE}/fine-tunes", json=body)
    assert started.status_code == 202, started.text
    tune = wait(client, f"{BASE}/fine-tunes/{started.json()['id']}")
    assert tune["status"] == "completed", tune
    assert tune["model"] == "local/default/orders-tiny"
    metrics = tune["metrics"]
    assert metrics["steps"] == 2 and metrics["train_examples"] + metrics["held_out_examples"] == 12
    assert metrics["held_out_loss"] is not None and tune["progress"]["step"] == 2
    assert client.post(f"{BASE}/fine-tunes", json=body).status_code == 409  # names are unique

    models = {m["name"] for m in client.get(f"{BASE}/models", params={"provider": "local"}).json()}
    assert "default/orders-tiny" in models
    draft = {
        "provider": "local",
        "model": "default/orders-tiny",
        "messages": [{"role": "user", "content": "{{ text }}"}],
        "parameters": {"max_tokens": 4},
        "inputs": {"text": "Order 2 red mugs for Ana in Oslo"},
    }
    answered = client.post(f"{BASE}/playground/call", json=draft)
    assert answered.status_code == 200, answered.text
    assert answered.json()["model"] == "default/orders-tiny"

    # Another project neither sees nor calls it.
    server.project("other")
    outsider = server.client(server.key(project="other", role="admin", name="other-admin"))
    assert "default/orders-tiny" not in {
        m["name"] for m in outsider.get(f"{BASE}/models", params={"provider": "local"}).json()
    }
    assert_error(outsider.post(f"{BASE}/playground/call", json=draft), 404, "not_found")

    run = wait(client, f"{BASE}/evaluations/{tune['evaluation']}")
    assert run["status"] == "completed", run
    labels = [c["label"] for c in run["candidates"]]
    assert labels[0].endswith("(production)") or run["candidates"][0]["control"]
    assert any("with local/default/orders-tiny" in label for label in labels)
    assert run["dataset"].startswith("fine-tunes/") and run["dataset"].endswith("/held-out")
    assert [r["evaluator"] for r in run["summary"]["results"]] == ["exact", "exact"]
    manifest = Path(server.settings.data_dir / "adapters" / tune["id"] / "promptloop.json")
    assert json.loads(manifest.read_text())["model"] == "default/orders-tiny"
