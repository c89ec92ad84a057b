"""The Python SDK against the real server in-process, plus its offline behaviour.

`Client` sends through a Starlette TestClient (an httpx.Client, passed as `http_client`);
`AsyncClient` through `httpx.ASGITransport` on the same app, whose lifespan the TestClient ran.
Calls go to tests/fakes.py's FakeProvider, registered before the app starts so that the
catalogue has its prices. The background sending of `client.logs.log` is in
test_sdk_logging.py.
"""

from __future__ import annotations

import inspect
import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

import promptloop
from promptloop import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    CallResult,
    Client,
    ConflictError,
    InternalServerError,
    Message,
    NotFoundError,
    PermissionDeniedError,
    PromptloopError,
    RateLimitError,
)
from promptloop.api.app import create_app
from promptloop.providers.base import ProviderError
from promptloop.services import local, projects
from promptloop.settings import Settings
from tests.fakes import FakeProvider, registered

URL = "http://testserver"
PATH = "support/answer"
CHAT = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Answer {{ question }} for {{ customer }}."},
]
HEALTH = {"status": "ok", "version": "0.1.0", "database": "sqlite"}


@pytest.fixture(autouse=True)
def _no_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROMPTLOOP_URL", "PROMPTLOOP_API_KEY", "PROMPTLOOP_PROJECT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with registered(FakeProvider()) as provider:
        yield provider


@pytest.fixture
def app(settings: Settings, fake: FakeProvider) -> FastAPI:
    return create_app(settings)  # after the fake registers, so the catalogue has its prices


def _project(settings: Settings, name: str) -> str:
    db = local.open_database(settings)
    with db.session(write=True) as session:
        projects.ensure_project(session, name=name)
    db.dispose()
    return name


def _key(settings: Settings, *, project: str = "default", role: str = "admin") -> str:
    return local.create_api_key(settings, project=project, role=role, name="sdk-tests").secret


