"""Every API call as data: method, URL, query, body, and how to read the answer.

Nothing here does I/O, so `Client` and `AsyncClient` share each call's logic and differ only
in how they send. Each builder's signature and docstring become the clients' method.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from promptloop.sdk._models import (
    CallResult,
    DeploymentEvent,
    Diff,
    Environment,
    EnvironmentState,
    Feedback,
    FeedbackKind,
    FeedbackStats,
    FeedbackToken,
    FeedbackValue,
    Health,
    Log,
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
Params = Mapping[str, str | Sequence[str]]
"""Query parameters; a sequence repeats the parameter (`metadata=a:1&metadata=b:2`)."""
Source = Literal["sdk", "api", "gateway", "eval", "playground"]
Category = Literal["vote", "action", "correction", "comment"]
KindType = Literal["boolean", "number", "choice", "text"]
# Inside the *Calls classes `list` names a method, so annotations there say `builtins.list`.


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request below the API root, and how to turn its JSON answer into a result."""

    method: str
    path: str
    read: Callable[[Any], T]
    params: Params = field(default_factory=dict)
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
    params: Params = field(default_factory=dict)

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

    @staticmethod
    def call(
        path: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        environment: str | None = None,
        version: str | None = None,
        messages: Sequence[Message | Mapping[str, Any]] | None = None,
        end_user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        parent_id: str | None = None,
        consent: bool | None = None,
        feedback_token: bool = False,
    ) -> Call[CallResult]:
        """Call the prompt's model with `inputs` and return its answer; the server logs the
        call (`log_id`). The version is `version`, else what `environment` serves, else what
        production serves. `messages` follow the template's (e.g. the conversation so far);
        `end_user`, `metadata`, `trace_id` and `parent_id` are stored on the log; `consent`
        is whether the end user agreed to their content being stored (the project's content
        capture setting decides what it takes). `feedback_token=True` adds a token to the
        result that lets a browser give feedback on this log alone. A provider failure raises
        the APIStatusError for its status, with `details["log_id"]`."""
        body = _call_body(
            inputs,
            environment,
            version,
            messages,
            end_user,
            metadata,
            trace_id,
            parent_id,
            consent,
            feedback_token,
        )
        return Call("POST", _prompt_url(path, "call"), CallResult.model_validate, json=body)

    @staticmethod
    def stream(
        path: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        environment: str | None = None,
        version: str | None = None,
        messages: Sequence[Message | Mapping[str, Any]] | None = None,
        end_user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        parent_id: str | None = None,
        consent: bool | None = None,
        feedback_token: bool = False,
    ) -> Call[CallResult]:
        """Call the prompt as `call` does, streaming the output: iterate the returned stream
        for text as it arrives, then read its `result`. Nothing is sent before iterating."""
        body = _call_body(
            inputs,
            environment,
            version,
            messages,
            end_user,
            metadata,
            trace_id,
            parent_id,
            consent,
            feedback_token,
        )
        body["stream"] = True
        return Call("POST", _prompt_url(path, "call"), CallResult.model_validate, json=body)


