"""The openai and anthropic providers, through the real SDKs, against a fake upstream on loopback;
then end to end: a stored provider key with a `base_url`, a saved version, calls and their logs."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from promptloop.core.kernel import Parameters
from promptloop.providers.anthropic import AnthropicProvider
from promptloop.providers.base import ChatRequest, Completion, Credentials, Delta, ProviderError
from promptloop.providers.openai import OpenAIProvider
from promptloop.providers.registry import providers
from tests.helpers import BASE, assert_error, deploy, save
from tests.serving import free_port
from tests.upstream import Failure, Reply, Slow, Upstream, serve

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
WEATHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


@pytest.fixture(scope="module")
def upstream_server() -> Iterator[Upstream]:
    yield from serve()


@pytest.fixture
def upstream(upstream_server: Upstream) -> Upstream:
    upstream_server.reset()
    return upstream_server


@pytest.fixture
async def openai_provider() -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider()
    yield provider
    await provider.aclose()


@pytest.fixture
async def anthropic_provider() -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider()
    yield provider
    await provider.aclose()


def openai_credentials(upstream: Upstream) -> Credentials:
    return Credentials(api_key="sk-test", base_url=upstream.openai_url)


def anthropic_credentials(upstream: Upstream) -> Credentials:
    return Credentials(api_key="sk-ant-test", base_url=upstream.anthropic_url)


def chat(content: str = "Hi", **overrides: Any) -> ChatRequest:
    fields: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": content},
        ],
    }
    fields.update(overrides)
    return ChatRequest(**fields)


async def collect(provider: Any, request: ChatRequest, credentials: Credentials) -> list[Any]:
    return [event async for event in provider.stream(request, credentials)]


def test_builtin_providers_are_registered_with_priced_models() -> None:
    found = providers()
    assert {"openai", "anthropic"} <= set(found)
    assert found["openai"].needs_key and found["anthropic"].needs_key
    prices = {(m.name, m.input_price, m.output_price) for m in found["openai"].models()}
    assert {("gpt-4o-mini", 0.15, 0.60), ("gpt-4o", 2.50, 10.00)} <= prices
    assert all(
        m.input_price is not None and m.name.startswith("claude")
        for m in found["anthropic"].models()
    )


# openai ---------------------------------------------------------------------------------------


async def test_openai_maps_parameters_tools_and_extras(
    upstream: Upstream, openai_provider: OpenAIProvider
) -> None:
    upstream.queue(Reply("Bonjour", prompt_tokens=7, output_tokens=2))
    parameters = Parameters(
        temperature=0.2,
        max_tokens=50,
        top_p=0.9,
        stop=["END"],
        seed=3,
        response_format={"type": "json_object"},
        presence_penalty=0.1,
        frequency_penalty=0.2,
        extras={"top_k": 5, "repetition_penalty": 1.1},
    )
    completion = await openai_provider.complete(
        chat(parameters=parameters, tools=[WEATHER_TOOL]), openai_credentials(upstream)
    )
    assert completion == Completion(
        output="Bonjour",
        finish_reason="stop",
        usage=completion.usage,
        model="gpt-4o-mini",
    )
    assert (completion.usage.prompt_tokens, completion.usage.output_tokens) == (7, 2)
    [seen] = upstream.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-test"
    body = seen.body
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (body["temperature"], body["max_tokens"], body["top_p"], body["stop"]) == (
        0.2,
        50,
        0.9,
        ["END"],
    )
    assert (body["seed"], body["response_format"]) == (3, {"type": "json_object"})
    assert (body["presence_penalty"], body["frequency_penalty"]) == (0.1, 0.2)
    assert (body["top_k"], body["repetition_penalty"]) == (5, 1.1)
    assert body["tools"] == [WEATHER_TOOL] and body["stream"] is False


async def test_openai_sends_a_completion_template_as_one_user_message(
    upstream: Upstream, openai_provider: OpenAIProvider
) -> None:
    request = ChatRequest(model="gpt-4o-mini", prompt="Complete: roses are")
    assert (await openai_provider.complete(request, openai_credentials(upstream))).output == "ok"
    assert upstream.requests[0].body["messages"] == [
        {"role": "user", "content": "Complete: roses are"}
    ]


async def test_openai_streams_text_then_one_completion_with_usage(
    upstream: Upstream, openai_provider: OpenAIProvider
) -> None:
    upstream.queue(Reply("one two three", prompt_tokens=4))
    events = await collect(openai_provider, chat(), openai_credentials(upstream))
    assert [e.text for e in events if isinstance(e, Delta)] == ["one ", "two ", "three"]
    final = events[-1]
    assert isinstance(final, Completion) and final.output == "one two three"
    assert (final.usage.prompt_tokens, final.usage.output_tokens) == (4, 3)
    assert final.finish_reason == "stop" and final.model == "gpt-4o-mini"
    body = upstream.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_openai_tool_calls_come_back_in_the_openai_shape(
    upstream: Upstream, openai_provider: OpenAIProvider
) -> None:
    upstream.queue(Reply("", tool_calls=[WEATHER_CALL]), Reply("", tool_calls=[WEATHER_CALL]))
    provider = openai_provider
    completion = await provider.complete(chat(tools=[WEATHER_TOOL]), openai_credentials(upstream))
    assert completion.tool_calls == [WEATHER_CALL] and completion.finish_reason == "tool_calls"
    streamed = (await collect(provider, chat(tools=[WEATHER_TOOL]), openai_credentials(upstream)))[
        -1
    ]
    assert streamed.tool_calls == [WEATHER_CALL] and streamed.finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("failure", "status", "kind"),
    [
        (Failure(429, "Rate limit reached for gpt-4o-mini"), 429, "rate_limit_exceeded"),
        (Failure(401, "Incorrect API key provided"), 401, "invalid_request_error"),
        (Failure(503, "The engine is currently overloaded"), 503, "server_error"),
    ],
)
async def test_openai_upstream_errors_keep_their_status(
    upstream: Upstream, failure: Failure, status: int, kind: str, openai_provider: OpenAIProvider
) -> None:
    upstream.queue(failure, failure)
    provider = openai_provider
    for attempt in (provider.complete(chat(), openai_credentials(upstream)),):
        with pytest.raises(ProviderError) as raised:
            await attempt
        assert (raised.value.status, raised.value.kind) == (status, kind)
        assert raised.value.message == failure.message
    with pytest.raises(ProviderError) as streamed:
        await collect(provider, chat(), openai_credentials(upstream))
    assert (streamed.value.status, streamed.value.message) == (status, failure.message)
    assert len(upstream.requests) == 2  # no retries


async def test_openai_error_inside_a_stream_is_a_provider_error(
    upstream: Upstream, openai_provider: OpenAIProvider
) -> None:
    upstream.queue(Failure(500, "model crashed", in_stream=True))
    with pytest.raises(ProviderError) as raised:
        await collect(openai_provider, chat(), openai_credentials(upstream))
    assert raised.value.status == 502 and "model crashed" in raised.value.message


async def test_openai_timeouts_are_504_and_do_not_hang(
    upstream: Upstream, openai_provider: OpenAIProvider
) -> None:
    upstream.queue(Slow(5), Slow(0, between=5), Slow(5))
    provider = openai_provider
    started = time.monotonic()
    with pytest.raises(ProviderError) as raised:
        await provider.complete(chat(timeout=0.3), openai_credentials(upstream))
    assert raised.value.status == 504 and "0.3 s" in raised.value.message
    with pytest.raises(ProviderError) as between:
        await collect(provider, chat("slow pieces", timeout=0.3), openai_credentials(upstream))
    assert between.value.status == 504
    with pytest.raises(ProviderError) as first:
        await collect(provider, chat(timeout=0.3), openai_credentials(upstream))
    assert first.value.status == 504 and first.value.kind == "timeout"
    assert time.monotonic() - started < 4


async def test_an_unreachable_server_is_502(
    openai_provider: OpenAIProvider, anthropic_provider: AnthropicProvider
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for provider, base_url in ((openai_provider, f"{dead}/v1"), (anthropic_provider, dead)):
        with pytest.raises(ProviderError) as raised:
            await provider.complete(chat(), Credentials(api_key="k", base_url=base_url))
        assert raised.value.status == 502 and raised.value.kind == "connection_error"
        assert "127.0.0.1" in raised.value.message


async def test_one_client_per_key_and_base_url(
    upstream: Upstream, openai_provider: OpenAIProvider
) -> None:
    provider = openai_provider
    first = provider.clients.get(openai_credentials(upstream))
    assert provider.clients.get(openai_credentials(upstream)) is first
    assert provider.clients.get(Credentials(api_key="other", base_url=upstream.openai_url)) is not (
        first
    )
    for _ in range(3):
        await provider.complete(chat(), openai_credentials(upstream))
    assert provider.clients.get(openai_credentials(upstream)) is first


async def test_the_openai_api_itself_gets_max_completion_tokens(upstream: Upstream) -> None:
    from promptloop.providers.openai import chat_arguments

    request = chat(parameters=Parameters(max_tokens=9))
    assert chat_arguments(request, Credentials(api_key="k"))["max_completion_tokens"] == 9
    assert chat_arguments(request, openai_credentials(upstream))["max_tokens"] == 9


# anthropic ------------------------------------------------------------------------------------


async def test_anthropic_translates_system_stop_tools_and_defaults(
    upstream: Upstream, anthropic_provider: AnthropicProvider
) -> None:
    upstream.queue(Reply("Hello", prompt_tokens=9, output_tokens=1))
    request = chat(
        model="claude-haiku-4-5",
        parameters=Parameters(
            stop=["END"],
            temperature=0.5,
            seed=1,
            extras={
                "top_k": 3,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "parallel_tool_calls": False,
            },
        ),
        tools=[WEATHER_TOOL],
    )
    completion = await anthropic_provider.complete(request, anthropic_credentials(upstream))
    assert (completion.output, completion.finish_reason, completion.model) == (
        "Hello",
        "stop",
        "claude-haiku-4-5",
    )
    assert (completion.usage.prompt_tokens, completion.usage.output_tokens) == (9, 1)
    [seen] = upstream.requests
    assert seen.path == "/v1/messages" and "sk-ant-test" in seen.headers.get(
        "x-api-key", seen.headers["authorization"]
    )
    body = seen.body
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert (body["max_tokens"], body["stop_sequences"]) == (1024, ["END"])
    assert (body["temperature"], body["top_k"]) == (0.5, 3) and "seed" not in body
    assert body["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
        "disable_parallel_tool_use": True,
    }
    assert "parallel_tool_calls" not in body
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city.",
            "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
        }
    ]


async def test_anthropic_tool_use_round_trips_to_openai_shaped_calls(
    upstream: Upstream, anthropic_provider: AnthropicProvider
) -> None:
    call = {**WEATHER_CALL, "id": "toolu_1"}
    upstream.queue(Reply("", tool_calls=[call]), Reply("Checking.", tool_calls=[call]))
    provider = anthropic_provider
    completion = await provider.complete(
        chat(model="claude-haiku-4-5", tools=[WEATHER_TOOL]), anthropic_credentials(upstream)
    )
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls is not None
    assert json.loads(completion.tool_calls[0]["function"]["arguments"]) == {"city": "Paris"}
    streamed = (
        await collect(
            provider,
            chat(model="claude-haiku-4-5", tools=[WEATHER_TOOL]),
            anthropic_credentials(upstream),
        )
    )[-1]
    assert streamed.output == "Checking." and streamed.finish_reason == "tool_calls"
    assert streamed.tool_calls[0]["id"] == "toolu_1"
    assert json.loads(streamed.tool_calls[0]["function"]["arguments"]) == {"city": "Paris"}
    # The answer to a tool call goes back as tool_use / tool_result blocks.
    follow_up = ChatRequest(
        model="claude-haiku-4-5",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
        ],
    )
    await provider.complete(follow_up, anthropic_credentials(upstream))
    messages = upstream.requests[-1].body["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
        ],
    }
    assert messages[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}],
    }


async def test_anthropic_streams_text_with_usage(
    upstream: Upstream, anthropic_provider: AnthropicProvider
) -> None:
    upstream.queue(Reply("a b c", prompt_tokens=6))
    events = await collect(
        anthropic_provider, chat(model="claude-haiku-4-5"), anthropic_credentials(upstream)
    )
    assert [e.text for e in events if isinstance(e, Delta)] == ["a ", "b ", "c"]
    final = events[-1]
    assert final.output == "a b c" and final.finish_reason == "stop"
    assert (final.usage.prompt_tokens, final.usage.output_tokens) == (6, 3)


async def test_anthropic_errors_and_timeouts(
    upstream: Upstream, anthropic_provider: AnthropicProvider
) -> None:
    provider = anthropic_provider
    request = chat(model="claude-haiku-4-5", timeout=0.3)
    upstream.queue(
        Failure(529, "Overloaded"),
        Failure(529, "Overloaded", in_stream=True),
        Failure(400, "max_tokens: too large"),
        Slow(5),
    )
    with pytest.raises(ProviderError) as overloaded:
        await provider.complete(request, anthropic_credentials(upstream))
    assert (overloaded.value.status, overloaded.value.kind, overloaded.value.message) == (
        529,
        "overloaded_error",
        "Overloaded",
    )
    with pytest.raises(ProviderError) as in_stream:
        await collect(provider, request, anthropic_credentials(upstream))
    assert (in_stream.value.status, in_stream.value.kind) == (529, "overloaded_error")
    with pytest.raises(ProviderError) as bad:
        await provider.complete(request, anthropic_credentials(upstream))
    assert (bad.value.status, bad.value.kind) == (400, "invalid_request_error")
    started = time.monotonic()
    with pytest.raises(ProviderError) as slow:
        await provider.complete(request, anthropic_credentials(upstream))
    assert slow.value.status == 504 and time.monotonic() - started < 3


# end to end through promptloop ----------------------------------------------------------------


def store_key(client: TestClient, provider: str, base_url: str) -> None:
    response = client.put(
        f"{BASE}/provider-keys/{provider}", json={"api_key": "sk-test-1234", "base_url": base_url}
    )
    assert response.status_code == 200, response.text
    assert "sk-test-1234" not in response.text


def test_call_a_saved_openai_version_through_a_stored_base_url(
    client: TestClient, upstream: Upstream
) -> None:
    store_key(client, "openai", upstream.openai_url)
    version = save(client, "support/answer")["id"]  # openai / gpt-4o-mini
    deploy(client, "support/answer", version)
    upstream.queue(Reply("It ships today.", prompt_tokens=1000, output_tokens=2000))
    response = client.post(
        f"{BASE}/prompts/support/answer/-/call",
        json={"inputs": {"question": "Where is my order?", "customer": "Ada"}},
    )
    assert response.status_code == 200, response.text
    call = response.json()
    assert call["output"] == "It ships today."
    assert call["usage"] == {"prompt_tokens": 1000, "output_tokens": 2000}
    assert call["cost"] == pytest.approx((1000 * 0.15 + 2000 * 0.60) / 1e6)
    [seen] = upstream.requests
    assert seen.headers["authorization"] == "Bearer sk-test-1234"
    assert seen.body["messages"][1]["content"] == "Answer Where is my order? for Ada."
    log = client.get(f"{BASE}/logs/{call['log_id']}").json()
    assert (log["provider"], log["model"], log["version"]) == ("openai", "gpt-4o-mini", version)
    assert (log["prompt_tokens"], log["output_tokens"]) == (1000, 2000)
    assert log["cost"] == pytest.approx(call["cost"]) and log["latency_ms"] > 0


def test_stream_a_saved_version_and_log_ttft(client: TestClient, upstream: Upstream) -> None:
    store_key(client, "openai", upstream.openai_url)
    version = save(client, "a")["id"]
    upstream.queue(Slow(0, Reply("one two three", prompt_tokens=5), between=0.05))
    with client.stream(
        "POST",
        f"{BASE}/prompts/a/-/call",
        json={"version": version, "stream": True, "inputs": {"question": "q", "customer": "c"}},
    ) as response:
        events = [block for block in response.read().decode().split("\n\n") if block]
    assert [block.split("\n")[0] for block in events] == ["event: delta"] * 3 + ["event: done"]
    done = json.loads(events[-1].split("data: ", 1)[1])
    log = client.get(f"{BASE}/logs/{done['log_id']}").json()
    assert log["output"] == "one two three" and (log["prompt_tokens"], log["output_tokens"]) == (
        5,
        3,
    )
    assert log["cost"] == pytest.approx((5 * 0.15 + 3 * 0.60) / 1e6)
    assert 0 < log["ttft_ms"] < log["latency_ms"] and log["latency_ms"] >= 100


def test_an_anthropic_version_end_to_end(client: TestClient, upstream: Upstream) -> None:
    store_key(client, "anthropic", upstream.anthropic_url)
    version = save(client, "claude", provider="anthropic", model="claude-haiku-4-5")["id"]
    upstream.queue(Reply("Hi!", prompt_tokens=1_000_000, output_tokens=0))
    call = client.post(
        f"{BASE}/prompts/claude/-/call",
        json={"version": version, "inputs": {"question": "q", "customer": "c"}},
    ).json()
    assert call["output"] == "Hi!" and call["cost"] == pytest.approx(1.0)
    assert upstream.requests[0].body["system"] == "You are helpful."


def test_upstream_failures_are_logged_with_their_status(
    client: TestClient, upstream: Upstream
) -> None:
    store_key(client, "openai", upstream.openai_url)
    version = save(client, "a")["id"]
    upstream.queue(Failure(429, "Rate limit reached"))
    response = client.post(
        f"{BASE}/prompts/a/-/call",
        json={"version": version, "inputs": {"question": "q", "customer": "c"}},
    )
    error = assert_error(response, 429, "rate_limit_exceeded", "Rate limit reached")
    log = client.get(f"{BASE}/logs/{error['details']['log_id']}").json()
    assert "Rate limit reached" in log["error"] and "429" in log["error"]


def test_anthropic_tool_choice_translation() -> None:
    from promptloop.providers.anthropic import _tool_choice

    assert _tool_choice(None, None) is None
    assert _tool_choice("auto", None) == {"type": "auto"}
    assert _tool_choice("required", None) == {"type": "any"}
    assert _tool_choice("none", False) == {"type": "none"}
    assert _tool_choice(None, False) == {"type": "auto", "disable_parallel_tool_use": True}