@pytest.fixture
def server(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:  # runs the lifespan: database migrated
        yield test_client


@pytest.fixture
def admin_key(server: TestClient, settings: Settings) -> str:
    return _key(settings)


@pytest.fixture
def sdk(server: TestClient, admin_key: str) -> Iterator[Client]:
    with Client(URL, http_client=server, api_key=admin_key) as client:
        yield client


@pytest.fixture
async def async_sdk(server: TestClient, app: FastAPI, admin_key: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        URL, transport=httpx.ASGITransport(app=app), api_key=admin_key
    ) as client:
        yield client


def save(client: Client, path: str = PATH, content: str = "Hi {{ name }}.", **extra: Any) -> Any:
    messages = [{"role": "user", "content": content}]
    return client.prompts.save(
        path, provider="openai", model="gpt-4o-mini", messages=messages, **extra
    )


def mock_client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> Client:
    return Client(transport=httpx.MockTransport(handler), **kwargs)


def deployed(client: Client, path: str = PATH) -> str:
    """A chat version of `path` on the fake provider, deployed to production; its id."""
    version = client.prompts.save(path, provider="fake", model="fake-1", messages=CHAT).id
    client.prompts.deploy(path, version, environment="production")
    return version


INPUTS = {"question": "Where is my order?", "customer": "Ada"}


# --- against the real server -------------------------------------------------------------


def test_health(sdk: Client) -> None:
    health = sdk.health()
    assert (health.status, health.database) == ("ok", "sqlite")
    assert health.version == promptloop.__version__


def test_save_creates_once_then_returns_the_existing_version(sdk: Client) -> None:
    first = sdk.prompts.save(
        PATH, provider="openai", model="gpt-4o-mini", messages=CHAT, message="first"
    )
    assert first.created is True
    assert first.variables == ["question", "customer"]
    assert first.author and first.message == "first"
    models = [Message(role=m["role"], content=m["content"]) for m in CHAT]
    again = sdk.prompts.save(
        PATH, provider="openai", model="gpt-4o-mini", messages=models, message="again"
    )
    assert (again.created, again.id, again.message) == (False, first.id, "first")


def test_save_completion_template_with_parameters_and_tools(sdk: Client) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    saved = sdk.prompts.save(
        "complete/me",
        provider="openai",
        model="gpt-4o-mini",
        template="Say {{ word }}",
        parameters={"temperature": 0.2, "stop": "\n"},
        tools=[tool],
        name="v1",
        description="A completion prompt",
    )
    assert saved.template == "Say {{ word }}" and saved.messages is None
    assert (saved.parameters.temperature, saved.parameters.stop) == (0.2, ["\n"])
    assert saved.tools[0].function.name == "lookup"
    assert sdk.prompts.get_prompt("complete/me").description == "A completion prompt"
    assert sdk.prompts.render("complete/me", {"word": "hi"}).prompt == "Say hi"


def test_versions_iterate_newest_first_across_pages(sdk: Client) -> None:
    saved = [save(sdk, content=f"Version {i}: {{{{ name }}}}").id for i in range(60)]
    listed = [version.id for version in sdk.prompts.versions(PATH)]
    assert listed == saved[::-1]  # 60 > the server's page size of 50


def test_prompts_list_with_prefix(sdk: Client) -> None:
    for path in ("b/two", "a/one", "b/one"):
        sdk.prompts.create(path, description=f"The {path} prompt")
    assert [p.path for p in sdk.prompts.list()] == ["a/one", "b/one", "b/two"]
    assert [p.path for p in sdk.prompts.list(prefix="b/")] == ["b/one", "b/two"]
    assert sdk.prompts.get_prompt("a/one").description == "The a/one prompt"


def test_get_latest_by_version_and_by_environment(sdk: Client) -> None:
    old, new = save(sdk, content="Old {{ name }}"), save(sdk, content="New {{ name }}")
    event = sdk.prompts.deploy(PATH, old.id, environment="production", message="ship")
    assert (event.action, event.version_id, event.message) == ("deploy", old.id, "ship")
    assert sdk.prompts.get(PATH).id == new.id
    assert sdk.prompts.get(PATH, version=old.id[:6]).id == old.id
    served = sdk.prompts.get(PATH, environment="production")
    assert (served.id, served.environments) == (old.id, ["production"])


def test_rollback_restores_the_previous_version_and_is_in_history(sdk: Client) -> None:
    first, second = save(sdk, content="One {{ name }}"), save(sdk, content="Two {{ name }}")
    sdk.prompts.deploy(PATH, first.id, environment="staging")
    sdk.prompts.deploy(PATH, second.id, environment="staging")
    event = sdk.prompts.rollback(PATH, environment="staging", message="bad")
    assert (event.action, event.version_id, event.previous_version_id) == (
        "rollback",
        first.id,
        second.id,
    )
    assert sdk.prompts.get(PATH, environment="staging").id == first.id
    history = list(sdk.prompts.history(PATH, environment="staging"))
    assert [e.action for e in history] == ["rollback", "deploy", "deploy"]
    assert list(sdk.prompts.history(PATH, environment="production")) == []


def test_deployments_list_every_environment(sdk: Client) -> None:
    version = save(sdk)
    sdk.prompts.deploy(PATH, version.id, environment="development")
    states = {s.environment: s for s in sdk.prompts.deployments(PATH)}
    assert set(states) == {"development", "staging", "production"}
    assert states["development"].version_id == version.id
    assert states["development"].deployed_at is not None
    assert states["production"].version_id is None and states["production"].protected


def test_render_fills_the_template(sdk: Client) -> None:
    sdk.prompts.save(PATH, provider="openai", model="gpt-4o-mini", messages=CHAT)
    rendered = sdk.prompts.render(PATH, {"question": "why?", "customer": "Ada"})
    assert rendered.messages is not None and rendered.prompt is None
    assert rendered.messages[1].content == "Answer why? for Ada."


def test_render_with_missing_inputs_lists_every_missing_variable(sdk: Client) -> None:
    sdk.prompts.save(PATH, provider="openai", model="gpt-4o-mini", messages=CHAT)
    with pytest.raises(BadRequestError) as caught:
        sdk.prompts.render(PATH, {"unused": 1})
    error = caught.value
    assert (error.status_code, error.code) == (400, "missing_inputs")
    assert error.details == {"missing": ["question", "customer"]}
    assert str(error) == error.message and "question, customer" in str(error)


def test_unknown_prompt_raises_not_found(sdk: Client) -> None:
    with pytest.raises(NotFoundError) as caught:
        sdk.prompts.get("no/such/prompt")
    assert caught.value.status_code == 404 and "no/such/prompt" in str(caught.value)
    with pytest.raises(NotFoundError):
        sdk.prompts.get_prompt("no/such/prompt")
    with pytest.raises(NotFoundError):
        list(sdk.prompts.versions("no/such/prompt"))


def test_schema_violation_raises_bad_request_with_details(sdk: Client) -> None:
    with pytest.raises(BadRequestError) as caught:
        sdk.prompts.save(PATH, provider="openai", model="m", messages=[{"role": "robot"}])
    assert caught.value.status_code == 422 and caught.value.code == "validation_error"
    assert isinstance(caught.value.details, list) and caught.value.details


def test_diff_between_versions(sdk: Client) -> None:
    before = save(sdk, content="Hello {{ name }}")
    after = save(sdk, content="Bye {{ name }}", parameters={"temperature": 1})
    diff = sdk.prompts.diff(PATH, before.id, after.id)
    assert "-Hello {{ name }}" in diff.template and "+Bye {{ name }}" in diff.template
    assert [(c.field, c.before, c.after) for c in diff.changes] == [
        ("parameters.temperature", None, 1.0)
    ]


def test_projects_and_environments(sdk: Client) -> None:
    assert [p.name for p in sdk.projects.list()] == ["default"]
    with pytest.raises(PermissionDeniedError, match="API keys belong to one project"):
        sdk.projects.create("team")
    created = sdk.environments.create("canary", protected=True)
    assert (created.name, created.protected) == ("canary", True)
    assert "canary" in [e.name for e in sdk.environments.list()]


def test_project_comes_from_argument_or_environment_variable(
    server: TestClient, settings: Settings, sdk: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    team_key = _key(settings, project=_project(settings, "team"))
    with Client(URL, http_client=server, api_key=team_key, project="team") as team:
        save(team, "team/only")
    monkeypatch.setenv("PROMPTLOOP_PROJECT", "team")
    monkeypatch.setenv("PROMPTLOOP_API_KEY", team_key)
    with Client(URL, http_client=server) as from_env:
        assert [p.path for p in from_env.prompts.list()] == ["team/only"]
    monkeypatch.delenv("PROMPTLOOP_PROJECT")
    with Client(URL, http_client=server) as own_project:  # a key acts in its project by default
        assert [p.path for p in own_project.prompts.list()] == ["team/only"]
    assert list(sdk.prompts.list()) == []
    with (
        pytest.raises(NotFoundError),
        Client(URL, http_client=server, api_key=team_key, project="default") as c,
    ):
        list(c.prompts.list())


async def test_async_client_mirrors_the_sync_client(async_sdk: AsyncClient) -> None:
    assert (await async_sdk.health()).status == "ok"
    ids = []
    for i in range(55):
        saved = await async_sdk.prompts.save(
            PATH, provider="openai", model="m", messages=[{"role": "user", "content": f"v{i}"}]
        )
        ids.append(saved.id)
    assert [v.id async for v in async_sdk.prompts.versions(PATH)] == ids[::-1]
    await async_sdk.prompts.deploy(PATH, ids[0], environment="production")
    assert (await async_sdk.prompts.get(PATH, environment="production")).id == ids[0]
    assert [e.action async for e in async_sdk.prompts.history(PATH)] == ["deploy"]
    assert [p.path async for p in async_sdk.prompts.list()] == [PATH]


async def test_async_client_raises_the_same_errors(async_sdk: AsyncClient) -> None:
    with pytest.raises(NotFoundError):
        await async_sdk.prompts.get("no/such/prompt")
    with pytest.raises(NotFoundError):
        _ = [v async for v in async_sdk.prompts.versions("no/such/prompt")]
    with pytest.raises(ConflictError):
        await async_sdk.environments.create("production")
    with pytest.raises(PermissionDeniedError):
        await async_sdk.projects.create("elsewhere")


def test_call_answers_and_is_logged_with_what_was_sent(sdk: Client, fake: FakeProvider) -> None:
    version = deployed(sdk)
    fake.queue("Your order ships today.")
    result = sdk.prompts.call(
        PATH,
        INPUTS,
        messages=[{"role": "user", "content": "And the invoice?"}],
        end_user="u-1",
        metadata={"team": "eu"},
        trace_id="trace-1",
        parent_id="step-0",
    )
    assert isinstance(result, CallResult)
    assert (result.output, result.finish_reason, result.tool_calls) == (
        "Your order ships today.",
        "stop",
        None,
    )
    assert (result.prompt, result.version, result.provider, result.model) == (
        PATH,
        version,
        "fake",
        "fake-1",
    )
    assert (result.usage.prompt_tokens, result.usage.output_tokens) == (13, 4)
    assert result.cost == pytest.approx((13 * 1.0 + 4 * 2.0) / 1e6)
    assert result.latency_ms >= 0
    request, _ = fake.requests[0]
    assert request.messages is not None
    assert [m["content"] for m in request.messages[1:]] == [
        "Answer Where is my order? for Ada.",
        "And the invoice?",
    ]
    log = sdk.logs.get(result.log_id)
    assert (log.id, log.source, log.environment, log.end_user) == (
        result.log_id,
        "api",
        "production",
        "u-1",
    )
    assert (log.metadata, log.trace_id, log.parent_id) == ({"team": "eu"}, "trace-1", "step-0")
    assert (log.output, log.inputs, log.cost) == (result.output, INPUTS, result.cost)


def test_call_picks_the_version_or_environment(sdk: Client, fake: FakeProvider) -> None:
    served = deployed(sdk)
    newer = [{"role": "user", "content": "Newer {{ question }}"}]
    latest = sdk.prompts.save(PATH, provider="fake", model="fake-1", messages=newer)
    assert latest.id != served
    with pytest.raises(NotFoundError):  # nothing deployed to staging
        sdk.prompts.call(PATH, INPUTS, environment="staging")
    sdk.prompts.deploy(PATH, latest.id, environment="staging")
    assert sdk.prompts.call(PATH, INPUTS).version == served
    assert sdk.prompts.call(PATH, INPUTS, environment="staging").version == latest.id
    assert sdk.prompts.call(PATH, INPUTS, version=served[:6]).version == served


def test_call_errors_carry_the_log_id_of_the_failed_call(sdk: Client, fake: FakeProvider) -> None:
    deployed(sdk)
    with pytest.raises(BadRequestError) as missing:
        sdk.prompts.call(PATH, {"question": "q"})
    assert missing.value.details == {"missing": ["customer"]}
    fake.queue(ProviderError("upstream overloaded", status=503, kind="overloaded"))
    with pytest.raises(InternalServerError) as failed:
        sdk.prompts.call(PATH, INPUTS)
    assert (failed.value.status_code, failed.value.code) == (503, "overloaded")
    log = sdk.logs.get(failed.value.details["log_id"])
    assert log.error is not None and "upstream overloaded" in log.error


def test_stream_yields_text_then_the_result(sdk: Client, fake: FakeProvider) -> None:
    version = deployed(sdk)
    fake.queue("one two three")
    with sdk.prompts.stream(PATH, INPUTS, metadata={"k": "v"}) as stream:
        with pytest.raises(RuntimeError, match="iterate it to its end"):
            _ = stream.result
        chunks = list(stream)
    assert chunks == ["one ", "two ", "three "]
    result = stream.result
    assert (result.output, result.version, result.usage.output_tokens) == (
        "one two three",
        version,
        3,
    )
    log = sdk.logs.get(result.log_id)
    assert (log.output, log.metadata) == ("one two three", {"k": "v"})
    assert log.ttft_ms is not None


def test_stream_sends_nothing_before_it_is_iterated(sdk: Client, fake: FakeProvider) -> None:
    deployed(sdk)
    stream = sdk.prompts.stream(PATH, INPUTS)
    assert fake.requests == []
    assert "".join(stream).strip() == "ok"  # the fake's answer when none is queued
    stream.close()


def test_stream_errors_raise_while_iterating(sdk: Client, fake: FakeProvider) -> None:
    with pytest.raises(NotFoundError):  # before the stream starts: the HTTP status
        list(sdk.prompts.stream("no/such/prompt"))
    deployed(sdk)
    fake.queue(ProviderError("slow down", status=429, kind="rate_limited"))
    stream = sdk.prompts.stream(PATH, INPUTS)
    with pytest.raises(RateLimitError) as caught:  # after: an `error` event
        list(stream)
    assert (caught.value.status_code, caught.value.code, str(caught.value)) == (
        429,
        "rate_limited",
        "The fake provider failed: slow down",
    )
    log = sdk.logs.get(caught.value.details["log_id"])
    assert log.error is not None and "slow down" in log.error
    with pytest.raises(RuntimeError):
        _ = stream.result


def test_logs_list_filters_and_follows_pages(sdk: Client, fake: FakeProvider) -> None:
    deployed(sdk)
    called = sdk.prompts.call(PATH, INPUTS, end_user="u-9", trace_id="t-1")
    fake.queue(ProviderError("boom", status=500, kind="provider_error"))
    with pytest.raises(InternalServerError) as failed:
        sdk.prompts.call(PATH, INPUTS)
    earlier = datetime.now(UTC) - timedelta(days=1)
    ids = [
        sdk.logs.log(
            output=f"o{i}",
            end_user=f"u-{i % 2}",
            metadata={"team": "eu" if i < 10 else "us", "n": str(i)},
            created_at=earlier if i == 0 else None,
        )
        for i in range(60)
    ]
    assert sdk.logs.flush(timeout=30)
    everything = [log.id for log in sdk.logs.list()]
    assert len(everything) == 62  # over the server's page size of 50
    assert set(ids) | {called.log_id, failed.value.details["log_id"]} == set(everything)
    assert [log.id for log in sdk.logs.list(prompt=PATH, error=False)] == [called.log_id]
    assert [log.id for log in sdk.logs.list(error=True)] == [failed.value.details["log_id"]]
    assert [log.id for log in sdk.logs.list(trace_id="t-1", end_user="u-9")] == [called.log_id]
    assert len(list(sdk.logs.list(source="sdk", end_user="u-1"))) == 30
    assert [log.id for log in sdk.logs.list(metadata={"team": "eu", "n": "3"})] == [ids[3]]
    assert len(list(sdk.logs.list(metadata={"team": "eu"}))) == 10
    assert [log.id for log in sdk.logs.list(until=earlier + timedelta(seconds=1))] == [ids[0]]
    local_naive = (earlier + timedelta(hours=1)).astimezone().replace(tzinfo=None)
    assert ids[0] not in {log.id for log in sdk.logs.list(since=local_naive)}
    with pytest.raises(NotFoundError):
        sdk.logs.get("no-such-log")


async def test_async_client_calls_streams_and_reads_logs(
    async_sdk: AsyncClient, sdk: Client, fake: FakeProvider
) -> None:
    version = deployed(sdk)
    fake.queue("Hello there.", "a streamed answer")
    result = await async_sdk.prompts.call(PATH, INPUTS, end_user="u-async")
    assert (result.output, result.version) == ("Hello there.", version)
    async with async_sdk.prompts.stream(PATH, INPUTS) as stream:
        chunks = [text async for text in stream]
    assert "".join(chunks) == "a streamed answer "
    assert stream.result.output == "a streamed answer"
    assert (await async_sdk.logs.get(stream.result.log_id)).output == "a streamed answer"
    listed = [log.id async for log in async_sdk.logs.list(end_user="u-async")]
    assert listed == [result.log_id]
    fake.queue(ProviderError("bad gateway", status=502, kind="provider_error"))
    with pytest.raises(InternalServerError) as caught:
        _ = [text async for text in async_sdk.prompts.stream(PATH, INPUTS)]
    assert caught.value.status_code == 502 and caught.value.details["log_id"]
    with pytest.raises(NotFoundError):
        await async_sdk.prompts.call("no/such/prompt")


# --- offline: URLs, headers, errors ------------------------------------------------------


def test_url_and_api_key_come_from_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=HEALTH)

    monkeypatch.setenv("PROMPTLOOP_URL", "http://promptloop.test:9000/")
    monkeypatch.setenv("PROMPTLOOP_API_KEY", "sk-env")
    mock_client(handler).health()
    mock_client(handler, api_key="sk-arg").health()
    monkeypatch.delenv("PROMPTLOOP_URL")
    monkeypatch.delenv("PROMPTLOOP_API_KEY")
    mock_client(handler).health()
    assert [str(r.url) for r in seen] == [
        "http://promptloop.test:9000/api/v1/health",
        "http://promptloop.test:9000/api/v1/health",
        "http://127.0.0.1:8000/api/v1/health",
    ]
    auth = [r.headers.get("Authorization") for r in seen]
    assert auth == ["Bearer sk-env", "Bearer sk-arg", None]
    assert all("Promptloop-Project" not in r.headers for r in seen)


def test_prompt_paths_keep_their_slashes_in_urls() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.raw_path.decode()}")
        return httpx.Response(500, json={})

    client = mock_client(handler)
    calls: list[Callable[[], object]] = [
        lambda: client.prompts.get("a/b/c", environment="production"),
        lambda: client.prompts.deploy("a/b/c", "abcd1234", environment="staging"),
        lambda: client.prompts.rollback("a/b/c", environment="staging"),
        lambda: client.prompts.diff("a/b/c", "1111", "2222"),
        lambda: client.prompts.get_prompt("a/b c"),
    ]
    for call in calls:
        with pytest.raises(InternalServerError):
            call()
    assert seen == [
        "GET /api/v1/prompts/a/b/c/-/version?environment=production",
        "PUT /api/v1/prompts/a/b/c/-/deployments/staging",
        "POST /api/v1/prompts/a/b/c/-/deployments/staging/rollback",
        "GET /api/v1/prompts/a/b/c/-/diff?from=1111&to=2222",
        "GET /api/v1/prompts/a/b%20c",
    ]


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, APIStatusError),
        (422, BadRequestError),
        (429, RateLimitError),
        (500, InternalServerError),
        (503, InternalServerError),
    ],
)
def test_error_statuses_map_to_exception_classes(
    status: int, error_class: type[APIStatusError]
) -> None:
    body = {"error": {"code": "some_code", "message": "Fix this.", "details": {"k": 1}}}
    client = mock_client(lambda _request: httpx.Response(status, json=body))
    with pytest.raises(error_class) as caught:
        client.health()
    error = caught.value
    assert type(error) is error_class and isinstance(error, PromptloopError)
    assert (error.status_code, error.code, error.message, error.details) == (
        status,
        "some_code",
        "Fix this.",
        {"k": 1},
    )
    assert str(error) == "Fix this."


