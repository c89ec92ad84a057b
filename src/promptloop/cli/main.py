"""`promptloop`: run the server, and keep prompts in git in sync with it.

Every command that prints data accepts `--json`. Errors print one line to stderr and exit 1.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel

from promptloop.cli import files
from promptloop.core import promptfile
from promptloop.core.errors import PromptloopError as DomainError
from promptloop.sdk import APIConnectionError, APITimeoutError, Client
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
) -> None:
    """Run the server: API on /api/v1, database migrated on start."""
    import uvicorn

    from promptloop.api.app import create_app
    from promptloop.settings import Settings

    overrides: dict[str, Any] = {"host": host, "port": port, "data_dir": data_dir}
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
