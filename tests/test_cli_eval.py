"""`promptloop eval` (the CI gate), `datasets` and `evaluators` commands over real HTTP.

The server runs in this process, under uvicorn in a thread, so that tests/fakes.py's
FakeProvider (registered here) answers its model calls: `upper` models answer right (the word
in capitals), `half` ones on every other word, `lower` ones never. Each test has its own
project; the CLI reaches the server through --url, as in CI.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from click.testing import Result
from typer.testing import CliRunner

from promptloop import Client
from promptloop.api.app import create_app
from promptloop.cli.main import app
from promptloop.core.access import SYSTEM
from promptloop.providers.base import ChatRequest
from promptloop.services import api_keys, local, projects
from promptloop.settings import Settings
from tests.fakes import FakeProvider, registered
from tests.serving import free_port

WORDS = [
    *("apple", "river", "stone", "cloud", "amber", "maple", "tiger", "ocean"),
    *("eagle", "frost", "grape", "honey", "ivory", "jelly", "koala", "lemon"),
]
SHOUT = [{"role": "user", "content": "Shout {{ word }}"}]
Invoke = Callable[..., Result]


def respond(request: ChatRequest) -> str:
    word = str((request.messages or [{}])[-1].get("content", "")).rsplit(" ", 1)[-1]
    if request.model == "upper":
        return word.upper()
    if request.model == "half":
        return word.upper() if WORDS.index(word) % 2 == 0 else word
    return word.lower()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROMPTLOOP_URL", "PROMPTLOOP_API_KEY", "PROMPTLOOP_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with registered(FakeProvider(respond=respond)) as provider:
        yield provider


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeProvider
) -> Iterator[tuple[str, Settings]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("gate"))
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    serving = uvicorn.Server(config)
    thread = threading.Thread(target=serving.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not serving.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", settings
    serving.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def project(server: tuple[str, Settings], request: pytest.FixtureRequest) -> tuple[str, str]:
    """A new project for this test, and an admin API key of it."""
    _url, settings = server
    name = "t-" + request.node.name.removeprefix("test_").replace("_", "-")[:50]
    db = local.open_database(settings)
    try:
        with db.session(write=True) as session:
            found = projects.ensure_project(session, name=name)
            key = api_keys.create_key(session, actor=SYSTEM, project=found, name="ci", role="admin")
    finally:
        db.dispose()
    return name, key.secret


@pytest.fixture
def sdk(server: tuple[str, Settings], project: tuple[str, str]) -> Iterator[Client]:
    name, key = project
    with Client(server[0], api_key=key, project=name) as client:
        yield client


@pytest.fixture
def cli(server: tuple[str, Settings], project: tuple[str, str]) -> Invoke:
    name, key = project

    def invoke(*args: str) -> Result:
        options = ["--url", server[0], "--api-key", key, "--project", name]
        return CliRunner().invoke(app, [*options, *args])

    return invoke


def prepare(sdk: Client, *, production: str, models: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the prompt "shout" by model, the `production` one deployed; the dataset
    "words" and the evaluator "exact"."""
    versions = {
        model: sdk.prompts.save("shout", provider="fake", model=model, messages=SHOUT).id
        for model in (production, *models)
    }
    sdk.prompts.deploy("shout", versions[production], environment="production")
    sdk.datasets.create("words", [{"inputs": {"word": w}, "target": w.upper()} for w in WORDS])
    sdk.evaluators.save("exact", "builtin", builtin="exact_match")
    return versions


def junit_cases(report: Path) -> list[ET.Element]:
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "promptloop evaluation"
    cases = suite.findall("testcase")
    assert suite.get("tests") == str(len(cases)) == root.get("tests")
    return cases


