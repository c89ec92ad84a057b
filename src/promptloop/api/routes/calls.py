"""Calling prompts and draft kernels; non-streamed answers are JSON, streamed ones server-sent
events (`delta` events with text, then one `done` event with the log id, or `error`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from promptloop.api.deps import ContextDep
from promptloop.api.errors import ERROR_RESPONSES, ErrorBody, ErrorDetail
from promptloop.api.schemas import CallPublic, CallRequest, PlaygroundCall, UsagePublic
from promptloop.providers.base import Delta
from promptloop.services.calls import Caller, CallResult, CallSpec
from promptloop.services.feedback import issue_token
from promptloop.services.secrets import SecretBox
from promptloop.store.models import Project

router = APIRouter(tags=["calls"])
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    200: {
        "content": {"text/event-stream": {}},
        "description": "JSON, or events when `stream` is true",
    },
    502: {"description": "The provider failed; the call is logged (details.log_id)"},
    504: {"description": "The provider timed out; the call is logged (details.log_id)"},
}


@router.post(
    "/prompts/{path:path}/-/call",
    summary="Call a prompt: render the deployed (or given) version, call its model, log it",
    responses=STREAM_RESPONSES,
)
async def call_prompt(path: str, body: CallRequest, ctx: ContextDep, request: Request) -> Any:
    spec = CallSpec(
        prompt=path,
        environment=body.environment or (None if body.version else "production"),
        version=body.version,
        inputs=body.inputs,
        messages=[m.model_dump() for m in body.messages],
        source="api",
        end_user=body.end_user,
        metadata=body.metadata,
        trace_id=body.trace_id,
        parent_id=body.parent_id,
        consent=body.consent,
    )
    return await _answer(ctx, request, spec, stream=body.stream, token=body.feedback_token)


@router.post(
    "/playground/call",
    summary="Run a draft kernel without saving it (logged, linked to the version it matches)",
    responses=STREAM_RESPONSES,
)
async def call_draft(body: PlaygroundCall, ctx: ContextDep, request: Request) -> Any:
    spec = CallSpec(
        prompt=body.prompt, kernel=body.kernel(), inputs=body.inputs, source="playground"
    )
    return await _answer(ctx, request, spec, stream=body.stream)


async def _answer(
    ctx: ContextDep, request: Request, spec: CallSpec, *, stream: bool, token: bool = False
) -> Any:
    project, actor = await asyncio.to_thread(ctx.resolve)
    caller: Caller = request.app.state.caller
    tokens = _TokenMinter(request, project) if token else None
    if not stream:
        result = await caller.call(actor=actor, project=project, spec=spec)
        return _result_response(result, tokens)
    events = await caller.stream(actor=actor, project=project, spec=spec)
    return StreamingResponse(
        _sse(events, tokens),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


class _TokenMinter:
    """Issues the feedback token a call asked for, once its log id is known."""

    def __init__(self, request: Request, project: Project) -> None:
        self.box: SecretBox = request.app.state.secret_box
        self.ttl_s: int = request.app.state.settings.feedback_token_ttl_s
        self.project = project

    def __call__(self, log_id: str) -> str:
        return issue_token(self.box, project=self.project, log_uid=log_id, ttl_s=self.ttl_s).token


def call_public(result: CallResult, tokens: _TokenMinter | None = None) -> CallPublic:
    completion = result.completion
    return CallPublic(
        log_id=result.log_id,
        output=completion.output if completion else None,
        finish_reason=completion.finish_reason if completion else None,
        tool_calls=completion.tool_calls if completion else None,
        usage=UsagePublic(
            prompt_tokens=completion.usage.prompt_tokens if completion else None,
            output_tokens=completion.usage.output_tokens if completion else None,
        ),
        cost=result.cost,
        latency_ms=round(result.latency_ms, 3),
        prompt=result.prompt,
        version=result.version,
        provider=result.provider,
        model=result.model,
        feedback_token=tokens(result.log_id) if tokens else None,
    )


def _failure(result: CallResult) -> tuple[int, dict[str, Any]]:
    """The status and error body of a failed call, the same streamed or not."""
    assert result.error is not None
    body = ErrorBody(
        error=ErrorDetail(
            code=result.error.kind,
            message=result.failure_message,
            details={"log_id": result.log_id},
        )
    )
    return result.error.status, body.model_dump(mode="json")


def _result_response(result: CallResult, tokens: _TokenMinter | None) -> JSONResponse:
    if result.error is not None:
        status, body = _failure(result)
        return JSONResponse(body, status_code=status)
    return JSONResponse(call_public(result, tokens).model_dump(mode="json"))


async def _sse(
    events: AsyncIterator[Delta | CallResult], tokens: _TokenMinter | None
) -> AsyncIterator[str]:
    async for event in events:
        if isinstance(event, Delta):
            yield f"event: delta\ndata: {json.dumps({'text': event.text})}\n\n"
        elif event.error is not None:
            status, body = _failure(event)  # the error body of a non-streamed call, and its status
            yield f"event: error\ndata: {json.dumps({**body, 'status': status})}\n\n"
        else:
            yield f"event: done\ndata: {call_public(event, tokens).model_dump_json()}\n\n"
