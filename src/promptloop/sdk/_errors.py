"""The SDK's exception tree; catch `PromptloopError` to handle every failure of a call.

    PromptloopError                  base class; never raised itself
    ├── APIConnectionError           the server could not be reached (refused, DNS, reset)
    │   └── APITimeoutError          the server did not answer within the client's timeout
    ├── APIResponseValidationError   a 2xx answer the SDK cannot read (wrong URL or server)
    └── APIStatusError               the server answered 4xx/5xx (other statuses: this class)
        ├── BadRequestError          400, 422: the request's content is wrong; see `details`
        ├── AuthenticationError      401: missing or wrong API key
        ├── PermissionDeniedError    403: the key may not do this
        ├── NotFoundError            404: no such prompt, version, environment or project
        ├── ConflictError            409: clashes with current state (exists, nothing to undo)
        ├── RateLimitError           429: too many requests; retry later
        └── InternalServerError      5xx: the server failed; its log has details

Every `APIStatusError` carries the server's error body `{"error": {"code", "message",
"details"}}` as attributes; `str(error)` is the server's message, which says how to fix it.
A call whose provider failed, streamed or not, raises the class of the provider's status with
`details["log_id"]`, the id of the call's log.
"""

from __future__ import annotations

from typing import Any

import httpx


class PromptloopError(Exception):
    """Base of every error the SDK raises."""


class APIConnectionError(PromptloopError):
    """Raised when the request never got an answer: refused, unreachable or dropped."""

    def __init__(self, message: str, *, request: httpx.Request) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APITimeoutError(APIConnectionError):
    """Raised when connecting, sending or reading took longer than the client's timeout."""


class APIResponseValidationError(PromptloopError):
    """Raised when a successful answer is not what this endpoint returns (wrong URL or server)."""

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class APIStatusError(PromptloopError):
    """Raised when the server answers with an error status; subclasses name the common ones."""

    def __init__(
        self, message: str, *, response: httpx.Response, code: str, details: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.response = response
        self.status_code = response.status_code
        self.code = code
        self.details = details


class BadRequestError(APIStatusError):
    """Raised on 400 (invalid content) and 422 (body or query does not match the schema)."""


class AuthenticationError(APIStatusError):
    """Raised on 401: the API key is missing or wrong."""


class PermissionDeniedError(APIStatusError):
    """Raised on 403: the caller's role does not allow this."""


class NotFoundError(APIStatusError):
    """Raised on 404: the prompt, version, environment or project does not exist."""


class ConflictError(APIStatusError):
    """Raised on 409: the request clashes with the current state."""


class RateLimitError(APIStatusError):
    """Raised on 429: too many requests."""


class InternalServerError(APIStatusError):
    """Raised on any 5xx status."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitError,
}


def status_error(response: httpx.Response) -> APIStatusError:
    """The exception for an error response, read from the server's error body when it has one."""
    status = response.status_code
    cls = InternalServerError if status >= 500 else _BY_STATUS.get(status, APIStatusError)
    error = _error_body(response)
    code = error.get("code")
    message = error.get("message")
    if not isinstance(code, str) or not isinstance(message, str):
        code = "http_error"
        message = f"HTTP {status} from {response.request.url}: {response.text[:200]}".rstrip(": ")
    return cls(message, response=response, code=code, details=error.get("details"))


def event_error(response: httpx.Response, data: Any) -> APIStatusError:
    """The exception for an `error` event in a stream (whose HTTP status was 200).

    The event is the error body a non-streamed call failing alike answers with, plus its
    `status`; the exception is the same, and its `response` stands for the event.
    """
    data = data if isinstance(data, dict) else {}
    status = data.get("status")
    status = status if isinstance(status, int) and 400 <= status <= 599 else 502
    body = {"error": data.get("error") if isinstance(data.get("error"), dict) else {}}
    return status_error(httpx.Response(status, json=body, request=response.request))


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}
