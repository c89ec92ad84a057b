"""Every page route answers odd input (path segments, query values, form posts) with a page or
a 4xx, never a 500 (the API routes have their own schema-driven fuzz in test_fuzz.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Server

SEGMENTS = ["x", "%00", "a" * 300, "..%2F..", "-1", "zz/yy"]
QUERIES = [
    "",
    "?limit=-1&cursor=garbage",
    "?limit=999999999&version=zzz",
    "?since=notadate&until=2026-13-45&window=99y",
    "?candidate=zz&evaluator=zz&a=zz&b=yy&run=zz",
    "?judgment=%3E%3E&feedback=nope&error=maybe&source=moon",
    "?from=logs&prompt=%2F%2F&q=%25%25%25",
]


def _page_routes(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        if hasattr(route, "original_router"):
            yield from _page_routes(route.original_router.routes)
        elif getattr(route, "path", "").startswith("/p/") and hasattr(route, "methods"):
            yield route


def test_page_routes_never_answer_500(sqlite_client: TestClient, tmp_path: Any) -> None:
    app = sqlite_client.app
    server = Server(app.state.settings, app)  # type: ignore[attr-defined]
    browser = server.browser()
    csrf = browser.headers["X-CSRF-Token"]
    routes = list(_page_routes(app.routes))  # type: ignore[attr-defined]
    assert len(routes) >= 40  # every section's pages are in the app
    failures = []
    statuses: set[int] = set()
    for route in routes:
        for segment in SEGMENTS:
            path = re.sub(r"\{[^}]+\}", segment, route.path.replace("{project}", "default"))
            for query in QUERIES:
                for method in route.methods:
                    form = {"csrf_token": csrf, "content": "{{ broken", "value": "zz"}
                    response = browser.request(method, path + query, data=form)
                    statuses.add(response.status_code)
                    if response.status_code >= 500:
                        failures.append(f"{method} {path}{query}: {response.status_code}")
    assert failures == []
    assert {200, 400, 404} <= statuses  # pages rendered, forms refused, unknown things not found