def test_error_without_the_error_body_still_raises_a_status_error() -> None:
    client = mock_client(lambda _request: httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(InternalServerError) as caught:
        client.health()
    assert caught.value.code == "http_error" and "Bad gateway" in str(caught.value)


def test_unreadable_success_raises_response_validation_error() -> None:
    client = mock_client(lambda _request: httpx.Response(200, text="<html>not the API</html>"))
    with pytest.raises(APIResponseValidationError, match="compatible"):
        client.health()
    client = mock_client(lambda _request: httpx.Response(200, json={"data": "nope"}))
    with pytest.raises(APIResponseValidationError):
        list(client.prompts.versions(PATH))


def test_closed_port_raises_api_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        Client(f"http://127.0.0.1:{port}", timeout=5) as client,
        pytest.raises(APIConnectionError) as caught,
    ):
        client.health()
    assert not isinstance(caught.value, APITimeoutError)
    assert f"127.0.0.1:{port}" in str(caught.value) and "PROMPTLOOP_URL" in str(caught.value)


def test_timeout_raises_api_timeout_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(APITimeoutError, match="timeout="):
        mock_client(handler).health()


def sse(*events: tuple[str, Any], raw: str = "") -> httpx.Response:
    body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return httpx.Response(200, text=body + raw, headers={"Content-Type": "text/event-stream"})


