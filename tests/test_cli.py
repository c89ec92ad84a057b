"""The command line against a real `promptloop serve` process over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from promptloop.cli.main import app

PROMPT = """---
provider: openai
model: gpt-4o-mini
parameters:
  temperature: 0.2
---
system:
You answer questions about {{ product }}.

user:
{{ question }}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    data_dir = tmp_path_factory.mktemp("serve")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLOOP_")}
    env["PROMPTLOOP_WARM_LOCAL_MODEL"] = "0"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "promptloop",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/api/v1/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                f"promptloop serve did not start:\n{process.stdout.read() if process.stdout else ''}"
            )
        time.sleep(0.1)
    assert (data_dir / "promptloop.db").exists()
    yield url, data_dir
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def admin(server: tuple[str, Path]) -> Iterator[httpx.Client]:
    """The first admin, signed in through a one-time link as a browser would be."""
    url, data_dir = server
    link = CliRunner().invoke(
        app, ["users", "link", "admin@localhost", "--data-dir", str(data_dir)]
    )
    assert link.exit_code == 0, link.stderr
    token = link.stdout.strip().split("token=")[1]
    with httpx.Client(base_url=url) as browser:
        signed_in = browser.post("/api/v1/auth/sign-in-link", json={"token": token})
        signed_in.raise_for_status()
        # The cookie is Secure (loopback counts as secure for browsers); httpx needs it by hand.
        browser.headers["Cookie"] = f"promptloop_session={signed_in.cookies['promptloop_session']}"
        browser.headers["X-CSRF-Token"] = signed_in.json()["csrf_token"]
        yield browser


