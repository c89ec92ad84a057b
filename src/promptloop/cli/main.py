"""`promptloop`: run the server, and keep prompts in git in sync with it.

Every command that prints data accepts `--json`. Errors print one line to stderr and exit 1.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, is_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer
from pydantic import BaseModel

from promptloop.cli import files, gate
from promptloop.core import promptfile
from promptloop.core.errors import PromptloopError as DomainError
from promptloop.sdk import APIConnectionError, APITimeoutError, Client, EvaluationRun
from promptloop.sdk import PromptloopError as SDKError

app = typer.Typer(
    name="promptloop",
    help="promptloop: prompt management, evaluation and logging for LLM applications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
EnvOption = Annotated[str | None, typer.Option("--env", help="Environment, e.g. production.")]


class Category(StrEnum):
    vote = "vote"
    action = "action"
    correction = "correction"
    comment = "comment"


class ValueType(StrEnum):
    boolean = "boolean"
    number = "number"
    choice = "choice"
    text = "text"


class Grouping(StrEnum):
    version = "version"
    environment = "environment"


class FileFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


class _State:
    url: str | None = None
    project: str | None = None
    api_key: str | None = None


_state = _State()
keys_app = typer.Typer(
    help="API keys, created directly in the server's database.", no_args_is_help=True
)
users_app = typer.Typer(
    help="Users, managed directly in the server's database.", no_args_is_help=True
)
feedback_app = typer.Typer(
    help="Feedback on logs: give it, read it, declare its kinds, see its rates.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(feedback_app, name="feedback")
datasets_app = typer.Typer(
    help="Datasets: upload, list and download their versions.", no_args_is_help=True
)
evaluators_app = typer.Typer(help="Evaluators: save and list them.", no_args_is_help=True)
eval_app = typer.Typer(
    help="Evaluation runs: a CI gate for prompt versions, and the runs' results.",
    no_args_is_help=True,
)
app.add_typer(datasets_app, name="datasets")
app.add_typer(evaluators_app, name="evaluators")
app.add_typer(eval_app, name="eval")
fine_tunes_app = typer.Typer(
    help="Fine-tuning: train a smaller model on a dataset, follow the job, export the set.",
    no_args_is_help=True,
)
app.add_typer(fine_tunes_app, name="fine-tunes")
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The server's data folder [default: PROMPTLOOP_DATA_DIR or ~/.promptloop].",
    ),
]


@app.callback()
def _global(
    url: Annotated[
        str | None,
        typer.Option(envvar="PROMPTLOOP_URL", help="Server URL [default: http://127.0.0.1:8000]."),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(envvar="PROMPTLOOP_PROJECT", help="Project [default: the server's]."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="PROMPTLOOP_API_KEY", help="API key (create one with `promptloop keys create`)."
        ),
    ] = None,
) -> None:
    _state.url, _state.project, _state.api_key = url, project, api_key


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000].")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Data folder [default: PROMPTLOOP_DATA_DIR or ~/.promptloop]."
        ),
    ] = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Run background jobs (evaluation runs) in this process [default: on].",
        ),
    ] = True,
    demo: Annotated[
        bool | None,
        typer.Option(
            "--demo/--no-demo",
            help="Seed the `demo` project on a fresh server (docs/demo.md) [default: "
            "PROMPTLOOP_DEMO, off; scripts/run turns it on].",
        ),
    ] = None,
) -> None:
    """Run the server: API on /api/v1, database migrated on start."""
    import uvicorn

    from promptloop.api.app import create_app
    from promptloop.settings import Settings

    overrides: dict[str, Any] = {"host": host, "port": port, "data_dir": data_dir, "demo": demo}
    if not worker:
        overrides["worker"] = False
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    where = (
        settings.database_url and "the configured database"
    ) or settings.data_dir / "promptloop.db"
    typer.echo(
        f"promptloop serving on http://{settings.host}:{settings.port} (data: {where})", err=True
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


@app.command("worker")
def worker_command(data_dir: DataDirOption = None) -> None:
    """Run background jobs (evaluation runs) against the configured database, beside servers
    started with --no-worker or on other machines."""
    import asyncio
    import logging

    from promptloop.runtime import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run_worker(_settings(data_dir)))


@app.command()
def push(
    target: Annotated[Path, typer.Argument(help="A .prompt file or a folder of them.")],
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Why: the commit message.")
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(help="Folder that prompt paths are relative to [default: the folder given]."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Save a version for each prompt file; unchanged files create nothing."""
    with _client() as client:
        results = files.push(client, target, root=root, message=message)
    _emit(
        results,
        as_json,
        lambda r: f"{'created  ' if r.created else 'unchanged'}  {r.version}  {r.path}",
    )


