"""Generated documentation matches the code; every setting is described."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from promptloop.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _gendocs():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gendocs", ROOT / "scripts" / "gendocs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_is_described() -> None:
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undocumented == []


def test_generated_docs_are_current() -> None:
    gendocs = _gendocs()
    assert (ROOT / "docs" / "settings.md").read_text() == gendocs.settings_markdown(), (
        "docs/settings.md is stale: run `uv run python scripts/gendocs.py`"
    )
    assert (ROOT / "docs" / "cli.md").read_text() == gendocs.cli_markdown(), (
        "docs/cli.md is stale: run `uv run python scripts/gendocs.py`"
    )


def test_every_image_the_docs_show_exists() -> None:
    missing = []
    for page in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            if not (page.parent / target).is_file():
                missing.append(f"{page.name}: {target}")
    assert missing == []
