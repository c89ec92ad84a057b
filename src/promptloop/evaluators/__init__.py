"""Evaluators: built-in ones (plugins), code evaluators in a sandboxed process, and the reading of
LLM judges' answers. Nothing here touches the database: callers pass `EvalInput`s and store the
`Outcome`s.

    from promptloop.evaluators import EvalInput, get_builtin

    exact = get_builtin("exact_match")
    config = exact.check_config({"case_sensitive": False})
    [outcome] = exact.evaluate([EvalInput(output="Paris", inputs={}, messages=None,
                                          target="paris")], config)
    assert outcome.value is True
"""

from promptloop.evaluators.base import RETURN_TYPES, Builtin, EvalInput, Outcome
from promptloop.evaluators.judge import (
    DEFAULT_JUDGE_INSTRUCTIONS,
    judge_instructions,
    parse_judgment,
)
from promptloop.evaluators.registry import builtins, get_builtin
from promptloop.evaluators.sandbox import CodeSandbox

__all__ = [
    "DEFAULT_JUDGE_INSTRUCTIONS",
    "RETURN_TYPES",
    "Builtin",
    "CodeSandbox",
    "EvalInput",
    "Outcome",
    "builtins",
    "get_builtin",
    "judge_instructions",
    "parse_judgment",
]