class LogCalls:
    """Calls on `/logs`: reading logs back, and the entries `client.logs.log` queues."""

    @staticmethod
    def get(log_id: str) -> Call[Log]:
        """One log by its id (as `log` and `prompts.call` return it)."""
        return Call("GET", _log_url(log_id), Log.model_validate)

    @staticmethod
    def list(
        *,
        prompt: str | None = None,
        version: str | None = None,
        environment: str | None = None,
        source: Source | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        error: bool | None = None,
        end_user: str | None = None,
        trace_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        feedback: str | Sequence[str] | None = None,
    ) -> Pages[Log]:
        """Logs, newest first, that match every filter given: created at or after `since`
        and before `until` (naive datetimes are local time); `error` True for failed calls
        only, False for successful ones; `metadata` pairs that must all be present;
        `feedback` conditions that must all hold: "up" or "down" (a current vote), "any",
        "none" (no feedback yet), or a feedback kind's name ("copied", "correction", …)."""
        params: dict[str, str | builtins.list[str]] = _compact(
            prompt=prompt,
            version=version,
            environment=environment,
            source=source,
            since=None if since is None else _aware(since).isoformat(),
            until=None if until is None else _aware(until).isoformat(),
            error=None if error is None else str(error).lower(),
            end_user=end_user,
            trace_id=trace_id,
        )
        if metadata:
            params["metadata"] = [f"{key}:{value}" for key, value in metadata.items()]
        if feedback:
            params["feedback"] = [feedback] if isinstance(feedback, str) else [*feedback]
        return Pages("/logs", Log, params)

    @staticmethod
    def log(
        *,
        prompt: str | None = None,
        version: str | None = None,
        environment: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        messages: Sequence[Message | Mapping[str, Any]] | None = None,
        output: str | None = None,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
        finish_reason: str | None = None,
        prompt_tokens: int | None = None,
        output_tokens: int | None = None,
        cost: float | None = None,
        latency_ms: float | None = None,
        ttft_ms: float | None = None,
        error: str | None = None,
        end_user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        parent_id: str | None = None,
        consent: bool | None = None,
        created_at: datetime | None = None,
        source: Source = "sdk",
    ) -> Json:
        """Record a call your code made, in the background; returns the log's id at once.

        Never blocks on the network and never raises: the log is queued and sent in a batch
        by the client's log thread (`flush()` waits for it). Name `prompt` (and `version`) to
        link the log to a saved version; `cost` defaults to the catalogue's price of the
        tokens; `created_at` to now; `consent` says whether the end user agreed to their
        content being stored. Values are serialised when sent, so do not change them
        after logging; a log that cannot be sent is dropped and reported through the
        `promptloop` logger."""
        return _compact(
            id=uuid.uuid4().hex,
            source=source,
            prompt=prompt,
            version=version,
            environment=environment,
            provider=provider,
            model=model,
            inputs=inputs,
            messages=messages,
            output=output,
            tool_calls=tool_calls,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            cost=cost,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            error=error,
            end_user=end_user,
            metadata=metadata,
            trace_id=trace_id,
            parent_id=parent_id,
            consent=consent,
            created_at=created_at or datetime.now(UTC),
        )


