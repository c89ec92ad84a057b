"""The built-in evaluators, registered like any plugin (`register_evaluators`).

Pass/fail evaluators return booleans, similarities return floats in [0, 1] (cosine similarity in
[-1, 1]). A datapoint without a target, a log without output or without the measurement asked
for gives that item an `Outcome(error=...)`; the other items are still judged.

How a target that is not a string is compared: `exact_match` compares a dict or list target
with the output parsed as JSON, and a number target with the output read as a number (falling
back to text); every other use writes the target as JSON text (`true`, `4.5`, `{"a": 1}`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptloop.core.errors import InvalidInput
from promptloop.core.similarity import similarity
from promptloop.evaluators import embeddings
from promptloop.evaluators.base import Builtin, EvalInput, Outcome
from promptloop.evaluators.hookspecs import hookimpl
from promptloop.evaluators.levenshtein import levenshtein

__all__ = [
    "NO_TARGET",
    "Contains",
    "Cost",
    "EditSimilarity",
    "EmbeddingSimilarity",
    "ExactMatch",
    "JsonSchema",
    "Latency",
    "Regex",
    "Tokens",
    "ValidJson",
    "register_evaluators",
]

NO_TARGET = "this datapoint has no target"
# Past this length (either text) edit similarity is estimated by core.similarity, whose cost is
# bounded, instead of computed from the exact edit distance.
EDIT_DISTANCE_MAX_CHARS = 5_000


class _Unjudgeable(Exception):
    """This item cannot be judged; the message becomes its outcome's error."""


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Evaluator:
    """Shared plumbing: options checked by a pydantic model, items judged one by one."""

    name: str
    returns: str
    higher_is_better = True
    description: str
    Options: ClassVar[type[_Options]] = _Options

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(config, dict):
            raise InvalidInput(
                f"The {self.name} evaluator's config must be an object, not {type(config).__name__}."
            )
        try:
            options = self.Options.model_validate(config)
        except ValidationError as exc:
            raise InvalidInput(
                f"Invalid config for the {self.name} evaluator: {_problems(exc, self.Options)}.",
                details={"evaluator": self.name},
            ) from None
        return options.model_dump(by_alias=True)

    def evaluate(self, items: Sequence[EvalInput], config: dict[str, Any]) -> list[Outcome]:
        judge = self._judge(self.check_config(config))
        return [_safely(judge, item) for item in items]

    def _judge(self, options: dict[str, Any]) -> Callable[[EvalInput], Outcome]:
        raise NotImplementedError


def _problems(exc: ValidationError, options: type[_Options]) -> str:
    known = (
        ", ".join((field.alias or name) for name, field in options.model_fields.items()) or "none"
    )
    problems: dict[str, list[str]] = {}
    for error in exc.errors():
        where = repr(str(error["loc"][0])) if error["loc"] else "the config"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            problem = f"unknown option {where} (options: {known})"
        elif error["type"] == "missing":
            problem = f"{where} is required"
        elif message.startswith("Input should be "):
            problem = message.removeprefix("Input should be ")
        else:
            problem = f"{where}: {message}"
        problems.setdefault(where, []).append(problem)
    # A union's alternatives read as one problem: "'schema' should be a dict or a boolean".
    return "; ".join(
        f"{where} should be {' or '.join(found)}"
        if not found[0].startswith(("unknown option", where))
        else "; ".join(found)
        for where, found in problems.items()
    )


def _safely(judge: Callable[[EvalInput], Outcome], item: EvalInput) -> Outcome:
    try:
        return judge(item)
    except _Unjudgeable as exc:
        return Outcome(error=str(exc))
    except Exception as exc:  # one bad item must not fail the batch
        return Outcome(error=f"{type(exc).__name__}: {exc}")


def _output(item: EvalInput) -> str:
    if item.output is None:
        failed = f" (the call failed: {item.error})" if item.error else ""
        raise _Unjudgeable(f"the log has no output{failed}")
    return item.output


def _target_text(item: EvalInput) -> str:
    if item.target is None:
        raise _Unjudgeable(NO_TARGET)
    if isinstance(item.target, str):
        return item.target
    return json.dumps(item.target, ensure_ascii=False)


def _fold(text: str, *, case_sensitive: bool) -> str:
    return text if case_sensitive else text.casefold()


# --- comparing with the target ------------------------------------------------------------------


class _ExactMatchOptions(_Options):
    case_sensitive: bool = True
    strip: bool = True  # ignore leading and trailing whitespace


