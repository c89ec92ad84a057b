"""Pure domain behaviour: version identity, templates, paths, prompt files, diffs."""

from __future__ import annotations

import pytest

from promptloop.core import promptfile, templates
from promptloop.core.diff import diff_kernels
from promptloop.core.errors import InvalidInput, InvalidPath, MissingInputs, TemplateSyntaxError
from promptloop.core.kernel import Kernel, canonical_json, version_id
from promptloop.core.paths import validate_environment_name, validate_prompt_path


def kernel(**overrides: object) -> Kernel:
    fields: dict[str, object] = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You help {{ customer }}."},
            {"role": "user", "content": "{{ question }}"},
        ],
    }
    fields.update(overrides)
    return Kernel.model_validate(fields)


def test_same_content_same_id_and_any_change_a_new_one() -> None:
    assert version_id(kernel()) == version_id(kernel())
    assert version_id(kernel()) != version_id(kernel(model="gpt-4o"))
    assert version_id(kernel()) != version_id(kernel(parameters={"temperature": 0.5}))
    assert len(version_id(kernel())) == 12


def test_unset_options_and_surrounding_whitespace_do_not_change_identity() -> None:
    explicit = kernel(parameters={"temperature": None, "extras": {}}, tools=[], retrieval=None)
    assert version_id(explicit) == version_id(kernel())
    padded = kernel(
        messages=[
            {"role": "system", "content": "\n  You help {{ customer }}.  \n"},
            {"role": "user", "content": "{{ question }}"},
        ]
    )
    assert version_id(padded) == version_id(kernel())
    assert "null" not in canonical_json(explicit)


def test_stop_accepts_a_string_and_kernel_needs_exactly_one_template() -> None:
    assert kernel(parameters={"stop": "END"}).parameters.stop == ["END"]
    with pytest.raises(ValueError, match="exactly one"):
        Kernel(provider="openai", model="m")
    with pytest.raises(ValueError, match="exactly one"):
        Kernel(
            provider="openai", model="m", template="x", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(ValueError):
        kernel(parameters={"temperature": 7})
    with pytest.raises(ValueError):
        kernel(parameters={"temprature": 0.1})


def test_variables_in_order_of_first_use_ignoring_loop_variables() -> None:
    k = kernel(
        messages=[
            {
                "role": "user",
                "content": "{{ b }} {% for x in items %}{{ x }}{{ a }}{% endfor %} {{ b }}",
            }
        ]
    )
    assert templates.variables(k) == ["b", "items", "a"]


def test_render_names_every_missing_input() -> None:
    with pytest.raises(MissingInputs) as info:
        templates.render(kernel(), {"question": "hi"})
    assert info.value.details == {"missing": ["customer"]}
    with pytest.raises(MissingInputs) as info:
        templates.render(kernel(), {})
    assert info.value.details == {"missing": ["customer", "question"]}
    rendered = templates.render(kernel(), {"customer": "Ada", "question": "Why?"})
    assert rendered.messages is not None
    assert [m.content for m in rendered.messages] == ["You help Ada.", "Why?"]


def test_syntax_error_points_at_message_and_line() -> None:
    broken = kernel(
        messages=[
            {"role": "system", "content": "ok"},
            {"role": "user", "content": "line one\n{{ question }\nline three"},
        ]
    )
    with pytest.raises(TemplateSyntaxError) as info:
        templates.check_syntax(broken)
    assert info.value.details["template"] == "messages[1] (user)"
    assert info.value.details["line"] == 2
    assert "line 2" in info.value.message


@pytest.mark.parametrize(
    "payload",
    [
        "{{ x.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ ''.__class__.__base__.__subclasses__() }}",
        "{{ self.__init__.__globals__.__builtins__ }}",
        "{{ lipsum.__globals__['os'].system('touch /tmp/pwned') }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ x.__dict__ }}",
        "{{ namespace.__init__.__globals__ }}",
    ],
)
def test_template_injection_payloads_fail_safely(payload: str) -> None:
    k = kernel(messages=[{"role": "user", "content": payload}])
    with pytest.raises(InvalidInput) as info:
        templates.render(k, {"x": 1, "self": None})
    assert "unsafe" in info.value.message or "failed to render" in info.value.message


@pytest.mark.parametrize("path", ["support/answer", "a", "team-1/v2.0/x_y"])
def test_valid_paths(path: str) -> None:
    assert validate_prompt_path(path) == path


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        ("", "empty"),
        ("a/../b", "'..'"),
        ("./a", "'.'"),
        ("a//b", "empty segment"),
        ("/a", "empty segment"),
        ("a/", "empty segment"),
        ("a b", "'a b'"),
        ("-/x", "'-'"),
        ("x" * 256, "limit"),
    ],
)
def test_invalid_paths_say_what_is_wrong(path: str, hint: str) -> None:
    with pytest.raises(InvalidPath, match=hint):
        validate_prompt_path(path)


