"""One error shape for every failure: `{"error": {"code", "message", "details"}}`.

Domain errors map to 4xx by class; request validation to 422; anything unexpected is logged
with its traceback on the server and answered with a 500 that carries no internals.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptloop.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PromptloopError,
    RateLimited,
    Unauthenticated,
)

logger = logging.getLogger("promptloop.api")

STATUS: dict[type[Exception], int] = {
    NotFound: 404,
    InvalidInput: 400,
    Conflict: 409,
    Unauthenticated: 401,
    Forbidden: 403,
    RateLimited: 429,
}
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """What every error response holds."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in [
        (400, "Invalid input"),
        (401, "No valid credentials"),
        (403, "Your role does not allow this"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Body too large"),
        (422, "Request does not match the schema"),
        (429, "Too many attempts; see Retry-After"),
        (500, "Unexpected server error (a bug: the server log has details)"),
        (503, "Database unavailable"),
    ]
}


def status_of(exc: PromptloopError) -> tuple[int, dict[str, str]]:
    """The HTTP status of a domain error, and the headers that go with it."""
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return status, headers


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, details=details))
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the one error shape."""

    @app.exception_handler(PromptloopError)
    async def _domain(_request: Request, exc: PromptloopError) -> JSONResponse:
        status, headers = status_of(exc)
        response = error_response(status, exc.code, exc.message, exc.details)
        response.headers.update(headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "location": ".".join(str(part) for part in err.get("loc", ())),
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
            for err in exc.errors()
        ]
        summary = "; ".join(f"{p['location']}: {p['message']}" for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        return error_response(
            422, "validation_error", f"Invalid request: {summary}{more}", problems
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "No such endpoint. The API is described at /openapi.json."
        return error_response(exc.status_code, code, message)

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        logger.error("Database error on %s %s: %s", request.method, request.url.path, exc.orig)
        return error_response(
            503, "database_unavailable", "The database is unavailable; retry shortly."
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("Unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            500, "internal_error", "Internal server error; the server log has details."
        )


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with 413, before reading them all,
    and URLs holding NUL characters (no column can store them) with 400."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").lower()
        if b"%00" in query or "\x00" in scope.get("path", ""):
            await error_response(
                400, "invalid_input", "URLs must not contain NUL (%00) characters."
            )(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Raised while the route reads its body, so it reaches the 413 handler.
                    raise StarletteHTTPException(413, self._message())
            return message

        await self.app(scope, limited_receive, send)

    def _message(self) -> str:
        return f"Request body is larger than the limit of {self.max_bytes} bytes."

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, "body_too_large", self._message())(scope, receive, send)


class PublicCors:
    """ASGI middleware: let web pages on any origin reach the public paths (token-authenticated
    feedback), errors included, and answer their preflight requests. Credentials (cookies) are
    never allowed cross-origin, so `*` exposes nothing a token does not already grant."""

    HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", b"POST, OPTIONS"),
        (b"access-control-allow-headers", b"content-type"),
        (b"access-control-max-age", b"600"),
    ]

    def __init__(self, app: ASGIApp, *, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": self.HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS[:1]]}
            await send(message)

        await self.app(scope, receive, with_cors)
