"""The evaluator engine without a database: built-ins, the plugin registry, code evaluators in
their sandboxed process, and the reading of LLM judges' answers.

The embedding test needs the `local` extra (sentence-transformers and the packaged
all-MiniLM-L6-v2); it skips without it, unless PROMPTLOOP_REQUIRE_LOCAL_MODEL=1 (as in CI),
where it fails instead.
"""

from __future__ import annotations

import os
import random
import socket
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from promptloop.core.errors import InvalidInput
from promptloop.evaluators import (
    DEFAULT_JUDGE_INSTRUCTIONS,
    RETURN_TYPES,
    CodeSandbox,
    EvalInput,
    Outcome,
    builtins,
    embeddings,
    get_builtin,
    judge_instructions,
    parse_judgment,
)
from promptloop.evaluators.builtins import EDIT_DISTANCE_MAX_CHARS, NO_TARGET
from promptloop.evaluators.hookspecs import hookimpl
from promptloop.evaluators.levenshtein import levenshtein
from promptloop.evaluators.registry import plugin_manager

BUILTIN_NAMES = {
    "exact_match",
    "contains",
    "regex",
    "valid_json",
    "json_schema",
    "edit_similarity",
    "embedding_similarity",
    "latency",
    "cost",
    "tokens",
}


def item(output: str | None = "Paris", target: Any = "Paris", **fields: Any) -> EvalInput:
    return EvalInput(
        output=output,
        inputs=fields.pop("inputs", {"question": "capital of France?"}),
        messages=fields.pop("messages", None),
        target=target,
        **fields,
    )


def judge(name: str, config: dict[str, Any], *items: EvalInput) -> list[Outcome]:
    evaluator = get_builtin(name)
    return evaluator.evaluate(items, evaluator.check_config(config))


def values(outcomes: list[Outcome]) -> list[Any]:
    return [outcome.value if outcome.error is None else outcome.error for outcome in outcomes]


