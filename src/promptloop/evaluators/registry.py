"""The built-in evaluator registry: built-ins and installed plugins, found through the one pluggy
manager that also finds the providers (`promptloop.providers.registry.plugin_manager()`).

The evaluator hookspec and the built-in evaluators join that manager on first use here, so the
providers' registry needs to know nothing about evaluators.
"""

from __future__ import annotations

import logging
import threading

import pluggy

from promptloop.core.errors import InvalidInput
from promptloop.evaluators import builtins as builtin_evaluators
from promptloop.evaluators import hookspecs
from promptloop.evaluators.base import RETURN_TYPES, Builtin
from promptloop.providers.registry import plugin_manager as _shared_manager

__all__ = ["builtins", "get_builtin", "plugin_manager"]

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_BUILTINS_PLUGIN = "promptloop.evaluators.builtins"
_cache: tuple[frozenset[object], dict[str, Builtin]] | None = None


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with the evaluator hookspec and built-ins added."""
    manager = _shared_manager()
    with _lock:
        caller = getattr(manager.hook, "register_evaluators", None)
        if caller is None or not caller.has_spec():
            # Plugins loaded before this (entry points) are checked against the spec now.
            manager.add_hookspecs(hookspecs)
        if not manager.has_plugin(_BUILTINS_PLUGIN):
            # Registered after the entry points, but its hook is `trylast`: plugins still win.
            manager.register(builtin_evaluators, name=_BUILTINS_PLUGIN)
    return manager


def builtins() -> dict[str, Builtin]:
    """Every registered built-in evaluator by name (later registrations win, so plugins can
    override). Kept until the set of registered plugins changes."""
    global _cache
    manager = plugin_manager()
    plugins = frozenset(manager.get_plugins())  # the objects, not ids: ids are reused
    if _cache is not None and _cache[0] == plugins:
        return _cache[1]
    found: dict[str, Builtin] = {}
    # pluggy calls the most recently registered plugin first: the first seen wins.
    for registered in manager.hook.register_evaluators():
        for evaluator in registered or ():
            if getattr(evaluator, "returns", None) not in RETURN_TYPES:
                # One broken plugin must not take every evaluator down with it.
                _log.warning(
                    "Ignoring evaluator %r: it returns %r, not one of %s.",
                    getattr(evaluator, "name", evaluator),
                    getattr(evaluator, "returns", None),
                    ", ".join(RETURN_TYPES),
                )
                continue
            found.setdefault(evaluator.name, evaluator)
    _cache = (plugins, found)
    return found


def get_builtin(name: str) -> Builtin:
    """The built-in evaluator called `name`; InvalidInput listing the names when there is none."""
    available = builtins()
    if name not in available:
        raise InvalidInput(
            f"Unknown built-in evaluator {name!r}; available: {', '.join(sorted(available))}.",
            details={"evaluators": sorted(available)},
        )
    return available[name]