class ExactMatch(_Evaluator):
    name = "exact_match"
    returns = "boolean"
    description = "The output equals the target (JSON targets: equal as JSON; numbers: as numbers)."
    Options = _ExactMatchOptions

    def _judge(self, options: dict[str, Any]) -> Callable[[EvalInput], Outcome]:
        def judge(item: EvalInput) -> Outcome:
            output, target = _output(item), item.target
            if target is None:
                raise _Unjudgeable(NO_TARGET)
            if isinstance(target, dict | list):
                try:
                    return Outcome(value=json.loads(output) == target)
                except ValueError:
                    return Outcome(value=False, explanation="the output is not JSON")
            if isinstance(target, int | float) and not isinstance(target, bool):
                try:
                    return Outcome(value=float(output.strip()) == float(target))
                except ValueError:
                    pass  # not a number: compare the text
            expected = _target_text(item)
            if options["strip"]:
                output, expected = output.strip(), expected.strip()
            case_sensitive = options["case_sensitive"]
            return Outcome(
                value=_fold(output, case_sensitive=case_sensitive)
                == _fold(expected, case_sensitive=case_sensitive)
            )

        return judge


class _ContainsOptions(_Options):
    value: str | None = None  # None: the target
    case_sensitive: bool = True


class Contains(_Evaluator):
    name = "contains"
    returns = "boolean"
    description = "The output contains a given text (by default the target)."
    Options = _ContainsOptions

    def _judge(self, options: dict[str, Any]) -> Callable[[EvalInput], Outcome]:
        case_sensitive = options["case_sensitive"]

        def judge(item: EvalInput) -> Outcome:
            output = _output(item)
            value = options["value"] if options["value"] is not None else _target_text(item)
            return Outcome(
                value=_fold(value, case_sensitive=case_sensitive)
                in _fold(output, case_sensitive=case_sensitive)
            )

        return judge


class EditSimilarity(_Evaluator):
    name = "edit_similarity"
    returns = "number"
    description = (
        "1 - Levenshtein distance / length of the longer text, between the output and the target; "
        f"texts over {EDIT_DISTANCE_MAX_CHARS:,} characters are scored by matched characters."
    )

    def _judge(self, options: dict[str, Any]) -> Callable[[EvalInput], Outcome]:
        def judge(item: EvalInput) -> Outcome:
            output, target = _output(item), _target_text(item)
            longest = max(len(output), len(target))
            if longest == 0:
                return Outcome(value=1.0)
            if longest > EDIT_DISTANCE_MAX_CHARS:
                return Outcome(
                    value=similarity(output, target),
                    explanation=f"texts over {EDIT_DISTANCE_MAX_CHARS:,} characters: "
                    "estimated from matched characters, not from the edit distance",
                )
            return Outcome(value=1.0 - levenshtein(output, target) / longest)

        return judge


class EmbeddingSimilarity(_Evaluator):
    name = "embedding_similarity"
    returns = "number"
    description = (
        f"Cosine similarity of the output's and the target's {embeddings.MODEL_NAME} embeddings "
        "(needs the `local` extra)."
    )

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        missing = embeddings.missing_packages()
        if missing:
            raise InvalidInput(
                f"The {self.name} evaluator needs {' and '.join(missing)}, which are not "
                "installed: install promptloop's `local` extra (pip install 'promptloop[local]').",
                details={"evaluator": self.name, "missing": missing},
            )
        return super().check_config(config)

    def evaluate(self, items: Sequence[EvalInput], config: dict[str, Any]) -> list[Outcome]:
        self.check_config(config)
        outcomes: list[Outcome | None] = [None] * len(items)
        pairs: list[tuple[str, str]] = []
        where: list[int] = []
        for i, item in enumerate(items):
            try:
                pairs.append((_output(item), _target_text(item)))
                where.append(i)
            except _Unjudgeable as exc:
                outcomes[i] = Outcome(error=str(exc))
        try:
            scores = embeddings.cosine_similarities(pairs)
            done = [Outcome(value=score) for score in scores]
        except Exception as exc:  # the model failed: every item that needed it says why
            done = [Outcome(error=f"{type(exc).__name__}: {exc}")] * len(pairs)
        for i, outcome in zip(where, done, strict=True):
            outcomes[i] = outcome
        return [outcome or Outcome(error="not evaluated") for outcome in outcomes]


# --- checking the output's form -----------------------------------------------------------------


class _RegexOptions(_Options):
    pattern: str
    case_sensitive: bool = True