def invalid_config(name: str, config: Any, *fragments: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        get_builtin(name).check_config(config)
    for fragment in fragments:
        assert fragment in caught.value.message, caught.value.message


# --- the shapes ---------------------------------------------------------------------------------


def test_eval_input_gives_code_evaluators_the_log_and_the_datapoint_as_plain_dicts() -> None:
    given = item(latency_ms=12.5, cost=0.001, prompt_tokens=7, output_tokens=2, error=None)
    assert given.log() == {
        "output": "Paris",
        "inputs": {"question": "capital of France?"},
        "messages": None,
        "latency_ms": 12.5,
        "cost": 0.001,
        "prompt_tokens": 7,
        "output_tokens": 2,
        "error": None,
    }
    assert given.datapoint() == {
        "inputs": {"question": "capital of France?"},
        "messages": None,
        "target": "Paris",
    }


# --- the registry -------------------------------------------------------------------------------


def test_every_builtin_is_registered_and_describes_itself() -> None:
    found = builtins()
    assert set(found) == BUILTIN_NAMES
    for name, evaluator in found.items():
        assert evaluator.name == name
        assert evaluator.returns in RETURN_TYPES
        assert evaluator.higher_is_better is True
        assert evaluator.description
    assert found["edit_similarity"].returns == "number"
    assert found["exact_match"].returns == "boolean"


def test_an_unknown_builtin_is_invalid_input_listing_the_names() -> None:
    with pytest.raises(InvalidInput) as caught:
        get_builtin("exactmatch")
    assert "exactmatch" in caught.value.message
    assert "exact_match" in caught.value.message
    assert caught.value.details == {"evaluators": sorted(BUILTIN_NAMES)}


class _Shouty:
    name = "exact_match"
    returns = "boolean"
    higher_is_better = True
    description = "Plugin version: the output is in capitals."

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {}

    def evaluate(self, items: Any, config: dict[str, Any]) -> list[Outcome]:
        return [Outcome(value=(i.output or "").isupper()) for i in items]


class _Plugin:
    @hookimpl
    def register_evaluators(self) -> list[Any]:
        shouty = _Shouty()
        extra = _Shouty()
        extra.name = "shouty"
        return [shouty, extra]


def test_plugins_add_evaluators_and_override_builtins_through_the_providers_manager() -> None:
    from promptloop.providers.registry import plugin_manager as providers_manager

    assert plugin_manager() is providers_manager()  # one plugin mechanism
    plugin = _Plugin()
    plugin_manager().register(plugin)
    try:
        assert "shouty" in builtins()
        assert isinstance(get_builtin("exact_match"), _Shouty)
        assert values(judge("exact_match", {}, item(output="PARIS"))) == [True]
    finally:
        plugin_manager().unregister(plugin)
    assert "shouty" not in builtins()
    assert not isinstance(get_builtin("exact_match"), _Shouty)


def test_a_plugin_evaluator_with_an_unknown_return_type_is_ignored() -> None:
    broken = _Shouty()
    broken.name, broken.returns = "broken", "colour"

    class Plugin:
        @hookimpl
        def register_evaluators(self) -> list[Any]:
            return [broken]

    plugin = Plugin()
    plugin_manager().register(plugin)
    try:
        assert "broken" not in builtins()
        assert "exact_match" in builtins()
    finally:
        plugin_manager().unregister(plugin)


# --- built-ins ----------------------------------------------------------------------------------


def test_exact_match() -> None:
    assert get_builtin("exact_match").check_config({}) == {"case_sensitive": True, "strip": True}
    assert values(
        judge(
            "exact_match",
            {},
            item("Paris", "Paris"),
            item(" Paris\n", "Paris"),
            item("paris", "Paris"),
            item("Lyon", "Paris"),
        )
    ) == [True, True, False, False]
    assert values(judge("exact_match", {"case_sensitive": False}, item("PARIS", "paris"))) == [True]
    assert values(judge("exact_match", {"strip": False}, item(" Paris", "Paris"))) == [False]
    # Structured and numeric targets compare as JSON and as numbers.
    assert values(
        judge(
            "exact_match",
            {},
            item('{"b": [1, 2], "a": "x"}', {"a": "x", "b": [1, 2]}),
            item('{"a": "y"}', {"a": "x"}),
            item("not json", [1]),
            item(" 4.0 ", 4),
            item("four", 4),
            item("true", True),
        )
    ) == [True, False, False, True, False, True]


def test_a_missing_target_or_output_fails_that_item_only() -> None:
    outcomes = judge(
        "exact_match",
        {},
        item("Paris", None),
        item(None, "Paris", error="upstream timeout"),
        item("Paris", "Paris"),
    )
    assert values(outcomes) == [
        NO_TARGET,
        "the log has no output (the call failed: upstream timeout)",
        True,
    ]
    assert outcomes[0] == Outcome(error="this datapoint has no target")


def test_bad_configs_are_invalid_input_saying_what_to_fix() -> None:
    invalid_config("exact_match", {"case_sensitive": "yes"}, "case_sensitive")
    invalid_config("exact_match", {"colour": "red"}, "unknown option 'colour'", "strip")
    invalid_config("exact_match", ["strip"], "must be an object")
    invalid_config("contains", {"value": 3}, "'value'")
    invalid_config("regex", {}, "'pattern' is required")
    invalid_config("regex", {"pattern": "(unclosed"}, "does not compile", "position")
    invalid_config("json_schema", {}, "'schema' is required")
    invalid_config("json_schema", {"schema": {"type": "nope"}}, "schema is not valid")
    invalid_config("json_schema", {"schema": "object"}, "'schema'")
    invalid_config("latency", {}, "'max_ms' is required")
    invalid_config("latency", {"max_ms": -1}, "'max_ms'")
    invalid_config("latency", {"max_ms": "fast"}, "'max_ms'")
    invalid_config("cost", {"max_usd": True}, "'max_usd'")
    invalid_config("tokens", {"max_output_tokens": 1.5}, "'max_output_tokens'")
    invalid_config("edit_similarity", {"threshold": 0.5}, "unknown option", "options: none")
    with pytest.raises(InvalidInput):  # evaluate checks the config too
        get_builtin("regex").evaluate([item()], {"pattern": "("})


def test_contains() -> None:
    assert values(
        judge(
            "contains",
            {},
            item("The capital is Paris.", "Paris"),
            item("The capital is paris.", "Paris"),
            item("Lyon", "Paris"),
            item("anything", None),
        )
    ) == [True, False, False, NO_TARGET]
    assert values(
        judge(
            "contains",
            {"value": "SORRY", "case_sensitive": False},
            item("I'm sorry, I can't", None),
            item("Sure!", None),
        )
    ) == [True, False]


def test_regex_searches_anywhere() -> None:
    assert get_builtin("regex").check_config({"pattern": r"\d+"}) == {
        "pattern": r"\d+",
        "case_sensitive": True,
    }
    assert values(
        judge("regex", {"pattern": r"\b\d{4}\b"}, item("It was 1969.", None), item("soon", None))
    ) == [True, False]
    assert values(
        judge("regex", {"pattern": "^paris$", "case_sensitive": False}, item("PARIS", None))
    ) == [True]


def test_valid_json() -> None:
    outcomes = judge("valid_json", {}, item('{"a": [1, 2]}', None), item("{a: 1}", None))
    assert values(outcomes) == [True, False]
    assert outcomes[1].explanation is not None and outcomes[1].explanation.startswith("not JSON")


def test_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name"],
    }
    outcomes = judge(
        "json_schema",
        {"schema": schema},
        item('{"name": "Ada", "age": 36}', None),
        item('{"name": "Ada", "age": -1}', None),
        item('{"age": 3}', None),
        item("Ada, 36", None),
    )
    assert values(outcomes) == [True, False, False, False]
    assert outcomes[1].explanation is not None and "$.age" in outcomes[1].explanation
    assert outcomes[2].explanation is not None and "'name' is a required" in outcomes[2].explanation
    assert outcomes[3].explanation is not None and "not JSON" in outcomes[3].explanation
    assert values(judge("json_schema", {"schema": True}, item("[]", None))) == [True]


