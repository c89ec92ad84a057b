"""Browser tests: Debian's Chromium driven by Playwright against a real `promptloop serve`.

One server (SQLite, its own data folder, the worker on) serves every browser test of the run;
tests keep out of each other's way by using their own prompt paths, datasets and users.
`ui.sign_in(page)` signs a page in as the first admin; `ui.member(role)` adds a user with that
role and returns their email, for `ui.sign_in(page, email)`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptloop.services import auth, local
from promptloop.settings import Settings
from tests.serving import ServeProcess

CHROMIUM = os.environ.get("PROMPTLOOP_CHROMIUM", "/usr/bin/chromium")
# Chromium's background services try to reach Google; on a closed network they only add noise.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("PROMPTLOOP_REQUIRE_BROWSER") == "1":
        raise pytest.UsageError(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    skip = pytest.mark.skip(reason=f"Chromium not found at {CHROMIUM}")
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


class UiServer:
    """The running server, and what a test needs to act on it as an operator would."""

    def __init__(self, process: ServeProcess) -> None:
        self.process = process
        self.url = process.url
        self.settings = Settings(data_dir=process.data_dir)
        self._admin_key: str | None = None

    def api(self, key: str | None = None) -> httpx.Client:
        """An API client of the server, as an admin key of `default` unless `key` is given."""
        if key is None:
            if self._admin_key is None:
                self._admin_key = local.create_api_key(
                    self.settings, project="default", role="admin", name="browser-tests"
                ).secret
            key = self._admin_key
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )

    def member(self, role: str, *, project: str = "default") -> str:
        """A new user with `role` in `project`; returns their email."""
        email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
        key = None
        if project != "default":
            key = local.create_api_key(
                self.settings, project=project, role="admin", name=f"browser-tests-{email}"
            ).secret
        with self.api(key) as api:
            response = api.post("/members", json={"email": email, "role": role})
            assert response.status_code == 201, response.text
        return email

    def sign_in(self, page: Any, email: str = auth.FIRST_ADMIN_EMAIL) -> None:
        """Sign `page`'s browser in as `email` through a one-time link, as a user would."""
        token = local.sign_in_link(self.settings, email=email)
        page.goto(f"{self.url}/sign-in/link?token={token}")
        page.get_by_role("button").first.click()
        page.wait_for_load_state()

    def path(self, path: str) -> str:
        return f"{self.url}{path}"


def _lend_converted_model(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Convert the offline model once (into PROMPTLOOP_TEST_MODELS_DIR when set, so later runs
    and other test modules reuse it) and lend it to the server's data folder, so that the pages
    that call it answer in seconds rather than converting for a minute mid-test."""
    try:
        from promptloop.providers import _local_model
        from promptloop.providers.local import BASE_MODELS, gguf_path
    except ImportError:  # no `local` extra: the tests that call the model say so
        return
    configured = os.environ.get("PROMPTLOOP_TEST_MODELS_DIR")
    shared = Path(configured) if configured else tmp_path_factory.mktemp("models")
    for name, base in BASE_MODELS.items():
        _local_model.ensure_converted(gguf_path(base), shared / name)
        target = data_dir / "models" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to((shared / name).resolve(), target_is_directory=True)


@pytest.fixture(scope="session")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    data_dir = tmp_path_factory.mktemp("browser") / "data"
    _lend_converted_model(data_dir, tmp_path_factory)
    process = ServeProcess(data_dir).start()
    try:
        yield UiServer(process)
    finally:
        process.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def admin_page(ui: UiServer, page: Any) -> Any:
    """A browser page signed in as the first admin."""
    ui.sign_in(page)
    return page