def test_a_better_candidate_passes_the_gate(sdk: Client, cli: Invoke, tmp_path: Path) -> None:
    versions = prepare(sdk, production="lower", models=("upper",))
    report, summary = tmp_path / "report.xml", tmp_path / "summary.md"
    result = cli(
        "eval", "run", "--prompt", "shout", "--dataset", "words", "-e", "exact",
        "--junit", str(report), "--markdown", str(summary), "--name", "ci #1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output + result.stderr
    candidate, control = f"shout@{versions['upper']}", f"shout@{versions['lower']} (production)"
    assert f": {candidate} against {control} on words@" in result.stderr  # the latest version
    assert result.stderr.rstrip().endswith("32/32 completed")  # no terminal: one final line
    assert "PASSED" in result.stdout and "improved" in result.stdout
    assert "16 / 0 / 0" in result.stdout and "1 [0.806, 1]" in result.stdout

    cases = junit_cases(report)
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        (control, "exact"),
        (candidate, "exact"),
    ]
    assert all(c.find("failure") is None for c in cases)
    values = {p.get("name"): p.get("value") for p in cases[1].iter("property")}
    assert values["mean"] == "1.0" and values["wins"] == "16" and values["verdict"] == "improved"
    text = summary.read_text()
    assert text.startswith("### ✅ promptloop evaluation passed")
    assert "| Candidate | Evaluator | Mean [95% CI] |" in text and f"| `{candidate}` |" in text
    assert f"| `{candidate}` | 16 | 0 | " in text  # its calls: logs, failures, cost…

    run_id = result.stdout.split()[2]
    shown = cli("eval", "show", run_id)
    assert shown.exit_code == 0 and shown.stdout == result.stdout
    listed = cli("eval", "list")
    assert listed.exit_code == 0 and run_id in listed.stdout and "passed" in listed.stdout
    compared = cli("eval", "compare", run_id, "-e", "exact", "--limit", "2")
    assert compared.exit_code == 0 and compared.stdout.count("+1.00") == 2


def test_a_regression_fails_the_gate(sdk: Client, cli: Invoke, tmp_path: Path) -> None:
    versions = prepare(sdk, production="upper", models=("half",))
    report = tmp_path / "report.xml"
    result = cli(
        "eval", "run", "--prompt", "shout", "--candidate", versions["half"],
        "--dataset", "words", "-e", "exact", "--junit", str(report),
    )  # fmt: skip
    assert result.exit_code == 1, result.output + result.stderr
    assert "FAILED: exact regressed against the control" in result.stdout
    [failed] = [c for c in junit_cases(report) if c.find("failure") is not None]
    failure = failed.find("failure")
    assert failure is not None and failure.get("type") == "regression"
    assert failed.get("classname") == f"shout@{versions['half']}"
    assert "0 wins, 8 losses, 8 ties" in (failure.get("message") or "")


def test_a_missed_threshold_fails_the_gate(sdk: Client, cli: Invoke, tmp_path: Path) -> None:
    versions = prepare(sdk, production="lower", models=("half",))
    summary = tmp_path / "summary.md"
    summary.write_text("earlier content\n")
    result = cli(
        "eval", "run", "--prompt", "shout", "--candidate", versions["half"],
        "--control", versions["lower"], "--dataset", "words", "-e", "exact",
        "--threshold", "exact=0.9", "--markdown", str(summary),
    )  # fmt: skip
    assert result.exit_code == 1, result.output + result.stderr
    assert "FAILED: exact is 0.5, needs >= 0.9" in result.stdout
    assert "improved" in result.stdout  # better than the control, yet not good enough
    text = summary.read_text()
    assert text.startswith("### ❌ promptloop evaluation failed")  # a plain file is replaced
    assert "| improved | ❌ >= 0.9 missed |" in text