class Regex(_Evaluator):
    name = "regex"
    returns = "boolean"
    description = "The output matches a regular expression somewhere (Python `re.search`)."
    Options = _RegexOptions

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        options = super().check_config(config)
        _compile(options)
        return options

    def _judge(self, options: dict[str, Any]) -> Callable[[EvalInput], Outcome]:
        pattern = _compile(options)
        return lambda item: Outcome(value=pattern.search(_output(item)) is not None)


def _compile(options: dict[str, Any]) -> re.Pattern[str]:
    try:
        return re.compile(options["pattern"], 0 if options["case_sensitive"] else re.IGNORECASE)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise InvalidInput(
            f"Invalid config for the regex evaluator: the pattern does not compile: {exc.msg}{where}.",
            details={"evaluator": "regex", "position": exc.pos},
        ) from None


class ValidJson(_Evaluator):
    name = "valid_json"
    returns = "boolean"
    description = "The output parses as JSON."

    def _judge(self, options: dict[str, Any]) -> Callable[[EvalInput], Outcome]:
        def judge(item: EvalInput) -> Outcome:
            try:
                json.loads(_output(item))
            except ValueError as exc:
                return Outcome(value=False, explanation=f"not JSON: {exc}")
            return Outcome(value=True)

        return judge


class _JsonSchemaOptions(_Options):
    json_schema: dict[str, Any] | bool = Field(alias="schema")


class JsonSchema(_Evaluator):
    name = "json_schema"
    returns = "boolean"
    description = "The output parses as JSON and is valid against a JSON Schema."
    Options = _JsonSchemaOptions

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        options = super().check_config(config)
        _validator(options["schema"])
        return options

    def _judge(self, options: dict[str, Any]) -> Callable[[EvalInput], Outcome]:
        validator = _validator(options["schema"])

        def judge(item: EvalInput) -> Outcome:
            try:
                document = json.loads(_output(item))
            except ValueError as exc:
                return Outcome(value=False, explanation=f"not JSON: {exc}")
            error = jsonschema.exceptions.best_match(validator.iter_errors(document))
            if error is None:
                return Outcome(value=True)
            return Outcome(value=False, explanation=f"{error.message} (at {error.json_path})")

        return judge


def _validator(schema: Any) -> Any:
    """A validator for the schema's own draft (the latest when it names none); remote `$ref`s
    are never fetched."""
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidInput(
            f"Invalid config for the json_schema evaluator: the schema is not valid: {exc.message}"
            f" (at {exc.json_path}).",
            details={"evaluator": "json_schema"},
        ) from None
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


# --- checking the call's measurements ------------------------------------------------------------


class _LatencyOptions(_Options):
    max_ms: float = Field(ge=0)


class Latency(_Evaluator):
    name = "latency"
    returns = "boolean"
    description = "The call took at most `max_ms` milliseconds."
    Options = _LatencyOptions

    def _judge(self, options: dict[str, Any]) -> Callable[[EvalInput], Outcome]:
        return lambda item: _at_most(item.latency_ms, options["max_ms"], "latency", "ms")


class _CostOptions(_Options):
    max_usd: float = Field(ge=0)


class Cost(_Evaluator):
    name = "cost"
    returns = "boolean"
    description = "The call cost at most `max_usd` US dollars."
    Options = _CostOptions

    def _judge(self, options: dict[str, Any]) -> Callable[[EvalInput], Outcome]:
        return lambda item: _at_most(item.cost, options["max_usd"], "cost", "USD")


class _TokensOptions(_Options):
    max_output_tokens: int = Field(ge=0)


class Tokens(_Evaluator):
    name = "tokens"
    returns = "boolean"
    description = "The output is at most `max_output_tokens` tokens long."
    Options = _TokensOptions

    def _judge(self, options: dict[str, Any]) -> Callable[[EvalInput], Outcome]:
        return lambda item: _at_most(
            item.output_tokens, options["max_output_tokens"], "output tokens", "tokens"
        )


def _at_most(measured: float | None, limit: float, what: str, unit: str) -> Outcome:
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        raise _Unjudgeable(f"{what} unknown")
    return Outcome(value=measured <= limit, explanation=f"{measured:g} {unit} (limit {limit:g})")


@hookimpl(trylast=True)  # called last, so that plugins' evaluators of the same name win
def register_evaluators() -> list[Builtin]:
    return [
        ExactMatch(),
        Contains(),
        Regex(),
        ValidJson(),
        JsonSchema(),
        EditSimilarity(),
        EmbeddingSimilarity(),
        Latency(),
        Cost(),
        Tokens(),
    ]
