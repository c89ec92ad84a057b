"""What changed between two kernels: a unified diff of the templates and a field-by-field list."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel

from promptloop.core.kernel import Kernel


class Change(BaseModel):
    """One changed setting: its dotted name and the value before and after (None when unset)."""

    field: str
    before: Any = None
    after: Any = None


class KernelDiff(BaseModel):
    """Template text as a unified diff, plus every other changed setting."""

    template: str
    changes: list[Change]


def template_text(kernel: Kernel) -> str:
    """The templates as one text, messages introduced by their role (as in prompt files)."""
    if kernel.messages is None:
        return kernel.template or ""
    return "\n\n".join(f"{m.role}:\n{m.content}" for m in kernel.messages) + "\n"


def diff_kernels(
    before: Kernel, after: Kernel, *, before_label: str, after_label: str
) -> KernelDiff:
    """Compare two kernels; identical kernels give an empty template diff and no changes."""
    template = "".join(
        difflib.unified_diff(
            template_text(before).splitlines(keepends=True),
            template_text(after).splitlines(keepends=True),
            fromfile=before_label,
            tofile=after_label,
        )
    )
    old = _flatten(before.model_dump(mode="json", exclude={"messages", "template"}))
    new = _flatten(after.model_dump(mode="json", exclude={"messages", "template"}))
    changes = [
        Change(field=key, before=old.get(key), after=new.get(key))
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]
    if (before.messages is None) != (after.messages is None):
        kind = {True: "completion", False: "chat"}
        changes.insert(
            0,
            Change(
                field="kind",
                before=kind[before.messages is None],
                after=kind[after.messages is None],
            ),
        )
    return KernelDiff(template=template, changes=changes)


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict) and item and key in ("parameters", "extras"):
            flat.update(_flatten(item, f"{name}."))
        elif item is not None and item != {} and item != []:
            flat[name] = item
    return flat
