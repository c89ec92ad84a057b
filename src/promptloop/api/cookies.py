"""The browser session cookie: HTTP-only, SameSite=Lax, Secure on HTTPS and on loopback hosts
(browsers accept Secure cookies from http://localhost), unless settings say otherwise."""

from __future__ import annotations

from fastapi import Request, Response

from promptloop.api.deps import SESSION_COOKIE
from promptloop.settings import Settings

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def set_session(response: Response, request: Request, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_days * 86400,
        httponly=True,
        samesite="lax",
        secure=_secure(request, settings),
        path="/",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def _secure(request: Request, settings: Settings) -> bool:
    if settings.cookie_secure != "auto":
        return settings.cookie_secure == "always"
    return request.url.scheme == "https" or (request.url.hostname or "") in _LOOPBACK