def _reference_levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def test_levenshtein_agrees_with_the_textbook_table() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == levenshtein("abc", "") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("café", "cafe") == 1
    rng = random.Random(7)
    for _ in range(500):
        a = "".join(rng.choice("abcé ") for _ in range(rng.randint(0, 70)))
        b = "".join(rng.choice("abcd ") for _ in range(rng.randint(0, 70)))
        assert levenshtein(a, b) == levenshtein(b, a) == _reference_levenshtein(a, b), (a, b)


def test_edit_similarity() -> None:
    outcomes = judge(
        "edit_similarity",
        {},
        item("kitten", "sitting"),
        item("same", "same"),
        item("", ""),
        item("abc", "xyz"),
        item("x", None),
    )
    assert values(outcomes) == [pytest.approx(1 - 3 / 7), 1.0, 1.0, 0.0, NO_TARGET]
    assert all(isinstance(o.value, float) for o in outcomes[:4])

    rng = random.Random(3)
    long = "".join(rng.choice("abcdefgh ") for _ in range(EDIT_DISTANCE_MAX_CHARS + 1))
    started = time.perf_counter()
    [estimated] = judge("edit_similarity", {}, item(long, long[:-50] + "z" * 50))
    [exact] = judge("edit_similarity", {}, item(long[:5000], long[1:5001]))
    print(f"edit similarity of two ~5,000-character texts: {time.perf_counter() - started:.3f} s")
    assert isinstance(estimated.value, float) and 0.9 < estimated.value < 1.0
    assert estimated.explanation is not None and "estimated" in estimated.explanation
    assert exact.value == pytest.approx(1 - 2 / 5000) and exact.explanation is None


def test_latency_cost_and_tokens() -> None:
    assert values(
        judge(
            "latency",
            {"max_ms": 500},
            item(latency_ms=120.0),
            item(latency_ms=500),
            item(latency_ms=900.5),
            item(latency_ms=None),
        )
    ) == [True, True, False, "latency unknown"]
    assert values(
        judge("cost", {"max_usd": 0.01}, item(cost=0.002), item(cost=0.5), item(cost=None))
    ) == [True, False, "cost unknown"]
    assert values(
        judge(
            "tokens",
            {"max_output_tokens": 100},
            item(output_tokens=100),
            item(output_tokens=101),
            item(output_tokens=None),
        )
    ) == [True, False, "output tokens unknown"]
    [outcome] = judge("latency", {"max_ms": 500}, item(latency_ms=900.5))
    assert outcome.explanation == "900.5 ms (limit 500)"
    # Measurements need no output: a failed call still has a latency.
    assert values(judge("latency", {"max_ms": 500}, item(None, None, latency_ms=30))) == [True]


_missing_embedding = embeddings.missing_packages()
_require_model = os.environ.get("PROMPTLOOP_REQUIRE_LOCAL_MODEL") == "1"


