"""The provider registry: built-ins and installed plugins, found through one pluggy manager."""

from __future__ import annotations

import threading
from typing import Any

import pluggy

from promptloop.core.errors import InvalidInput
from promptloop.providers import hookspecs
from promptloop.providers.base import Provider

_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None
# Built-in provider modules, registered like any plugin.
_BUILTINS: tuple[str, ...] = (
    "promptloop.providers.openai",
    "promptloop.providers.anthropic",
    "promptloop.providers.local",
)


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with built-ins and `promptloop` entry points loaded."""
    global _manager
    with _lock:
        if _manager is None:
            manager = pluggy.PluginManager("promptloop")
            manager.add_hookspecs(hookspecs)
            for name in _BUILTINS:
                manager.register(__import__(name, fromlist=["_"]), name=name)
            manager.load_setuptools_entrypoints("promptloop")
            _manager = manager
        return _manager


_cache: tuple[frozenset[object], dict[str, Provider]] | None = None


def providers() -> dict[str, Provider]:
    """Every registered provider by name (later registrations win, so plugins can override).

    Asked on every call, so the answer is kept until the set of registered plugins changes.
    """
    global _cache
    manager = plugin_manager()
    plugins = frozenset(manager.get_plugins())  # the objects, not ids: ids are reused
    if _cache is not None and _cache[0] == plugins:
        return _cache[1]
    found: dict[str, Provider] = {}

    def register(provider: Any) -> None:
        # pluggy calls the most recently registered plugin first: the first seen wins.
        found.setdefault(provider.name, provider)

    manager.hook.register_providers(register=register)
    _cache = (plugins, found)
    return found


def get_provider(name: str) -> Provider:
    available = providers()
    if name not in available:
        raise InvalidInput(
            f"Unknown provider {name!r}; installed: {', '.join(sorted(available))}.",
            details={"providers": sorted(available)},
        )
    return available[name]