DONE = {
    "log_id": "abc",
    "output": "Hi!",
    "finish_reason": "stop",
    "tool_calls": None,
    "usage": {"prompt_tokens": 1, "output_tokens": 2},
    "cost": None,
    "latency_ms": 1.5,
    "prompt": PATH,
    "version": "0123456789ab",
    "provider": "fake",
    "model": "fake-1",
}


def test_stream_reads_server_sent_events_as_the_specification_says() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raw = (
            ': a comment\n\nevent: delta\ndata: {"text":\nData: ignored\ndata: "two\\nlines"}\n\n'
            "event: progress\ndata: {}\n\n"  # an event a newer server may send: skipped
        )
        return sse(("delta", {"text": "Hi"}), raw=raw + sse(("done", DONE)).text)

    client = mock_client(handler)
    stream = client.prompts.stream(PATH, {"q": 1}, version="0123", metadata={"a": "b"})
    assert list(stream) == ["Hi", "two\nlines"]
    assert stream.result == CallResult.model_validate(DONE)
    [request] = seen
    assert request.url.path == "/api/v1/prompts/support/answer/-/call"
    assert json.loads(request.content) == {
        "inputs": {"q": 1},
        "version": "0123",
        "metadata": {"a": "b"},
        "stream": True,
    }


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (429, RateLimitError),
        (504, InternalServerError),
        (None, InternalServerError),
    ],
)
def test_stream_error_events_raise_the_class_of_their_status(
    status: int | None, error_class: type[APIStatusError]
) -> None:
    error = {
        "error": {"code": "provider_error", "message": "It broke.", "details": {"log_id": "L1"}},
        "status": status,
    }
    client = mock_client(lambda _request: sse(("delta", {"text": "par"}), ("error", error)))
    received: list[str] = []
    with pytest.raises(error_class) as caught:
        received.extend(client.prompts.stream(PATH))
    assert received == ["par"]
    assert (caught.value.status_code, caught.value.code, caught.value.message) == (
        status or 502,
        "provider_error",
        "It broke.",
    )
    assert caught.value.details == {"log_id": "L1"}


