"""Authorization: who may call which endpoint, project isolation, and secrets.

One running app per database serves the whole module (`world_sqlite`, `world_postgresql`); every
case makes its own objects under a fresh tag, so cases never depend on each other. The full
matrix runs on SQLite; PostgreSQL runs the API-key role sweep and the secrets checks.

Expected outcomes:
- allowed: 2xx and the change is visible afterwards;
- a role below the endpoint's: 403 `forbidden`, and nothing changed;
- no credentials or a revoked key: 401 `unauthenticated`;
- a key of another project, or a signed-in user who is not a member: 404 `not_found`, exactly as
  for a project that does not exist;
- a browser session without the X-CSRF-Token header on a write: 403 `forbidden`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi import FastAPI, routing
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, select, table, text

from promptloop.api.app import create_app
from promptloop.services.secrets import SecretBox
from promptloop.settings import Settings
from tests.conftest import Server, fresh_postgres_database
from tests.fakes import FakeProvider, registered
from tests.helpers import BASE, assert_error, kernel_body

Response = Any  # what TestClient returns: an httpx or httpx2 Response, whichever is installed
ROLES = ("viewer", "member", "developer", "admin")
PROJECT = "Promptloop-Project"
A = "default"  # the project every matrix case acts on
B = "other"  # another project whose data nobody in A may reach
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READ_PATH = "authz-read/answer"  # a prompt of A with two versions, deployed to two environments
B_PATH = "secret-b/plan"
B_CONTENT = "TOP-SECRET-B-CONTENT"
B_EMAIL = "bob-only-b@example.com"
B_PROVIDER = "b-only-provider"
B_LOG = "b-secret-log-0001"
READ_LOG = "authz-read-log-0001"
READ_DATASET = "authz-read/examples"  # a dataset of A with one version
B_DATASET = "secret-b/examples"
READ_EVAL_PATH = "authz-read/eval"  # a prompt of A (fake model): v1 in production, v2 evaluated
READ_EVALUATOR = "authz-read-exact"  # a builtin evaluator of A
READ_REVIEW = "authz-read-review"  # a human evaluator of A (its judgments stay pending)
B_EVALUATOR = "secret-b-exact"
RUN_FINISHED = frozenset({"completed", "failed", "cancelled"})
FAKE_KERNEL = {"provider": "fake", "model": "fake-1"}  # tests/fakes.py, registered per module


def at_least(role: str) -> frozenset[str]:
    return frozenset(ROLES[ROLES.index(role) :])


# The world: one running app with callers of every kind ----------------------------------------


@dataclass(frozen=True)
class Caller:
    kind: str  # key · user · anonymous · revoked · foreign_key · outsider · no_csrf
    role: str | None = None


CALLERS: dict[str, Caller] = {
    "key-admin": Caller("key", "admin"),
    "key-developer": Caller("key", "developer"),
    "key-member": Caller("key", "member"),
    "key-viewer": Caller("key", "viewer"),
    "anonymous": Caller("anonymous"),
    "revoked-key": Caller("revoked"),  # an admin key of A, revoked
    "other-project-key": Caller("foreign_key"),  # admin key of B, naming A in the header
    "browser-no-csrf": Caller("no_csrf"),  # signed-in server admin, header dropped
    "user-admin": Caller("user", "admin"),  # signed-in server admin (the first admin)
    "user-member": Caller("user", "member"),  # signed-in user, member of A only
    "user-outsider": Caller("outsider"),  # signed-in user, member of B only
}
PG_CALLERS = ("key-admin", "key-developer", "key-member", "key-viewer", "other-project-key")


@dataclass
class BData:
    """What project B holds, and what must never be seen from A."""

    admin: TestClient
    key_id: int
    key_prefix: str
    versions: tuple[str, str]
    run: str  # a finished local run of B, with a control
    tune: str  # a (queued) fine-tune of B
    member_email: str = B_EMAIL
    provider: str = B_PROVIDER
    log: str = B_LOG


@dataclass
class World:
    settings: Settings
    server: Server
    anonymous: TestClient
    admin: TestClient  # admin API key of A, for setting up and checking
    browser: TestClient  # signed-in server admin, with CSRF header
    callers: dict[str, TestClient]
    read_versions: tuple[str, str]
    read_run: str  # a finished evaluation run of READ_EVAL_PATH, with a control
    b: BData
    secrets: dict[str, str] = field(default_factory=dict)

    def key_client(self, secret: str) -> TestClient:
        return self.server.client(secret)


def ok(response: Response, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200,)), response.text
    return response.json() if response.content else None


def wait_for_run(client: TestClient, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The run once it has finished (runs execute in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = ok(client.get(f"{BASE}/evaluations/{run_id}"))
        if run["status"] in RUN_FINISHED:
            return run
        assert time.monotonic() < deadline, f"run {run_id} did not finish: {run}"
        time.sleep(0.05)


def start_local(client: TestClient, body: dict[str, Any], *, picked_up: bool = True) -> str:
    """Start a local run; with `picked_up`, wait until the worker has started it (so that the
    cases also cover a run the worker already looked at)."""
    run_id: str = ok(client.post(f"{BASE}/evaluations", json={**body, "mode": "local"}), 202)["id"]
    if not picked_up:
        return run_id
    deadline = time.monotonic() + 30.0
    while (status := ok(client.get(f"{BASE}/evaluations/{run_id}"))["status"]) == "queued":
        assert time.monotonic() < deadline, f"local run {run_id} was not picked up"
        time.sleep(0.02)
    assert status == "running", status
    return run_id


def new_key(
    client: TestClient, *, role: str, name: str, project: str | None = None
) -> dict[str, Any]:
    headers = {PROJECT: project} if project else {}
    created: dict[str, Any] = ok(
        client.post(f"{BASE}/api-keys", json={"name": name, "role": role}, headers=headers), 201
    )
    return created


def build_world(settings: Settings) -> Iterator[World]:
    app = create_app(settings)
    with TestClient(app) as anonymous:
        server = Server(settings, app)
        admin_secret = server.key(role="admin", name="authz-admin")
        admin = server.client(admin_secret)
        callers: dict[str, TestClient] = {"key-admin": admin, "anonymous": anonymous}
        secrets = {"admin": admin_secret}
        for role in ("developer", "member", "viewer"):
            secrets[role] = new_key(admin, role=role, name=f"authz-{role}")["key"]
            callers[f"key-{role}"] = server.client(secrets[role])

        revoked = new_key(admin, role="admin", name="authz-revoked")
        ok(admin.delete(f"{BASE}/api-keys/{revoked['id']}"))
        callers["revoked-key"] = server.client(revoked["key"])

        browser = server.browser()
        callers["user-admin"] = browser
        no_csrf = server.browser()
        del no_csrf.headers["X-CSRF-Token"]
        callers["browser-no-csrf"] = no_csrf

        # Project B, its admin key, a member who belongs to B only, and data worth stealing.
        ok(browser.post(f"{BASE}/projects", json={"name": B}), 201)
        b_key = new_key(browser, role="admin", name="b-admin", project=B)
        b_admin = server.client(b_key["key"])
        foreign = server.client(b_key["key"])
        foreign.headers[PROJECT] = A
        callers["other-project-key"] = foreign
        b_versions = tuple(
            ok(
                b_admin.post(
                    f"{BASE}/prompts/{B_PATH}/-/versions",
                    json=kernel_body(f"{B_CONTENT} {i} {{{{ x }}}}"),
                ),
                201,
            )["id"]
            for i in (1, 2)
        )
        for version in b_versions:
            ok(
                b_admin.put(
                    f"{BASE}/prompts/{B_PATH}/-/deployments/production", json={"version": version}
                )
            )
        ok(b_admin.post(f"{BASE}/members", json={"email": B_EMAIL, "role": "member"}), 201)
        ok(
            b_admin.put(
                f"{BASE}/provider-keys/{B_PROVIDER}",
                json={"api_key": "sk-b-only-provider-key-9999"},
            )
        )
        ok(
            b_admin.post(
                f"{BASE}/logs",
                json={"id": B_LOG, "prompt": B_PATH, "output": f"{B_CONTENT} log"},
            ),
            201,
        )
        ok(
            b_admin.post(
                f"{BASE}/datasets/{B_DATASET}/-/versions",
                json={"datapoints": [{"inputs": {"x": B_CONTENT}, "target": B_CONTENT}]},
            ),
            201,
        )
        ok(
            b_admin.post(
                f"{BASE}/evaluators/{B_EVALUATOR}/-/versions",
                json={"kind": "builtin", "builtin": "exact_match"},
            ),
            201,
        )
        b_run = start_local(
            b_admin,
            {
                "dataset": B_DATASET,
                "candidates": [{"label": "b-one"}, {"label": "b-two"}],
                "evaluators": [B_EVALUATOR],
                "control": 0,
            },
        )
        ok(b_admin.post(f"{BASE}/evaluations/{b_run}/finish"))  # no outputs: nothing logged
        assert wait_for_run(b_admin, b_run)["status"] == "completed"
        b_tuned = ok(
            b_admin.post(
                f"{BASE}/prompts/secret-b/tuned/-/versions", json=kernel_body("Tune {{ x }}")
            ),
            201,
        )["id"]
        b_points = [{"inputs": {"x": f"{B_CONTENT} {i}"}, "target": B_CONTENT} for i in range(6)]
        ok(
            b_admin.post(
                f"{BASE}/datasets/secret-b/tuning/-/versions", json={"datapoints": b_points}
            ),
            201,
        )
        b_tune = ok(
            b_admin.post(
                f"{BASE}/fine-tunes",
                json={
                    "name": "secret-b-model",
                    "dataset": "secret-b/tuning",
                    "prompt": "secret-b/tuned",
                    "version": b_tuned,
                },
            ),
            202,
        )["id"]

        ok(
            admin.post(f"{BASE}/members", json={"email": "alice-a@example.com", "role": "member"}),
            201,
        )
        callers["user-member"] = server.browser("alice-a@example.com")
        callers["user-outsider"] = server.browser(B_EMAIL)

        # A prompt of A for the read sweep: v1 in staging, v2 in production.
        read_versions = tuple(
            ok(
                admin.post(
                    f"{BASE}/prompts/{READ_PATH}/-/versions",
                    json=kernel_body(f"Read v{i}: hello {{{{ name }}}}"),
                ),
                201,
            )["id"]
            for i in (1, 2)
        )
        for version, env in zip(read_versions, ("staging", "production"), strict=True):
            ok(
                admin.put(
                    f"{BASE}/prompts/{READ_PATH}/-/deployments/{env}", json={"version": version}
                )
            )
        ok(
            admin.post(
                f"{BASE}/logs",
                json={"id": READ_LOG, "prompt": READ_PATH, "output": "read log output"},
            ),
            201,
        )
        ok(
            admin.post(
                f"{BASE}/datasets/{READ_DATASET}/-/versions",
                json={"datapoints": [{"inputs": {"x": "read datapoint"}, "target": "read target"}]},
            ),
            201,
        )
        # A finished evaluation run of A, with a control and a human evaluator left pending.
        eval_versions = [
            ok(
                admin.post(
                    f"{BASE}/prompts/{READ_EVAL_PATH}/-/versions",
                    json=kernel_body(f"Eval v{i} {{{{ x }}}}", **FAKE_KERNEL),
                ),
                201,
            )["id"]
            for i in (1, 2)
        ]
        ok(
            admin.put(
                f"{BASE}/prompts/{READ_EVAL_PATH}/-/deployments/production",
                json={"version": eval_versions[0]},
            )
        )
        for name, spec in (
            (READ_EVALUATOR, {"kind": "builtin", "builtin": "exact_match"}),
            (READ_REVIEW, {"kind": "human", "returns": "number"}),
        ):
            ok(admin.post(f"{BASE}/evaluators/{name}/-/versions", json=spec), 201)
        read_run = ok(
            admin.post(
                f"{BASE}/evaluations",
                json={
                    "dataset": READ_DATASET,
                    "candidates": [{"prompt": READ_EVAL_PATH, "version": eval_versions[1]}],
                    "evaluators": [READ_EVALUATOR, READ_REVIEW],
                    "name": "authz-read-run",
                },
            ),
            202,
        )["id"]
        assert wait_for_run(admin, read_run)["status"] == "completed"

        assert set(callers) == set(CALLERS)
        yield World(
            settings=settings,
            server=server,
            anonymous=anonymous,
            admin=admin,
            browser=browser,
            callers=callers,
            read_versions=(read_versions[0], read_versions[1]),
            read_run=read_run,
            b=BData(
                admin=b_admin,
                key_id=b_key["id"],
                key_prefix=b_key["prefix"],
                versions=(b_versions[0], b_versions[1]),
                run=b_run,
                tune=b_tune,
            ),
            secrets=secrets,
        )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    """A model provider that answers without a network, for the call endpoints."""
    with registered(FakeProvider()) as provider:
        yield provider


@pytest.fixture(scope="module")
def world_sqlite(tmp_path_factory: pytest.TempPathFactory, fake: FakeProvider) -> Iterator[World]:
    root = tmp_path_factory.mktemp("authz-sqlite")
    settings = Settings(
        data_dir=root / "data",
        database_url=f"sqlite:///{root / 'promptloop.db'}",
        worker_jobs=["evaluation_run"],  # fine-tunes stay queued: the cases never train
    )
    yield from build_world(settings)


@pytest.fixture(scope="module")
def world_postgresql(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str, fake: FakeProvider
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("authz-pg")
    settings = Settings(
        data_dir=root / "data",
        database_url=fresh_postgres_database(postgres_server),
        worker_jobs=["evaluation_run"],
    )
    yield from build_world(settings)


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest) -> World:
    found: World = request.getfixturevalue(f"world_{request.param}")
    return found


# Routes, as the app declares them -------------------------------------------------------------


def declared_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves under /api/v1, from the router and again
    from the OpenAPI document (so neither a router detail nor a hidden route slips through)."""
    contexts = (
        routing.iter_route_contexts(app.routes)
        if hasattr(routing, "iter_route_contexts")
        else app.routes
    )
    found = set()
    for route in contexts:
        path = getattr(route, "path", "") or ""
        for method in getattr(route, "methods", None) or ():
            if path.startswith(f"{BASE}/") and method != "HEAD":
                found.add((method, path))
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if path.startswith(f"{BASE}/")
    }
    assert {(m, re.sub(r"\{(\w+):\w+\}", r"{\1}", p)) for m, p in found} == documented
    return found


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    root = tmp_path_factory.mktemp("authz-routes")
    return declared_routes(create_app(Settings(data_dir=root / "data")))


