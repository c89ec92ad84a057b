"""Syncing `.prompt` files with the server: what `push` and `pull` do, behind the commands."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from promptloop.core import promptfile
from promptloop.core.errors import InvalidInput, NotFound
from promptloop.core.kernel import Kernel
from promptloop.sdk import Client, NotFoundError, PromptVersion


@dataclass(frozen=True)
class PushResult:
    path: str
    version: str
    created: bool
    file: str


@dataclass(frozen=True)
class PullResult:
    path: str
    version: str
    file: str
    written: bool


def prompt_files(target: Path, *, root: Path | None) -> Iterator[tuple[str, Path]]:
    """(prompt path, file) for `target`: one file, or every `.prompt` file below a folder.

    A file's prompt path is its location under `root` (default: the folder given, or the
    current folder for a single file) without the `.prompt` suffix.
    """
    if not target.exists():
        raise NotFound(f"{target} does not exist.")
    if target.is_dir():
        base = (root or target).resolve()
        files = sorted(target.rglob(f"*{promptfile.SUFFIX}"))
        if not files:
            raise InvalidInput(f"No {promptfile.SUFFIX} files under {target}.")
    else:
        if target.suffix != promptfile.SUFFIX:
            raise InvalidInput(f"{target} is not a {promptfile.SUFFIX} file.")
        base = (root or Path.cwd()).resolve()
        files = [target]
    for file in files:
        try:
            relative = file.resolve().relative_to(base)
        except ValueError:
            raise InvalidInput(
                f"{file} is not under {base}; pass --root to set the prompts folder."
            ) from None
        yield relative.with_suffix("").as_posix(), file


def push(
    client: Client, target: Path, *, root: Path | None, message: str | None
) -> list[PushResult]:
    """Save a version for each prompt file; unchanged files resolve to their existing version.

    Every file is parsed before anything is sent, so a bad file stops the push with nothing saved.
    """
    parsed = [
        (path, file, promptfile.parse(file.read_text(encoding="utf-8"), source=str(file)))
        for path, file in prompt_files(target, root=root)
    ]
    results = []
    for path, file, prompt in parsed:
        saved = client.prompts.save(
            path,
            **prompt.kernel.model_dump(mode="json", exclude_none=True),
            name=prompt.name,
            message=message,
            description=prompt.description,
        )
        results.append(
            PushResult(path=path, version=saved.id, created=saved.created, file=str(file))
        )
    return results


def pull(
    client: Client, folder: Path, *, environment: str | None, prefix: str | None
) -> list[PullResult]:
    """Write each prompt's deployed (or, without an environment, latest) version as a file.

    Prompts with nothing deployed in `environment`, or with no versions, are skipped.
    """
    results = []
    for prompt in client.prompts.list(prefix=prefix):
        try:
            version = client.prompts.get(prompt.path, environment=environment)
        except NotFoundError:
            continue
        file = folder / f"{prompt.path}{promptfile.SUFFIX}"
        text = promptfile.dump(
            kernel_of(version), name=version.name, description=prompt.description
        )
        written = not file.exists() or file.read_text(encoding="utf-8") != text
        if written:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text, encoding="utf-8")
        results.append(
            PullResult(path=prompt.path, version=version.id, file=str(file), written=written)
        )
    return results


def kernel_of(version: PromptVersion) -> Kernel:
    """The kernel of a version the SDK returned."""
    return Kernel.model_validate(version.model_dump(include=set(Kernel.model_fields)))