def test_stream_that_ends_without_a_result_or_with_garbage_raises() -> None:
    client = mock_client(lambda _request: sse(("delta", {"text": "cut"})))
    with pytest.raises(APIResponseValidationError, match="ended without"):
        list(client.prompts.stream(PATH))
    client = mock_client(lambda _request: sse(("done", {"output": "no log id"})))
    with pytest.raises(APIResponseValidationError, match="'done' event"):
        list(client.prompts.stream(PATH))
    client = mock_client(lambda _request: httpx.Response(404, json={}))
    with pytest.raises(NotFoundError):
        list(client.prompts.stream(PATH))


def test_logs_list_sends_the_filters_as_the_api_reads_them() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url.params))
        return httpx.Response(200, json={"data": [], "next_cursor": None})

    client = mock_client(handler)
    since = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    list(
        client.logs.list(
            prompt="a/b",
            version="abcd",
            environment="production",
            source="sdk",
            since=since,
            until=since + timedelta(hours=1),
            error=False,
            end_user="u",
            trace_id="t",
            metadata={"team": "eu", "tier": "gold:plus"},
        )
    )
    list(client.logs.list(error=True))
    assert seen == [
        "prompt=a%2Fb&version=abcd&environment=production&source=sdk"
        "&since=2025-01-02T03%3A04%3A05%2B00%3A00&until=2025-01-02T04%3A04%3A05%2B00%3A00"
        "&error=false&end_user=u&trace_id=t&metadata=team%3Aeu&metadata=tier%3Agold%3Aplus",
        "error=true",
    ]