def is_own_session_route(path: str) -> bool:
    """Routes that act on the caller's own session, or take a feedback token instead of a role
    (tests/test_feedback.py covers those tokens)."""
    return path.startswith(f"{BASE}/auth/") or path == f"{BASE}/feedback"


# Small helpers that act as the admin of A ----------------------------------------------------


def save(w: World, path: str, content: str) -> str:
    version: str = ok(
        w.admin.post(f"{BASE}/prompts/{path}/-/versions", json=kernel_body(content)), 200, 201
    )["id"]
    return version


def deploy(w: World, path: str, version: str, environment: str) -> None:
    ok(w.admin.put(f"{BASE}/prompts/{path}/-/deployments/{environment}", json={"version": version}))


def served(w: World, path: str, environment: str) -> str:
    version: str = ok(
        w.admin.get(f"{BASE}/prompts/{path}/-/version", params={"environment": environment})
    )["id"]
    return version


def history_length(w: World, path: str, environment: str) -> int:
    return len(
        ok(w.admin.get(f"{BASE}/prompts/{path}/-/history", params={"environment": environment}))[
            "data"
        ]
    )


def environments(w: World) -> dict[str, bool]:
    return {e["name"]: e["protected"] for e in ok(w.admin.get(f"{BASE}/environments"))}


def members(w: World) -> dict[str, str]:
    return {m["email"]: m["role"] for m in ok(w.admin.get(f"{BASE}/members"))}


def provider_hints(client: TestClient) -> dict[str, str]:
    return {p["provider"]: p["hint"] for p in ok(client.get(f"{BASE}/provider-keys"))}


def add_member(w: World, email: str, role: str = "viewer") -> str | None:
    """Add a new account to A; returns its one-time sign-in token."""
    added = ok(w.admin.post(f"{BASE}/members", json={"email": email, "role": role}), 201)
    url = added["sign_in_url"]
    return parse_qs(urlparse(url).query)["token"][0] if url else None


def redeem(w: World, token: str) -> Response:
    response: Response = w.server.client().post(f"{BASE}/auth/sign-in-link", json={"token": token})
    return response


def key_works(w: World, secret: str) -> bool:
    status: int = w.key_client(secret).get(f"{BASE}/environments").status_code
    assert status in (200, 401)
    return status == 200


# The mutation matrix ---------------------------------------------------------------------------


def _nothing() -> None:
    return None


@dataclass
class Attempt:
    """The request a case makes, what must still hold when it is refused, and what must hold
    after it succeeded."""

    url: str
    body: Any
    unchanged: Callable[[], None] = _nothing
    applied: Callable[[Response], None] = lambda _response: None
    files: Any = None  # a multipart upload, sent instead of a JSON body


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    route: str
    allowed: frozenset[str]  # the roles that may (API keys and members alike)
    setup: Callable[[World, str], Attempt]
    keys_may: bool = True  # False: API keys of every role are refused
    project_scoped: bool = True  # False: acts outside the current project (no 404 for outsiders)


def create_prompt(w: World, tag: str) -> Attempt:
    path = f"authz/{tag}/created"

    def unchanged() -> None:
        assert w.admin.get(f"{BASE}/prompts/{path}").status_code == 404

    def applied(_response: Response) -> None:
        ok(w.admin.get(f"{BASE}/prompts/{path}"))

    return Attempt(f"{BASE}/prompts", {"path": path}, unchanged, applied)


def save_version(w: World, tag: str) -> Attempt:
    path = f"authz/{tag}/saved"
    first = save(w, path, f"first {tag} {{{{ q }}}}")

    def ids() -> list[str]:
        return [v["id"] for v in ok(w.admin.get(f"{BASE}/prompts/{path}/-/versions"))["data"]]

    def unchanged() -> None:
        assert ids() == [first]

    def applied(response: Response) -> None:
        assert response.status_code == 201
        assert ids() == [response.json()["id"], first]

    return Attempt(
        f"{BASE}/prompts/{path}/-/versions",
        kernel_body(f"second {tag} {{{{ q }}}}"),
        unchanged,
        applied,
    )


def render(w: World, tag: str) -> Attempt:
    path = f"authz/{tag}/render"
    save(w, path, f"Hello {{{{ name }}}} from {tag}")

    def applied(response: Response) -> None:
        assert f"Hello Ada from {tag}" in response.text

    return Attempt(f"{BASE}/prompts/{path}/-/render", {"inputs": {"name": "Ada"}}, applied=applied)


def deploy_to(
    environment: str, *, custom_protected: bool = False
) -> Callable[[World, str], Attempt]:
    def setup(w: World, tag: str) -> Attempt:
        env = environment
        if custom_protected:
            env = f"gated-{tag}"
            ok(w.admin.post(f"{BASE}/environments", json={"name": env, "protected": True}), 201)
        path = f"authz/{tag}/deploy"
        old = save(w, path, f"old {tag}")
        new = save(w, path, f"new {tag}")
        deploy(w, path, old, env)

        def unchanged() -> None:
            assert served(w, path, env) == old
            assert history_length(w, path, env) == 1

        def applied(response: Response) -> None:
            assert response.json()["version_id"] == new
            assert response.json()["changed"] is True
            assert served(w, path, env) == new

        return Attempt(
            f"{BASE}/prompts/{path}/-/deployments/{env}", {"version": new}, unchanged, applied
        )

    return setup


def rollback_in(environment: str) -> Callable[[World, str], Attempt]:
    def setup(w: World, tag: str) -> Attempt:
        path = f"authz/{tag}/rollback"
        old = save(w, path, f"old {tag}")
        new = save(w, path, f"new {tag}")
        deploy(w, path, old, environment)
        deploy(w, path, new, environment)

        def unchanged() -> None:
            assert served(w, path, environment) == new
            assert history_length(w, path, environment) == 2

        def applied(response: Response) -> None:
            assert response.json()["action"] == "rollback"
            assert served(w, path, environment) == old

        return Attempt(
            f"{BASE}/prompts/{path}/-/deployments/{environment}/rollback",
            {"message": "authz"},
            unchanged,
            applied,
        )

    return setup


def create_environment(w: World, tag: str) -> Attempt:
    name = f"env-{tag}"

    def unchanged() -> None:
        assert name not in environments(w)

    def applied(_response: Response) -> None:
        assert environments(w)[name] is False

    return Attempt(f"{BASE}/environments", {"name": name, "protected": False}, unchanged, applied)


def set_protection(protect: bool) -> Callable[[World, str], Attempt]:
    def setup(w: World, tag: str) -> Attempt:
        name = f"env-{tag}"
        ok(w.admin.post(f"{BASE}/environments", json={"name": name, "protected": not protect}), 201)

        def unchanged() -> None:
            assert environments(w)[name] is (not protect)

        def applied(_response: Response) -> None:
            assert environments(w)[name] is protect

        return Attempt(f"{BASE}/environments/{name}", {"protected": protect}, unchanged, applied)

    return setup


def create_api_key(w: World, tag: str) -> Attempt:
    name = f"key-{tag}"

    def unchanged() -> None:
        assert name not in [k["name"] for k in ok(w.admin.get(f"{BASE}/api-keys"))]

    def applied(response: Response) -> None:
        assert response.json()["role"] == "viewer"
        assert key_works(w, response.json()["key"])

    return Attempt(f"{BASE}/api-keys", {"name": name, "role": "viewer"}, unchanged, applied)


def revoke_api_key(w: World, tag: str) -> Attempt:
    target = new_key(w.admin, role="viewer", name=f"target-{tag}")

    def unchanged() -> None:
        assert key_works(w, target["key"])

    def applied(response: Response) -> None:
        assert response.json()["revoked_at"] is not None
        assert "key" not in response.json()
        assert not key_works(w, target["key"])

    return Attempt(f"{BASE}/api-keys/{target['id']}", None, unchanged, applied)


def set_provider_key(w: World, tag: str) -> Attempt:
    provider = f"prov-{tag}"
    ok(w.admin.put(f"{BASE}/provider-keys/{provider}", json={"api_key": f"sk-old-{tag}-1111"}))

    def unchanged() -> None:
        assert provider_hints(w.admin)[provider] == "1111"

    def applied(response: Response) -> None:
        assert "sk-new" not in response.text
        assert provider_hints(w.admin)[provider] == "2222"

    return Attempt(
        f"{BASE}/provider-keys/{provider}", {"api_key": f"sk-new-{tag}-2222"}, unchanged, applied
    )


def delete_provider_key(w: World, tag: str) -> Attempt:
    provider = f"prov-{tag}"
    ok(w.admin.put(f"{BASE}/provider-keys/{provider}", json={"api_key": f"sk-old-{tag}-1111"}))

    def unchanged() -> None:
        assert provider in provider_hints(w.admin)

    def applied(_response: Response) -> None:
        assert provider not in provider_hints(w.admin)

    return Attempt(f"{BASE}/provider-keys/{provider}", None, unchanged, applied)


