"""The CI gate behind `promptloop eval run`: its configuration file, and its reports of a
run (a text table, Markdown for a CI job's summary, JUnit XML for its test report).

The three reports read the run through `rows`, so they always agree. The exit code says what
CI should do: 0 the run passed; 1 a candidate regressed or missed a threshold; 2 the run did not
complete (failed, cancelled, or timed out).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptloop.sdk import Client, EvaluationRun, Interval, RunResult

PASSED, FAILED, INCOMPLETE = 0, 1, 2
SUITE = "promptloop evaluation"


class GateConfig(BaseModel):
    """What `eval run` evaluates; the YAML file's keys are the command's options."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    candidate: str | None = None
    control: str | None = None
    control_environment: str | None = None
    dataset: str | None = None
    dataset_version: str | None = None
    evaluators: list[str] = Field(default_factory=list)
    thresholds: dict[str, float] = Field(default_factory=dict)
    concurrency: int | None = None
    name: str | None = None
    junit: Path | None = None
    markdown: Path | None = None
    timeout: float | None = None


def load_config(path: Path) -> GateConfig:
    """Read a gate's YAML file; ValueError says what is wrong with it."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must be a mapping of options (prompt:, dataset:, …).")
    if isinstance(data.get("evaluators"), str):
        data["evaluators"] = [data["evaluators"]]
    try:
        return GateConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'file'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ValueError(f"{path}: {problems}.") from None


def merge(config: GateConfig | None, **flags: Any) -> GateConfig:
    """The file's options with the flags given over them: `thresholds` per evaluator, a list
    of `evaluators` as a whole."""
    merged = config.model_dump() if config is not None else {}
    for key, value in flags.items():
        if key == "thresholds":
            merged["thresholds"] = {**merged.get("thresholds", {}), **value}
        elif value not in (None, [], {}):
            merged[key] = value
    return GateConfig.model_validate(merged)


def parse_thresholds(items: list[str]) -> dict[str, float]:
    """`--threshold exact=0.9` options as a mapping; ValueError names a malformed one."""
    thresholds = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not name.strip() or number is None or number != number:  # NaN fits no mean
            raise ValueError(f"--threshold {item!r} must look like NAME=NUMBER.")
        thresholds[name.strip()] = number
    return thresholds


def start(client: Client, config: GateConfig) -> EvaluationRun:
    """Start the run: the candidate (default: the prompt's latest version) and, when one is
    named, the control as a second candidate; else the server compares with production."""
    missing = [k for k in ("prompt", "dataset", "evaluators") if not getattr(config, k)]
    if missing:
        raise ValueError(
            f"Name the {', '.join(missing)} to evaluate, with options (--prompt, --dataset, "
            "--evaluator) or in the YAML file."
        )
    if config.control and config.control_environment:
        raise ValueError("Give a control version or a control environment, not both.")
    assert config.prompt is not None and config.dataset is not None
    version = config.candidate or client.prompts.get(config.prompt).id
    candidates = [{"prompt": config.prompt, "version": version}]
    if config.control:
        candidates.append({"prompt": config.prompt, "version": config.control})
    elif config.control_environment:
        candidates.append({"prompt": config.prompt, "environment": config.control_environment})
    return client.evaluations.start(
        config.dataset,
        candidates,
        config.evaluators,
        dataset_version=config.dataset_version,
        control=1 if len(candidates) == 2 else None,
        concurrency=config.concurrency or 8,
        thresholds=config.thresholds,
        name=config.name,
    )


def write_reports(
    run: EvaluationRun, *, junit_path: Path | None, markdown_path: Path | None
) -> None:
    """Write the reports asked for. The Markdown is appended to `$GITHUB_STEP_SUMMARY` (which
    other commands of the step may write too); other files are replaced."""
    if junit_path is not None:
        junit_path.write_text(junit(run))
    if markdown_path is not None:
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        append = bool(summary) and Path(summary or "").resolve() == markdown_path.resolve()
        with markdown_path.open("a" if append else "w") as out:
            out.write(markdown(run))


def exit_code(run: EvaluationRun) -> int:
    if run.status != "completed":
        return INCOMPLETE
    return PASSED if run.passed else FAILED


@dataclass(frozen=True)
class Row:
    """One candidate on one evaluator, as the reports show it."""

    result: RunResult
    control: bool
    mean: str
    count: str
    versus: str
    difference: str
    verdict: str
    threshold: str
    problems: tuple[str, ...]


HEADERS = (
    "Candidate",
    "Evaluator",
    "Mean [95% CI]",
    "n",
    "W / L / T",
    "Difference [95% CI]",
    "Verdict",
    "Threshold",
)


def rows(run: EvaluationRun) -> list[Row]:
    """The results of a completed run (those of a run cut short would mislead)."""
    if run.status != "completed" or run.summary is None:
        return []
    control = run.summary.control
    return [_row(result, control) for result in run.summary.results]


def _row(result: RunResult, control: str | None) -> Row:
    comparison = result.comparison
    problems = []
    if comparison is not None and result.regressed:
        problems.append(
            f"{result.evaluator} regressed against the control {control}: {comparison.wins} "
            f"wins, {comparison.losses} losses, {comparison.ties} ties; mean difference "
            f"{_interval(comparison.mean_difference)} ({comparison.test}, "
            f"p={_p(comparison.p_value)})"
        )
    sign = ">=" if result.higher_is_better else "<="
    if result.passed_threshold is False:
        problems.append(
            f"{result.evaluator} is {_number(result.mean.value)}, needs {sign} "
            f"{_number(result.threshold)}"
        )
    is_control = result.candidate == control
    threshold = ""
    if result.threshold is not None and result.passed_threshold is not None:
        met = "met" if result.passed_threshold else "missed"
        threshold = f"{sign} {_number(result.threshold)} {met}"
    count = str(result.n)
    if result.errors:
        count += f", {result.errors} error{'s' if result.errors != 1 else ''}"
    if result.pending:
        count += f", {result.pending} pending"
    return Row(
        result=result,
        control=is_control,
        mean=_interval(result.mean),
        count=count,
        versus=""
        if comparison is None
        else f"{comparison.wins} / {comparison.losses} / {comparison.ties}",
        difference="" if comparison is None else _interval(comparison.mean_difference),
        verdict="control" if is_control else (comparison.verdict if comparison else ""),
        threshold=threshold,
        problems=tuple(problems),
    )


def _cells(row: Row) -> tuple[str, ...]:
    result = row.result
    return (
        result.candidate,
        result.evaluator,
        row.mean,
        row.count,
        row.versus,
        row.difference,
        row.verdict,
        row.threshold,
    )


# Text ------------------------------------------------------------------------------------------


def started(run: EvaluationRun) -> str:
    """`Evaluation run ID: shout@b2 against shout@a1 (production) on words@c3`."""
    tried = ", ".join(c.label for c in run.candidates if not c.control)
    control = next((c.label for c in run.candidates if c.control), None)
    against = f" against {control}" if control and tried else ""
    return f"Evaluation run {run.id}: {tried or control}{against} on {run.dataset}@{run.dataset_version}"


def progress(run: EvaluationRun, width: int = 30) -> str:
    """`[#########.....] 120/400 running`: the judged answers (a candidate's on a datapoint)."""
    total = int(run.progress.get("total") or 0)
    done = min(int(run.progress.get("done") or 0), total)
    filled = width * done // total if total else 0
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {run.status}"


def text(run: EvaluationRun) -> str:
    """The summary `eval run` and `eval show` print: a headline, a table, the failures."""
    lines = [_headline(run)]
    found = rows(run)
    if found:
        table = [HEADERS, *(_cells(r) for r in found)]
        widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
        for number, line in enumerate(table):
            lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
            if number == 0:
                lines.append("  ".join("-" * w for w in widths))
    lines += [f"FAILED: {message}" for message in _failures(run)]
    return "\n".join(lines) + "\n"


def _headline(run: EvaluationRun) -> str:
    name = f" ({run.name})" if run.name else ""
    where = f"dataset {run.dataset}@{run.dataset_version}"
    if run.status != "completed":
        why = f": {run.error}" if run.error else ""
        return f"Evaluation run {run.id}{name} {run.status}{why}; {where}"
    verdict = "PASSED" if run.passed else "FAILED"
    control = run.summary.control if run.summary else None
    against = f", control {control}" if control else ""
    return f"Evaluation run {run.id}{name} {verdict}; {where}{against}"


def _failures(run: EvaluationRun) -> list[str]:
    """Every reason the run failed: those of the rows, then any others the server gave."""
    shown = [message for row in rows(run) for message in row.problems]
    if run.summary is not None and run.summary.verdict == "failed" and not shown:
        return list(run.summary.failures)
    return shown


# Markdown --------------------------------------------------------------------------------------


def markdown(run: EvaluationRun) -> str:
    """A summary for a CI job's page (`$GITHUB_STEP_SUMMARY`) or a merge request comment."""
    if run.status != "completed":
        icon, verdict = "⚠️", run.status
    else:
        icon, verdict = ("✅", "passed") if run.passed else ("❌", "failed")
    control = run.summary.control if run.summary else None
    about = [f"run `{run.id}`", f"dataset `{run.dataset}@{run.dataset_version}`"]
    if run.name:
        about.insert(0, f"**{_md(run.name)}**")
    if control:
        about.append(f"control `{control}`")
    lines = [f"### {icon} promptloop evaluation {verdict}", "", " · ".join(about), ""]
    if run.error:
        lines += [f"> {_md(run.error)}", ""]
    found = rows(run)
    if found:
        lines.append("| " + " | ".join(HEADERS) + " |")
        lines.append("|" + "---|" * len(HEADERS))
        for row in found:
            cells = [_md(c) for c in _cells(row)]
            cells[0] = f"`{cells[0]}`"
            if row.result.regressed:
                cells[6] = f"❌ {cells[6]}"
            if row.result.passed_threshold is False:
                cells[7] = f"❌ {cells[7]}"
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", *_totals(run), ""]
    failures = _failures(run)
    if failures:
        lines += ["**Failures**", "", *(f"- {_md(f)}" for f in failures), ""]
    return "\n".join(lines)


def _totals(run: EvaluationRun) -> list[str]:
    """What each candidate's calls cost and took."""
    if run.summary is None or not run.summary.candidates:
        return []
    lines = [
        "| Candidate | Logs | Failed calls | Cost | Latency p50 / p95 | Tokens in / out |",
        "|---|---|---|---|---|---|",
    ]
    for totals in run.summary.candidates:
        cost = "-" if totals.cost is None else f"${totals.cost:.4f}"
        p50, p95 = (totals.latency_ms.get(q) for q in ("p50", "p95"))
        latency = f"{_number(p50)} / {_number(p95)} ms"
        lines.append(
            f"| `{_md(totals.label)}` | {totals.logs} | {totals.errors} | {cost} | {latency} "
            f"| {totals.prompt_tokens} / {totals.output_tokens} |"
        )
    return lines


def _md(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


# JUnit XML -------------------------------------------------------------------------------------


def junit(run: EvaluationRun) -> str:
    """One test suite, one test case per candidate and evaluator: a regression or a missed
    threshold is a `<failure>`; a run that did not complete is one test case in `<error>`.
    Numbers go in each case's properties, as pytest's `record_property` writes them."""
    found = rows(run)
    failures = sum(1 for r in found if r.problems)
    errors = 0 if run.status == "completed" else 1
    tests = len(found) + errors
    elapsed = (
        f"{(run.finished_at - run.created_at).total_seconds():.3f}" if run.finished_at else "0"
    )
    counts = {
        "tests": str(tests),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": "0",
        "time": elapsed,
    }
    suites = ET.Element("testsuites", {"name": "promptloop", **counts})
    suite = ET.SubElement(
        suites,
        "testsuite",
        {"name": SUITE, **counts, "timestamp": run.created_at.isoformat(timespec="seconds")},
    )
    _properties(
        suite,
        run=run.id,
        name=run.name,
        status=run.status,
        dataset=f"{run.dataset}@{run.dataset_version}",
        control=run.summary.control if run.summary else None,
        verdict=run.summary.verdict if run.summary else None,
    )
    for row in found:
        result = row.result
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": result.candidate, "name": result.evaluator, "time": "0"},
        )
        comparison = result.comparison
        _properties(
            case,
            mean=result.mean.value,
            low=result.mean.low,
            high=result.mean.high,
            n=result.n,
            errors=result.errors,
            pending=result.pending,
            threshold=result.threshold,
            wins=comparison.wins if comparison else None,
            losses=comparison.losses if comparison else None,
            ties=comparison.ties if comparison else None,
            mean_difference=comparison.mean_difference.value if comparison else None,
            p_value=comparison.p_value if comparison else None,
            verdict=row.verdict or None,
        )
        if row.problems:
            kind = "regression" if result.regressed else "threshold"
            failure = ET.SubElement(
                case, "failure", {"message": "; ".join(row.problems), "type": kind}
            )
            failure.text = "\n".join(row.problems)
        ET.SubElement(case, "system-out").text = f"mean {row.mean} over {row.count}" + (
            f"; vs control {row.versus}, difference {row.difference}" if row.versus else ""
        )
    if errors:
        case = ET.SubElement(suite, "testcase", {"classname": SUITE, "name": "run", "time": "0"})
        message = f"The evaluation run {run.status}" + (f": {run.error}" if run.error else ".")
        ET.SubElement(case, "error", {"message": message, "type": run.status}).text = message
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")


def _properties(parent: ET.Element, **values: Any) -> None:
    shown = {k: v for k, v in values.items() if v is not None}
    if shown:
        properties = ET.SubElement(parent, "properties")
        for key, value in shown.items():
            ET.SubElement(properties, "property", {"name": key, "value": str(value)})


# Numbers ---------------------------------------------------------------------------------------


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _interval(interval: Interval) -> str:
    if interval.value is None:
        return "-"
    if interval.low is None or interval.high is None:
        return _number(interval.value)
    return f"{_number(interval.value)} [{_number(interval.low)}, {_number(interval.high)}]"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