@pytest.mark.skipif(
    bool(_missing_embedding) and not _require_model,
    reason=f"the embedding model is not installed ({', '.join(_missing_embedding)} missing): "
    "scripts/test installs the `local` extra",
)
def test_embedding_similarity_orders_a_paraphrase_above_an_unrelated_sentence() -> None:
    target = "The cat is sleeping on the sofa."
    started = time.perf_counter()
    outcomes = judge(
        "embedding_similarity",
        {},
        item("A kitten naps on the couch.", target),
        item("Quarterly revenue grew by eight percent.", target),
        item(target, target),
        item("no target here", None),
    )
    print(
        f"embedding similarity: first batch {time.perf_counter() - started:.1f} s "
        f"(model load {embeddings.load_seconds() or 0:.1f} s, imports included)"
    )
    paraphrase, unrelated, same, missing = outcomes
    assert isinstance(paraphrase.value, float) and isinstance(unrelated.value, float)
    assert paraphrase.value > unrelated.value + 0.3, (paraphrase, unrelated)
    assert same.value == pytest.approx(1.0, abs=1e-5)
    assert missing.error == NO_TARGET

    texts = [f"Sentence number {i} about topic {i % 7}." for i in range(200)]
    started = time.perf_counter()
    many = judge("embedding_similarity", {}, *(item(t, texts[0]) for t in texts))
    print(f"embedding similarity: 200 items in {time.perf_counter() - started:.2f} s (loaded)")
    assert all(isinstance(o.value, float) and -1 <= o.value <= 1 for o in many)


def test_embedding_similarity_without_the_local_extra_says_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embeddings, "missing_packages", lambda: ["sentence-transformers"])
    invalid_config("embedding_similarity", {}, "sentence-transformers", "`local` extra")


# --- code evaluators ----------------------------------------------------------------------------


def code(source: str) -> str:
    return textwrap.dedent(source).lstrip("\n")


def numbered(count: int) -> list[EvalInput]:
    return [item(str(i), str(i % 3), inputs={"i": i}) for i in range(count)]


def test_code_evaluator_judges_many_items_in_one_child_process() -> None:
    source = code(
        """
        import math

        def evaluate(log, datapoint):
            i = log["inputs"]["i"]
            if i % 4 == 0:
                return log["output"] == datapoint["target"]
            if i % 4 == 1:
                return math.sqrt(i)
            if i % 4 == 2:
                return "even"
            return i  # an int: a number
        """
    )
    items = numbered(200)
    with CodeSandbox(source) as sandbox:
        sandbox.check()
        started = time.perf_counter()
        outcomes = sandbox.run(items)
        elapsed = time.perf_counter() - started
        assert sandbox.children_started == 1
    print(f"code evaluator: 200 items in {elapsed:.3f} s ({200 / elapsed:,.0f} items/s)")
    for i, outcome in enumerate(outcomes):
        assert outcome.error is None, outcome
        expected = [str(i) == str(i % 3), float(i) ** 0.5, "even", float(i)][i % 4]
        assert outcome.value == pytest.approx(expected) if i % 4 == 1 else outcome.value == expected
    assert isinstance(outcomes[3].value, float)


def test_an_exception_in_the_code_is_that_item_s_error_with_the_line() -> None:
    source = code(
        """
        def evaluate(log, datapoint):
            if log["inputs"]["i"] == 1:
                return {}["missing"]
            return helper(log)

        def helper(log):
            return 1 / 0 if log["inputs"]["i"] == 2 else True
        """
    )
    with CodeSandbox(source) as sandbox:
        outcomes = sandbox.run(numbered(4))
        assert sandbox.children_started == 1  # an exception does not cost the process
    assert values(outcomes) == [
        True,
        "KeyError: 'missing' (line 3)",
        "ZeroDivisionError: division by zero (line 7)",
        True,
    ]


def test_an_infinite_loop_times_out_and_later_items_are_still_evaluated() -> None:
    source = code(
        """
        def evaluate(log, datapoint):
            while log["inputs"]["i"] == 1:
                pass
            return log["inputs"]["i"]
        """
    )
    with CodeSandbox(source, timeout_s=0.5) as sandbox:
        started = time.perf_counter()
        outcomes = sandbox.run(numbered(4))
        assert time.perf_counter() - started < 5
        assert sandbox.children_started == 2  # a fresh process after the kill
    assert values(outcomes) == [0.0, "timed out after 0.5 s", 2.0, 3.0]