def test_the_step_summary_is_appended_to(
    sdk: Client, cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare(sdk, production="upper")
    summary = tmp_path / "step-summary.md"
    summary.write_text("# Build\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = cli(
        "eval", "run", "--prompt", "shout", "--dataset", "words", "-e", "exact",
        "--markdown", str(summary),
    )  # fmt: skip
    assert result.exit_code == 0, result.output + result.stderr
    assert summary.read_text().startswith("# Build\n### ✅ promptloop evaluation passed")


def test_a_yaml_file_configures_the_gate_and_flags_override_it(
    sdk: Client, cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = prepare(sdk, production="lower", models=("half", "upper"))
    config = tmp_path / "eval.yaml"
    config.write_text(
        "prompt: shout\n"
        f"candidate: {versions['half']}\n"
        "control_environment: production\n"
        "dataset: words\n"
        "evaluators: exact\n"
        "thresholds:\n  exact: 0.9\n"
        "concurrency: 2\n"
        "name: from yaml\n"
        "junit: report.xml\n"
    )
    monkeypatch.chdir(tmp_path)
    failing = cli("eval", "run", str(config))
    assert failing.exit_code == 1, failing.output + failing.stderr
    assert "(from yaml) FAILED" in failing.stdout and "exact regressed" not in failing.stdout
    assert "FAILED: exact is 0.5, needs >= 0.9" in failing.stdout

    passing = cli("eval", "run", str(config), "--candidate", versions["upper"], "--json")
    assert passing.exit_code == 0, passing.output + passing.stderr
    assert f'"version": "{versions["upper"]}"' in passing.stdout
    assert {c.get("classname") for c in junit_cases(tmp_path / "report.xml")} == {
        f"shout@{versions['upper']}",
        f"shout@{versions['lower']}",
    }


def test_bad_input_exits_1_with_what_to_fix(sdk: Client, cli: Invoke, tmp_path: Path) -> None:
    prepare(sdk, production="upper")
    unknown = cli("eval", "run", "--prompt", "shout", "--dataset", "nope", "-e", "exact")
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("Error: ") and "nope" in unknown.stderr
    missing = cli("eval", "run", "--dataset", "words")
    assert missing.exit_code == 1 and "Name the prompt, evaluators" in missing.stderr
    both = cli(
        "eval", "run", "--prompt", "shout", "--dataset", "words", "-e", "exact",
        "--control", "abcd", "--control-env", "staging",
    )  # fmt: skip
    assert both.exit_code == 1 and "not both" in both.stderr
    threshold = cli("eval", "run", "--prompt", "shout", "--threshold", "exact")
    assert threshold.exit_code == 1 and "NAME=NUMBER" in threshold.stderr
    config = tmp_path / "eval.yaml"
    config.write_text("prompt: shout\ndatset: words\n")
    typo = cli("eval", "run", str(config))
    assert typo.exit_code == 1 and "datset" in typo.stderr
    absent = cli("eval", "run", str(tmp_path / "absent.yaml"))
    assert absent.exit_code == 1 and "Cannot read" in absent.stderr


def test_a_run_that_does_not_finish_in_time_is_cancelled_and_exits_2(
    sdk: Client, cli: Invoke, fake: FakeProvider, tmp_path: Path
) -> None:
    versions = prepare(sdk, production="lower", models=("upper",))
    report = tmp_path / "report.xml"
    fake.delay = 0.5
    try:
        result = cli(
            "eval", "run", "--prompt", "shout", "--dataset", "words", "-e", "exact",
            "--concurrency", "1", "--timeout", "1", "--junit", str(report),
        )  # fmt: skip
    finally:
        fake.delay = 0.0
    assert result.exit_code == 2, result.output + result.stderr
    assert "timed out: no result after 1 s, so it was cancelled" in result.stdout
    [case] = junit_cases(report)  # no results of a run cut short
    error = case.find("error")
    assert error is not None and "timed out" in (error.get("message") or "")
    [run] = list(sdk.evaluations.list())
    assert sdk.evaluations.wait(run.id, timeout=30, poll=0.2).status == "cancelled"
    assert versions  # the candidate was the latest version


def test_datasets_and_evaluators_from_the_command_line(cli: Invoke, tmp_path: Path) -> None:
    sheet = tmp_path / "words.csv"
    sheet.write_text("word,target\napple,APPLE\nriver,RIVER\n")
    uploaded = cli("datasets", "upload", "words", str(sheet), "-m", "two words")
    assert uploaded.exit_code == 0, uploaded.stderr
    assert uploaded.stdout.startswith("created") and "(2 datapoints)" in uploaded.stdout
    again = cli("datasets", "upload", "words", str(sheet))
    assert again.stdout.startswith("unchanged")
    listed = cli("datasets", "list")
    assert listed.stdout.split()[0] == "words" and "2 datapoints" in listed.stdout
    copy = tmp_path / "copy.jsonl"
    downloaded = cli("datasets", "download", "words", "-o", str(copy))
    assert downloaded.exit_code == 0 and len(copy.read_text().splitlines()) == 2
    csv = cli("datasets", "download", "words", "--format", "csv").stdout
    assert csv.splitlines()[1:] == ["apple,,APPLE", "river,,RIVER"]

    saved = cli("evaluators", "save", "exact", "--builtin", "exact_match")
    assert saved.exit_code == 0 and "exact@" in saved.stdout and "boolean" in saved.stdout
    configured = cli(
        "evaluators", "save", "apple", "--builtin", "contains", "--config", '{"value": "A"}'
    )
    assert configured.exit_code == 0, configured.stderr
    judged = cli("evaluators", "save", "review", "--human", "--returns", "number")
    assert judged.exit_code == 0 and "(human, returns number)" in judged.stdout
    assert [line.split()[0] for line in cli("evaluators", "list").stdout.splitlines()] == [
        "apple",
        "exact",
        "review",
    ]
    neither = cli("evaluators", "save", "x")
    assert neither.exit_code == 1 and "exactly one of" in neither.stderr
    broken = cli("evaluators", "save", "x", "--builtin", "contains", "--config", "{")
    assert broken.exit_code == 1 and "not valid JSON" in broken.stderr