@app.command()
def pull(
    folder: Annotated[Path, typer.Argument(help="Folder to write .prompt files into.")],
    env: EnvOption = None,
    prefix: Annotated[str | None, typer.Option(help="Only prompts under this folder.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Write the deployed (with --env) or latest version of each prompt as a .prompt file."""
    with _client() as client:
        results = files.pull(client, folder, environment=env, prefix=prefix)
    _emit(
        results,
        as_json,
        lambda r: f"{'wrote    ' if r.written else 'unchanged'}  {r.version}  {r.file}",
    )


@app.command()
def deploy(
    prompt_path: Annotated[str, typer.Argument(help="Prompt path, e.g. support/answer.")],
    version_id: Annotated[str, typer.Argument(help="Version id (or a unique prefix).")],
    env: Annotated[str, typer.Option("--env", help="Environment to deploy to.")],
    message: Annotated[str | None, typer.Option("--message", "-m", help="Why.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Make an environment serve a version."""
    with _client() as client:
        event = client.prompts.deploy(prompt_path, version_id, environment=env, message=message)
    _emit([event], as_json, lambda e: f"{e.environment} now serves {e.version_id} of {prompt_path}")


@app.command()
def rollback(
    prompt_path: Annotated[str, typer.Argument(help="Prompt path.")],
    env: Annotated[str, typer.Option("--env", help="Environment to roll back.")],
    message: Annotated[str | None, typer.Option("--message", "-m", help="Why.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Undo the latest deploy to an environment (repeat to go further back)."""
    with _client() as client:
        event = client.prompts.rollback(prompt_path, environment=env, message=message)
    _emit(
        [event],
        as_json,
        lambda e: f"{e.environment} rolled back to {e.version_id} of {prompt_path}",
    )


@app.command()
def show(
    prompt_path: Annotated[str, typer.Argument(help="Prompt path.")],
    env: EnvOption = None,
    version: Annotated[str | None, typer.Option("--version", help="Version id.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print a version as a .prompt file: by environment, by id, or the latest."""
    with _client() as client:
        found = client.prompts.get(prompt_path, environment=env, version=version)
    if as_json:
        _print_json(found)
        return
    served = f", serving {', '.join(found.environments)}" if found.environments else ""
    typer.echo(
        f"# {found.prompt_path} @ {found.id} by {found.author}, {found.created_at:%Y-%m-%d %H:%M}{served}"
    )
    if found.message:
        typer.echo(f"# {found.message}")
    typer.echo(promptfile.dump(files.kernel_of(found), name=found.name), nl=False)


@app.command()
def versions(
    prompt_path: Annotated[str, typer.Argument(help="Prompt path.")],
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List a prompt's versions, newest first."""
    with _client() as client:
        found = [
            v for _, v in zip(range(limit), client.prompts.versions(prompt_path), strict=False)
        ]
    _emit(
        found,
        as_json,
        lambda v: (
            f"{v.id}  {v.created_at:%Y-%m-%d %H:%M}  {v.author:<12} "
            f"{','.join(v.environments) or '-':<24} {v.message or ''}"
        ),
    )


@app.command()
def diff(
    prompt_path: Annotated[str, typer.Argument(help="Prompt path.")],
    before: Annotated[str, typer.Argument(help="Older version id.")],
    after: Annotated[str, typer.Argument(help="Newer version id.")],
    as_json: JsonOption = False,
) -> None:
    """Show what changed between two versions."""
    with _client() as client:
        result = client.prompts.diff(prompt_path, before, after)
    if as_json:
        _print_json(result)
        return
    typer.echo(result.template or "(templates identical)", nl=not result.template)
    for change in result.changes:
        typer.echo(f"{change.field}: {json.dumps(change.before)} -> {json.dumps(change.after)}")


@app.command()
def call(
    prompt_path: Annotated[str, typer.Argument(help="Prompt path.")],
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="A template variable, name=value (repeatable)."),
    ] = None,
    env: EnvOption = None,
    version: Annotated[str | None, typer.Option("--version", help="Version id.")] = None,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the output as it arrives.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Call a prompt (what --env serves, default production; or --version) and print the output."""
    values = _pairs(inputs or [])
    with _client(timeout=600) as client:  # a model may take minutes to answer
        if stream and not as_json:
            answer = client.prompts.stream(prompt_path, values, environment=env, version=version)
            for text in answer:
                typer.echo(text, nl=False)
            typer.echo()
            result = answer.result
        else:
            result = client.prompts.call(prompt_path, values, environment=env, version=version)
    if as_json:
        _print_json(result)
    elif not stream:
        typer.echo(result.output)
    if not as_json:
        cost = "unknown" if result.cost is None else f"${result.cost:.6f}"
        typer.echo(
            f"# log {result.log_id} · {result.usage.prompt_tokens}+{result.usage.output_tokens} tokens"
            f" · {cost} · {result.latency_ms:.0f} ms",
            err=True,
        )


@app.command()
def logs(
    prompt: Annotated[str | None, typer.Option(help="Only logs of this prompt.")] = None,
    env: EnvOption = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only failed calls.")] = False,
    feedback: Annotated[
        list[str] | None,
        typer.Option(
            "--feedback",
            help="up, down, any, none or a feedback kind (copied, correction…); repeatable.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List recent logs, newest first."""
    with _client() as client:
        found = list(
            itertools.islice(
                client.logs.list(
                    prompt=prompt,
                    environment=env,
                    error=True if errors else None,
                    feedback=feedback or None,
                ),
                limit,
            )
        )
    _emit(
        found,
        as_json,
        lambda log: (
            f"{log.created_at:%Y-%m-%d %H:%M:%S}  {log.id}  {log.source:<10} "
            f"{(log.prompt or log.model or '-'):<24} {'ERROR ' + (log.error or '') if log.error else (log.output or '')[:60]!r}"
        ),
    )


@feedback_app.command("give")
def feedback_give(
    log_id: Annotated[str, typer.Argument(help="The log's id.")],
    kind: Annotated[str, typer.Argument(help="A feedback kind: rating, copied, correction…")],
    value: Annotated[
        str | None,
        typer.Argument(
            help="up/down, a number, a choice or text; @file reads a file, - reads stdin."
        ),
    ] = None,
    delay: Annotated[
        float | None, typer.Option("--delay", help="Actions: seconds after the output.")
    ] = None,
    end_user: Annotated[
        str | None, typer.Option("--end-user", help="The end user who gave it (else: you).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Give feedback on a log, e.g. `feedback give LOG rating down` or
    `feedback give LOG correction @fixed.txt`."""
    with _client() as client:
        kinds = {k.name: k for k in client.feedback.kinds()}
        declared = kinds.get(kind)
        typed = _feedback_value(value, declared.type if declared else None)
        given = client.feedback.give(log_id, kind, typed, delay_s=delay, end_user=end_user)
    if as_json:
        _print_json(given)
    else:
        extra = f" · similarity {given.similarity:.2f}" if given.similarity is not None else ""
        typer.echo(f"recorded {given.name} on {log_id}{extra}")


@feedback_app.command("list")
def feedback_list(
    log_id: Annotated[str, typer.Argument(help="The log's id.")], as_json: JsonOption = False
) -> None:
    """All feedback on a log, oldest first (superseded entries marked)."""
    with _client() as client:
        found = client.feedback.list(log_id)
    _emit(
        found,
        as_json,
        lambda f: (
            f"{f.created_at:%Y-%m-%d %H:%M:%S}  {f.name:<12} {_short(f.value)!s:<30} "
            f"{f.end_user or f.reviewer or f.recorded_by}{'' if f.current else '  (superseded)'}"
        ),
    )


@feedback_app.command("kinds")
def feedback_kinds(as_json: JsonOption = False) -> None:
    """The kinds of feedback the project collects."""
    with _client() as client:
        found = client.feedback.kinds()
    _emit(
        found,
        as_json,
        lambda k: f"{k.name:<14} {k.category:<10} {k.type:<8} {k.description or ''}",
    )


@feedback_app.command("declare")
def feedback_declare(
    name: Annotated[str, typer.Argument(help="Lowercase name, e.g. stars.")],
    category: Annotated[Category, typer.Option(help="What kind of feedback it is.")],
    type_: Annotated[ValueType | None, typer.Option("--type", help="What its values are.")] = None,
    minimum: Annotated[float | None, typer.Option("--min", help="Scale minimum.")] = None,
    maximum: Annotated[float | None, typer.Option("--max", help="Scale maximum.")] = None,
    choices: Annotated[
        list[str] | None, typer.Option("--choice", help="An allowed choice (repeatable).")
    ] = None,
    lower_is_better: Annotated[
        bool, typer.Option("--lower-is-better", help="Down (or a lower value) is good.")
    ] = False,
    description: Annotated[str | None, typer.Option(help="What it means.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Declare a kind of feedback, e.g. `feedback declare stars --category vote --min 1 --max 5`."""
    with _client() as client:
        kind = client.feedback.declare(
            name,
            category.value,
            type=type_.value if type_ else None,
            choices=choices or None,
            minimum=minimum,
            maximum=maximum,
            higher_is_better=not lower_is_better,
            description=description,
        )
    if as_json:
        _print_json(kind)
    else:
        typer.echo(f"declared {kind.name} ({kind.category}, {kind.type})")


@feedback_app.command("stats")
def feedback_stats(
    prompt: Annotated[str | None, typer.Option(help="Only logs of this prompt.")] = None,
    env: EnvOption = None,
    by: Annotated[
        Grouping, typer.Option(help="Group by version or environment.")
    ] = Grouping.version,
    as_json: JsonOption = False,
) -> None:
    """Feedback rates per version (or environment), with counts and 95% intervals."""
    with _client() as client:
        groups = client.feedback.stats(by=by.value, prompt=prompt, environment=env)
    if as_json:
        _print_json(groups)
        return
    for group in groups:
        where = group.version if by is Grouping.version else group.environment
        typer.echo(f"{group.prompt or '(no prompt)'} @ {where or '-'}: {group.logs} logs")
        for k in group.kinds:
            line = f"  {k.name:<12} {k.logs:>6} logs  {_percent(k.rate)}"
            if k.up_share is not None:
                line += f"  up {k.up}/{k.up + k.down} = {_percent(k.up_share)}"
            if k.mean_similarity is not None:
                line += f"  similarity {k.mean_similarity:.2f}"
            typer.echo(line)


@feedback_app.command("token")
def feedback_token(
    log_id: Annotated[str, typer.Argument(help="The log's id.")], as_json: JsonOption = False
) -> None:
    """A token a browser can use to give feedback on this log alone, until it expires."""
    with _client() as client:
        issued = client.feedback.token(log_id)
    if as_json:
        _print_json(issued)
    else:
        typer.echo(issued.token)


@datasets_app.command("upload")
def datasets_upload(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. support/questions.")],
    file: Annotated[Path, typer.Argument(help="A CSV (header row) or JSON-lines file.")],
    format_: Annotated[
        FileFormat | None,
        typer.Option("--format", help="The file's format [default: from its extension]."),
    ] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Why.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Save a dataset version from a file: all of it, or nothing (problems listed by line)."""
    with _client(timeout=300) as client:
        saved = client.datasets.upload(
            name, file, format=format_.value if format_ else None, message=message
        )
    _emit(
        [saved],
        as_json,
        lambda v: (
            f"{'created  ' if v.created else 'unchanged'}  {v.id}  {v.dataset} "
            f"({v.count} datapoints)"
        ),
    )


class Target(StrEnum):
    output = "output"
    correction = "correction"
    corrected = "corrected"
    none = "none"


@datasets_app.command("from-logs")
def datasets_from_logs(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. orders/tuning.")],
    prompt: Annotated[str | None, typer.Option(help="Only logs of this prompt.")] = None,
    version: Annotated[str | None, typer.Option(help="...of this version of it.")] = None,
    env: EnvOption = None,
    source: Annotated[str | None, typer.Option(help="sdk, api, gateway, eval, playground.")] = None,
    feedback: Annotated[
        list[str] | None,
        typer.Option(help="Repeatable; all must hold: up, down, any, none or a kind's name."),
    ] = None,
    judgment: Annotated[
        list[str] | None,
        typer.Option(help="Repeatable; all must hold: an evaluator's judgment, e.g. helpful>=4."),
    ] = None,
    errors: Annotated[
        bool,
        typer.Option(
            "--errors/--no-errors",
            help="Match failed calls too: they are still left out, and counted as skipped.",
        ),
    ] = False,
    target: Annotated[
        Target, typer.Option(help="output, correction, corrected (fine-tuning) or none.")
    ] = Target.output,
    limit: Annotated[int, typer.Option(help="Most datapoints.")] = 1000,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Why.")] = None,
    preview: Annotated[
        bool,
        typer.Option("--preview", "--dry-run", help="Show the count and a sample; save nothing."),
    ] = False,
    sample: Annotated[int, typer.Option(help="Datapoints the preview shows.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Save a dataset version from the logs matching filters (e.g. voted up, or judged
    helpful>=4), each datapoint keeping the id of its log; --preview shows it first."""
    filters: dict[str, Any] = {
        "prompt": prompt,
        "version": version,
        "environment": env,
        "source": source,
        "feedback": feedback or None,
        "judgment": judgment or None,
        "error": None if errors else False,
    }
    with _client(timeout=300) as client:
        if preview:
            shown = client.datasets.preview(
                name=name, target=target.value, limit=limit, sample=sample, **filters
            )
        else:
            saved = client.datasets.from_logs(
                name, target=target.value, limit=limit, message=message, **filters
            )
    if preview:
        if as_json:
            _print_json(shown)
            return
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(shown.skipped_reasons.items()))
        exists = " (this version exists already)" if shown.exists else ""
        typer.echo(
            f"{shown.count} datapoints from {shown.matched} matching logs"
            + (f"; skipped {skipped}" if skipped else "")
            + f". Version {shown.version or '-'}{exists}; a fine-tune would train on "
            f"{shown.train} and hold out {shown.held_out}."
        )
        for point in shown.sample:
            typer.echo(
                f"  {point.key}  {json.dumps(point.inputs or point.messages)[:60]} -> "
                f"{json.dumps(point.target)[:60]}  ({point.source} {point.log_id})"
            )
        return
    _emit(
        [saved],
        as_json,
        lambda v: (
            f"{'created  ' if v.created else 'unchanged'}  {v.id}  {v.dataset} "
            f"({v.count} datapoints, {v.skipped} logs skipped)"
        ),
    )


@datasets_app.command("list")
def datasets_list(
    prefix: Annotated[str | None, typer.Option(help="Only datasets under this folder.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List datasets with their latest version and size."""
    with _client() as client:
        found = list(client.datasets.list(prefix=prefix))
    _emit(
        found,
        as_json,
        lambda d: f"{d.name:<32} {d.latest_version or '-':<12} {d.count or 0:>7} datapoints",
    )


@datasets_app.command("download")
def datasets_download(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    version: Annotated[str, typer.Option(help="latest, a version id or a prefix.")] = "latest",
    format_: Annotated[
        FileFormat, typer.Option("--format", help="jsonl (with provenance) or csv.")
    ] = FileFormat.jsonl,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here [default: stdout].")
    ] = None,
) -> None:
    """Download a dataset version as a file that `datasets upload` reads back."""
    with _client(timeout=300) as client:
        data = client.datasets.download(name, version, format_.value)
        if output is not None:
            output.write_bytes(data)
    if output is None:
        sys.stdout.write(data.decode())


class Method(StrEnum):
    lora = "lora"
    openai = "openai"


def _tune_line(tune: Any) -> str:
    progress = tune.progress or {}
    step = (
        f"step {progress.get('step')}/{progress.get('total_steps')}"
        if progress.get("total_steps")
        else ""
    )
    loss = f" loss {progress['loss']:.4g}" if progress.get("loss") is not None else ""
    return f"{tune.id}  {tune.name:<20} {tune.method:<6} {tune.status:<9} {step}{loss}  " + (
        tune.model or "-"
    )


@fine_tunes_app.command("start")
def fine_tunes_start(
    name: Annotated[str, typer.Argument(help="The job's name, e.g. orders-small.")],
    dataset: Annotated[str, typer.Option(help="The dataset to learn from.")],
    prompt: Annotated[str, typer.Option(help="The chat prompt that renders each datapoint.")],
    dataset_version: Annotated[
        str | None, typer.Option("--dataset-version", help="Its version [default: latest].")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="The prompt version [default: production's].")
    ] = None,
    method: Annotated[
        Method, typer.Option(help="lora (the local model) or openai (OpenAI's API).")
    ] = Method.lora,
    base_model: Annotated[
        str | None,
        typer.Option(help="local/smollm2-135m, or openai/<model> for --method openai."),
    ] = None,
    hyperparameters: Annotated[
        str | None, typer.Option(help="JSON, e.g. '{\"max_steps\": 60}'.")
    ] = None,
    held_out: Annotated[
        float | None, typer.Option("--held-out", help="Share held out [default: 0.2].")
    ] = None,
    evaluator: Annotated[
        list[str] | None,
        typer.Option(help="Repeatable: evaluate the result on the held-out data with it."),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait until it has finished.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Start a fine-tuning job (developers and admins)."""
    try:
        parsed = json.loads(hyperparameters) if hyperparameters else None
    except ValueError as exc:
        _fail(f"--hyperparameters is not JSON: {exc}.")
    if parsed is not None and not isinstance(parsed, dict):
        _fail("--hyperparameters must be a JSON object, e.g. '{\"max_steps\": 60}'.")
    with _client(timeout=120) as client:
        tune = client.fine_tunes.start(
            name,
            dataset=dataset,
            prompt=prompt,
            dataset_version=dataset_version,
            version=version,
            method=method.value,
            base_model=base_model,
            hyperparameters=parsed,
            held_out_fraction=held_out,
            evaluators=evaluator or (),
        )
        if wait:
            tune = client.fine_tunes.wait(
                tune.id, on_progress=lambda t: typer.echo(_tune_line(t), err=True)
            )
    _emit([tune], as_json, _tune_line)
    if tune.status == "failed":
        raise typer.Exit(1)


@fine_tunes_app.command("list")
def fine_tunes_list(as_json: JsonOption = False) -> None:
    """The project's fine-tuning jobs, newest first, with their progress and model."""
    with _client() as client:
        found = list(client.fine_tunes.list())
    _emit(found, as_json, _tune_line)


@fine_tunes_app.command("show")
def fine_tunes_show(
    tune_id: Annotated[str, typer.Argument(help="The job's id.")],
    wait: Annotated[bool, typer.Option(help="Wait until it has finished.")] = False,
    as_json: JsonOption = False,
) -> None:
    """One job: status, progress (step, loss, elapsed, remaining), and once done its model
    and metrics."""
    with _client() as client:
        tune = (
            client.fine_tunes.wait(
                tune_id, on_progress=lambda t: typer.echo(_tune_line(t), err=True)
            )
            if wait
            else client.fine_tunes.get(tune_id)
        )
    if as_json:
        _print_json(tune)
        return
    typer.echo(_tune_line(tune))
    progress = tune.progress or {}
    if progress.get("elapsed_s") is not None:
        typer.echo(
            f"  elapsed {progress['elapsed_s']} s, remaining {progress.get('remaining_s', '?')} s"
        )
    if tune.metrics:
        typer.echo("  " + ", ".join(f"{k} {v}" for k, v in tune.metrics.items() if v is not None))
    if tune.evaluation:
        typer.echo(f"  evaluation run {tune.evaluation}")
    if tune.error:
        typer.echo(f"  error: {tune.error}")


@fine_tunes_app.command("cancel")
def fine_tunes_cancel(
    tune_id: Annotated[str, typer.Argument(help="The job's id.")], as_json: JsonOption = False
) -> None:
    """Cancel a job (an OpenAI job is cancelled at OpenAI too)."""
    with _client() as client:
        tune = client.fine_tunes.cancel(tune_id)
    _emit([tune], as_json, _tune_line)


@fine_tunes_app.command("export")
def fine_tunes_export(
    dataset: Annotated[str, typer.Option(help="The dataset.")],
    prompt: Annotated[str, typer.Option(help="The chat prompt that renders each datapoint.")],
    dataset_version: Annotated[
        str | None, typer.Option("--dataset-version", help="Its version [default: latest].")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="The prompt version [default: production's].")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here [default: stdout].")
    ] = None,
) -> None:
    """A dataset version as OpenAI chat fine-tuning JSONL (plain JSONL with provenance:
    `datasets download`)."""
    with _client(timeout=300) as client:
        data = client.fine_tunes.export(
            dataset, prompt, dataset_version=dataset_version, version=version
        )
    if output is not None:
        output.write_bytes(data)
    else:
        sys.stdout.write(data.decode())


@evaluators_app.command("save")
def evaluators_save(
    name: Annotated[str, typer.Argument(help="Evaluator name, e.g. exact.")],
    builtin: Annotated[
        str | None, typer.Option(help="A built-in: exact_match, contains, regex, json_schema…")
    ] = None,
    config: Annotated[
        str | None, typer.Option(help='The built-in\'s settings as JSON, e.g. \'{"value": "x"}\'.')
    ] = None,
    code: Annotated[
        Path | None,
        typer.Option(help="A Python file defining `evaluate(log, datapoint)`, run sandboxed."),
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(help="An LLM judge: PROMPT@VERSION, or PROMPT for what production serves."),
    ] = None,
    human: Annotated[bool, typer.Option("--human", help="A person judges.")] = False,
    returns: Annotated[
        ValueType | None, typer.Option(help="What it returns [default: by kind].")
    ] = None,
    choices: Annotated[
        list[str] | None, typer.Option("--choice", help="An allowed choice (repeatable).")
    ] = None,
    lower_is_better: Annotated[
        bool, typer.Option("--lower-is-better", help="Lower values are better (e.g. latency).")
    ] = False,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Why.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Save an evaluator version: give one of --builtin, --code, --judge or --human."""
    if sum(1 for given in (builtin, code, judge, human) if given) != 1:
        _fail("Give exactly one of --builtin, --code, --judge or --human.")
    kind: Literal["builtin", "code", "llm", "human"] = (
        "builtin" if builtin else "code" if code else "llm" if judge else "human"
    )
    try:
        settings = json.loads(config) if config else None
    except json.JSONDecodeError as exc:
        _fail(f"--config is not valid JSON: {exc}.")
    judged_by = None
    if judge:
        prompt, _, version = judge.partition("@")
        where = {"version": version} if version else {"environment": "production"}
        judged_by = {"prompt": prompt, **where}
    with _client() as client:
        saved = client.evaluators.save(
            name,
            kind,
            builtin=builtin,
            config=settings,
            source=code.read_text() if code else None,
            judge=judged_by,
            returns=returns.value if returns else None,
            choices=choices or None,
            higher_is_better=False if lower_is_better else None,
            message=message,
        )
    _emit(
        [saved],
        as_json,
        lambda e: (
            f"{'created  ' if e.created else 'unchanged'}  {e.name}@{e.version}  "
            f"({e.kind}, returns {e.returns})"
        ),
    )


@evaluators_app.command("list")
def evaluators_list(as_json: JsonOption = False) -> None:
    """List evaluators at their latest version."""
    with _client() as client:
        found = client.evaluators.list()
    _emit(
        found,
        as_json,
        lambda e: (
            f"{e.name:<24} {e.version:<12} {e.kind:<8} {e.returns:<8} "
            f"{'higher' if e.higher_is_better else 'lower'} is better"
        ),
    )


@eval_app.command("run")
def eval_run(
    config: Annotated[
        Path | None,
        typer.Argument(help="A YAML file of these options (prompt:, dataset:, evaluators:…)."),
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="The prompt, e.g. support/answer.")] = None,
    candidate: Annotated[
        str | None,
        typer.Option(help="The version to evaluate [default: the prompt's latest]."),
    ] = None,
    control: Annotated[
        str | None,
        typer.Option(help="The version to compare with [default: what production serves]."),
    ] = None,
    control_env: Annotated[
        str | None,
        typer.Option("--control-env", help="Compare with what this environment serves."),
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="The dataset to run on.")] = None,
    dataset_version: Annotated[
        str | None, typer.Option("--dataset-version", help="Its version [default: latest].")
    ] = None,
    evaluators: Annotated[
        list[str] | None,
        typer.Option(
            "--evaluator", "-e", help="NAME or NAME@VERSION (repeatable; replaces the file's)."
        ),
    ] = None,
    thresholds: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold", help="NAME=VALUE: the mean the candidate must reach (repeatable)."
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Model calls at a time [default: 8].")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name for the run.")] = None,
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML report here.")] = None,
    markdown: Annotated[
        Path | None,
        typer.Option(help="Write a Markdown summary here ($GITHUB_STEP_SUMMARY is appended to)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait before cancelling the run [default: 3600]."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate a prompt version on a dataset against a control, as a CI gate. Flags override
    the YAML file. Exits 0 when the run passed, 1 when a candidate regressed or missed a
    threshold, 2 when the run failed, was cancelled or timed out."""
    try:
        chosen = gate.merge(
            gate.load_config(config) if config else None,
            prompt=prompt,
            candidate=candidate,
            control=control,
            control_environment=control_env,
            dataset=dataset,
            dataset_version=dataset_version,
            evaluators=evaluators or [],
            thresholds=gate.parse_thresholds(thresholds or []),
            concurrency=concurrency,
            name=name,
            junit=junit,
            markdown=markdown,
            timeout=timeout,
        )
    except OSError as exc:
        _fail(f"Cannot read {config}: {exc.strerror}.")
    except ValueError as exc:
        _fail(str(exc))
    with _client() as client:
        try:
            run = gate.start(client, chosen)
        except ValueError as exc:
            _fail(str(exc))
        typer.echo(gate.started(run), err=True)
        run = _wait_for_run(client, run, chosen.timeout or 3600.0)
        gate.write_reports(run, junit_path=chosen.junit, markdown_path=chosen.markdown)
    if as_json:
        _print_json(run)
    else:
        typer.echo(gate.text(run), nl=False)
    raise typer.Exit(gate.exit_code(run))


@eval_app.command("show")
def eval_show(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML report here.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write a Markdown summary here.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print a run's status and results; optionally write its reports."""
    with _client() as client:
        run = client.evaluations.get(run_id)
        gate.write_reports(run, junit_path=junit, markdown_path=markdown)
    if as_json:
        _print_json(run)
    else:
        typer.echo(gate.text(run), nl=False)


@eval_app.command("list")
def eval_list(
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List evaluation runs, newest first."""
    with _client() as client:
        found = list(itertools.islice(client.evaluations.list(), limit))
    _emit(
        found,
        as_json,
        lambda r: (
            f"{r.created_at:%Y-%m-%d %H:%M}  {r.id}  {r.status:<10} {r.verdict or '-':<7} "
            f"{r.name or ''}".rstrip()
        ),
    )


@eval_app.command("compare")
def eval_compare(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    evaluator: Annotated[str, typer.Option("--evaluator", "-e", help="The evaluator.")],
    candidate: Annotated[
        str | None, typer.Option(help="A candidate's label [default: the first not control].")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many datapoints.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Per datapoint, a candidate against the control on one evaluator, regressions first."""
    with _client() as client:
        found = client.evaluations.comparison(run_id, evaluator, candidate, limit=limit)
    _emit(
        found,
        as_json,
        lambda r: (
            f"{'-' if r.difference is None else f'{r.difference:+.2f}':>6}  {r.datapoint}  "
            f"control {_short(r.control_output)!r}  candidate {_short(r.candidate_output)!r}"
        ),
    )


def _wait_for_run(client: Client, run: EvaluationRun, timeout: float) -> EvaluationRun:
    """Wait for the run with a progress bar on a terminal (else one line at the end); once
    `timeout` seconds passed, cancel it and report it as timed out."""
    live = sys.stderr.isatty()
    latest = run

    def show(current: EvaluationRun) -> None:
        nonlocal latest
        latest = current
        if live:
            sys.stderr.write("\r" + gate.progress(current))
            sys.stderr.flush()

    try:
        run = client.evaluations.wait(run.id, timeout=timeout, on_progress=show)
    except TimeoutError:
        with suppress(SDKError):
            client.evaluations.cancel(run.id)
        error = f"no result after {timeout:g} s, so it was cancelled"
        run = latest.model_copy(update={"status": "timed out", "error": error})
    if live:
        sys.stderr.write("\n")
    else:
        typer.echo(gate.progress(run), err=True)
    return run


@keys_app.command("create")
def keys_create(
    project: Annotated[str, typer.Option("--project", help="Project the key belongs to.")],
    role: Annotated[str, typer.Option("--role", help="viewer, member, developer or admin.")],
    name: Annotated[str, typer.Option("--name", help="What uses the key.")] = "cli",
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key in the database directly (run where the server's data is) and print it."""
    from promptloop.services import local

    with _local_errors():
        created = local.create_api_key(_settings(data_dir), project=project, role=role, name=name)
    if as_json:
        _print_json(
            {
                "key": created.secret,
                "id": created.key.id,
                "project": project,
                "role": created.key.role,
            }
        )
    else:
        typer.echo(created.secret)


@users_app.command("link")
def users_link(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    data_dir: DataDirOption = None,
) -> None:
    """Print a one-time sign-in link for a user (a forgotten password), from the database directly."""
    from promptloop.api import urls
    from promptloop.services import local

    settings = _settings(data_dir)
    with _local_errors():
        token = local.sign_in_link(settings, email=email)
    typer.echo(urls.sign_in_link(settings.base_url(), token))


def main() -> None:
    app()


def _settings(data_dir: Path | None) -> Any:
    from promptloop.settings import Settings

    return Settings(data_dir=data_dir) if data_dir else Settings()


@contextmanager
def _local_errors() -> Iterator[None]:
    try:
        yield
    except DomainError as exc:
        _fail(exc.message)


@contextmanager
def _client(timeout: float = 30.0) -> Iterator[Client]:
    try:
        with Client(
            _state.url, api_key=_state.api_key, project=_state.project, timeout=timeout
        ) as client:
            yield client
    except APITimeoutError:
        _fail(f"the promptloop server did not answer within {timeout:.0f} s.")
    except APIConnectionError as exc:
        _fail(
            f"cannot reach the promptloop server: {exc}. Start it with `promptloop serve`, or set --url."
        )
    except (SDKError, DomainError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc))


def _pairs(items: list[str]) -> dict[str, str]:
    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            _fail(f"--input {item!r} must look like name=value.")
        values[name] = value
    return values


def _feedback_value(value: str | None, type_: str | None) -> Any:
    """The CLI's text argument as the value a kind of this type takes."""
    if value is None:
        return None
    if value == "-":
        value = sys.stdin.read()
    elif value.startswith("@"):
        try:
            value = Path(value[1:]).read_text()
        except OSError as exc:
            _fail(f"Cannot read {value[1:]}: {exc.strerror}.")
    if type_ == "number":
        try:
            number = float(value)
        except ValueError:
            _fail(f"This kind takes a number, not {value!r}.")
        return int(number) if number.is_integer() else number
    return value


def _short(value: Any) -> Any:
    return value[:27] + "…" if isinstance(value, str) and len(value) > 28 else value


def _percent(interval: Any) -> str:
    if interval.value is None:
        return "-"
    return f"{interval.value:.0%} [{interval.low:.0%}, {interval.high:.0%}]"


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


def _emit(items: list[Any], as_json: bool, line: Callable[[Any], str]) -> None:
    if as_json:
        _print_json(items)
    else:
        for item in items:
            typer.echo(line(item))


def _print_json(value: Any) -> None:
    json.dump(_plain(value), sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value