def test_a_memory_hog_hits_the_memory_limit_and_later_items_are_still_evaluated() -> None:
    source = code(
        """
        kept = []

        def evaluate(log, datapoint):
            if log["inputs"]["i"] == 1:
                kept.append(bytearray(10**9))
            return True
        """
    )
    with CodeSandbox(source, memory_mb=256) as sandbox:
        outcomes = sandbox.run(numbered(3))
    assert values(outcomes) == [True, "exceeded the memory limit of 256 MB", True]
    assert outcomes[1] == Outcome(error="exceeded the memory limit of 256 MB")


def test_a_child_that_dies_is_replaced_and_says_how_it_died() -> None:
    source = code(
        """
        import faulthandler, os

        def evaluate(log, datapoint):
            if log["inputs"]["i"] == 1:
                os._exit(3)
            if log["inputs"]["i"] == 2:
                faulthandler._sigsegv()  # as C code does when an allocation fails
            if log["inputs"]["i"] == 3:
                for fd in range(3, 10):  # one of them is the answer channel
                    try:
                        os.write(fd, b"not json\\n")
                    except OSError:
                        pass
            return True
        """
    )
    with CodeSandbox(source, memory_mb=128) as sandbox:
        outcomes = sandbox.run(numbered(5))
        assert sandbox.children_started == 4
    assert values(outcomes) == [
        True,
        "the evaluator's process exited with code 3",
        "exceeded the memory limit of 128 MB",
        "the evaluator's process wrote something that is not an answer to its answer channel",
        True,
    ]


def test_the_code_has_no_network() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        source = code(
            f"""
            import socket

            def evaluate(log, datapoint):
                if log["inputs"]["i"] == 0:
                    socket.create_connection(("127.0.0.1", {port}), timeout=2)
                else:
                    with socket.socket() as s:
                        s.connect(("127.0.0.1", {port}))
                return "connected"
            """
        )
        with CodeSandbox(source) as sandbox:
            outcomes = sandbox.run(numbered(2))
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody came
    assert [o.value for o in outcomes] == [None, None]
    for outcome in outcomes:
        assert outcome.error is not None and outcome.error.startswith("PermissionError")
        assert "network" in outcome.error