def test_environment_names() -> None:
    assert validate_environment_name("prod-eu") == "prod-eu"
    for bad in ("", "Prod", "a/b", "x" * 65):
        with pytest.raises(InvalidPath):
            validate_environment_name(bad)


PROMPT_FILE = """---
name: Friendly answer
description: Answers support questions
provider: openai
model: gpt-4o-mini
parameters:
  temperature: 0.2
  stop: END
---
system:
You answer support questions for {{ product }}.

user:
{{ question }}
"""


def test_prompt_file_parses_and_round_trips_to_the_same_version() -> None:
    parsed = promptfile.parse(PROMPT_FILE)
    assert parsed.name == "Friendly answer"
    assert parsed.kernel.messages is not None
    assert [m.role for m in parsed.kernel.messages] == ["system", "user"]
    assert parsed.kernel.messages[0].content == "You answer support questions for {{ product }}."
    assert parsed.kernel.parameters.stop == ["END"]
    again = promptfile.parse(
        promptfile.dump(parsed.kernel, name=parsed.name, description=parsed.description)
    )
    assert version_id(again.kernel) == version_id(parsed.kernel)
    assert again.description == "Answers support questions"


def test_completion_and_plain_body_prompt_files() -> None:
    completion = promptfile.parse(
        "---\nprovider: local\nmodel: m\ntype: completion\n---\nQ: {{ q }}\nA:"
    )
    assert completion.kernel.template == "Q: {{ q }}\nA:"
    assert promptfile.parse(promptfile.dump(completion.kernel)).kernel == completion.kernel
    plain = promptfile.parse("---\nprovider: local\nmodel: m\n---\nJust ask {{ q }}\n")
    assert plain.kernel.messages is not None and plain.kernel.messages[0].role == "user"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("provider: x\n", "starts with '---'"),
        ("---\nprovider: x\n", "not closed"),
        ("---\nprovider: [x\n---\nuser:\nhi\n", "not valid YAML"),
        ("---\n- a\n---\nuser:\nhi\n", "mapping"),
        (
            "---\nprovider: openai\nmodel: m\ncolour: red\n---\nuser:\nhi\n",
            "unknown front matter key colour",
        ),
        ("---\nprovider: openai\n---\nuser:\nhi\n", "model: Field required"),
        ("---\nprovider: openai\nmodel: m\n---\nhello\nuser:\nhi\n", "before the first role line"),
    ],
)
def test_bad_prompt_files_name_the_file_and_the_fix(text: str, hint: str) -> None:
    with pytest.raises(InvalidInput, match=hint):
        promptfile.parse(text, source="support/answer.prompt")


def test_diff_shows_template_lines_and_changed_parameters() -> None:
    before = kernel(parameters={"temperature": 0.2})
    after = kernel(
        model="gpt-4o",
        parameters={"temperature": 0.7, "max_tokens": 100},
        messages=[
            {"role": "system", "content": "You help {{ customer }} kindly."},
            {"role": "user", "content": "{{ question }}"},
        ],
    )
    result = diff_kernels(before, after, before_label="a", after_label="b")
    assert "-You help {{ customer }}." in result.template
    assert "+You help {{ customer }} kindly." in result.template
    changes = {c.field: (c.before, c.after) for c in result.changes}
    assert changes == {
        "model": ("gpt-4o-mini", "gpt-4o"),
        "parameters.temperature": (0.2, 0.7),
        "parameters.max_tokens": (None, 100),
    }
    same = diff_kernels(before, before, before_label="a", after_label="a")
    assert same.template == "" and same.changes == []
