"""Every URL the server hands out is built here."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request


def sign_in_link(base_url: str, token: str) -> str:
    """The one-time sign-in page for `token`, under the server's base URL."""
    return f"{base_url.rstrip('/')}/sign-in/link?{urlencode({'token': token})}"


def request_base(request: Request) -> str:
    return str(request.base_url)