def test_the_code_cannot_read_blocked_paths_nor_write_outside_its_directory(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret.key").write_text("s3cret")
    source = code(
        f"""
        import os, pathlib

        DATA = {str(data)!r}

        def evaluate(log, datapoint):
            step = log["output"]
            if step == "read":
                return open(os.path.join(DATA, "secret.key")).read()
            if step == "list":
                return str(os.listdir(DATA))
            if step == "symlink":
                os.symlink(os.path.join(DATA, "secret.key"), "link")
                return open("link").read()
            if step == "hardlink":
                os.link(os.path.join(DATA, "secret.key"), "hard")
                return open("hard").read()
            if step == "write outside":
                open({str(tmp_path / "planted.txt")!r}, "w").write("x")
                return "written"
            if step == "parent environ":
                return open(f"/proc/{{os.getppid()}}/environ").read()
            if step == "run":
                import subprocess
                return subprocess.run(["true"]).returncode
            # Its own directory is writable (and is the working directory).
            pathlib.Path("scratch.txt").write_text("ok")
            return open(os.path.join(os.getcwd(), "scratch.txt")).read()
        """
    )
    steps = ["read", "list", "symlink", "hardlink", "write outside", "parent environ", "run"]
    with CodeSandbox(source, blocked_paths=[data]) as sandbox:
        outcomes = sandbox.run([item(step, None) for step in [*steps, "scratch"]])
    for step, outcome in zip(steps, outcomes, strict=False):
        assert outcome.value is None, (step, outcome)
        assert outcome.error is not None and outcome.error.startswith("PermissionError"), (
            step,
            outcome,
        )
    assert outcomes[-1] == Outcome(value="ok")
    assert not (tmp_path / "planted.txt").exists()


def test_the_code_sees_no_promptloop_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTLOOP_SECRET_KEY", "s3cret-value")
    source = code(
        """
        import os

        def evaluate(log, datapoint):
            return repr(sorted(os.environ.items()))
        """
    )
    with CodeSandbox(source) as sandbox:
        [outcome] = sandbox.run([item()])
    assert isinstance(outcome.value, str)
    assert "PROMPTLOOP" not in outcome.value and "s3cret-value" not in outcome.value
    assert "'PATH'" in outcome.value


def test_printing_does_not_break_the_protocol_and_becomes_the_explanation() -> None:
    source = code(
        """
        import os, sys

        print("loading")  # at import time too

        def evaluate(log, datapoint):
            print("checking", log["inputs"]["i"])
            print("{\\"value\\": 666}")
            sys.__stdout__.write("to the real stdout\\n")
            sys.__stdout__.flush()
            os.write(1, b"straight to fd 1\\n")
            print("noise", file=sys.stderr)
            return log["inputs"]["i"] * 2
        """
    )
    with CodeSandbox(source) as sandbox:
        outcomes = sandbox.run(numbered(3))
        assert sandbox.children_started == 1
    assert values(outcomes) == [0.0, 2.0, 4.0]
    assert outcomes[1].explanation == 'checking 1\n{"value": 666}\nnoise\n'


def test_unsupported_return_values_are_errors() -> None:
    source = code(
        """
        def evaluate(log, datapoint):
            return [None, [1], float("nan"), "x" * 200_000, None][log["inputs"]["i"]]
        """
    )
    with CodeSandbox(source) as sandbox:
        outcomes = sandbox.run(numbered(4))
    assert values(outcomes) == [
        "evaluate returned NoneType; return a bool, a number or a str",
        "evaluate returned list; return a bool, a number or a str",
        "evaluate returned nan; return a finite number",
        "evaluate returned 200,000 characters; the limit is 100,000",
    ]


def test_code_that_fails_to_load_gives_every_item_the_reason() -> None:
    source = code(
        """
        import json
        CONFIG = json.loads("{broken")

        def evaluate(log, datapoint):
            return True
        """
    )
    with CodeSandbox(source) as sandbox:
        outcomes = sandbox.run(numbered(3))
        assert sandbox.children_started == 1  # not once per item
    assert len({o.error for o in outcomes}) == 1
    assert outcomes[0].error is not None
    assert outcomes[0].error.startswith("the code failed to load: JSONDecodeError")
    assert outcomes[0].error.endswith("(line 2)")


@pytest.mark.parametrize(
    ("source", "fragments"),
    [
        ("def evaluate(log, datapoint):\n    return (\n", ["does not compile", "line 2"]),
        ("def evaluate(log, datapoint):\n    return True\nreturn 1\n", ["line 3"]),
        ("def judge(log, datapoint):\n    return True\n", ["no top-level function `evaluate`"]),
        ("async def evaluate(log, datapoint):\n    return True\n", ["async def", "line 1"]),
        ("\n\ndef evaluate(log):\n    return True\n", ["two parameters", "line 3"]),
        ("def evaluate(a, b, c):\n    return True\n", ["two parameters"]),
        ("def evaluate(a, b, *, c):\n    return True\n", ["two parameters"]),
        ("class C:\n    def evaluate(self, log):\n        pass\n", ["top-level"]),
    ],
)
def test_code_that_will_not_do_is_invalid_input_with_the_line(
    source: str, fragments: list[str]
) -> None:
    sandbox = CodeSandbox(source)
    with pytest.raises(InvalidInput) as caught:
        sandbox.check()
    for fragment in fragments:
        assert fragment in caught.value.message, caught.value.message
    with pytest.raises(InvalidInput):
        sandbox.run([item()])  # run checks first: no process for code that cannot work
    assert sandbox.children_started == 0


def test_syntax_errors_carry_the_line_in_details() -> None:
    with pytest.raises(InvalidInput) as caught:
        CodeSandbox("x = 1\ny = (\n").check()
    assert caught.value.details["line"] == 2


@pytest.mark.parametrize(
    "source",
    [
        "def evaluate(log, datapoint):\n    return True\n",
        "def evaluate(log, datapoint=None, extra=1):\n    return True\n",
        "def evaluate(*args):\n    return True\n",
        "def evaluate(log, /, datapoint, *, flag=False):\n    return True\n",
    ],
)
def test_evaluate_signatures_that_take_two_arguments_are_accepted(source: str) -> None:
    with CodeSandbox(source) as sandbox:
        sandbox.check()
        assert values(sandbox.run([item()])) == [True]


def test_close_ends_the_child_and_removes_its_directory() -> None:
    sandbox = CodeSandbox("import os\ndef evaluate(log, datapoint):\n    return os.getcwd()\n")
    [outcome] = sandbox.run([item()])
    assert isinstance(outcome.value, str) and Path(outcome.value).is_dir()
    sandbox.close()
    assert not Path(outcome.value).exists()
    # It can be used again: a fresh process starts.
    assert sandbox.run([item()])[0].error is None
    sandbox.close()
    assert sandbox.children_started == 2


# --- LLM judges' answers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Verdict: PASS", True),
        ("The answer is wrong.\nVerdict: FAIL", False),
        ("**Verdict:** pass", True),
        ("Yes", True),
        ("no.", False),
        ("It mentions Paris, so it is correct.", True),
        ("The answer is incorrect.", False),
        ("This is not correct.", False),
        ("Is it correct? No, it is not.", False),
        ("At first I thought FAIL, but on reflection: true", True),
        # A verdict line wins over later words.
        ("Verdict: FAIL\nNo hallucinations, yes, but the format is wrong: true to form.", False),
        ("Final answer: passed", True),
    ],
)
def test_boolean_judgments(text: str, expected: bool) -> None:
    outcome = parse_judgment(text, "boolean")
    assert outcome == Outcome(value=expected, explanation=text.strip())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Score: 4", 4.0),
        ("Clear and complete. I'd give it 8.5/10", 8.5),
        ("It covers 3 of the 5 points.\n**Score:** 3 out of 5", 3.0),
        ("Rating = -1", -1.0),
        ("Answers 2 questions well; 7", 7.0),
        ("Score: 4\nIt missed 2 of the 10 details.", 4.0),
    ],
)
def test_number_judgments(text: str, expected: float) -> None:
    outcome = parse_judgment(text, "number")
    assert outcome.value == expected and isinstance(outcome.value, float)
    assert outcome.explanation == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Verdict: Neutral", "neutral"),
        ("It's not positive, rather NEGATIVE", "negative"),
        ("Verdict: very positive", "very positive"),
        ("negative? No: the tone is very positive.", "very positive"),
        ("Label: negative (it is not positive)", "negative"),
    ],
)
def test_choice_judgments(text: str, expected: str) -> None:
    choices = ["positive", "very positive", "neutral", "negative"]
    assert parse_judgment(text, "choice", choices).value == expected