class FeedbackCalls:
    """Calls on feedback: a log's `/logs/{id}/feedback`, `/feedback-kinds` and
    `/feedback/stats`. Every piece of feedback names a kind the project declared; each project
    starts with "rating" (a vote), "copied", "accepted", "rejected", "regenerated", "shared"
    and "retained" (actions), "correction" and "comment"."""

    @staticmethod
    def vote(
        log_id: str,
        value: bool | float | str,
        *,
        name: str = "rating",
        end_user: str | None = None,
    ) -> Call[Feedback]:
        """Vote on a log's output: "up" or "down" (or True/False), a number on the kind's
        scale, or one of its choices. `end_user` names who voted (else: the API key's owner);
        a newer vote by the same person replaces theirs in rates and filters."""
        return _feedback(log_id, name=name, value=value, end_user=end_user)

    @staticmethod
    def action(
        log_id: str,
        name: str,
        *,
        value: float | None = None,
        delay_s: float | None = None,
        end_user: str | None = None,
    ) -> Call[Feedback]:
        """Record what the user did with the output ("copied", "accepted", "rejected",
        "regenerated", "shared", or a kind you declared), `delay_s` seconds after it was
        shown, with an optional number as `value`."""
        return _feedback(log_id, name=name, value=value, delay_s=delay_s, end_user=end_user)

    @staticmethod
    def correct(
        log_id: str, text: str, *, name: str = "correction", end_user: str | None = None
    ) -> Call[Feedback]:
        """Record the text the user ended up with instead of the output; the server keeps its
        similarity to the output and a diff."""
        return _feedback(log_id, name=name, value=text, end_user=end_user)

    @staticmethod
    def comment(
        log_id: str, text: str, *, name: str = "comment", end_user: str | None = None
    ) -> Call[Feedback]:
        """Attach free text to a log."""
        return _feedback(log_id, name=name, value=text, end_user=end_user)

    @staticmethod
    def give(
        log_id: str,
        name: str,
        value: FeedbackValue = None,
        *,
        delay_s: float | None = None,
        end_user: str | None = None,
    ) -> Call[Feedback]:
        """Give feedback of any declared kind; its category decides what `value` may be.
        BadRequestError (with the server's reason) when the kind is unknown or the value does
        not fit it; NotFoundError when there is no such log."""
        return _feedback(log_id, name=name, value=value, delay_s=delay_s, end_user=end_user)

    @staticmethod
    def list(log_id: str) -> Call[builtins.list[Feedback]]:
        """Every piece of feedback on a log, oldest first."""
        return Call("GET", _log_url(log_id, "feedback"), _list_of(Feedback))

    @staticmethod
    def token(log_id: str) -> Call[FeedbackToken]:
        """A short-lived token that lets a browser post feedback on this log alone to
        `/api/v1/feedback`, without an API key: give it to your page with the output."""
        return Call("POST", _log_url(log_id, "feedback-token"), FeedbackToken.model_validate)

    @staticmethod
    def kinds() -> Call[builtins.list[FeedbackKind]]:
        """The kinds of feedback the project collects, the defaults first."""
        return Call("GET", "/feedback-kinds", _list_of(FeedbackKind))

    @staticmethod
    def declare(
        name: str,
        category: Category,
        *,
        type: KindType | None = None,
        choices: Sequence[str] | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
        higher_is_better: bool = True,
        description: str | None = None,
    ) -> Call[FeedbackKind]:
        """Declare a kind of feedback, e.g. `declare("stars", "vote", type="number",
        minimum=1, maximum=5)`. `type` defaults to boolean for votes, number for actions and
        text for the others; `higher_is_better=False` for kinds where up is bad. ConflictError
        if the project has it already."""
        body = _compact(
            name=name,
            category=category,
            type=type,
            choices=None if choices is None else [*choices],
            minimum=minimum,
            maximum=maximum,
            higher_is_better=higher_is_better,
            description=description,
        )
        return Call("POST", "/feedback-kinds", FeedbackKind.model_validate, json=body)

    @staticmethod
    def stats(
        *,
        by: Literal["version", "environment"] = "version",
        prompt: str | None = None,
        environment: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Call[builtins.list[FeedbackStats]]:
        """Feedback rates per prompt version (or per environment, `by="environment"`), with
        95% confidence intervals, over logs created at or after `since` and before `until`
        (naive datetimes are local time)."""
        params = _compact(
            by=by,
            prompt=prompt,
            environment=environment,
            since=None if since is None else _aware(since).isoformat(),
            until=None if until is None else _aware(until).isoformat(),
        )
        return Call("GET", "/feedback/stats", _list_of(FeedbackStats), params=params)


def _feedback(
    log_id: str,
    *,
    name: str,
    value: FeedbackValue = None,
    delay_s: float | None = None,
    end_user: str | None = None,
) -> Call[Feedback]:
    body = _compact(name=name, value=value, delay_s=delay_s, end_user=end_user, source="sdk")
    return Call("POST", _log_url(log_id, "feedback"), Feedback.model_validate, json=body)


def _log_url(log_id: str, *sub: str) -> str:
    return "/".join(["/logs", quote(log_id, safe=""), *sub])


def _call_body(
    inputs: Mapping[str, Any] | None,
    environment: str | None,
    version: str | None,
    messages: Sequence[Message | Mapping[str, Any]] | None,
    end_user: str | None,
    metadata: Mapping[str, Any] | None,
    trace_id: str | None,
    parent_id: str | None,
    consent: bool | None,
    feedback_token: bool,
) -> Json:
    return _compact(
        inputs=dict(inputs or {}),
        environment=environment,
        version=version,
        messages=None if messages is None else [_plain(m) for m in messages],
        end_user=end_user,
        metadata=None if metadata is None else dict(metadata),
        trace_id=trace_id,
        parent_id=parent_id,
        consent=consent,
        feedback_token=feedback_token or None,
    )


def _aware(moment: datetime) -> datetime:
    """`moment` with its time zone; a naive one is local time, as Python's own functions read it."""
    return moment if moment.tzinfo is not None else moment.astimezone()


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