@pytest.fixture
def cli(server: tuple[str, Path], admin: httpx.Client, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Run a command against the server, in a fresh project (and its own API key) for each test."""
    url, data_dir = server
    project = "t" + str(abs(hash(request.node.name)))[:10]
    admin.post("/api/v1/projects", json={"name": project}).raise_for_status()
    runner = CliRunner()
    created = runner.invoke(
        app,
        [
            "keys",
            "create",
            "--project",
            project,
            "--role",
            "developer",
            "--data-dir",
            str(data_dir),
        ],
    )
    assert created.exit_code == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("plk_")

    def run(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, ["--url", url, "--project", project, "--api-key", key, *args])
        assert result.exit_code == code, (
            f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
        )
        return result

    run.key, run.url, run.project = key, url, project  # type: ignore[attr-defined]
    return run


def write(root: Path, path: str, text: str = PROMPT) -> Path:
    file = root / f"{path}.prompt"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    return file


def test_push_creates_then_unchanged_then_new_version(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write(tmp_path, "support/answer")
    write(tmp_path, "sales/pitch", PROMPT.replace("questions", "pitches"))
    first = json.loads(cli("push", str(tmp_path), "-m", "initial", "--json").stdout)
    assert sorted((r["path"], r["created"]) for r in first) == [
        ("sales/pitch", True),
        ("support/answer", True),
    ]
    again = json.loads(cli("push", str(tmp_path), "--json").stdout)
    assert [r["created"] for r in again] == [False, False]
    write(tmp_path, "support/answer", PROMPT.replace("0.2", "0.7"))
    third = cli("push", str(tmp_path / "support/answer.prompt"), "--root", str(tmp_path)).stdout
    assert "created" in third and "support/answer" in third
    listed = cli("versions", "support/answer").stdout.splitlines()
    assert len(listed) == 2
    assert listed[1].endswith("initial")


def test_deploy_show_and_pull_round_trip(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write(tmp_path / "src", "support/answer")
    version = json.loads(cli("push", str(tmp_path / "src"), "--json").stdout)[0]["version"]
    assert (
        "production now serves"
        in cli("deploy", "support/answer", version, "--env", "production").stdout
    )
    shown = json.loads(cli("show", "support/answer", "--env", "production", "--json").stdout)
    assert shown["id"] == version and shown["environments"] == ["production"]
    assert "{{ question }}" in cli("show", "support/answer", "--version", version).stdout

    pulled = json.loads(cli("pull", str(tmp_path / "out"), "--env", "production", "--json").stdout)
    assert [(r["path"], r["version"], r["written"]) for r in pulled] == [
        ("support/answer", version, True)
    ]
    # What pull writes pushes back as the same version: a clean round trip through git.
    assert json.loads(cli("push", str(tmp_path / "out"), "--json").stdout)[0] == {
        "path": "support/answer",
        "version": version,
        "created": False,
        "file": str(tmp_path / "out" / "support" / "answer.prompt"),
    }
    assert "unchanged" in cli("pull", str(tmp_path / "out"), "--env", "production").stdout
    assert cli("pull", str(tmp_path / "none"), "--env", "staging", "--json").stdout.strip() == "[]"


def test_rollback_and_diff(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write(tmp_path, "a")
    v1 = json.loads(cli("push", str(tmp_path), "--json").stdout)[0]["version"]
    write(tmp_path, "a", PROMPT.replace("gpt-4o-mini", "gpt-4o"))
    v2 = json.loads(cli("push", str(tmp_path), "--json").stdout)[0]["version"]
    cli("deploy", "a", v1, "--env", "staging")
    cli("deploy", "a", v2, "--env", "staging")
    assert f"rolled back to {v1}" in cli("rollback", "a", "--env", "staging").stdout
    assert 'model: "gpt-4o-mini" -> "gpt-4o"' in cli("diff", "a", v1, v2).stdout


def test_errors_print_one_line_and_exit_non_zero(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = cli("show", "no/such", code=1)
    assert missing.stderr.strip().count("\n") == 0
    assert missing.stderr.startswith("Error: No prompt at 'no/such'")
    assert "Traceback" not in missing.stderr + missing.stdout
    write(tmp_path, "x")
    version = json.loads(cli("push", str(tmp_path), "--json").stdout)[0]["version"]
    wrong_env = cli("deploy", "x", version, "--env", "prod", code=1).stderr
    assert "No environment named 'prod'" in wrong_env and "production" in wrong_env
    assert "no version 'abcd'" in cli("deploy", "x", "abcd", "--env", "production", code=1).stderr


def test_a_bad_file_stops_the_push_with_nothing_saved(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write(tmp_path, "good")
    write(tmp_path, "bad", PROMPT.replace("model: gpt-4o-mini\n", ""))
    result = cli("push", str(tmp_path), code=1)
    assert "bad.prompt" in result.stderr and "model" in result.stderr
    assert cli("pull", str(tmp_path / "out"), "--json").stdout.strip() == "[]"
    assert "does not exist" in cli("push", str(tmp_path / "nope"), code=1).stderr


def test_commands_need_a_valid_key(server: tuple[str, Path]) -> None:
    url, _ = server
    missing = CliRunner().invoke(app, ["--url", url, "show", "a"], env={"PROMPTLOOP_API_KEY": ""})
    assert missing.exit_code == 1
    assert (
        "Authentication required" in missing.stderr and "promptloop keys create" in missing.stderr
    )
    wrong = CliRunner().invoke(app, ["--url", url, "--api-key", "plk_nope", "show", "a"])
    assert wrong.exit_code == 1 and "not valid" in wrong.stderr


def test_keys_create_refuses_unknown_projects_and_roles(server: tuple[str, Path]) -> None:
    _, data_dir = server
    runner = CliRunner()
    ghost = runner.invoke(
        app,
        ["keys", "create", "--project", "ghost", "--role", "admin", "--data-dir", str(data_dir)],
    )
    assert ghost.exit_code == 1 and "No project named 'ghost'" in ghost.stderr
    bad = runner.invoke(
        app,
        ["keys", "create", "--project", "default", "--role", "boss", "--data-dir", str(data_dir)],
    )
    assert bad.exit_code == 1 and "Unknown role 'boss'" in bad.stderr


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    port = _free_port()
    result = CliRunner().invoke(app, ["--url", f"http://127.0.0.1:{port}", "show", "a"])
    assert result.exit_code == 1
    assert "cannot reach the promptloop server" in result.stderr
    assert "promptloop serve" in result.stderr


def test_logs_lists_recent_calls(cli) -> None:  # type: ignore[no-untyped-def]
    assert json.loads(cli("logs", "--json").stdout) == []
    headers = {"Authorization": f"Bearer {cli.key}", "Promptloop-Project": cli.project}
    logs = [{"output": "fine"}, {"output": None, "error": "timeout (504)", "model": "gpt-4o-mini"}]
    httpx.post(
        f"{cli.url}/api/v1/logs/batch", json={"logs": logs}, headers=headers
    ).raise_for_status()
    listed = json.loads(cli("logs", "--json").stdout)
    assert [log["error"] for log in listed] == ["timeout (504)", None]
    failed = cli("logs", "--errors").stdout.splitlines()
    assert len(failed) == 1 and "ERROR timeout (504)" in failed[0] and "gpt-4o-mini" in failed[0]
    assert "must look like name=value" in cli("call", "x", "--input", "oops", code=1).stderr


def test_feedback_give_list_declare_stats_and_filter(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {cli.key}", "Promptloop-Project": cli.project}
    ids = httpx.post(
        f"{cli.url}/api/v1/logs/batch",
        json={"logs": [{"output": "Ships on Monday."}, {"output": "Fine."}]},
        headers=headers,
    ).json()["ids"]
    assert "recorded rating" in cli("feedback", "give", ids[0], "rating", "down").stdout
    fixed = tmp_path / "fixed.txt"
    fixed.write_text("Ships on Tuesday.")
    given = cli("feedback", "give", ids[0], "correction", f"@{fixed}").stdout
    assert "similarity 0.79" in given
    assert (
        "declared stars (vote, number)"
        in cli(
            "feedback", "declare", "stars", "--category", "vote", "--min", "1", "--max", "5"
        ).stdout
    )
    cli("feedback", "give", ids[1], "stars", "5", "--end-user", "u-1")
    assert "takes a number" in cli("feedback", "give", ids[1], "stars", "lots", code=1).stderr
    assert "from 1 to 5" in cli("feedback", "give", ids[1], "stars", "9", code=1).stderr
    listed = json.loads(cli("feedback", "list", ids[0], "--json").stdout)
    assert [f["name"] for f in listed] == ["rating", "correction"]
    assert [
        log["id"] for log in json.loads(cli("logs", "--feedback", "down", "--json").stdout)
    ] == [ids[0]]
    stats = cli("feedback", "stats").stdout
    assert "(no prompt) @ -: 2 logs" in stats and "rating" in stats and "up 0/1" in stats
    kinds = cli("feedback", "kinds").stdout
    assert "retained" in kinds and "stars" in kinds
    assert cli("feedback", "token", ids[0]).stdout.startswith("plf_")
