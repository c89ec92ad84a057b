"""Datapoints: their content identity, and the files they travel in (CSV and JSON Lines).

A datapoint's `key` is a hash of its content (inputs, messages, target), so the same example
keeps its key across versions; a dataset version is identified by the hash of its ordered
content, so saving the same content twice finds the same version. Provenance (where a
datapoint came from) is kept beside the content, outside both hashes, as a prompt version's
commit message is kept outside its kernel.

Parsing is all-or-nothing: every problem is collected with its line number, and one bad line
refuses the whole file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from promptloop.core.errors import InvalidInput
from promptloop.core.kernel import VERSION_ID_LENGTH, reject_nul

MAX_DATAPOINTS = 100_000
MAX_PROBLEMS = 20  # problems listed in an error's details; the message counts them all
KEY_LENGTH = 16
SOURCES = ("upload", "log", "correction")  # where one datapoint came from
FORMATS = ("csv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}
_FORMAT_NAMES = {"csv": "csv", "jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl"}
_INPUT_PREFIX = "inputs."
_STRUCTURED_KEYS = frozenset({"inputs", "messages", "target", "source", "log_id"})
_MAX_LOG_ID = 36


@dataclass(frozen=True)
class DatapointSpec:
    """One datapoint's content (inputs, chat messages, target) and its provenance."""

    inputs: dict[str, Any]
    messages: list[dict[str, Any]] | None = None
    target: Any = None
    source: str = "upload"
    log_uid: str | None = None

    def content(self) -> dict[str, Any]:
        """What identifies the datapoint: the part its key and the version hash cover."""
        return {"inputs": self.inputs, "messages": self.messages or None, "target": self.target}

    @property
    def key(self) -> str:
        """The first 16 hex digits of the SHA-256 of the content's canonical JSON."""
        return hashlib.sha256(canonical_json(self.content()).encode()).hexdigest()[:KEY_LENGTH]


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, integral floats written as integers (databases disagree on
    whether `1.0` comes back as `1.0` or `1`, and the hash must not)."""
    return json.dumps(_normalized(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(datapoints: Sequence[DatapointSpec]) -> str:
    """SHA-256 (hex) of the canonical JSON of the ordered list of the datapoints' content."""
    return hashlib.sha256(canonical_json([d.content() for d in datapoints]).encode()).hexdigest()


def version_id(digest: str) -> str:
    """The version id: the first 12 hex digits of the content hash, as for prompt versions."""
    return digest[:VERSION_ID_LENGTH]


