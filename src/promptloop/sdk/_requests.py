"""Every API call as data: method, URL, query, body, and how to read the answer.

Nothing here does I/O, so `Client` and `AsyncClient` share each call's logic and differ only
in how they send. Each builder's signature and docstring become the clients' method.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from promptloop.sdk._models import (
    DeploymentEvent,
    Diff,
    Environment,
    EnvironmentState,
    Health,
    Message,
    Parameters,
    Project,
    Prompt,
    PromptVersion,
    Rendered,
    SavedVersion,
    Tool,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Json = dict[str, Any]
# Inside the *Calls classes `list` names a method, so annotations there say `builtins.list`.


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request below the API root, and how to turn its JSON answer into a result."""

    method: str
    path: str
    read: Callable[[Any], T]
    params: Mapping[str, str] = field(default_factory=dict)
    json: Json | None = None


@dataclass(frozen=True)
class Page(Generic[M]):
    items: list[M]
    next_cursor: str | None


@dataclass(frozen=True)
class Pages(Generic[M]):
    """A list endpoint answering `{data, next_cursor}`; iterating it follows the cursor."""

    path: str
    item: type[M]
    params: Mapping[str, str] = field(default_factory=dict)

    def first(self) -> Call[Page[M]]:
        return self._page(None)

    def after(self, page: Page[M]) -> Call[Page[M]] | None:
        """The call for the page after `page`, or None when it was the last."""
        return None if page.next_cursor is None else self._page(page.next_cursor)

    def _page(self, cursor: str | None) -> Call[Page[M]]:
        params = dict(self.params) if cursor is None else {**self.params, "cursor": cursor}
        return Call("GET", self.path, self._read, params=params)

    def _read(self, body: Any) -> Page[M]:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ValueError("expected a page: {data, next_cursor}")
        cursor = body.get("next_cursor")
        items = [self.item.model_validate(item) for item in body["data"]]
        return Page(items, cursor if isinstance(cursor, str) else None)


def health() -> Call[Health]:
    """Check that the server and its database answer."""
    return Call("GET", "/health", Health.model_validate)


class ProjectCalls:
    """Calls on `/projects`."""

    @staticmethod
    def list() -> Call[builtins.list[Project]]:
        """Every project on the server."""
        return Call("GET", "/projects", _list_of(Project))

    @staticmethod
    def create(name: str) -> Call[Project]:
        """Create a project (with the default environments); ConflictError if it exists."""
        return Call("POST", "/projects", Project.model_validate, json={"name": name})


class EnvironmentCalls:
    """Calls on `/environments` of the client's project."""

    @staticmethod
    def list() -> Call[builtins.list[Environment]]:
        """The project's environments."""
        return Call("GET", "/environments", _list_of(Environment))

    @staticmethod
    def create(name: str, *, protected: bool = False) -> Call[Environment]:
        """Create an environment; protected ones need a higher role to deploy to."""
        body = {"name": name, "protected": protected}
        return Call("POST", "/environments", Environment.model_validate, json=body)


