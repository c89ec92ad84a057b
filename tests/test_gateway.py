"""The OpenAI-compatible gateway, driven by the official `openai` client against a real promptloop
server on loopback, with a fake upstream behind it; on both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from promptloop.api.app import create_app
from promptloop.core.errors import InvalidInput
from promptloop.services import local
from promptloop.services.gateway import ModelTarget, PromptTarget, parse_model
from promptloop.settings import Settings
from tests.fakes import FakeProvider, registered
from tests.helpers import BASE, kernel_body
from tests.upstream import BackgroundServer, Failure, Reply, Slow, Upstream, serve

LOG_HEADER = "x-promptloop-log-id"
INPUTS = {"question": "Where is my order?", "customer": "Ada"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
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


@dataclass
class Gateway:
    url: str
    key: str
    settings: Settings
    api: httpx.Client  # promptloop's own API, as the admin key

    def openai(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or self.key, max_retries=0)

    def log(self, log_id: str) -> dict[str, Any]:
        response = self.api.get(f"{BASE}/logs/{log_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def new_key(self, role: str) -> str:
        return local.create_api_key(self.settings, project="default", role=role, name=role).secret


@pytest.fixture
def gateway(settings: Settings, upstream: Upstream) -> Iterator[Gateway]:
    with BackgroundServer(create_app(settings), lifespan="on") as server:
        key = local.create_api_key(settings, project="default", role="admin", name="t").secret
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as api:
            for provider, url in (
                ("openai", upstream.openai_url),
                ("anthropic", upstream.anthropic_url),
            ):
                stored = api.put(
                    f"{BASE}/provider-keys/{provider}",
                    json={"api_key": f"sk-{provider}-upstream", "base_url": url},
                )
                assert stored.status_code == 200, stored.text
            yield Gateway(server.url, key, settings, api)


def save_and_deploy(gateway: Gateway, path: str = "support/answer", **extra: Any) -> str:
    saved = gateway.api.post(f"{BASE}/prompts/{path}/-/versions", json=kernel_body(**extra))
    version: str = saved.json()["id"]
    deployed = gateway.api.put(
        f"{BASE}/prompts/{path}/-/deployments/production", json={"version": version}
    )
    assert deployed.status_code == 200, deployed.text
    return version


def test_parse_model_names() -> None:
    assert parse_model("openai/gpt-4o-mini") == ModelTarget("openai", "gpt-4o-mini")
    assert parse_model("local/org/model-7b") == ModelTarget("local", "org/model-7b")
    assert parse_model("prompt:support/answer") == PromptTarget(
        "support/answer", "production", None
    )
    assert parse_model("prompt:a@staging") == PromptTarget("a", "staging", None)
    assert parse_model("prompt:a@0123456789ab") == PromptTarget("a", None, "0123456789ab")
    for bad in ("gpt-4o", "prompt:", "/x", "openai/"):
        with pytest.raises(InvalidInput, match="prompt:"):
            parse_model(bad)


def test_a_provider_model_through_the_openai_client(gateway: Gateway, upstream: Upstream) -> None:
    upstream.queue(Reply("Hello Ada", prompt_tokens=1000, output_tokens=1000))
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say {{ hello }} to Ada"},
        ],
        temperature=0.3,
        max_tokens=20,
        user="end-user-7",
        metadata={"team": "eu"},
        extra_body={"top_k": 4},
    )
    completion = raw.parse()
    log_id = raw.headers[LOG_HEADER]
    assert completion.id == f"chatcmpl-{log_id}" and completion.object == "chat.completion"
    assert completion.model == "openai/gpt-4o-mini"
    assert completion.choices[0].message.content == "Hello Ada"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 2000
    [seen] = upstream.requests
    assert seen.headers["authorization"] == "Bearer sk-openai-upstream"
    assert seen.body["model"] == "gpt-4o-mini"
    # Messages of a bare model are sent as they are: never rendered as templates.
    assert seen.body["messages"][1]["content"] == "Say {{ hello }} to Ada"
    assert (seen.body["temperature"], seen.body["max_tokens"], seen.body["top_k"]) == (0.3, 20, 4)
    log = gateway.log(log_id)
    assert (log["source"], log["provider"], log["model"], log["prompt"]) == (
        "gateway",
        "openai",
        "gpt-4o-mini",
        None,
    )
    assert (log["prompt_tokens"], log["output_tokens"]) == (1000, 1000)
    assert log["cost"] == pytest.approx((1000 * 0.15 + 1000 * 0.60) / 1e6)
    assert log["output"] == "Hello Ada" and log["end_user"] == "end-user-7"
    assert log["metadata"] == {"team": "eu"} and log["latency_ms"] > 0
    assert log["messages"][1] == {"role": "user", "content": "Say {{ hello }} to Ada"}


def test_streaming_through_the_openai_client(gateway: Gateway, upstream: Upstream) -> None:
    upstream.queue(Slow(0, Reply("one two three", prompt_tokens=4), between=0.02))
    with gateway.openai().chat.completions.with_streaming_response.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Count"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        log_id = response.headers[LOG_HEADER]
        chunks = list(response.parse())
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.id for c in chunks} == {f"chatcmpl-{log_id}"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 3)
    log = gateway.log(log_id)
    assert log["output"] == "one two three" and log["source"] == "gateway"
    assert 0 < log["ttft_ms"] < log["latency_ms"]
    assert log["cost"] == pytest.approx((4 * 0.15 + 3 * 0.60) / 1e6)


def test_the_stream_is_server_sent_events_ending_with_done(
    gateway: Gateway, upstream: Upstream
) -> None:
    upstream.queue(Reply("a b"))
    with gateway.api.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
        },
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert len(response.headers[LOG_HEADER]) == 32
        body = response.read().decode()
    events = [block for block in body.split("\n\n") if block]
    assert all(block.startswith("data: ") for block in events)
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0][len("data: ") :])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "usage" not in json.loads(events[-2][len("data: ") :])  # not asked for


def test_tool_calls_come_back_to_the_client(gateway: Gateway, upstream: Upstream) -> None:
    upstream.queue(Reply("", tool_calls=[WEATHER_CALL]), Reply("", tool_calls=[WEATHER_CALL]))
    client = gateway.openai()
    arguments: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
    }
    completion = client.chat.completions.create(**arguments)
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.type == "function"
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_1",
        "get_weather",
        '{"city": "Paris"}',
    )
    assert upstream.requests[0].body["tools"] == [WEATHER_TOOL]
    assert upstream.requests[0].body["tool_choice"] == "auto"
    chunks = list(client.chat.completions.create(**arguments, stream=True))
    streamed = [
        c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls
    ]
    assert streamed[0] is not None and streamed[0][0].function is not None
    assert streamed[0][0].function.arguments == '{"city": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_prompt_with_inputs_and_appended_messages(gateway: Gateway, upstream: Upstream) -> None:
    version = save_and_deploy(gateway)
    upstream.queue(Reply("Tomorrow."), Reply("By version."))
    client = gateway.openai()
    raw = client.chat.completions.with_raw_response.create(
        model="prompt:support/answer",
        messages=[{"role": "user", "content": "And the tracking number?"}],
        extra_body={"inputs": INPUTS},
        temperature=1.5,  # ignored: the deployed version's parameters apply
    )
    assert raw.parse().choices[0].message.content == "Tomorrow."
    sent = upstream.requests[0].body
    assert [m["content"] for m in sent["messages"]] == [
        "You are helpful.",
        "Answer Where is my order? for Ada.",
        "And the tracking number?",
    ]
    assert "temperature" not in sent
    log = gateway.log(raw.headers[LOG_HEADER])
    assert (log["prompt"], log["version"], log["environment"], log["source"]) == (
        "support/answer",
        version,
        "production",
        "gateway",
    )
    assert log["inputs"] == INPUTS
    by_version = client.chat.completions.create(
        model=f"prompt:support/answer@{version}", messages=[], extra_body={"inputs": INPUTS}
    )
    assert by_version.choices[0].message.content == "By version."
    with pytest.raises(openai.NotFoundError) as undeployed:
        client.chat.completions.create(
            model="prompt:support/answer@staging", messages=[], extra_body={"inputs": INPUTS}
        )
    assert "staging" in undeployed.value.message
    with pytest.raises(openai.BadRequestError) as missing:
        client.chat.completions.create(model="prompt:support/answer", messages=[])
    assert missing.value.code == "missing_inputs" and "customer" in missing.value.message


def test_an_anthropic_model_through_the_gateway(gateway: Gateway, upstream: Upstream) -> None:
    upstream.queue(Reply("Bonjour", prompt_tokens=10), Reply("a b", prompt_tokens=3))
    client = gateway.openai()
    messages: list[Any] = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hello"},
    ]
    completion = client.chat.completions.create(
        model="anthropic/claude-haiku-4-5", messages=messages, stop=["END"]
    )
    assert completion.choices[0].message.content == "Bonjour"
    assert completion.choices[0].finish_reason == "stop"
    body = upstream.requests[0].body
    assert body["system"] == "Answer in French." and body["stop_sequences"] == ["END"]
    assert body["max_tokens"] == 1024
    chunks = list(
        client.chat.completions.create(
            model="anthropic/claude-haiku-4-5", messages=messages, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b"


def test_upstream_errors_keep_their_status_and_are_logged(
    gateway: Gateway, upstream: Upstream
) -> None:
    client = gateway.openai()
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    upstream.queue(Failure(429, "Rate limit reached for gpt-4o-mini"))
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=messages)
    assert "Rate limit reached" in limited.value.message
    assert isinstance(limited.value.body, dict) and set(limited.value.body) == {
        "message",
        "type",
        "code",
        "param",
    }
    log = gateway.log(limited.value.response.headers[LOG_HEADER])
    assert "Rate limit reached" in log["error"] and log["source"] == "gateway"
    # A stream that fails before its first piece answers with the upstream status too.
    upstream.queue(Failure(503, "overloaded"))
    with pytest.raises(openai.InternalServerError) as unavailable:
        list(
            client.chat.completions.create(
                model="openai/gpt-4o-mini", messages=messages, stream=True
            )
        )
    assert unavailable.value.status_code == 503
    # After output has started, the failure arrives as an error object in the stream.
    upstream.queue(Failure(500, "model crashed", in_stream=True))
    with pytest.raises(openai.APIError, match="model crashed"):
        list(
            client.chat.completions.create(
                model="openai/gpt-4o-mini", messages=messages, stream=True
            )
        )


def test_a_timeout_is_504_with_a_message(gateway: Gateway, upstream: Upstream) -> None:
    upstream.queue(Slow(5))
    with pytest.raises(openai.APIStatusError) as raised:
        gateway.openai().chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"timeout": 0.3},
        )
    assert raised.value.status_code == 504
    assert "0.3 s" in raised.value.message and raised.value.code == "timeout"


def test_auth_errors_in_the_openai_shape(gateway: Gateway) -> None:
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.AuthenticationError) as unknown:
        gateway.openai(key="plk_not_a_key").chat.completions.create(
            model="openai/gpt-4o-mini", messages=messages
        )
    assert (
        unknown.value.code == "unauthenticated"
        and "promptloop keys create" in unknown.value.message
    )
    anonymous = httpx.post(
        f"{gateway.url}/v1/chat/completions", json={"model": "x", "messages": []}
    )
    assert anonymous.status_code == 401
    assert set(anonymous.json()["error"]) == {"message", "type", "code", "param"}
    with pytest.raises(openai.PermissionDeniedError) as viewer:
        gateway.openai(key=gateway.new_key("viewer")).chat.completions.create(
            model="openai/gpt-4o-mini", messages=messages
        )
    assert viewer.value.code == "forbidden"
    # A viewer may still list models.
    assert gateway.openai(key=gateway.new_key("viewer")).models.list().data


BAD_REQUESTS: list[tuple[dict[str, Any], str, str]] = [
    ({"model": "gpt-4o-mini"}, "invalid_input", "provider"),
    ({"model": "nobody/m"}, "invalid_input", "Unknown provider"),
    ({"model": "openai/gpt-4o-mini", "messages": []}, "invalid_input", "at least one message"),
    ({"model": "openai/gpt-4o-mini", "temperature": 5}, "invalid_input", "temperature"),
    ({"model": "openai/gpt-4o-mini", "n": 2}, "validation_error", "n"),
    ({"messages": [{"role": "user", "content": "x"}]}, "validation_error", "model"),
    ({"model": "openai/x", "messages": [{"content": "x"}]}, "validation_error", "role"),
    ({"model": "openai/x", "inputs": {"a": 1}}, "invalid_input", "inputs"),
    ({"model": "prompt:no/such"}, "not_found", "no/such"),
]


def test_bad_requests_are_400_or_404_in_the_openai_shape(gateway: Gateway) -> None:
    for body, code, fragment in BAD_REQUESTS:
        body = {"messages": [{"role": "user", "content": "hi"}], **body}
        response = gateway.api.post("/v1/chat/completions", json=body)
        assert response.status_code in (400, 404), response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "code", "param"}
        assert error["code"] == code and fragment in error["message"], error
        assert LOG_HEADER not in response.headers  # nothing was called, nothing logged
    assert gateway.api.get(f"{BASE}/logs").json()["data"] == []


def test_a_missing_provider_key_says_how_to_add_one(gateway: Gateway) -> None:
    gateway.api.delete(f"{BASE}/provider-keys/openai")
    with pytest.raises(openai.BadRequestError) as raised:
        gateway.openai().chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert "PUT /api/v1/provider-keys/openai" in raised.value.message


def test_unknown_gateway_paths_are_404_in_the_openai_shape(gateway: Gateway) -> None:
    response = gateway.api.post("/v1/embeddings", json={"model": "x", "input": "y"})
    assert response.status_code == 404
    assert "/v1/chat/completions" in response.json()["error"]["message"]
    not_json = gateway.api.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (
        not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"
    )


def test_models_lists_the_catalogue_and_the_prompts(gateway: Gateway) -> None:
    save_and_deploy(gateway, "support/answer")
    ids = [m.id for m in gateway.openai().models.list().data]
    assert {"openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "prompt:support/answer"} <= set(ids)
    assert gateway.openai().models.retrieve("prompt:support/answer").owned_by == "promptloop"
    with pytest.raises(openai.NotFoundError):
        gateway.openai().models.retrieve("openai/no-such-model")
    raw = gateway.api.get("/v1/models").json()
    assert raw["object"] == "list"
    assert {m["object"] for m in raw["data"]} == {"model"}
    assert {m["owned_by"] for m in raw["data"] if m["id"].startswith("prompt:")} == {"promptloop"}


def test_a_keyless_provider_such_as_local_needs_no_provider_key(gateway: Gateway) -> None:
    with registered(FakeProvider()) as fake:
        fake.queue("local answer")
        completion = gateway.openai().chat.completions.create(
            model="fake/fake-1", messages=[{"role": "user", "content": "hi"}], seed=7
        )
    assert completion.choices[0].message.content == "local answer"
    request, credentials = fake.requests[0]
    assert credentials.api_key is None and request.parameters.seed == 7