def add_member_case(w: World, tag: str) -> Attempt:
    email = f"new-{tag}@example.com"

    def unchanged() -> None:
        assert email not in members(w)

    def applied(_response: Response) -> None:
        assert members(w)[email] == "viewer"

    return Attempt(f"{BASE}/members", {"email": email, "role": "viewer"}, unchanged, applied)


def change_role(w: World, tag: str) -> Attempt:
    email = f"role-{tag}@example.com"
    add_member(w, email, "viewer")

    def unchanged() -> None:
        assert members(w)[email] == "viewer"

    def applied(_response: Response) -> None:
        assert members(w)[email] == "developer"

    return Attempt(f"{BASE}/members/{email}", {"role": "developer"}, unchanged, applied)


def remove_member(w: World, tag: str) -> Attempt:
    email = f"gone-{tag}@example.com"
    add_member(w, email, "viewer")

    def unchanged() -> None:
        assert members(w)[email] == "viewer"

    def applied(_response: Response) -> None:
        assert email not in members(w)

    return Attempt(f"{BASE}/members/{email}", None, unchanged, applied)


def member_sign_in_link(w: World, tag: str) -> Attempt:
    email = f"link-{tag}@example.com"
    original = add_member(w, email, "viewer")
    assert original is not None

    def unchanged() -> None:
        # A refused request issued no link: the one from the invitation still works.
        ok(redeem(w, original))

    def applied(response: Response) -> None:
        token = parse_qs(urlparse(response.json()["sign_in_url"]).query)["token"][0]
        assert redeem(w, original).status_code == 401  # a new link replaces older ones
        assert ok(redeem(w, token))["email"] == email

    return Attempt(f"{BASE}/members/{email}/sign-in-link", None, unchanged, applied)


def create_project(w: World, tag: str) -> Attempt:
    name = f"p-{tag}"

    def names() -> list[str]:
        return [p["name"] for p in ok(w.browser.get(f"{BASE}/projects"))]

    def unchanged() -> None:
        assert name not in names()

    def applied(response: Response) -> None:
        assert response.json()["name"] == name
        assert name in names()

    return Attempt(f"{BASE}/projects", {"name": name}, unchanged, applied)


def model_prices(w: World, name: str) -> tuple[float | None, float | None]:
    found = [m for m in ok(w.admin.get(f"{BASE}/models?provider=fake")) if m["name"] == name]
    assert len(found) == 1
    return found[0]["input_price"], found[0]["output_price"]


def set_model_prices(w: World, tag: str) -> Attempt:
    name = f"authz-{tag}"
    ok(w.browser.put(f"{BASE}/models/fake/{name}", json={"input_price": 1.0, "output_price": 2.0}))

    def unchanged() -> None:
        assert model_prices(w, name) == (1.0, 2.0)

    def applied(_response: Response) -> None:
        assert model_prices(w, name) == (5.0, 6.0)

    return Attempt(
        f"{BASE}/models/fake/{name}", {"input_price": 5.0, "output_price": 6.0}, unchanged, applied
    )


def log_exists(w: World, uid: str) -> bool:
    status: int = w.admin.get(f"{BASE}/logs/{uid}").status_code
    assert status in (200, 404)
    return status == 200


def create_log(w: World, tag: str) -> Attempt:
    uid = f"authz-{tag}"

    def unchanged() -> None:
        assert not log_exists(w, uid)

    def applied(response: Response) -> None:
        assert response.json()["id"] == uid
        assert ok(w.admin.get(f"{BASE}/logs/{uid}"))["output"] == f"out {tag}"

    return Attempt(f"{BASE}/logs", {"id": uid, "output": f"out {tag}"}, unchanged, applied)


def create_logs(w: World, tag: str) -> Attempt:
    uids = [f"authz-{tag}-{i}" for i in range(2)]

    def unchanged() -> None:
        assert not any(log_exists(w, uid) for uid in uids)

    def applied(response: Response) -> None:
        assert response.json()["ids"] == uids
        assert all(log_exists(w, uid) for uid in uids)

    body = {"logs": [{"id": uid, "output": "batch"} for uid in uids]}
    return Attempt(f"{BASE}/logs/batch", body, unchanged, applied)


