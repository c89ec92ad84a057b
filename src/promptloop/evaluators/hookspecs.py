"""The evaluator extension point. It lives in the same pluggy project ("promptloop") and the same
plugin manager as the providers' (`promptloop.providers.registry.plugin_manager()`), so one plugin
(a `promptloop` entry point) can add providers and evaluators alike."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("promptloop")
hookimpl = pluggy.HookimplMarker("promptloop")


@hookspec
def register_evaluators() -> list[Any]:
    """Return built-in evaluators (objects that satisfy `promptloop.evaluators.base.Builtin`)."""
    raise NotImplementedError  # a spec: plugins implement it
