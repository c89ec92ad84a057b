"""The log filters typed in a URL or a form, read once for every page that takes them: the logs
page (`/p/NAME/logs?...`) and a new dataset from logs (`/p/NAME/datasets/-/new?from=logs&...`).

The same names, the same accepted values and the same messages on both pages. `feedback` and
`judgment` are repeatable (`?judgment=helpful>=4&judgment=exact=true`, or comma-separated in one
field); the others take one value. What each filter means is the services' business: this only
reads the text, reports what cannot be read (by field), and hands the services their arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from promptloop.core.errors import InvalidInput
from promptloop.services import datasets
from promptloop.services.logs import SOURCES
from promptloop.store.logs import JudgmentFilter
from promptloop.store.models import Project
from promptloop.store.types import utc

# The filters, in the order forms show them and links write them.
FILTERS = (
    "prompt",
    "version",
    "environment",
    "source",
    "feedback",
    "judgment",
    "error",
    "end_user",
    "since",
    "until",
    "trace_id",
)
REPEATABLE = frozenset({"feedback", "judgment"})
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

# The messages, one per mistake, whichever page shows them.
SOURCE_MESSAGE = f"Choose one of {', '.join(SOURCES)}."
VERSION_MESSAGE = "Filtering by version needs the prompt too."
ERROR_MESSAGE = "Use true (failed calls only) or false (successful calls only)."
TIME_MESSAGE = "Give a date and time like 2026-11-28T09:30 (UTC unless a zone is given)."
TRACE_MESSAGE = "A dataset is not built from one trace's logs: leave the trace filter out."


class Params(Protocol):
    """Query parameters or submitted form values: several values a name."""

    def getlist(self, key: str) -> list[Any]: ...


@dataclass
class LogFilterForm:
    """The log filters as given (text, kept to show back) and what can be read of them.

    `values` holds each filter's values (empty filters left out); `errors` the message of each
    filter that cannot be read, by filter name. Filters with errors are left out of what the
    services are given, so callers check `errors` first."""

    values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    has_error: bool | None = None  # the `error` filter: failed calls only, or successful only
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def of(cls, params: Params, *, trace: bool = True) -> LogFilterForm:
        """Read the filters; `trace=False` refuses a trace filter (a dataset is not one trace)."""
        values: dict[str, tuple[str, ...]] = {}
        for name in FILTERS:
            given = [str(v).strip() for v in params.getlist(name)]
            if name in REPEATABLE:
                given = [part.strip() for v in given for part in v.split(",")]
            given = [v for v in given if v]
            if given:
                values[name] = tuple(given) if name in REPEATABLE else (given[-1],)
        form = cls(values=values)
        form._read(trace=trace)
        return form

    def _read(self, *, trace: bool) -> None:
        one = self.one
        if one("source") and one("source") not in SOURCES:
            self.errors["source"] = SOURCE_MESSAGE
        if one("version") and not one("prompt"):
            self.errors["version"] = VERSION_MESSAGE
        word = one("error").lower()
        if word in _TRUE:
            self.has_error = True
            self.values["error"] = ("true",)
        elif word in _FALSE:
            self.has_error = False
            self.values["error"] = ("false",)
        elif word:
            self.errors["error"] = ERROR_MESSAGE
        for name in ("since", "until"):
            if one(name):
                try:
                    setattr(self, name, utc(datetime.fromisoformat(one(name))))
                except ValueError:
                    self.errors[name] = TIME_MESSAGE
        for text in self.values.get("judgment", ()):  # the syntax; the services the evaluators
            try:
                JudgmentFilter.parse(text)
            except InvalidInput as exc:
                self.errors.setdefault("judgment", exc.message)
        if not trace and one("trace_id"):
            self.errors["trace_id"] = TRACE_MESSAGE

    def one(self, name: str) -> str:
        """A filter's text: its values comma-separated ("" when not set), as a form field shows it."""
        return ", ".join(self.values.get(name, ()))

    def many(self, name: str) -> tuple[str, ...]:
        return self.values.get(name, ())

    @property
    def text(self) -> dict[str, str]:
        """Every filter's text, "" when not set (for form fields)."""
        return {name: self.one(name) for name in FILTERS}

    @property
    def query(self) -> str:
        """The filters as a URL query: repeatable ones repeated, empty ones left out."""
        return urlencode([(name, v) for name in FILTERS for v in self.values.get(name, ())])

    def list_logs_args(self, session: Session, *, project: Project) -> dict[str, Any]:
        """The keyword arguments of `services.logs.list_logs` (InvalidInput: an unknown evaluator
        in a judgment filter)."""
        return {
            "prompt": self.one("prompt") or None,
            "version": self.one("version") or None,
            "environment": self.one("environment") or None,
            "source": self.one("source") or None,
            "end_user": self.one("end_user") or None,
            "trace_id": self.one("trace_id") or None,
            "has_error": self.has_error,
            "since": self.since,
            "until": self.until,
            "feedback": self.many("feedback"),
            "judgments": datasets.judgment_filters(
                session, project=project, texts=self.many("judgment")
            ),
        }

    def dataset_filters(self) -> datasets.LogFilters:
        """The filters of `services.datasets` (which checks the judgments' evaluators)."""
        return datasets.LogFilters(
            prompt=self.one("prompt") or None,
            version=self.one("version") or None,
            environment=self.one("environment") or None,
            source=self.one("source") or None,
            end_user=self.one("end_user") or None,
            error=self.has_error,
            since=self.since,
            until=self.until,
            feedback=self.many("feedback"),
            judgments=self.many("judgment"),
        )


# Which filter a service's message is about (first match), to show it next to that field.
_FIELD_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prompt", ("no prompt at", "prompt path")),  # before "version": these mention versions
    ("judgment", ("judgment", "evaluator")),
    ("feedback", ("feedback",)),
    ("version", ("version",)),
    ("prompt", ("prompt",)),
)


def field_of(message: str) -> str | None:
    """The filter a service's refusal of the filters is about; None when it names none."""
    lowered = message.lower()
    for name, words in _FIELD_WORDS:
        if any(word in lowered for word in words):
            return name
    return None


class FormValues:
    """Submitted single form values with the `getlist` of query parameters."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values

    def getlist(self, key: str) -> list[str]:
        value = self.values.get(key)
        return [value] if value else []