def _normalized(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def check_value(value: Any) -> Any:
    """Return `value` unchanged, or raise ValueError if it holds a NUL character or a number
    that is not finite (neither JSON nor the database can store those)."""
    reject_nul(value)
    _check_finite(value)
    return value


def _check_finite(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    if isinstance(value, dict):
        for item in value.values():
            _check_finite(item)
    elif isinstance(value, list):
        for item in value:
            _check_finite(item)


def check_messages(messages: Any) -> list[dict[str, Any]] | None:
    """Chat messages as a datapoint holds them (an empty list is none), or ValueError."""
    if messages is None:
        return None
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages
    ):
        raise ValueError("'messages' must be a list of chat messages, each an object with a 'role'")
    return messages or None


# Reading files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


class _Refused(Exception):
    """A problem that stops parsing (the rest of the file cannot be read reliably)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def file_format(filename: str | None, declared: str | None) -> str:
    """`csv` or `jsonl`: the declared format, else the filename's extension."""
    if declared:
        found = _FORMAT_NAMES.get(declared.strip().lower())
        if found is None:
            raise InvalidInput(f"Unknown file format {declared!r}: use csv or jsonl.")
        return found
    extension = "." + filename.rsplit(".", 1)[-1].lower() if filename and "." in filename else ""
    found = _EXTENSIONS.get(extension)
    if found is None:
        raise InvalidInput(
            f"Cannot tell the format of {filename or 'the file'!r}: name it .csv or .jsonl, or "
            "send the form field format=csv or format=jsonl."
        )
    return found


def parse_file(data: bytes, *, fmt: str) -> list[DatapointSpec]:
    """The datapoints of a CSV or JSONL file, or InvalidInput naming the first bad line and
    listing up to 20 problems as details `[{line, reason}]`."""
    problems: list[Problem] = []
    datapoints: list[DatapointSpec] = []
    try:
        text = _decoded(data)
        for line, parsed in _csv_rows(text) if fmt == "csv" else _jsonl_rows(text):
            if isinstance(parsed, str):
                problems.append(Problem(line, parsed))
            elif len(datapoints) == MAX_DATAPOINTS:
                raise _Refused(
                    Problem(line, f"more than {MAX_DATAPOINTS:,} datapoints: split the file")
                )
            else:
                datapoints.append(parsed)
    except _Refused as refused:
        problems.append(refused.problem)
    if problems:
        raise _upload_error(problems)
    return datapoints


def _upload_error(problems: Sequence[Problem]) -> InvalidInput:
    first = min(problems, key=lambda p: p.line)
    ordered = sorted(problems, key=lambda p: p.line)
    more = (
        f" ({len(problems)} problems in all; details list the first)" if len(problems) > 1 else ""
    )
    return InvalidInput(
        f"Line {first.line}: {first.reason}{more}. Nothing was stored: fix the file and upload "
        "it again.",
        details=[{"line": p.line, "reason": p.reason} for p in ordered[:MAX_PROBLEMS]],
    )


def _decoded(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark, as spreadsheets write, is dropped
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _Refused(
            Problem(line, f"not UTF-8 text (byte 0x{data[exc.start]:02x}): save the file as UTF-8")
        ) from None
    if not text.strip():
        raise _Refused(Problem(1, "the file is empty"))
    return text


def _jsonl_rows(text: str) -> Iterable[tuple[int, DatapointSpec | str]]:
    # Split on newlines only: str.splitlines would also split on U+2028, valid inside JSON text.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            value = json.loads(line, parse_constant=_no_constant)
        except (json.JSONDecodeError, ValueError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            column = f" (column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            yield number, f"not valid JSON: {reason}{column}"
            continue
        except RecursionError:
            yield number, "not valid JSON: nested too deeply"
            continue
        if not isinstance(value, dict):
            hint = " (upload one JSON object per line)" if isinstance(value, list) else ""
            yield number, f"not a JSON object but {_json_type(value)}{hint}"
            continue
        yield number, _from_object(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _from_object(value: dict[str, Any]) -> DatapointSpec | str:
    """A JSONL line's datapoint: `{inputs, messages?, target?, source?, log_id?}`, or flat, where
    every key but `messages` and `target` is an input. A string says what is wrong."""
    try:
        check_value(value)
        if "inputs" in value:
            unknown = sorted(set(value) - _STRUCTURED_KEYS)
            if unknown:
                raise ValueError(
                    f"unknown keys {', '.join(map(repr, unknown))}: a line with 'inputs' may hold "
                    "only inputs, messages, target, source and log_id"
                )
            inputs = value["inputs"] if value["inputs"] is not None else {}
            if not isinstance(inputs, dict):
                raise ValueError(f"'inputs' must be an object, not {_json_type(inputs)}")
            source = value.get("source") or "upload"
            if source not in SOURCES:
                raise ValueError(f"'source' must be one of {', '.join(SOURCES)}, not {source!r}")
            log_id = value.get("log_id")
            if log_id is not None and (not isinstance(log_id, str) or len(log_id) > _MAX_LOG_ID):
                raise ValueError(f"'log_id' must be text of at most {_MAX_LOG_ID} characters")
            return DatapointSpec(
                inputs=inputs,
                messages=check_messages(value.get("messages")),
                target=value.get("target"),
                source=source,
                log_uid=log_id,
            )
        inputs = {k: v for k, v in value.items() if k not in ("messages", "target")}
        return DatapointSpec(
            inputs=inputs,
            messages=check_messages(value.get("messages")),
            target=value.get("target"),
        )
    except ValueError as exc:
        return str(exc)


def _csv_rows(text: str) -> Iterable[tuple[int, DatapointSpec | str]]:
    # Long targets are normal; the request body limit bounds a field's size already.
    csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    columns: list[tuple[str, str]] = []
    header_line = start = 1
    rows = 0
    try:
        for row in reader:
            line, start = start, reader.line_num + 1  # a quoted cell may span lines
            if not row or row == [""]:
                continue
            if header is None:
                header, header_line, columns = row, line, _columns(row, line)
                continue
            rows += 1
            if len(row) != len(header):
                yield line, f"{len(row)} fields where the header has {len(header)}"
            else:
                yield line, _from_row(row, columns)
    except csv.Error as exc:
        raise _Refused(Problem(reader.line_num, f"not readable as CSV: {exc}")) from None
    if not rows:
        raise _Refused(Problem(header_line + 1, "the file has a header row but no rows"))


def _columns(header: list[str], line: int) -> list[tuple[str, str]]:
    """What each header column holds: ("input", its name), ("messages", "") or ("target", "")."""
    columns: list[tuple[str, str]] = []
    for number, name in enumerate(header, start=1):
        column = (name, "") if name in ("messages", "target") else ("input", name)
        if column[0] == "input":
            column = ("input", name.removeprefix(_INPUT_PREFIX))
            if not column[1]:
                raise _Refused(Problem(line, f"header column {number} has no name"))
        if column in columns:
            raise _Refused(Problem(line, f"header column {number} ({name!r}) repeats a column"))
        columns.append(column)
    try:
        reject_nul(header)
    except ValueError as exc:
        raise _Refused(Problem(line, str(exc))) from None
    return columns


def _from_row(row: list[str], columns: list[tuple[str, str]]) -> DatapointSpec | str:
    inputs: dict[str, Any] = {}
    messages: list[dict[str, Any]] | None = None
    target: str | None = None
    try:
        reject_nul(row)
        for (kind, name), cell in zip(columns, row, strict=True):
            if kind == "input":
                inputs[name] = cell
            elif kind == "target":
                target = cell or None  # an empty cell is no target
            elif cell:
                try:
                    decoded = json.loads(cell, parse_constant=_no_constant)
                except (ValueError, RecursionError):
                    raise ValueError("the 'messages' cell is not valid JSON") from None
                messages = check_messages(decoded)
                check_value(messages)
    except ValueError as exc:
        return str(exc)
    return DatapointSpec(inputs=inputs, messages=messages, target=target)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# Writing files -------------------------------------------------------------------------------


def to_jsonl(datapoints: Iterable[DatapointSpec]) -> str:
    """One JSON object a line: `{inputs, messages, target, source, log_id}`."""
    return "".join(
        json.dumps(
            {
                "inputs": d.inputs,
                "messages": d.messages,
                "target": d.target,
                "source": d.source,
                "log_id": d.log_uid,
            },
            ensure_ascii=False,
        )
        + "\n"
        for d in datapoints
    )


def to_csv(datapoints: Sequence[DatapointSpec]) -> str:
    """Columns `inputs.<name>` (every input any datapoint has), `messages` (JSON) and `target`.

    Text is written as it is and other values as JSON; an upload reads every cell back as text,
    so a dataset of text inputs and targets (any CSV upload) round-trips to the same version.
    """
    names = list(dict.fromkeys(name for d in datapoints for name in d.inputs))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*(f"{_INPUT_PREFIX}{n}" for n in names), "messages", "target"])
    for d in datapoints:
        writer.writerow(
            [
                *(_cell(d.inputs[n]) if n in d.inputs else "" for n in names),
                json.dumps(d.messages, ensure_ascii=False) if d.messages else "",
                _cell(d.target),
            ]
        )
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
