"""The OpenAI-compatible gateway: `POST /v1/chat/completions` and `GET /v1/models`, mounted at
the root so that OpenAI clients can use `{server}/v1` as their base URL with a promptloop API
key. Every call is logged (source `gateway`); responses carry the log id in
`X-Promptloop-Log-Id`. Errors on these routes use OpenAI's shape,
`{"error": {"message", "type", "code", "param"}}`, with the upstream status for provider
failures (504 for a timeout)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptloop.api.deps import (
    CSRF_HEADER,
    PROJECT_HEADER,
    RequestContext,
    get_context,
    get_credentials,
    get_db,
    get_settings,
)
from promptloop.api.errors import status_of
from promptloop.core.errors import NotFound, PromptloopError
from promptloop.providers.base import Delta
from promptloop.services import gateway
from promptloop.services.calls import Caller, CallResult
from promptloop.services.feedback import issue_token
from promptloop.services.gateway import ChatCall
from promptloop.settings import Settings

LOG_HEADER = "X-Promptloop-Log-Id"
FEEDBACK_TOKEN_HEADER = "X-Promptloop-Feedback-Token"
logger = logging.getLogger("promptloop.gateway")
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class OpenAIError(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class OpenAIErrorBody(BaseModel):
    """What every error on the gateway's routes holds (OpenAI's shape)."""

    error: OpenAIError


def openai_error(
    status: int,
    message: str,
    *,
    code: str | None,
    kind: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    error = {
        "message": message,
        "type": kind or _TYPES.get(status, "api_error"),
        "code": code,
        "param": param,
    }
    return JSONResponse({"error": error}, status_code=status, headers=headers)


class OpenAIErrorRoute(APIRoute):
    """A route whose failures (auth, validation, domain errors) answer in OpenAI's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except PromptloopError as exc:
                return _domain_error(exc)
            except RequestValidationError as exc:
                return _validation_error(exc)
            except StarletteHTTPException as exc:
                return openai_error(exc.status_code, str(exc.detail), code="http_error")
            except OperationalError as exc:
                logger.error("Database error on %s: %s", request.url.path, exc.orig)
                return openai_error(
                    503,
                    "The database is unavailable; retry shortly.",
                    code="database_unavailable",
                    kind="api_error",
                )

        return handle


def _domain_error(exc: PromptloopError) -> JSONResponse:
    status, headers = status_of(exc)
    param = exc.details.get("param") if isinstance(exc.details, dict) else None
    return openai_error(status, exc.message, code=exc.code, param=param, headers=headers)


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    problems = exc.errors()
    first = problems[0] if problems else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    message = f"Invalid request: {param + ': ' if param else ''}{first.get('msg', 'bad input')}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more)"
    return openai_error(400, message, code="validation_error", param=param)


router = APIRouter(tags=["gateway"], route_class=OpenAIErrorRoute)
GATEWAY_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIErrorBody, "description": description}
    for status, description in [
        (400, "Invalid input (OpenAI error shape)"),
        (401, "No valid API key"),
        (403, "Your role does not allow calls"),
        (404, "No such prompt, version or deployment"),
        (502, "The provider failed or could not be reached (the call is logged)"),
        (504, "The provider timed out (the call is logged)"),
    ]
}


async def gateway_context(
    request: Request,
    authorization: Annotated[
        str | None, Header(description="`Bearer <promptloop API key>`.", max_length=400)
    ] = None,
    project: Annotated[
        str | None,
        Header(
            alias=PROJECT_HEADER, description="Project (default: the key's own).", max_length=64
        ),
    ] = None,
) -> RequestContext:
    """`deps.get_context`, with the headers the gateway documents."""
    credentials = await get_credentials(
        request, authorization=authorization, csrf=request.headers.get(CSRF_HEADER)
    )
    return await get_context(
        await get_db(request), credentials, await get_settings(request), project
    )


GatewayContext = Annotated[RequestContext, Depends(gateway_context)]


class ChatMessageIn(BaseModel):
    """A chat message in the OpenAI shape (extra fields such as `tool_calls`, `tool_call_id`
    and `name` pass through)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionIn(BaseModel):
    """OpenAI's chat-completions request, plus promptloop's `inputs` and `timeout`. Fields not
    named here (temperature, tools, tool_choice…) go to the provider."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(
        min_length=1,
        max_length=300,
        description="`provider/model` (`openai/gpt-4o-mini`) or `prompt:path[@environment|version]`.",
    )
    messages: list[ChatMessageIn] = Field(default_factory=list, max_length=10_000)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="Template variables, for `prompt:` models."
    )
    user: str | None = Field(default=None, max_length=256, description="Logged as the end user.")
    metadata: dict[str, Any] | None = Field(default=None, description="Logged with the call.")
    timeout: float | None = Field(
        default=None, gt=0, le=600, description="Seconds the provider gets (default 120)."
    )
    n: int | None = Field(default=None, ge=1, le=1, description="Only one choice is supported.")
    consent: bool | None = Field(
        default=None, description="Whether the end user consented to capture of their content."
    )
    feedback_token: bool = Field(
        default=False,
        description=f"Return a feedback token for the call's log in the {FEEDBACK_TOKEN_HEADER} "
        "header (lets a browser give feedback on that log alone).",
    )


