"""Extension points. A plugin is a module or object with `@hookimpl` functions, registered with
the `promptloop` entry point group or by `registry.plugin_manager().register(...)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("promptloop")
hookimpl = pluggy.HookimplMarker("promptloop")


@hookspec
def register_providers(register: Callable[[Any], None]) -> None:
    """Register model providers by calling `register(provider_instance)` for each."""