def test_injected_http_client_is_left_open_and_excludes_transport() -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(200, json=HEALTH)))
    with Client(http_client=http) as client:
        assert client.health().status == "ok"
    assert not http.is_closed
    with pytest.raises(ValueError, match="not both"):
        Client(http_client=http, transport=httpx.MockTransport(lambda _r: httpx.Response(200)))
    http.close()


# --- public surface ----------------------------------------------------------------------


async def test_sync_and_async_clients_have_the_same_methods() -> None:
    def methods(obj: object) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(getattr(obj, name))
            for name in dir(obj)
            if not name.startswith("_") and callable(getattr(obj, name))
        }

    with Client() as sync:
        async with AsyncClient() as asynchronous:
            assert methods(sync) == methods(asynchronous)
            for namespace in ("projects", "environments", "prompts", "logs"):
                assert methods(getattr(sync, namespace)) == methods(
                    getattr(asynchronous, namespace)
                )
    signature = inspect.signature(sync.prompts.get)
    assert list(signature.parameters) == ["path", "environment", "version"]
    assert sync.prompts.get.__doc__ and sync.prompts.get.__qualname__ == "Prompts.get"


def test_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(promptloop).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(promptloop.__all__) == public
    assert sorted(promptloop.__all__) == sorted(promptloop.sdk.__all__)
    from promptloop.sdk import _models

    results = {
        n
        for n, v in vars(_models).items()
        if inspect.isclass(v) and v.__module__ == _models.__name__
    }
    errors = {c.__name__ for c in _subclasses(PromptloopError)} | {"PromptloopError"}
    assert {n for n in results if not n.startswith("_")} | errors <= set(promptloop.__all__)