def logs_of(w: World, path: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(w.admin.get(f"{BASE}/logs", params={"prompt": path}))["data"]
    return found


def call_prompt(w: World, tag: str) -> Attempt:
    path = f"authz/{tag}/call"
    version = ok(
        w.admin.post(
            f"{BASE}/prompts/{path}/-/versions",
            json=kernel_body("Call {{ q }}", **FAKE_KERNEL),
        ),
        201,
    )["id"]
    deploy(w, path, version, "production")

    def unchanged() -> None:
        assert logs_of(w, path) == []

    def applied(response: Response) -> None:
        assert response.json()["version"] == version
        assert [log["id"] for log in logs_of(w, path)] == [response.json()["log_id"]]

    return Attempt(f"{BASE}/prompts/{path}/-/call", {"inputs": {"q": tag}}, unchanged, applied)


def playground_call(w: World, tag: str) -> Attempt:
    path = f"authz/{tag}/playground"
    save(w, path, f"saved {tag}")

    def unchanged() -> None:
        assert logs_of(w, path) == []

    def applied(response: Response) -> None:
        [log] = logs_of(w, path)
        assert log["id"] == response.json()["log_id"] and log["source"] == "playground"

    body = {**kernel_body("Draft {{ q }}", **FAKE_KERNEL), "prompt": path, "inputs": {"q": tag}}
    return Attempt(f"{BASE}/playground/call", body, unchanged, applied)


def feedback_kinds(w: World) -> list[str]:
    return [k["name"] for k in ok(w.admin.get(f"{BASE}/feedback-kinds"))]


def create_feedback_kind(w: World, tag: str) -> Attempt:
    name = f"k-{tag}"

    def unchanged() -> None:
        assert name not in feedback_kinds(w)

    def applied(_response: Response) -> None:
        assert name in feedback_kinds(w)

    return Attempt(f"{BASE}/feedback-kinds", {"name": name, "category": "vote"}, unchanged, applied)


def give_feedback(w: World, tag: str) -> Attempt:
    uid = ok(w.admin.post(f"{BASE}/logs", json={"output": tag}), 201)["id"]

    def given() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = ok(w.admin.get(f"{BASE}/logs/{uid}/feedback"))
        return found

    def unchanged() -> None:
        assert given() == []

    def applied(response: Response) -> None:
        assert [f["id"] for f in given()] == [response.json()["id"]]

    return Attempt(
        f"{BASE}/logs/{uid}/feedback", {"name": "rating", "value": "up"}, unchanged, applied
    )


def feedback_token(w: World, tag: str) -> Attempt:
    uid = ok(w.admin.post(f"{BASE}/logs", json={"output": tag}), 201)["id"]

    def applied(response: Response) -> None:
        token = response.json()["token"]
        given = w.anonymous.post(f"{BASE}/feedback", json={"token": token, "name": "copied"})
        assert ok(given, 201)["log_id"] == uid

    return Attempt(f"{BASE}/logs/{uid}/feedback-token", None, applied=applied)


def set_content_capture(w: World, tag: str) -> Attempt:
    name = w.settings.default_project
    ok(w.admin.patch(f"{BASE}/projects/{name}", json={"content_capture": "always"}))

    def capture() -> str:
        [found] = [p for p in ok(w.admin.get(f"{BASE}/projects")) if p["name"] == name]
        mode: str = found["content_capture"]
        return mode

    def unchanged() -> None:
        assert capture() == "always"

    def applied(_response: Response) -> None:
        assert capture() == "with_consent"
        ok(w.admin.patch(f"{BASE}/projects/{name}", json={"content_capture": "always"}))

    return Attempt(
        f"{BASE}/projects/{name}", {"content_capture": "with_consent"}, unchanged, applied
    )


def dataset_versions(w: World, name: str) -> list[str]:
    response = w.admin.get(f"{BASE}/datasets/{name}/-/versions")
    if response.status_code == 404:
        return []
    return [v["id"] for v in ok(response)["data"]]


def save_dataset_version(w: World, tag: str) -> Attempt:
    name = f"authz/{tag}/dataset"

    def unchanged() -> None:
        assert dataset_versions(w, name) == []

    def applied(response: Response) -> None:
        assert response.status_code == 201
        assert dataset_versions(w, name) == [response.json()["id"]]

    body = {"datapoints": [{"inputs": {"q": tag}, "target": "t"}]}
    return Attempt(f"{BASE}/datasets/{name}/-/versions", body, unchanged, applied)


def edit_dataset(w: World, tag: str) -> Attempt:
    name = f"authz/{tag}/edited"
    url = f"{BASE}/datasets/{name}/-/versions"
    first = ok(w.admin.post(url, json={"datapoints": [{"inputs": {"q": tag}}]}), 201)["id"]

    def unchanged() -> None:
        assert dataset_versions(w, name) == [first]

    def applied(response: Response) -> None:
        assert response.json()["source"] == "edit"
        assert dataset_versions(w, name) == [response.json()["id"], first]

    body = {"base": first, "add": [{"inputs": {"q": "added"}}]}
    return Attempt(url, body, unchanged, applied)


def upload_dataset(w: World, tag: str) -> Attempt:
    name = f"authz/{tag}/uploaded"

    def unchanged() -> None:
        assert dataset_versions(w, name) == []

    def applied(response: Response) -> None:
        assert response.json()["source"] == "upload"
        assert dataset_versions(w, name) == [response.json()["id"]]

    files = {"file": ("data.csv", f"q,target\n{tag},t\n".encode())}
    return Attempt(f"{BASE}/datasets/{name}/-/upload", None, unchanged, applied, files=files)


def dataset_from_logs(w: World, tag: str) -> Attempt:
    # From the read log: a log made per attempt would push it off the first page of /logs.
    name = f"authz/{tag}/from-logs"

    def unchanged() -> None:
        assert dataset_versions(w, name) == []

    def applied(response: Response) -> None:
        assert response.json()["source"] == "logs"
        points = ok(w.admin.get(f"{BASE}/datasets/{name}/-/versions/latest/datapoints"))
        [point] = points["data"]
        assert ok(w.admin.get(f"{BASE}/logs/{point['log_id']}"))["prompt"] == READ_PATH

    body = {"filters": {"prompt": READ_PATH}, "limit": 1}
    return Attempt(f"{BASE}/datasets/{name}/-/from-logs", body, unchanged, applied)


def preview_dataset(w: World, tag: str) -> Attempt:
    name = f"authz/{tag}/preview"

    def unchanged() -> None:
        assert dataset_versions(w, name) == []

    def applied(response: Response) -> None:
        assert response.json()["count"] == 1 and response.json()["exists"] is False
        assert dataset_versions(w, name) == []  # a preview saves nothing

    body = {"filters": {"prompt": READ_PATH}, "limit": 1, "name": name}
    return Attempt(f"{BASE}/datasets/-/preview", body, unchanged, applied)


def evaluator_versions(w: World, name: str) -> list[str]:
    response = w.admin.get(f"{BASE}/evaluators/{name}/-/versions")
    if response.status_code == 404:
        return []
    return [v["version"] for v in ok(response)]


def evaluator_names(w: World) -> list[str]:
    return [e["name"] for e in ok(w.admin.get(f"{BASE}/evaluators"))]


CODE_SOURCE = "def evaluate(log, datapoint):\n    return log['output'] == datapoint['target']\n"


def save_evaluator(spec: dict[str, Any]) -> Callable[[World, str], Attempt]:
    def setup(w: World, tag: str) -> Attempt:
        name = f"ev-{tag}"

        def unchanged() -> None:
            assert evaluator_versions(w, name) == []

        def applied(response: Response) -> None:
            assert response.status_code == 201
            assert response.json()["kind"] == spec["kind"]
            assert evaluator_versions(w, name) == [response.json()["version"]]

        return Attempt(f"{BASE}/evaluators/{name}/-/versions", spec, unchanged, applied)

    return setup


def try_evaluator(draft: dict[str, Any]) -> Callable[[World, str], Attempt]:
    def setup(w: World, tag: str) -> Attempt:
        # On the read log: a log made per attempt would push it off the first page of /logs.
        before = evaluator_names(w)

        def unchanged() -> None:
            assert evaluator_names(w) == before

        def applied(response: Response) -> None:
            assert response.json() == {"value": True, "explanation": None, "error": None}
            assert evaluator_names(w) == before  # a try stores nothing

        body = {"log_id": READ_LOG, "draft": draft, "target": "read log output"}
        return Attempt(f"{BASE}/evaluators/-/try", body, unchanged, applied)

    return setup


def newest_run(w: World) -> str | None:
    runs = ok(w.admin.get(f"{BASE}/evaluations", params={"limit": 1}))["data"]
    return runs[0]["id"] if runs else None


def run_status(w: World, run_id: str) -> str:
    status: str = ok(w.admin.get(f"{BASE}/evaluations/{run_id}"))["status"]
    return status


def start_local_run(w: World, evaluator: str = READ_EVALUATOR, *, picked_up: bool = True) -> str:
    """A local run of the read dataset (admin of A): it waits for outputs, so stays open."""
    body = {"dataset": READ_DATASET, "candidates": [{"label": "f"}], "evaluators": [evaluator]}
    return start_local(w.admin, body, picked_up=picked_up)


def still_open_then_cancelled(w: World, run_id: str) -> None:
    """The run still waits for outputs; then cancel it, as cleanup."""
    assert run_status(w, run_id) in ("queued", "running")
    ok(w.admin.post(f"{BASE}/evaluations/{run_id}/cancel"))


def start_run(w: World, tag: str) -> Attempt:
    path = f"authz/{tag}/evaluated"
    version = ok(
        w.admin.post(
            f"{BASE}/prompts/{path}/-/versions", json=kernel_body("Eval {{ x }}", **FAKE_KERNEL)
        ),
        201,
    )["id"]
    before = newest_run(w)

    def unchanged() -> None:
        assert newest_run(w) == before

    def applied(response: Response) -> None:
        assert response.status_code == 202
        run_id = response.json()["id"]
        assert newest_run(w) == run_id
        run = wait_for_run(w.admin, run_id)
        assert run["status"] == "completed", run
        assert run["name"] == f"run-{tag}" and run["progress"]["done"] == 1

    body = {
        "dataset": READ_DATASET,
        "candidates": [{"prompt": path, "version": version}],  # nothing deployed: no control
        "evaluators": [READ_EVALUATOR],
        "name": f"run-{tag}",
    }
    return Attempt(f"{BASE}/evaluations", body, unchanged, applied)


def cancel_run(w: World, tag: str) -> Attempt:
    run_id = start_local_run(w, picked_up=False)

    def applied(response: Response) -> None:
        assert response.json()["id"] == run_id
        assert wait_for_run(w.admin, run_id)["status"] == "cancelled"

    return Attempt(
        f"{BASE}/evaluations/{run_id}/cancel",
        None,
        lambda: still_open_then_cancelled(w, run_id),
        applied,
    )


def record_outputs(w: World, tag: str) -> Attempt:
    run_id = start_local_run(w, picked_up=False)
    [point] = ok(w.admin.get(f"{BASE}/evaluations/{run_id}/datapoints"))["datapoints"]

    def logged() -> list[str | None]:
        found = ok(
            w.admin.get(f"{BASE}/logs", params={"metadata": f"evaluation:{run_id}", "limit": 10})
        )["data"]
        return [log["output"] for log in found]

    def unchanged() -> None:
        assert logged() == []
        still_open_then_cancelled(w, run_id)

    def applied(response: Response) -> None:
        assert response.status_code == 201 and response.json() == {"recorded": 1}
        assert logged() == [f"out {tag}"]
        ok(w.admin.post(f"{BASE}/evaluations/{run_id}/cancel"))  # cleanup: see above

    body = {"outputs": [{"datapoint": point["key"], "output": f"out {tag}"}]}
    return Attempt(f"{BASE}/evaluations/{run_id}/outputs", body, unchanged, applied)


def finish_run(w: World, tag: str) -> Attempt:
    run_id = start_local_run(w)

    def applied(response: Response) -> None:
        assert response.json()["status"] in ("finishing", "completed")
        assert wait_for_run(w.admin, run_id)["status"] == "completed"

    return Attempt(
        f"{BASE}/evaluations/{run_id}/finish",
        None,
        lambda: still_open_then_cancelled(w, run_id),
        applied,
    )


def pending_of(w: World, run_id: str) -> list[str]:
    found = ok(w.admin.get(f"{BASE}/judgments/pending", params={"run": run_id}))
    return [j["id"] for j in found]


def give_judgment(w: World, tag: str) -> Attempt:
    run_id = start_local_run(w, evaluator=READ_REVIEW)
    [point] = ok(w.admin.get(f"{BASE}/evaluations/{run_id}/datapoints"))["datapoints"]
    outputs = {"outputs": [{"datapoint": point["key"], "output": f"judge me {tag}"}]}
    ok(w.admin.post(f"{BASE}/evaluations/{run_id}/outputs", json=outputs), 201)
    ok(w.admin.post(f"{BASE}/evaluations/{run_id}/finish"))
    assert wait_for_run(w.admin, run_id)["status"] == "completed"
    [judgment] = pending_of(w, run_id)

    def unchanged() -> None:
        assert pending_of(w, run_id) == [judgment]

    def applied(response: Response) -> None:
        assert response.json()["value"] == 4.0
        assert pending_of(w, run_id) == []
        run = ok(w.admin.get(f"{BASE}/evaluations/{run_id}"))
        [result] = run["summary"]["results"]
        assert result["mean"]["value"] == 4.0 and result["pending"] == 0

    return Attempt(f"{BASE}/judgments/{judgment}", {"value": 4}, unchanged, applied)


def fine_tune_body(w: World, tag: str) -> dict[str, Any]:
    """A fine-tune of the read eval prompt on a fresh dataset of A (queued, never trained)."""
    dataset = f"authz/{tag}/ft"
    points = [{"inputs": {"x": f"{tag} {i}"}, "target": f"t{i}"} for i in range(10)]
    ok(w.admin.post(f"{BASE}/datasets/{dataset}/-/versions", json={"datapoints": points}), 201)
    return {"name": f"ft-{tag}", "dataset": dataset, "prompt": READ_EVAL_PATH}


def fine_tunes(w: World) -> dict[str, str]:
    """Model name -> status of A's fine-tunes."""
    found = ok(w.admin.get(f"{BASE}/fine-tunes", params={"limit": 200}))["data"]
    return {t["model"]: t["status"] for t in found}


def start_fine_tune(w: World, tag: str) -> Attempt:
    body = fine_tune_body(w, tag)
    model = f"local/{w.settings.default_project}/ft-{tag}"

    def unchanged() -> None:
        assert model not in fine_tunes(w)

    def applied(response: Response) -> None:
        assert fine_tunes(w)[model] == "queued"
        ok(w.admin.post(f"{BASE}/fine-tunes/{response.json()['id']}/cancel"))

    return Attempt(f"{BASE}/fine-tunes", body, unchanged, applied)


def cancel_fine_tune(w: World, tag: str) -> Attempt:
    tune = ok(w.admin.post(f"{BASE}/fine-tunes", json=fine_tune_body(w, tag)), 202)

    def unchanged() -> None:
        assert fine_tunes(w)[tune["model"]] == "queued"
        ok(w.admin.post(f"{BASE}/fine-tunes/{tune['id']}/cancel"))

    def applied(_response: Response) -> None:
        assert fine_tunes(w)[tune["model"]] == "cancelled"

    return Attempt(f"{BASE}/fine-tunes/{tune['id']}/cancel", None, unchanged, applied)


def read_tune(w: World) -> str:
    """A fine-tune of A for the reads (created once per world, left queued)."""
    if "tune" not in w.secrets:
        tune = ok(w.admin.post(f"{BASE}/fine-tunes", json=fine_tune_body(w, "read")), 202)
        w.secrets["tune"] = tune["id"]
    return w.secrets["tune"]


DEPLOY = f"{BASE}/prompts/{{path:path}}/-/deployments/{{environment}}"
DATASET_ROUTE = f"{BASE}/datasets/{{name:path}}"
EVALUATOR_VERSIONS = f"{BASE}/evaluators/{{name}}/-/versions"
RUN = f"{BASE}/evaluations/{{run_id}}"
ROLLBACK = f"{BASE}/prompts/{{path:path}}/-/deployments/{{environment}}/rollback"

CASES = (
    Case("create-prompt", "POST", f"{BASE}/prompts", at_least("member"), create_prompt),
    Case(
        "save-version",
        "POST",
        f"{BASE}/prompts/{{path:path}}/-/versions",
        at_least("member"),
        save_version,
    ),
    Case("render", "POST", f"{BASE}/prompts/{{path:path}}/-/render", at_least("viewer"), render),
    Case("deploy-staging", "PUT", DEPLOY, at_least("member"), deploy_to("staging")),
    Case("deploy-production", "PUT", DEPLOY, at_least("developer"), deploy_to("production")),
    Case(
        "deploy-custom-protected",
        "PUT",
        DEPLOY,
        at_least("developer"),
        deploy_to("", custom_protected=True),
    ),
    Case("rollback-staging", "POST", ROLLBACK, at_least("member"), rollback_in("staging")),
    Case("rollback-production", "POST", ROLLBACK, at_least("developer"), rollback_in("production")),
    Case(
        "create-environment",
        "POST",
        f"{BASE}/environments",
        at_least("developer"),
        create_environment,
    ),
    Case(
        "protect-environment",
        "PATCH",
        f"{BASE}/environments/{{name}}",
        at_least("developer"),
        set_protection(True),
    ),
    Case(
        "unprotect-environment",
        "PATCH",
        f"{BASE}/environments/{{name}}",
        at_least("developer"),
        set_protection(False),
    ),
    Case("create-api-key", "POST", f"{BASE}/api-keys", at_least("developer"), create_api_key),
    Case(
        "revoke-api-key",
        "DELETE",
        f"{BASE}/api-keys/{{key_id}}",
        at_least("developer"),
        revoke_api_key,
    ),
    Case(
        "set-provider-key",
        "PUT",
        f"{BASE}/provider-keys/{{provider}}",
        at_least("developer"),
        set_provider_key,
    ),
    Case(
        "delete-provider-key",
        "DELETE",
        f"{BASE}/provider-keys/{{provider}}",
        at_least("developer"),
        delete_provider_key,
    ),
    Case("add-member", "POST", f"{BASE}/members", at_least("admin"), add_member_case),
    Case("change-role", "PATCH", f"{BASE}/members/{{email}}", at_least("admin"), change_role),
    Case("remove-member", "DELETE", f"{BASE}/members/{{email}}", at_least("admin"), remove_member),
    Case(
        "member-sign-in-link",
        "POST",
        f"{BASE}/members/{{email}}/sign-in-link",
        at_least("admin"),
        member_sign_in_link,
    ),
    Case(
        "set-model-prices",  # the catalogue is server-wide: only the server admin changes it
        "PUT",
        f"{BASE}/models/{{provider}}/{{name:path}}",
        at_least("admin"),
        set_model_prices,
        keys_may=False,
    ),
    Case("create-log", "POST", f"{BASE}/logs", at_least("member"), create_log),
    Case("create-logs", "POST", f"{BASE}/logs/batch", at_least("member"), create_logs),
    Case(
        "call-prompt",
        "POST",
        f"{BASE}/prompts/{{path:path}}/-/call",
        at_least("member"),
        call_prompt,
    ),
    Case("playground-call", "POST", f"{BASE}/playground/call", at_least("member"), playground_call),
    Case(
        "create-feedback-kind",
        "POST",
        f"{BASE}/feedback-kinds",
        at_least("member"),
        create_feedback_kind,
    ),
    Case(
        "give-feedback",
        "POST",
        f"{BASE}/logs/{{log_id}}/feedback",
        at_least("member"),
        give_feedback,
    ),
    Case(
        "feedback-token",
        "POST",
        f"{BASE}/logs/{{log_id}}/feedback-token",
        at_least("member"),
        feedback_token,
    ),
    Case(
        "save-dataset-version",
        "POST",
        f"{DATASET_ROUTE}/-/versions",
        at_least("member"),
        save_dataset_version,
    ),
    Case("edit-dataset", "POST", f"{DATASET_ROUTE}/-/versions", at_least("member"), edit_dataset),
    Case("upload-dataset", "POST", f"{DATASET_ROUTE}/-/upload", at_least("member"), upload_dataset),
    Case(
        "dataset-from-logs",
        "POST",
        f"{DATASET_ROUTE}/-/from-logs",
        at_least("member"),
        dataset_from_logs,
    ),
    Case(
        "preview-dataset",
        "POST",
        f"{BASE}/datasets/-/preview",
        at_least("viewer"),
        preview_dataset,
    ),
    Case(
        "save-evaluator",
        "POST",
        EVALUATOR_VERSIONS,
        at_least("member"),
        save_evaluator({"kind": "builtin", "builtin": "exact_match"}),
    ),
    Case(
        "save-code-evaluator",  # its code runs on the server
        "POST",
        EVALUATOR_VERSIONS,
        at_least("developer"),
        save_evaluator({"kind": "code", "returns": "boolean", "source": CODE_SOURCE}),
    ),
    Case(
        "try-evaluator",
        "POST",
        f"{BASE}/evaluators/-/try",
        at_least("member"),
        try_evaluator({"kind": "builtin", "builtin": "exact_match"}),
    ),
    Case(
        "try-code-evaluator",  # a draft's code runs on the server too
        "POST",
        f"{BASE}/evaluators/-/try",
        at_least("developer"),
        try_evaluator({"kind": "code", "returns": "boolean", "source": CODE_SOURCE}),
    ),
    Case("start-evaluation", "POST", f"{BASE}/evaluations", at_least("member"), start_run),
    Case("cancel-evaluation", "POST", f"{RUN}/cancel", at_least("member"), cancel_run),
    Case("record-local-outputs", "POST", f"{RUN}/outputs", at_least("member"), record_outputs),
    Case("finish-local-run", "POST", f"{RUN}/finish", at_least("member"), finish_run),
    Case(
        "give-judgment",
        "POST",
        f"{BASE}/judgments/{{judgment_id}}",
        at_least("member"),
        give_judgment,
    ),
    Case("start-fine-tune", "POST", f"{BASE}/fine-tunes", at_least("developer"), start_fine_tune),
    Case(
        "cancel-fine-tune",
        "POST",
        f"{BASE}/fine-tunes/{{tune_id}}/cancel",
        at_least("developer"),
        cancel_fine_tune,
    ),
    Case(
        "set-content-capture",
        "PATCH",
        f"{BASE}/projects/{{name}}",
        at_least("admin"),
        set_content_capture,
    ),
    Case(
        "create-project",
        "POST",
        f"{BASE}/projects",
        at_least("viewer"),
        create_project,
        keys_may=False,
        project_scoped=False,
    ),
)

ALLOWED = None


def expected(case: Case, caller: Caller) -> tuple[int, str] | None:
    """None when the call must succeed, else (status, error code)."""
    if caller.kind in ("anonymous", "revoked"):
        return 401, "unauthenticated"
    if caller.kind == "no_csrf":
        return 403, "forbidden"
    if caller.kind == "foreign_key":
        return (404, "not_found") if case.keys_may or case.project_scoped else (403, "forbidden")
    if caller.kind == "outsider":
        return (404, "not_found") if case.project_scoped else ALLOWED
    if caller.kind == "key" and not case.keys_may:
        return 403, "forbidden"
    assert caller.role is not None
    return ALLOWED if caller.role in case.allowed else (403, "forbidden")


MATRIX = [
    pytest.param("sqlite", case, caller, id=f"sqlite-{case.id}-{caller}")
    for case in CASES
    for caller in CALLERS
] + [
    pytest.param("postgresql", case, caller, id=f"postgresql-{case.id}-{caller}")
    for case in CASES
    for caller in PG_CALLERS
]


@pytest.mark.parametrize(("backend", "case", "caller"), MATRIX)
def test_mutation_matrix(
    request: pytest.FixtureRequest, backend: str, case: Case, caller: str
) -> None:
    w: World = request.getfixturevalue(f"world_{backend}")
    attempt = case.setup(w, uuid.uuid4().hex[:10])
    response = w.callers[caller].request(
        case.method, attempt.url, json=attempt.body, files=attempt.files
    )
    outcome = expected(case, CALLERS[caller])
    if outcome is ALLOWED:
        assert 200 <= response.status_code < 300, response.text
        attempt.applied(response)
    else:
        assert_error(response, *outcome)
        attempt.unchanged()


def test_matrix_covers_every_mutating_route(app_routes: set[tuple[str, str]]) -> None:
    mutating = {(m, p) for m, p in app_routes if m in MUTATING and not is_own_session_route(p)}
    covered = {(case.method, case.route) for case in CASES}
    assert mutating - covered == set(), "add these routes to CASES in tests/test_authorization.py"
    assert covered - mutating == set(), "CASES names routes the app does not have"


def test_matrix_table_is_the_documented_policy() -> None:
    """The allowed roles per endpoint, as one table a reviewer can read against the design."""
    table_ = {case.id: sorted(case.allowed, key=ROLES.index)[0] for case in CASES}
    assert table_ == {
        "create-prompt": "member",
        "save-version": "member",
        "render": "viewer",
        "deploy-staging": "member",
        "deploy-production": "developer",
        "deploy-custom-protected": "developer",
        "rollback-staging": "member",
        "rollback-production": "developer",
        "create-environment": "developer",
        "protect-environment": "developer",
        "unprotect-environment": "developer",
        "create-api-key": "developer",
        "revoke-api-key": "developer",
        "set-provider-key": "developer",
        "delete-provider-key": "developer",
        "add-member": "admin",
        "change-role": "admin",
        "remove-member": "admin",
        "member-sign-in-link": "admin",
        "set-model-prices": "admin",  # the server admin only: never a key, never a project admin
        "create-log": "member",
        "create-logs": "member",
        "call-prompt": "member",
        "playground-call": "member",
        "create-feedback-kind": "member",
        "give-feedback": "member",
        "feedback-token": "member",
        "save-dataset-version": "member",
        "edit-dataset": "member",
        "upload-dataset": "member",
        "dataset-from-logs": "member",
        "preview-dataset": "viewer",
        "save-evaluator": "member",
        "save-code-evaluator": "developer",
        "try-evaluator": "member",
        "try-code-evaluator": "developer",
        "start-evaluation": "member",
        "cancel-evaluation": "member",
        "record-local-outputs": "member",
        "finish-local-run": "member",
        "give-judgment": "member",
        "start-fine-tune": "developer",
        "cancel-fine-tune": "developer",
        "set-content-capture": "admin",
        "create-project": "viewer",  # any signed-in user; never an API key
    }
    assert [c.id for c in CASES if not c.keys_may] == ["set-model-prices", "create-project"]


# Finer rules the matrix does not show -------------------------------------------------------


def test_key_roles_are_capped_by_the_creator(world_sqlite: World) -> None:
    w = world_sqlite
    developer = w.callers["key-developer"]
    refused = developer.post(f"{BASE}/api-keys", json={"name": "escalate", "role": "admin"})
    assert_error(refused, 403, "forbidden", "at most your own")
    assert "escalate" not in [k["name"] for k in ok(w.admin.get(f"{BASE}/api-keys"))]

    same = new_key(developer, role="developer", name="dev-made-dev")
    assert same["role"] == "developer" and key_works(w, same["key"])
    lower = new_key(developer, role="member", name="dev-made-member")
    assert lower["role"] == "member"

    admin_key = new_key(w.admin, role="admin", name="dev-cannot-revoke")
    assert_error(developer.delete(f"{BASE}/api-keys/{admin_key['id']}"), 403, "forbidden")
    assert key_works(w, admin_key["key"])
    ok(developer.delete(f"{BASE}/api-keys/{same['id']}"))
    assert not key_works(w, same["key"])

    # A signed-in member cannot create keys at all; an admin user may create an admin key.
    assert_error(
        w.callers["user-member"].post(f"{BASE}/api-keys", json={"name": "x", "role": "viewer"}),
        403,
        "forbidden",
    )
    assert new_key(w.browser, role="admin", name="user-made-admin")["role"] == "admin"


def test_unknown_role_is_a_clear_error_not_a_grant(world_sqlite: World) -> None:
    w = world_sqlite
    for url, body in (
        (f"{BASE}/api-keys", {"name": "odd", "role": "owner"}),
        (f"{BASE}/members", {"email": "odd@example.com", "role": "superuser"}),
    ):
        assert_error(w.admin.post(url, json=body), 400, "invalid_input", "Unknown role")
    assert "odd@example.com" not in members(w)


def test_protection_decides_who_deploys(world_sqlite: World) -> None:
    """Protecting an environment takes deploys away from members; lifting it gives them back."""
    w = world_sqlite
    tag = uuid.uuid4().hex[:10]
    env, path = f"flip-{tag}", f"authz/{tag}/flip"
    ok(w.callers["key-developer"].post(f"{BASE}/environments", json={"name": env}), 201)
    one, two = save(w, path, f"one {tag}"), save(w, path, f"two {tag}")
    member = w.callers["key-member"]
    url = f"{BASE}/prompts/{path}/-/deployments/{env}"
    ok(member.put(url, json={"version": one}))
    ok(w.callers["key-developer"].patch(f"{BASE}/environments/{env}", json={"protected": True}))
    assert_error(member.put(url, json={"version": two}), 403, "forbidden", "protected")
    assert_error(member.post(f"{url}/rollback", json={}), 403, "forbidden")
    assert served(w, path, env) == one
    ok(w.callers["key-developer"].patch(f"{BASE}/environments/{env}", json={"protected": False}))
    ok(member.put(url, json={"version": two}))
    assert served(w, path, env) == two


def test_role_changes_and_removal_apply_to_the_next_request(world_sqlite: World) -> None:
    w = world_sqlite
    tag = uuid.uuid4().hex[:10]
    email = f"fickle-{tag}@example.com"
    add_member(w, email, "developer")
    user = w.server.browser(email)
    ok(user.post(f"{BASE}/environments", json={"name": f"made-{tag}"}), 201)
    ok(w.admin.patch(f"{BASE}/members/{email}", json={"role": "viewer"}))
    assert_error(user.post(f"{BASE}/environments", json={"name": f"late-{tag}"}), 403, "forbidden")
    ok(user.get(f"{BASE}/prompts"))
    ok(w.admin.delete(f"{BASE}/members/{email}"), 204)
    assert_error(user.get(f"{BASE}/prompts"), 404, "not_found")
    assert [p["name"] for p in ok(user.get(f"{BASE}/projects"))] == []


def test_key_may_name_its_own_project(world_sqlite: World) -> None:
    viewer = world_sqlite.callers["key-viewer"]
    assert ok(viewer.get(f"{BASE}/prompts", headers={PROJECT: A}))["data"]
    assert_error(viewer.get(f"{BASE}/prompts", headers={PROJECT: B}), 404, "not_found")


def test_every_write_is_audited_with_its_actor(world_sqlite: World) -> None:
    w = world_sqlite
    tag = uuid.uuid4().hex[:10]
    new_key(w.callers["key-developer"], role="viewer", name=f"audited-{tag}")
    events = ok(w.admin.get(f"{BASE}/audit", params={"limit": 200}))["data"]
    created = [
        e
        for e in events
        if e["action"] == "api_key.create" and e["details"]["name"] == f"audited-{tag}"
    ]
    assert len(created) == 1
    assert created[0]["actor"] == "key:authz-developer"
    assert created[0]["actor_kind"] == "api_key"


# Reads ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    id: str
    route: str
    url: Callable[[World], str]
    lowest: str = "viewer"
    scope: str = "project"  # project · principal (lists the caller's own) · public
    shows: Callable[[World], str] | None = None  # text a permitted response contains


PROMPT = f"{BASE}/prompts/{{path:path}}"
READS = (
    Read("health", f"{BASE}/health", lambda w: f"{BASE}/health", scope="public"),
    Read("projects", f"{BASE}/projects", lambda w: f"{BASE}/projects", scope="principal"),
    Read(
        "environments",
        f"{BASE}/environments",
        lambda w: f"{BASE}/environments",
        shows=lambda w: "production",
    ),
    Read("members", f"{BASE}/members", lambda w: f"{BASE}/members", shows=lambda w: "alice-a@"),
    Read(
        "api-keys",
        f"{BASE}/api-keys",
        lambda w: f"{BASE}/api-keys",
        lowest="developer",
        shows=lambda w: "authz-viewer",
    ),
    Read("provider-keys", f"{BASE}/provider-keys", lambda w: f"{BASE}/provider-keys"),
    Read(
        "audit",
        f"{BASE}/audit",
        lambda w: f"{BASE}/audit?limit=200",  # the matrix's writes come after the keys' events
        lowest="admin",
        shows=lambda w: "api_key.create",
    ),
    Read(
        "audit-export-jsonl",
        f"{BASE}/audit/export",
        lambda w: f"{BASE}/audit/export",
        lowest="admin",
        shows=lambda w: "api_key.create",
    ),
    Read(
        "audit-export-csv",
        f"{BASE}/audit/export",
        lambda w: f"{BASE}/audit/export?format=csv",
        lowest="admin",
        shows=lambda w: "api_key.create",
    ),
    Read("models", f"{BASE}/models", lambda w: f"{BASE}/models", shows=lambda w: "fake-1"),
    Read(
        "logs",
        f"{BASE}/logs",
        lambda w: f"{BASE}/logs?limit=200",  # the matrix's logs come after the read log
        shows=lambda w: READ_LOG,
    ),
    Read(
        "log",
        f"{BASE}/logs/{{log_id}}",
        lambda w: f"{BASE}/logs/{READ_LOG}",
        shows=lambda w: "read log output",
    ),
    Read(
        "log-feedback",
        f"{BASE}/logs/{{log_id}}/feedback",
        lambda w: f"{BASE}/logs/{READ_LOG}/feedback",
    ),
    Read(
        "feedback-kinds",
        f"{BASE}/feedback-kinds",
        lambda w: f"{BASE}/feedback-kinds",
        shows=lambda w: "retained",
    ),
    Read("feedback-stats", f"{BASE}/feedback/stats", lambda w: f"{BASE}/feedback/stats"),
    Read(
        "fine-tune-export",
        f"{BASE}/fine-tunes/-/export",
        lambda w: f"{BASE}/fine-tunes/-/export?dataset={READ_DATASET}&prompt={READ_EVAL_PATH}",
        shows=lambda w: "read target",
    ),
    Read(
        "fine-tunes",
        f"{BASE}/fine-tunes",
        lambda w: f"{BASE}/fine-tunes?limit=200" if read_tune(w) else "",
        shows=lambda w: read_tune(w),
    ),
    Read(
        "fine-tune",
        f"{BASE}/fine-tunes/{{tune_id}}",
        lambda w: f"{BASE}/fine-tunes/{read_tune(w)}",
        shows=lambda w: "ft-read",
    ),
    Read("prompts", f"{BASE}/prompts", lambda w: f"{BASE}/prompts", shows=lambda w: READ_PATH),
    Read("prompt", PROMPT, lambda w: f"{BASE}/prompts/{READ_PATH}", shows=lambda w: READ_PATH),
    Read(
        "versions",
        f"{PROMPT}/-/versions",
        lambda w: f"{BASE}/prompts/{READ_PATH}/-/versions",
        shows=lambda w: w.read_versions[1],
    ),
    Read(
        "version-by-prefix",
        f"{PROMPT}/-/version",
        lambda w: f"{BASE}/prompts/{READ_PATH}/-/version?version={w.read_versions[0][:6]}",
        shows=lambda w: "Read v1",
    ),
    Read(
        "version-by-environment",
        f"{PROMPT}/-/version",
        lambda w: f"{BASE}/prompts/{READ_PATH}/-/version?environment=production",
        shows=lambda w: "Read v2",
    ),
    Read(
        "diff",
        f"{PROMPT}/-/diff",
        lambda w: (
            f"{BASE}/prompts/{READ_PATH}/-/diff?from={w.read_versions[0]}&to={w.read_versions[1]}"
        ),
        shows=lambda w: "Read v2",
    ),
    Read(
        "deployments",
        f"{PROMPT}/-/deployments",
        lambda w: f"{BASE}/prompts/{READ_PATH}/-/deployments",
        shows=lambda w: w.read_versions[0],
    ),
    Read(
        "history",
        f"{PROMPT}/-/history",
        lambda w: f"{BASE}/prompts/{READ_PATH}/-/history",
        shows=lambda w: w.read_versions[1],
    ),
    Read(
        "datasets", f"{BASE}/datasets", lambda w: f"{BASE}/datasets", shows=lambda w: READ_DATASET
    ),
    Read(
        "dataset",
        DATASET_ROUTE,
        lambda w: f"{BASE}/datasets/{READ_DATASET}",
        shows=lambda w: READ_DATASET,
    ),
    Read(
        "dataset-versions",
        f"{DATASET_ROUTE}/-/versions",
        lambda w: f"{BASE}/datasets/{READ_DATASET}/-/versions",
        shows=lambda w: READ_DATASET,
    ),
    Read(
        "dataset-version",
        f"{DATASET_ROUTE}/-/versions/{{version}}",
        lambda w: f"{BASE}/datasets/{READ_DATASET}/-/versions/latest",
        shows=lambda w: READ_DATASET,
    ),
    Read(
        "datapoints",
        f"{DATASET_ROUTE}/-/versions/{{version}}/datapoints",
        lambda w: f"{BASE}/datasets/{READ_DATASET}/-/versions/latest/datapoints",
        shows=lambda w: "read datapoint",
    ),
    Read(
        "dataset-download-jsonl",
        f"{DATASET_ROUTE}/-/versions/{{version}}/download",
        lambda w: f"{BASE}/datasets/{READ_DATASET}/-/versions/latest/download",
        shows=lambda w: "read datapoint",
    ),
    Read(
        "dataset-download-csv",
        f"{DATASET_ROUTE}/-/versions/{{version}}/download",
        lambda w: f"{BASE}/datasets/{READ_DATASET}/-/versions/latest/download?format=csv",
        shows=lambda w: "read target",
    ),
    Read(
        "evaluators",
        f"{BASE}/evaluators",
        lambda w: f"{BASE}/evaluators",
        shows=lambda w: READ_EVALUATOR,
    ),
    Read(
        "evaluator-versions",
        EVALUATOR_VERSIONS,
        lambda w: f"{BASE}/evaluators/{READ_EVALUATOR}/-/versions",
        shows=lambda w: "exact_match",
    ),
    Read(
        "evaluations",
        f"{BASE}/evaluations",
        lambda w: f"{BASE}/evaluations?limit=200",  # the matrix's runs come after the read run
        shows=lambda w: w.read_run,
    ),
    Read(
        "evaluation",
        RUN,
        lambda w: f"{BASE}/evaluations/{w.read_run}",
        shows=lambda w: READ_EVAL_PATH,
    ),
    Read(
        "evaluation-comparison",
        f"{RUN}/comparison",
        lambda w: f"{BASE}/evaluations/{w.read_run}/comparison?evaluator={READ_EVALUATOR}",
        shows=lambda w: "read datapoint",
    ),
    Read(
        "evaluation-datapoints",
        f"{RUN}/datapoints",
        lambda w: f"{BASE}/evaluations/{w.read_run}/datapoints",
        shows=lambda w: "read datapoint",
    ),
    Read(
        "pending-judgments",
        f"{BASE}/judgments/pending",
        lambda w: f"{BASE}/judgments/pending",  # oldest first: the read run's come first
        shows=lambda w: w.read_run,
    ),
)


def expected_read(read: Read, caller: Caller) -> tuple[int, str] | None:
    if read.scope == "public":
        return ALLOWED
    if caller.kind in ("anonymous", "revoked"):
        return 401, "unauthenticated"
    if read.scope == "principal":
        return ALLOWED
    if caller.kind in ("foreign_key", "outsider"):
        return 404, "not_found"
    role = "admin" if caller.kind == "no_csrf" else caller.role  # reads need no CSRF token
    assert role is not None
    return ALLOWED if ROLES.index(role) >= ROLES.index(read.lowest) else (403, "forbidden")


READ_MATRIX = [
    pytest.param("sqlite", read, caller, id=f"sqlite-{read.id}-{caller}")
    for read in READS
    for caller in CALLERS
] + [
    pytest.param("postgresql", read, caller, id=f"postgresql-{read.id}-{caller}")
    for read in READS
    for caller in PG_CALLERS
]


@pytest.mark.parametrize(("backend", "read", "caller"), READ_MATRIX)
def test_read_matrix(request: pytest.FixtureRequest, backend: str, read: Read, caller: str) -> None:
    w: World = request.getfixturevalue(f"world_{backend}")
    response = w.callers[caller].get(read.url(w))
    outcome = expected_read(read, CALLERS[caller])
    if outcome is ALLOWED:
        assert response.status_code == 200, response.text
        if read.shows is not None:
            assert read.shows(w) in response.text
    else:
        assert_error(response, *outcome)
    assert B_CONTENT not in response.text


def test_reads_cover_every_get_route(app_routes: set[tuple[str, str]]) -> None:
    gets = {p for m, p in app_routes if m == "GET" and not is_own_session_route(p)}
    assert gets == {read.route for read in READS}


def test_project_lists_show_only_what_the_caller_may_see(world_sqlite: World) -> None:
    w = world_sqlite

    def names(client: TestClient) -> list[str]:
        return [p["name"] for p in ok(client.get(f"{BASE}/projects"))]

    for role in ROLES:
        assert names(w.callers[f"key-{role}"]) == [A]
    assert names(w.b.admin) == [B]
    assert names(w.callers["other-project-key"]) == [B]  # the header does not widen the list
    assert {A, B} <= set(names(w.browser))  # the server admin sees every project
    # Fresh users (the matrix's users have created projects of their own by now).
    tag = uuid.uuid4().hex[:8]
    in_a, in_b = f"dora-{tag}@example.com", f"erin-{tag}@example.com"
    add_member(w, in_a, "developer")
    ok(w.b.admin.post(f"{BASE}/members", json={"email": in_b, "role": "viewer"}), 201)
    dora, erin = w.server.browser(in_a), w.server.browser(in_b)
    assert names(dora) == [A]
    assert names(erin) == [B]
    assert ok(dora.get(f"{BASE}/auth/me"))["projects"] == [{"project": A, "role": "developer"}]
    assert ok(erin.get(f"{BASE}/auth/me"))["projects"] == [{"project": B, "role": "viewer"}]


# Cross-project isolation by guessing -----------------------------------------------------------


def b_secrets(w: World) -> dict[str, str]:
    """Strings of B a caller in A must never see, unless the caller sent them itself."""
    return {
        "content": B_CONTENT,
        "path": B_PATH,
        "version-1": w.b.versions[0],
        "version-2": w.b.versions[1],
        "member": B_EMAIL,
        "provider": B_PROVIDER,
        "provider-secret": "sk-b-only",
        "key-prefix": w.b.key_prefix,
        "dataset": B_DATASET,
        "run": w.b.run,
        "evaluator": B_EVALUATOR,
    }


def assert_no_leak(w: World, response: Response, sent: str) -> None:
    for what, secret in b_secrets(w).items():
        if secret in response.text:
            assert secret in sent, f"B's {what} ({secret}) leaked into: {response.text}"


def b_unchanged(w: World) -> None:
    b = w.b.admin
    versions = ok(b.get(f"{BASE}/prompts/{B_PATH}/-/versions"))["data"]
    assert [v["id"] for v in versions] == [w.b.versions[1], w.b.versions[0]]
    state = {
        s["environment"]: s["version_id"]
        for s in ok(b.get(f"{BASE}/prompts/{B_PATH}/-/deployments"))
    }
    assert state["production"] == w.b.versions[1]
    assert state["staging"] is None
    assert {m["email"]: m["role"] for m in ok(b.get(f"{BASE}/members"))}[B_EMAIL] == "member"
    assert provider_hints(b) == {B_PROVIDER: "9999"}
    assert ok(b.get(f"{BASE}/environments"))  # B's admin key still works
    assert [p["path"] for p in ok(b.get(f"{BASE}/prompts"))["data"]] == [B_PATH, "secret-b/tuned"]
    assert ok(b.get(f"{BASE}/logs/{B_LOG}"))["output"] == f"{B_CONTENT} log"
    assert [log["id"] for log in ok(b.get(f"{BASE}/logs"))["data"]] == [B_LOG]
    assert len(ok(b.get(f"{BASE}/datasets/{B_DATASET}/-/versions"))["data"]) == 1
    assert len(ok(b.get(f"{BASE}/evaluators/{B_EVALUATOR}/-/versions"))) == 1
    assert [r["id"] for r in ok(b.get(f"{BASE}/evaluations"))["data"]] == [w.b.run]
    assert ok(b.get(f"{BASE}/evaluations/{w.b.run}"))["status"] == "completed"
    assert [t["id"] for t in ok(b.get(f"{BASE}/fine-tunes"))["data"]] == [w.b.tune]
    assert ok(b.get(f"{BASE}/fine-tunes/{w.b.tune}"))["status"] == "queued"


def route_sample(method: str, route: str, w: World) -> tuple[str, Any]:
    """A well-formed request to `route` that names B's objects."""
    v = w.b.versions[1]
    params = {
        EVALUATOR_VERSIONS: f"{BASE}/evaluators/{B_EVALUATOR}/-/versions",
        "{run_id}": w.b.run,
        "{judgment_id}": "0" * 32,  # B has no judgments: a well-formed id
        "{path:path}": B_PATH,
        "{name:path}": B_DATASET,
        "{version}": "latest",
        "{environment}": "production",
        "{name}": "production",
        "{email}": B_EMAIL,
        "{key_id}": str(w.b.key_id),
        "{log_id}": B_LOG,
        "{tune_id}": w.b.tune,
        f"{BASE}/models/{{provider}}/{{name:path}}": f"{BASE}/models/fake/fake-1",
        "{provider}": B_PROVIDER,
    }
    url = route
    for placeholder, value in params.items():
        url = url.replace(placeholder, value)
    assert "{" not in url, f"teach route_sample the parameters of {route}"
    query = {
        f"{PROMPT}/-/version": f"?version={v}",
        f"{PROMPT}/-/diff": f"?from={w.b.versions[0]}&to={v}",
        f"{RUN}/comparison": f"?evaluator={B_EVALUATOR}",
        f"{BASE}/judgments/pending": f"?run={w.b.run}",
        f"{BASE}/fine-tunes/-/export": f"?dataset={B_DATASET}&prompt={B_PATH}",
    }
    bodies: dict[tuple[str, str], Any] = {
        ("POST", f"{BASE}/prompts"): {"path": B_PATH},
        ("POST", f"{PROMPT}/-/versions"): kernel_body("guess {{ x }}"),
        ("POST", f"{PROMPT}/-/render"): {"inputs": {"x": "1"}, "version": v},
        ("PUT", DEPLOY): {"version": w.b.versions[0]},
        ("POST", ROLLBACK): {},
        ("POST", f"{BASE}/environments"): {"name": "guessed"},
        ("PATCH", f"{BASE}/environments/{{name}}"): {"protected": False},
        ("POST", f"{BASE}/api-keys"): {"name": "guessed", "role": "viewer"},
        ("PUT", f"{BASE}/provider-keys/{{provider}}"): {"api_key": "sk-guess-0000"},
        ("POST", f"{BASE}/members"): {"email": B_EMAIL, "role": "admin"},
        ("PUT", f"{BASE}/models/{{provider}}/{{name:path}}"): {
            "input_price": 99.0,
            "output_price": 99.0,
        },
        ("POST", f"{BASE}/logs"): {"prompt": B_PATH, "output": "guess"},
        ("POST", f"{BASE}/logs/batch"): {"logs": [{"prompt": B_PATH, "output": "guess"}]},
        ("POST", f"{PROMPT}/-/call"): {"inputs": {"x": "1"}, "version": v},
        ("POST", f"{BASE}/playground/call"): {
            **kernel_body("guess", **FAKE_KERNEL),
            "prompt": B_PATH,
        },
        ("PATCH", f"{BASE}/members/{{email}}"): {"role": "viewer"},
        ("POST", f"{BASE}/feedback-kinds"): {"name": "guessed", "category": "vote"},
        ("POST", f"{BASE}/fine-tunes"): {"name": "guessed", "dataset": B_PATH, "prompt": B_PATH},
        ("POST", f"{BASE}/logs/{{log_id}}/feedback"): {"name": "rating", "value": "down"},
        ("POST", f"{DATASET_ROUTE}/-/versions"): {"datapoints": [{"inputs": {"x": "guess"}}]},
        ("POST", f"{DATASET_ROUTE}/-/from-logs"): {},
        ("POST", f"{BASE}/datasets/-/preview"): {"filters": {"prompt": B_PATH}},
        ("POST", EVALUATOR_VERSIONS): {"kind": "builtin", "builtin": "contains"},
        ("POST", f"{BASE}/evaluators/-/try"): {"log_id": B_LOG, "evaluator": B_EVALUATOR},
        ("POST", f"{BASE}/evaluations"): {
            "dataset": B_DATASET,
            "candidates": [{"prompt": B_PATH, "version": v}],
            "evaluators": [B_EVALUATOR],
        },
        ("POST", f"{RUN}/outputs"): {"outputs": [{"datapoint": "guess", "output": "guess"}]},
        ("POST", f"{BASE}/judgments/{{judgment_id}}"): {"value": 1},
    }
    return url + query.get(route, "") if method == "GET" else url, bodies.get((method, route))


def project_routes(app_routes: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every route that acts in the request's project (all but health, auth and /projects, which
    names its project in the path)."""
    outside = {f"{BASE}/health", f"{BASE}/projects", f"{BASE}/projects/{{name}}"}
    return sorted((m, p) for m, p in app_routes if p not in outside and not is_own_session_route(p))


@pytest.mark.parametrize("caller", ["key-admin", "key-viewer", "user-member", "user-admin"])
def test_naming_another_project_in_the_header_is_404_everywhere(
    world_sqlite: World, app_routes: set[tuple[str, str]], caller: str
) -> None:
    """With B in the Promptloop-Project header, every project route answers exactly as for a
    project that does not exist, and B's data stays as it was. (The server admin sees B: the
    control that B's data is there to find.)"""
    w = world_sqlite
    client = w.callers[caller]
    routes = project_routes(app_routes)
    assert len(routes) >= 25
    for method, route in routes:
        url, body = route_sample(method, route, w)
        sent = url + json.dumps(body)
        if caller == "user-admin":
            if method == "GET":  # the control: the same reads find B's data
                assert client.get(url, headers={PROJECT: B}).status_code == 200, (route, url)
            continue
        hidden = client.request(method, url, json=body, headers={PROJECT: B})
        missing = client.request(method, url, json=body, headers={PROJECT: "no-such-project"})
        error = assert_error(hidden, 404, "not_found")
        assert error["message"].replace(repr(B), "'X'") == assert_error(missing, 404, "not_found")[
            "message"
        ].replace(repr("no-such-project"), "'X'"), (method, route)
        assert_no_leak(w, hidden, sent)
    b_unchanged(w)


def test_guessing_b_identifiers_from_a(world_sqlite: World) -> None:
    """An admin key of A, in its own project, tries B's paths, version ids (full and as
    prefixes), key ids, member emails and provider names."""
    w = world_sqlite
    a = w.admin
    b1, b2 = w.b.versions
    mine = f"{BASE}/prompts/{READ_PATH}"
    theirs = f"{BASE}/prompts/{B_PATH}"
    staging_before = served(w, READ_PATH, "staging")
    attempts: list[tuple[str, str, Any]] = [
        ("GET", theirs, None),
        ("GET", f"{theirs}/-/versions", None),
        ("GET", f"{theirs}/-/version", None),
        ("GET", f"{theirs}/-/version?environment=production", None),
        ("GET", f"{theirs}/-/deployments", None),
        ("GET", f"{theirs}/-/history", None),
        ("GET", f"{theirs}/-/diff?from={b1}&to={b2}", None),
        ("POST", f"{theirs}/-/render", {"inputs": {"x": "1"}}),
        ("PUT", f"{theirs}/-/deployments/staging", {"version": b1}),
        ("POST", f"{theirs}/-/deployments/production/rollback", {}),
        ("PATCH", f"{BASE}/members/{B_EMAIL}", {"role": "admin"}),
        ("DELETE", f"{BASE}/members/{B_EMAIL}", None),
        ("POST", f"{BASE}/members/{B_EMAIL}/sign-in-link", None),
        ("DELETE", f"{BASE}/api-keys/{w.b.key_id}", None),
        ("DELETE", f"{BASE}/provider-keys/{B_PROVIDER}", None),
        ("GET", f"{BASE}/logs/{B_LOG}", None),
        ("GET", f"{BASE}/logs?prompt={B_PATH}", None),
        ("POST", f"{BASE}/logs", {"prompt": B_PATH, "version": b1, "output": "x"}),
        ("POST", f"{BASE}/logs/batch", {"logs": [{"prompt": B_PATH, "output": "x"}]}),
        ("POST", f"{theirs}/-/call", {"inputs": {"x": "1"}}),
        ("POST", f"{theirs}/-/call", {"inputs": {"x": "1"}, "version": b1}),
        ("GET", f"{BASE}/datasets/{B_DATASET}", None),
        ("GET", f"{BASE}/datasets/{B_DATASET}/-/versions/latest/download", None),
        ("POST", f"{BASE}/datasets/{B_DATASET}/-/versions", {"base": "latest"}),
        ("GET", f"{BASE}/evaluators/{B_EVALUATOR}/-/versions", None),
        ("POST", f"{BASE}/evaluators/-/try", {"log_id": B_LOG, "evaluator": B_EVALUATOR}),
        (
            "POST",
            f"{BASE}/evaluators/-/try",
            {"log_id": B_LOG, "draft": {"kind": "builtin", "builtin": "exact_match"}},
        ),
        (
            "POST",
            f"{BASE}/evaluations",
            {
                "dataset": B_DATASET,
                "candidates": [{"label": "guess"}],
                "evaluators": [READ_EVALUATOR],
                "mode": "local",
            },
        ),
        ("GET", f"{BASE}/evaluations/{w.b.run}", None),
        ("GET", f"{BASE}/evaluations/{w.b.run}/comparison?evaluator={B_EVALUATOR}", None),
        ("GET", f"{BASE}/evaluations/{w.b.run}/datapoints", None),
        ("GET", f"{BASE}/judgments/pending?run={w.b.run}", None),
        ("POST", f"{BASE}/evaluations/{w.b.run}/cancel", None),
        ("POST", f"{BASE}/evaluations/{w.b.run}/finish", None),
        (
            "POST",
            f"{BASE}/evaluations/{w.b.run}/outputs",
            {"outputs": [{"datapoint": "guess", "output": "guess"}]},
        ),
    ]
    for ref in (b2, b2[:8], b2[:4]):
        attempts += [
            ("GET", f"{mine}/-/version?version={ref}", None),
            ("GET", f"{mine}/-/diff?from={ref}&to={w.read_versions[0]}", None),
            ("POST", f"{mine}/-/render", {"inputs": {"name": "x"}, "version": ref}),
            ("PUT", f"{mine}/-/deployments/staging", {"version": ref}),
            ("POST", f"{mine}/-/call", {"inputs": {"name": "x"}, "version": ref}),
            ("GET", f"{BASE}/logs?prompt={READ_PATH}&version={ref}", None),
            ("POST", f"{BASE}/logs", {"prompt": READ_PATH, "version": ref, "output": "x"}),
        ]
    for method, url, body in attempts:
        response = a.request(method, url, json=body)
        assert_error(response, 404, "not_found")
        assert_no_leak(w, response, url + json.dumps(body))
    assert served(w, READ_PATH, "staging") == staging_before

    # Reading lists of A never shows B's objects.
    for url in (
        f"{BASE}/prompts",
        f"{BASE}/prompts?prefix=secret-b/",
        f"{BASE}/members",
        f"{BASE}/api-keys",
        f"{BASE}/provider-keys",
        f"{BASE}/audit?limit=200",
        f"{BASE}/audit/export",
        f"{BASE}/logs?limit=200",
        f"{BASE}/logs?source=api&limit=200",
        f"{BASE}/datasets",
        f"{BASE}/evaluators",
        f"{BASE}/evaluations?limit=200",
        f"{BASE}/judgments/pending?limit=200",
    ):
        response = a.get(url)
        assert response.status_code == 200, response.text
        assert_no_leak(w, response, url)
    assert ok(a.get(f"{BASE}/prompts?prefix=secret-b/"))["data"] == []

    # Storing a key under B's provider name makes A's own key; B's is untouched.
    stored = ok(
        a.put(f"{BASE}/provider-keys/{B_PROVIDER}", json={"api_key": "sk-a-own-provider-key-4242"})
    )
    assert stored["hint"] == "4242"
    assert provider_hints(a)[B_PROVIDER] == "4242"
    ok(a.delete(f"{BASE}/provider-keys/{B_PROVIDER}"), 204)
    b_unchanged(w)


def test_signed_in_member_of_a_only_cannot_reach_b(world_sqlite: World) -> None:
    w = world_sqlite
    alice = w.callers["user-member"]
    for url in (
        f"{BASE}/prompts",
        f"{BASE}/prompts/{B_PATH}",
        f"{BASE}/prompts/{B_PATH}/-/versions",
        f"{BASE}/members",
        f"{BASE}/provider-keys",
    ):
        response = alice.get(url, headers={PROJECT: B})
        assert_error(response, 404, "not_found")
        assert_no_leak(w, response, url)
        # Without the header she acts in her own project, where B's path does not exist.
        response = alice.get(url)
        assert response.status_code in (200, 404)
        assert_no_leak(w, response, url)
    for method, url, body in (
        ("POST", f"{BASE}/prompts", {"path": "from-alice"}),
        ("POST", f"{BASE}/prompts/{B_PATH}/-/versions", kernel_body("alice {{ x }}")),
        ("PUT", f"{BASE}/prompts/{B_PATH}/-/deployments/staging", {"version": w.b.versions[0]}),
    ):
        assert_error(alice.request(method, url, json=body, headers={PROJECT: B}), 404, "not_found")
    b_unchanged(w)


# Escalation through sign-in links -------------------------------------------------------------


@pytest.mark.parametrize("target", ["server-admin", "admin-of-other-project"])
def test_project_admin_cannot_take_over_wider_accounts(world_sqlite: World, target: str) -> None:
    w = world_sqlite
    if target == "server-admin":
        email = "admin@localhost"  # the first admin, a member of A
    else:
        email = f"carol-{uuid.uuid4().hex[:8]}@example.com"
        ok(w.b.admin.post(f"{BASE}/members", json={"email": email, "role": "admin"}), 201)
        ok(w.admin.post(f"{BASE}/members", json={"email": email, "role": "viewer"}), 201)
    response = w.admin.post(f"{BASE}/members/{email}/sign-in-link")
    if response.status_code == 403:
        return  # refused: fine
    token = parse_qs(urlparse(ok(response)["sign_in_url"]).query)["token"][0]
    session = w.server.client()
    ok(session.post(f"{BASE}/auth/sign-in-link", json={"token": token}))
    # Whatever the link grants must stay within what the caller (admin of A only) could reach.
    assert B not in [p["name"] for p in ok(session.get(f"{BASE}/projects"))]
    assert session.get(f"{BASE}/prompts", headers={PROJECT: B}).status_code == 404


def test_a_project_cannot_change_prices_another_project_sees(world_sqlite: World) -> None:
    w = world_sqlite
    name = f"shared-{uuid.uuid4().hex[:8]}"
    url = f"{BASE}/models/fake/{name}"
    ok(w.browser.put(url, json={"input_price": 1.0, "output_price": 2.0}))
    response = w.callers["key-developer"].put(
        url, json={"input_price": 100.0, "output_price": 200.0}
    )
    if response.status_code in (403, 404):
        return  # refused: fine
    ok(response)
    seen_by_b = [m for m in ok(w.b.admin.get(f"{BASE}/models?provider=fake")) if m["name"] == name]
    assert [(m["input_price"], m["output_price"]) for m in seen_by_b] == [(1.0, 2.0)]


def test_a_log_id_used_by_another_project_is_not_silently_dropped(world_sqlite: World) -> None:
    w = world_sqlite
    response = w.admin.post(f"{BASE}/logs", json={"id": B_LOG, "output": "A's own log"})
    if response.status_code == 409:
        return  # refused: fine (but it says the id exists somewhere)
    assert ok(response, 201)["id"] == B_LOG
    assert ok(w.admin.get(f"{BASE}/logs/{B_LOG}"))["output"] == "A's own log"


def test_members_cannot_mint_sign_in_links(world_sqlite: World) -> None:
    w = world_sqlite
    for caller in ("key-developer", "user-member"):
        assert_error(
            w.callers[caller].post(f"{BASE}/members/admin@localhost/sign-in-link"), 403, "forbidden"
        )


# Secrets ----------------------------------------------------------------------------------------


SECRET = "sk-test-SECRET-1234"


def all_rows_text(settings: Settings) -> str:
    """Every row of every table, as text, read straight from the database."""
    engine = create_engine(settings.resolved_database_url())
    try:
        with engine.connect() as connection:
            names = inspect(connection).get_table_names()
            return "\n".join(
                repr(row)
                for name in names
                for row in connection.execute(select(text("*")).select_from(table(name)))
            )
    finally:
        engine.dispose()


def raw_sqlite_bytes(settings: Settings) -> bytes:
    """The SQLite file and its write-ahead log, as bytes on disk."""
    database = Path(settings.resolved_database_url().removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (database, Path(f"{database}-wal")) if p.exists())


def read_every_endpoint(w: World, clients: list[TestClient]) -> list[Response]:
    responses = []
    for client in clients:
        for read in READS:
            responses.append(client.get(read.url(w)))
        responses.append(
            client.post(f"{BASE}/prompts/{READ_PATH}/-/render", json={"inputs": {"name": "x"}})
        )
    for page in ("/", "/account"):
        responses.append(w.browser.get(page))
    responses.append(w.browser.get(f"{BASE}/auth/me"))
    return responses


def test_provider_key_is_never_returned_nor_stored_in_plaintext(world: World) -> None:
    w = world
    stored = w.admin.put(f"{BASE}/provider-keys/openai", json={"api_key": SECRET})
    assert ok(stored)["hint"] == "1234"
    assert "sk-test-SECRET" not in stored.text
    assert provider_hints(w.admin)["openai"] == "1234"
    assert provider_hints(w.callers["key-viewer"])["openai"] == "1234"

    clients = [w.admin, w.callers["key-viewer"], w.browser]
    for response in read_every_endpoint(w, clients):
        assert response.status_code in (200, 403), (response.url, response.text)
        assert "sk-test-SECRET" not in response.text, response.url
    audit = ok(w.admin.get(f"{BASE}/audit", params={"limit": 200}))["data"]
    assert any(
        e["action"] == "provider_key.set" and e["target"] == "provider:openai" for e in audit
    )

    rows = all_rows_text(w.settings)
    assert "provider:openai" in rows  # the check reads real data
    assert "sk-test-SECRET" not in rows
    engine = create_engine(w.settings.resolved_database_url())
    try:
        with engine.connect() as connection:
            ciphertext, hint = connection.execute(
                text(
                    "SELECT c.ciphertext, c.hint FROM provider_credentials c "
                    "JOIN projects p ON p.id = c.project_id "
                    "WHERE p.name = :project AND c.provider = 'openai'"
                ),
                {"project": A},
            ).one()
    finally:
        engine.dispose()
    assert hint == "1234"
    assert SECRET not in ciphertext
    box = SecretBox.load(configured=w.settings.secret_key, data_dir=w.settings.data_dir)
    assert box.decrypt(ciphertext) == SECRET  # encrypted, not lost
    if w.settings.resolved_database_url().startswith("sqlite"):
        assert b"sk-test-SECRET" not in raw_sqlite_bytes(w.settings)


def test_api_key_secret_is_shown_only_once(world: World) -> None:
    w = world
    name = f"once-{uuid.uuid4().hex[:8]}"
    created = w.admin.post(f"{BASE}/api-keys", json={"name": name, "role": "viewer"})
    secret = ok(created, 201)["key"]
    assert secret.startswith("plk_") and secret in created.text
    listed = [k for k in ok(w.admin.get(f"{BASE}/api-keys")) if k["name"] == name]
    assert len(listed) == 1 and "key" not in listed[0]
    assert secret.startswith(listed[0]["prefix"]) and len(listed[0]["prefix"]) < len(secret) // 3

    responses = read_every_endpoint(w, [w.admin, w.browser])
    assert all(r.status_code == 200 for r in responses), [r.url for r in responses]
    revoked = w.admin.delete(f"{BASE}/api-keys/{listed[0]['id']}")
    responses.append(revoked)
    for response in responses:
        assert secret not in response.text, response.url
        assert secret[len(listed[0]["prefix"]) :] not in response.text

    rows = all_rows_text(w.settings)
    assert name in rows and secret not in rows
    engine = create_engine(w.settings.resolved_database_url())
    try:
        with engine.connect() as connection:
            key_hash = connection.execute(
                text("SELECT key_hash FROM api_keys WHERE id = :id"), {"id": listed[0]["id"]}
            ).scalar_one()
    finally:
        engine.dispose()
    assert key_hash and key_hash != secret and secret not in key_hash
    assert secret[len(listed[0]["prefix"]) :] not in key_hash
    if w.settings.resolved_database_url().startswith("sqlite"):
        assert secret.encode() not in raw_sqlite_bytes(w.settings)


def test_short_provider_key_is_not_returned_whole(world_sqlite: World) -> None:
    w = world_sqlite
    provider = f"short-{uuid.uuid4().hex[:8]}"
    secret = "Zq7x"
    stored = w.admin.put(f"{BASE}/provider-keys/{provider}", json={"api_key": secret})
    assert stored.status_code in (200, 400), stored.text
    if stored.status_code == 400:
        return  # refusing keys too short to hint at safely is fine
    assert secret not in stored.text
    assert provider_hints(w.admin)[provider] != secret
