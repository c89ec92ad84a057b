"""Names users choose: prompt paths (`support/answer`) and environment names (`production`)."""

from __future__ import annotations

import re

from promptloop.core.errors import InvalidPath

MAX_PATH_LENGTH = 255
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_ENVIRONMENT = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")


def validate_prompt_path(path: str) -> str:
    """Return `path` if it is a valid prompt path, else raise InvalidPath saying what is wrong.

    A path is `/`-separated segments; each starts with a letter or digit and holds letters,
    digits, `_`, `.` and `-`. So `..`, `.`, empty segments and leading or trailing slashes
    are all refused.

    >>> validate_prompt_path("support/answer")
    'support/answer'
    """
    if not path:
        raise InvalidPath("Prompt path is empty: give a path like 'support/answer'.")
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidPath(
            f"Prompt path is {len(path)} characters long; the limit is {MAX_PATH_LENGTH}."
        )
    for segment in path.split("/"):
        if not segment:
            raise InvalidPath(
                f"Prompt path {path!r} has an empty segment: remove leading, trailing or double slashes."
            )
        if not _SEGMENT.fullmatch(segment):
            raise InvalidPath(
                f"Prompt path segment {segment!r} in {path!r} is not allowed: each segment must start "
                "with a letter or digit and hold only letters, digits, '_', '.' and '-'."
            )
    return path


def validate_environment_name(name: str) -> str:
    """Return `name` if it is a valid environment name (lowercase, digits, `_`, `-`; ≤ 64)."""
    if not _ENVIRONMENT.fullmatch(name):
        raise InvalidPath(
            f"Environment name {name!r} is not allowed: use 1-64 lowercase letters, digits, '_' "
            "or '-', starting with a letter or digit."
        )
    return name


def validate_project_name(name: str) -> str:
    """Return `name` if it is a valid project name (letters, digits, `_`, `-`; ≤ 64)."""
    if not _PROJECT.fullmatch(name):
        raise InvalidPath(
            f"Project name {name!r} is not allowed: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit."
        )
    return name


_KIND = re.compile(r"[a-z][a-z0-9_\-]{0,63}")


def validate_kind_name(name: str) -> str:
    """Return `name` if it is a valid name for a feedback kind or evaluator (lowercase letters,
    digits, `_`, `-`, starting with a letter; ≤ 64)."""
    if not _KIND.fullmatch(name):
        raise InvalidPath(
            f"Name {name!r} is not allowed: use 1-64 lowercase letters, digits, '_' or '-', "
            "starting with a letter."
        )
    return name
