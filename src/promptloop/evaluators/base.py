"""What an evaluator sees (`EvalInput`), what it answers (`Outcome`), and what a built-in is.

An evaluator judges one log, often against the target of the datapoint the log was made for.
Built-in evaluators are plugins (see `hookspecs`); code evaluators run in a `sandbox`; LLM
judges' answers are read by `judge`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["RETURN_TYPES", "Builtin", "EvalInput", "Outcome"]

RETURN_TYPES = ("boolean", "number", "choice", "text")


@dataclass(frozen=True)
class EvalInput:
    """One log to evaluate, with the datapoint it answered (inputs, messages, target)."""

    output: str | None
    inputs: dict[str, Any]
    messages: list[dict[str, Any]] | None
    target: Any  # the datapoint's target: a str, a dict or list, a number, or None
    latency_ms: float | None = None
    cost: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None

    def log(self) -> dict[str, Any]:
        """The log as a plain dict, as code evaluators receive it."""
        return {
            "output": self.output,
            "inputs": self.inputs,
            "messages": self.messages,
            "latency_ms": self.latency_ms,
            "cost": self.cost,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "error": self.error,
        }

    def datapoint(self) -> dict[str, Any]:
        """The datapoint as a plain dict, as code evaluators receive it."""
        return {"inputs": self.inputs, "messages": self.messages, "target": self.target}


@dataclass(frozen=True)
class Outcome:
    """One judgment. `error` is set, and `value` is None, when the evaluator could not judge:
    an exception, a time or memory limit, a judge answer that could not be read."""

    value: bool | float | str | None = None
    explanation: str | None = None
    error: str | None = None


class Builtin(Protocol):
    """A built-in evaluator: a name, what it returns, and a batch `evaluate`."""

    name: str  # e.g. "exact_match"
    returns: str  # one of RETURN_TYPES
    higher_is_better: bool
    description: str

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The config with defaults filled in; raises InvalidInput saying what to fix."""
        ...

    def evaluate(self, items: Sequence[EvalInput], config: dict[str, Any]) -> list[Outcome]:
        """One outcome per item, in order. A bad item gets `Outcome(error=...)`; never raises
        for one (a bad config raises InvalidInput, as `check_config` does)."""
        ...