def _subclasses(cls: type[Exception]) -> set[type[Exception]]:
    found: set[type[Exception]] = set()
    for direct in cls.__subclasses__():
        found |= {direct} | _subclasses(direct)
    return found


@pytest.mark.parametrize("name", promptloop.__all__)
def test_every_exported_name_imports(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from promptloop import {name}", namespace)
    assert namespace[name] is getattr(promptloop, name)


ISOLATED = """
import importlib.abc, sys

BLOCKED = {blocked}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"the SDK must not import {{name}}")
        return None

sys.meta_path.insert(0, Block())
import httpx
import promptloop

health = {health}
transport = httpx.MockTransport(lambda request: httpx.Response(200, json=health))
with promptloop.Client("http://sdk.test", transport=transport) as client:
    print(client.health().status)
"""


def test_sdk_imports_without_the_server_dependencies() -> None:
    blocked = [
        *("fastapi", "starlette", "sqlalchemy", "jinja2", "yaml", "alembic", "typer"),
        *("uvicorn", "psycopg", "pydantic_settings", "pluggy"),
        *(f"promptloop.{layer}" for layer in ("api", "services", "store", "core", "cli")),
        "promptloop.settings",
    ]
    script = textwrap.dedent(ISOLATED).format(blocked=blocked, health=json.dumps(HEALTH))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