class PromptCalls:
    """Calls on `/prompts` and a prompt's sub-resources under `/prompts/{path}/-/`."""

    @staticmethod
    def create(path: str, *, description: str | None = None) -> Call[Prompt]:
        """Create an empty prompt; saving a version creates the prompt too."""
        body = _compact(path=path, description=description)
        return Call("POST", "/prompts", Prompt.model_validate, json=body)

    @staticmethod
    def list(*, prefix: str | None = None) -> Pages[Prompt]:
        """Prompts in path order, optionally only those under `prefix` (e.g. "support/")."""
        return Pages("/prompts", Prompt, _compact(prefix=prefix))

    @staticmethod
    def get_prompt(path: str) -> Call[Prompt]:
        """The prompt itself (path, description), not a version of it."""
        return Call("GET", _prompt_url(path), Prompt.model_validate)

    @staticmethod
    def get(
        path: str, *, environment: str | None = None, version: str | None = None
    ) -> Call[PromptVersion]:
        """The version to use: `version` (id or unique prefix), what `environment` serves, or
        else the latest saved."""
        params = _compact(environment=environment, version=version)
        return Call(
            "GET", _prompt_url(path, "version"), PromptVersion.model_validate, params=params
        )

    @staticmethod
    def save(
        path: str,
        *,
        provider: str,
        model: str,
        messages: Sequence[Message | Mapping[str, Any]] | None = None,
        template: str | None = None,
        parameters: Parameters | Mapping[str, Any] | None = None,
        tools: Sequence[Tool | Mapping[str, Any]] | None = None,
        retrieval: Mapping[str, Any] | None = None,
        name: str | None = None,
        message: str | None = None,
        author: str | None = None,
        description: str | None = None,
    ) -> Call[SavedVersion]:
        """Save a version: chat `messages` or a completion `template`. Saving content that
        exists returns that version with `created` False; `description` describes the prompt
        if this save creates it."""
        body = _compact(
            provider=provider,
            model=model,
            messages=None if messages is None else [_plain(m) for m in messages],
            template=template,
            parameters=None if parameters is None else _plain(parameters),
            tools=None if tools is None else [_plain(t) for t in tools],
            retrieval=None if retrieval is None else dict(retrieval),
            name=name,
            message=message,
            author=author,
            description=description,
        )
        return Call("POST", _prompt_url(path, "versions"), SavedVersion.model_validate, json=body)

    @staticmethod
    def versions(path: str) -> Pages[PromptVersion]:
        """Every version of the prompt, newest first."""
        return Pages(_prompt_url(path, "versions"), PromptVersion)

    @staticmethod
    def render(
        path: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        environment: str | None = None,
        version: str | None = None,
    ) -> Call[Rendered]:
        """Render a version (chosen as in `get`) with `inputs`; BadRequestError lists every
        missing variable in `details["missing"]`."""
        body = _compact(inputs=dict(inputs or {}), environment=environment, version=version)
        return Call("POST", _prompt_url(path, "render"), Rendered.model_validate, json=body)

    @staticmethod
    def diff(path: str, before: str, after: str) -> Call[Diff]:
        """What changed from version `before` to version `after` (ids or unique prefixes)."""
        params = {"from": before, "to": after}
        return Call("GET", _prompt_url(path, "diff"), Diff.model_validate, params=params)

    @staticmethod
    def deploy(
        path: str, version: str, *, environment: str, message: str | None = None
    ) -> Call[DeploymentEvent]:
        """Make `environment` serve `version`; deploying what it serves already is a no-op."""
        url = _prompt_url(path, "deployments", environment)
        body = _compact(version=version, message=message)
        return Call("PUT", url, DeploymentEvent.model_validate, json=body)

    @staticmethod
    def rollback(
        path: str, *, environment: str, message: str | None = None
    ) -> Call[DeploymentEvent]:
        """Undo the latest deploy to `environment` not undone yet; repeat to go further back."""
        url = _prompt_url(path, "deployments", environment, "rollback")
        return Call("POST", url, DeploymentEvent.model_validate, json=_compact(message=message))

    @staticmethod
    def deployments(path: str) -> Call[builtins.list[EnvironmentState]]:
        """What each of the project's environments serves for this prompt."""
        return Call("GET", _prompt_url(path, "deployments"), _list_of(EnvironmentState))

    @staticmethod
    def history(path: str, *, environment: str | None = None) -> Pages[DeploymentEvent]:
        """Deploys and rollbacks of the prompt, newest first, optionally in one environment."""
        params = _compact(environment=environment)
        return Pages(_prompt_url(path, "history"), DeploymentEvent, params)


def _prompt_url(path: str, *sub: str) -> str:
    # Paths keep their slashes (the server routes `{path:path}`); sub-resources follow `/-/`,
    # which no path can contain because every segment starts with a letter or digit.
    url = f"/prompts/{quote(path, safe='/')}"
    return "/-/".join([url, "/".join(quote(part, safe="") for part in sub)]) if sub else url


def _compact(**fields: Any) -> dict[str, Any]:
    """The fields that are set; unset ones are left to the server's defaults."""
    return {key: value for key, value in fields.items() if value is not None}


def _plain(value: BaseModel | Mapping[str, Any]) -> Json:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    return dict(value)


def _list_of(model: type[M]) -> Callable[[Any], list[M]]:
    def read(body: Any) -> list[M]:
        if not isinstance(body, list):
            raise ValueError("expected a JSON list")
        return [model.model_validate(item) for item in body]

    return read
