"""Reading an LLM judge's answer: a verdict of the evaluator's return type, with the whole answer
kept as the explanation.

Judges are told (`DEFAULT_JUDGE_INSTRUCTIONS`) to end with a line such as `Verdict: PASS` or
`Score: 4`. Such a line wins when there is one (the last, if several); otherwise the last verdict
word, number or choice anywhere in the answer counts, since models tend to reason first and
conclude last. Markdown emphasis around the verdict is ignored.

    >>> parse_judgment("The answer names Paris.\\nVerdict: PASS", "boolean").value
    True
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from promptloop.evaluators.base import RETURN_TYPES, Outcome

__all__ = ["DEFAULT_JUDGE_INSTRUCTIONS", "judge_instructions", "parse_judgment"]

DEFAULT_JUDGE_INSTRUCTIONS: dict[str, str] = {
    "boolean": (
        "Reason briefly about whether the output meets the criteria, then end your answer "
        "with a line 'Verdict: PASS' or 'Verdict: FAIL'."
    ),
    "number": (
        "Reason briefly about how well the output meets the criteria, then end your answer "
        "with a line 'Score: N', where N is a number on the scale you were given."
    ),
    # `{choices}` is filled in by judge_instructions().
    "choice": (
        "Reason briefly about which label fits the output best, then end your answer with a "
        "line 'Verdict: LABEL', where LABEL is exactly one of: {choices}."
    ),
    "text": "Answer in plain text; your whole answer is recorded as the judgment.",
}

_SNIPPET = 200
# A conclusion line: "Verdict: PASS", "Final answer = 4/5", "**Score:** 7".
_CONCLUSION = re.compile(
    r"^\s*(?:final\s+)?(?:verdict|answer|result|decision|judge?ment|grade|label|choice|"
    r"score|rating|evaluation)\s*[:=]\s*(?P<value>.+?)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_MARKDOWN = re.compile(r"[*`#>]+|(?<!\w)_+|_+(?!\w)")  # emphasis, not snake_case
_TRUE = {"yes", "true", "pass", "passed", "passes", "correct"}
_BOOLEAN = re.compile(
    r"\b(?P<negated>not\s+)?(?P<word>yes|no|true|false|pass(?:ed|es)?|fail(?:ed|s)?|"
    r"correct|incorrect)\b",
    re.IGNORECASE,
)
# A number, and for "4/5" or "4 out of 5" the 4.
_NUMBER = re.compile(
    r"(?<![\w.])(?P<number>[-+]?\d+(?:\.\d+)?)(?:\s*(?:/|out\s+of)\s*\d+(?:\.\d+)?)?(?![\w])",
    re.IGNORECASE,
)


def judge_instructions(returns: str, choices: Sequence[str] | None = None) -> str:
    """The default instructions for a judge of this return type (choices filled in)."""
    _check_returns(returns, choices)
    return DEFAULT_JUDGE_INSTRUCTIONS[returns].format(
        choices=", ".join(repr(choice) for choice in choices or ())
    )


def parse_judgment(text: str, returns: str, choices: Sequence[str] | None = None) -> Outcome:
    """The judge's verdict as an Outcome of type `returns` (see RETURN_TYPES), or an Outcome
    with an error saying what could not be read. The stripped answer is the explanation."""
    _check_returns(returns, choices)
    answer = text.strip()
    plain = _MARKDOWN.sub("", answer)
    conclusions = [match.group("value") for match in _CONCLUSION.finditer(plain)]
    value: bool | float | str | None
    if returns == "text":
        value = answer or None
        wanted = "text"
    elif returns == "boolean":
        value = _boolean(plain, conclusions)
        wanted = "a boolean (PASS or FAIL)"
    elif returns == "number":
        value = _number(plain, conclusions)
        wanted = "a number"
    else:
        value = _choice(plain, conclusions, choices or ())
        wanted = f"one of the choices ({', '.join(choices or ())})"
    if value is None:
        if not answer:
            return Outcome(error="the judge's answer is empty")
        return Outcome(
            error=f"could not read {wanted} from the judge's answer: {_snippet(answer)!r}",
            explanation=answer,
        )
    return Outcome(value=value, explanation=answer)


def _check_returns(returns: str, choices: Sequence[str] | None) -> None:
    if returns not in RETURN_TYPES:
        raise ValueError(f"returns must be one of {', '.join(RETURN_TYPES)}, not {returns!r}")
    if returns == "choice" and not choices:
        raise ValueError("a judge that returns a choice needs the choices")


def _boolean(text: str, conclusions: list[str]) -> bool | None:
    for conclusion in reversed(conclusions):
        match = _BOOLEAN.search(conclusion)  # the verdict follows the colon
        if match:
            return _truth(match)
    matches = list(_BOOLEAN.finditer(text))
    return _truth(matches[-1]) if matches else None


def _truth(match: re.Match[str]) -> bool:
    truth = match.group("word").lower() in _TRUE
    return not truth if match.group("negated") else truth


def _number(text: str, conclusions: list[str]) -> float | None:
    for conclusion in reversed(conclusions):
        match = _NUMBER.search(conclusion)
        if match:
            return float(match.group("number"))
    matches = list(_NUMBER.finditer(text))
    return float(matches[-1].group("number")) if matches else None


def _choice(text: str, conclusions: list[str], choices: Sequence[str]) -> str | None:
    for conclusion in reversed(conclusions):
        found = _mentions(conclusion, choices)
        if found:  # the first choice named after the colon; the longer one when they overlap
            return min(found, key=lambda hit: (hit[0], -len(hit[2])))[2]
    found = _mentions(text, choices)
    if found:  # the last choice named; the longer one when they end together
        return max(found, key=lambda hit: (hit[1], len(hit[2])))[2]
    return None


def _mentions(text: str, choices: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, end, choice) for every whole-word, case-insensitive mention of a choice."""
    hits: list[tuple[int, int, str]] = []
    for choice in choices:
        if not choice.strip():
            continue
        pattern = re.compile(rf"(?<!\w){re.escape(choice.strip())}(?!\w)", re.IGNORECASE)
        hits.extend((match.start(), match.end(), choice) for match in pattern.finditer(text))
    return hits


def _snippet(text: str) -> str:
    return text if len(text) <= _SNIPPET else "…" + text[-_SNIPPET:]