@router.post(
    "/v1/chat/completions",
    summary="OpenAI-compatible chat completions through promptloop (logged)",
    responses={
        **GATEWAY_RESPONSES,
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or chunks"},
    },
)
async def chat_completions(
    body: ChatCompletionIn, ctx: GatewayContext, request: Request
) -> Response:
    project, actor = await asyncio.to_thread(ctx.resolve)
    log_id = uuid.uuid4().hex
    spec = gateway.call_spec(
        ChatCall(
            model=body.model,
            messages=[m.model_dump(exclude_unset=True) for m in body.messages],
            body=dict(body.model_extra or {}),
            inputs=body.inputs,
            user=body.user,
            metadata=body.metadata or {},
            timeout=body.timeout,
            consent=body.consent,
        ),
        log_id=log_id,
    )
    caller: Caller = request.app.state.caller
    headers = {LOG_HEADER: log_id}
    if body.feedback_token:
        settings: Settings = request.app.state.settings
        issued = issue_token(
            request.app.state.secret_box,
            project=project,
            log_uid=log_id,
            ttl_s=settings.feedback_token_ttl_s,
        )
        headers[FEEDBACK_TOKEN_HEADER] = issued.token
    if not body.stream:
        result = await caller.call(actor=actor, project=project, spec=spec)
        if result.error is not None:
            return _provider_error(result, headers)
        return JSONResponse(completion_body(result, body.model), headers=headers)
    events = await caller.stream(actor=actor, project=project, spec=spec)
    # Wait for the first event, so a provider that fails before any output gets its own status.
    first = await anext(events)
    if isinstance(first, CallResult) and first.error is not None:
        return _provider_error(first, headers)
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    chunks = _chunks(first, events, model=body.model, log_id=log_id, include_usage=include_usage)
    return StreamingResponse(
        chunks, media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"}
    )


@router.get(
    "/v1/models",
    summary="Models the gateway serves: catalogue models and the project's prompts",
    responses=GATEWAY_RESPONSES,
)
def list_models(ctx: GatewayContext) -> dict[str, Any]:
    with ctx.transaction(write=False) as (session, project, actor):
        listed = gateway.list_models(session, actor=actor, project=project)
    return {"object": "list", "data": [_model_object(m) for m in listed]}


@router.get(
    "/v1/models/{model:path}",
    summary="One model the gateway serves (OpenAI's models.retrieve)",
    responses=GATEWAY_RESPONSES,
)
def get_model(model: str, ctx: GatewayContext) -> dict[str, Any]:
    with ctx.transaction(write=False) as (session, project, actor):
        listed = gateway.list_models(session, actor=actor, project=project)
    for found in listed:
        if found.id == model:
            return _model_object(found)
    raise NotFound(f"No model {model!r}: GET /v1/models lists the models the gateway serves.")


@router.api_route(
    "/v1/{rest:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
def unknown(rest: str) -> Response:
    return openai_error(
        404,
        f"No such endpoint /v1/{rest}: promptloop's gateway serves POST /v1/chat/completions "
        "and GET /v1/models.",
        code="not_found",
    )


def _model_object(model: gateway.ListedModel) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": model.created, "owned_by": model.owned_by}


def completion_body(result: CallResult, model: str) -> dict[str, Any]:
    """The `chat.completion` object for a successful call."""
    completion = result.completion
    assert completion is not None
    message: dict[str, Any] = {"role": "assistant", "content": completion.output}
    if completion.tool_calls:
        message["content"] = completion.output or None
        message["tool_calls"] = completion.tool_calls
    return {
        "id": f"chatcmpl-{result.log_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": completion.finish_reason or "stop",
            }
        ],
        "usage": _usage(result),
    }


def _usage(result: CallResult) -> dict[str, int] | None:
    usage = result.completion.usage if result.completion else None
    if usage is None or (usage.prompt_tokens is None and usage.output_tokens is None):
        return None
    prompt, output = usage.prompt_tokens or 0, usage.output_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}


def _provider_error(result: CallResult, headers: dict[str, str]) -> JSONResponse:
    error = result.error
    assert error is not None
    return openai_error(
        error.status,
        result.failure_message,
        code=error.kind,
        kind=error.kind if error.status >= 500 else _TYPES.get(error.status, error.kind),
        headers=headers,
    )


async def _chunks(
    first: Delta | CallResult,
    events: AsyncIterator[Delta | CallResult],
    *,
    model: str,
    log_id: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    """`chat.completion.chunk` events ending with `data: [DONE]` (or an error object)."""
    head = f'{{"id":"chatcmpl-{log_id}","object":"chat.completion.chunk","created":{int(time.time())},"model":{json.dumps(model)},'

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return f'data: {head}"choices":[{json.dumps(choice)}]}}\n\n'

    yield chunk({"role": "assistant", "content": ""})
    event = first
    try:
        while isinstance(event, Delta):
            yield chunk({"content": event.text})
            event = await anext(events)
    finally:
        if not isinstance(event, CallResult):  # the client went away: stop the upstream call
            await cast(AsyncGenerator[Any, None], events).aclose()
    if event.error is not None:
        error = {
            "message": event.failure_message,
            "type": event.error.kind,
            "code": event.error.kind,
            "param": None,
        }
        yield f"data: {json.dumps({'error': error})}\n\n"
        return
    completion = event.completion
    assert completion is not None
    if completion.tool_calls:
        calls = [{"index": i, **call} for i, call in enumerate(completion.tool_calls)]
        yield chunk({"tool_calls": calls})
    yield chunk({}, completion.finish_reason or "stop")
    if include_usage:
        yield f'data: {head}"choices":[],"usage":{json.dumps(_usage(event))}}}\n\n'
    yield "data: [DONE]\n\n"