def test_text_judgments_and_unreadable_answers() -> None:
    assert parse_judgment("  A fine summary.\n", "text") == Outcome(
        value="A fine summary.", explanation="A fine summary."
    )
    unreadable = parse_judgment("I cannot decide." + " really" * 100, "boolean")
    assert unreadable.value is None
    assert unreadable.error is not None
    assert unreadable.error.startswith("could not read a boolean (PASS or FAIL) from the judge's")
    assert len(unreadable.error) < 320 and "…" in unreadable.error
    assert unreadable.explanation is not None and unreadable.explanation.startswith("I cannot")
    assert parse_judgment("no digits", "number").error == (
        "could not read a number from the judge's answer: 'no digits'"
    )
    assert parse_judgment("maybe", "choice", ["good", "bad"]).error == (
        "could not read one of the choices (good, bad) from the judge's answer: 'maybe'"
    )
    assert parse_judgment("   ", "text") == Outcome(error="the judge's answer is empty")
    with pytest.raises(ValueError):
        parse_judgment("x", "colour")
    with pytest.raises(ValueError):
        parse_judgment("x", "choice")


def test_default_judge_instructions_say_how_to_answer() -> None:
    assert set(DEFAULT_JUDGE_INSTRUCTIONS) == set(RETURN_TYPES)
    assert "Verdict: PASS" in DEFAULT_JUDGE_INSTRUCTIONS["boolean"]
    assert "Score: N" in DEFAULT_JUDGE_INSTRUCTIONS["number"]
    assert "'good', 'bad'" in judge_instructions("choice", ["good", "bad"])
    # What the instructions ask for is what parse_judgment reads.
    assert parse_judgment("Fine.\nVerdict: PASS", "boolean").value is True
    assert parse_judgment("Fine.\nScore: 4", "number").value == 4.0
    assert parse_judgment("Fine.\nVerdict: good", "choice", ["good", "bad"]).value == "good"
