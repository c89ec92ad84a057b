"""Every API call as data: method, URL, query, body, and how to read the answer.

Nothing here talks to the server, so `Client` and `AsyncClient` share each call's logic and
differ only in how they send. Each builder's signature and docstring become the clients' method.
"""

from __future__ import annotations

import builtins
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from promptloop.sdk._models import (
    CallResult,
    Datapoint,
    DatapointComparison,
    Dataset,
    DatasetFromLogs,
    DatasetPreview,
    DatasetVersion,
    DeploymentEvent,
    Diff,
    Environment,
    EnvironmentState,
    EvaluationRun,
    Evaluator,
    Feedback,
    FeedbackKind,
    FeedbackStats,
    FeedbackToken,
    FeedbackValue,
    FineTune,
    Health,
    LocalPlan,
    Log,
    Message,
    Outcome,
    Parameters,
    PendingJudgment,
    Project,
    Prompt,
    PromptVersion,
    Rendered,
    RunOverview,
    SavedDatasetVersion,
    SavedEvaluator,
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
EvaluatorKind = Literal["builtin", "code", "llm", "human"]
DatasetFormat = Literal["csv", "jsonl"]
DatapointIn = Datapoint | Mapping[str, Any]
"""A datapoint to save: `{"inputs": {...}, "messages": [...], "target": ...}`, or one read
from another dataset."""
# Inside the *Calls classes `list` names a method, so annotations there say `builtins.list`.


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request below the API root, and how to turn its JSON answer into a result.

    `files` and `form` make the body a multipart form instead of JSON; `raw` hands `read` the
    answer's bytes instead of its JSON (a download).
    """

    method: str
    path: str
    read: Callable[[Any], T]
    params: Params = field(default_factory=dict)
    json: Json | None = None
    files: Mapping[str, tuple[str, bytes]] | None = None
    form: Mapping[str, str] | None = None
    raw: bool = False


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
        judgment: str | Sequence[str] | None = None,
    ) -> Pages[Log]:
        """Logs, newest first, that match every filter given: created at or after `since`
        and before `until` (naive datetimes are local time); `error` True for failed calls
        only, False for successful ones; `metadata` pairs that must all be present;
        `feedback` conditions that must all hold: "up" or "down" (a current vote), "any",
        "none" (no feedback yet), or a feedback kind's name ("copied", "correction", …);
        `judgment` evaluator judgments that must all hold, as "<evaluator><op><value>" with op
        >=, <=, >, <, = or != ("helpful>=4", "exact=true")."""
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
        if judgment:
            params["judgment"] = [judgment] if isinstance(judgment, str) else [*judgment]
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


class DatasetCalls:
    """Calls on `/datasets` and a dataset's sub-resources under `/datasets/{name}/-/`."""

    @staticmethod
    def create(
        name: str,
        datapoints: Sequence[DatapointIn],
        *,
        message: str | None = None,
        description: str | None = None,
    ) -> Call[SavedDatasetVersion]:
        """Save a version holding exactly `datapoints`, in order; the first save creates the
        dataset (described by `description`). Identical content returns the existing version
        with `created` False."""
        body = _compact(
            datapoints=[_datapoint(d) for d in datapoints],
            message=message,
            description=description,
        )
        url = _dataset_url(name, "versions")
        return Call("POST", url, SavedDatasetVersion.model_validate, json=body)

    @staticmethod
    def edit(
        name: str,
        *,
        base: str = "latest",
        add: Sequence[DatapointIn] = (),
        remove: Sequence[str | Datapoint] = (),
        message: str | None = None,
    ) -> Call[SavedDatasetVersion]:
        """Save a new version from `base` (`latest`, a version id or a unique prefix): the
        datapoints in `remove` (keys, or datapoints read back) left out, then `add` appended.
        The base version is unchanged."""
        body = _compact(
            base=base,
            add=[_datapoint(d) for d in add],
            remove=[d.key if isinstance(d, Datapoint) else d for d in remove],
            message=message,
        )
        url = _dataset_url(name, "versions")
        return Call("POST", url, SavedDatasetVersion.model_validate, json=body)

    @staticmethod
    def upload(
        name: str,
        file: str | os.PathLike[str] | bytes,
        *,
        format: DatasetFormat | None = None,
        message: str | None = None,
        description: str | None = None,
    ) -> Call[SavedDatasetVersion]:
        """Save a version from a CSV file (a header row; `target` and `messages` columns are
        special, the others are inputs) or a JSON-lines file, given by path or as bytes. The
        format is `format`, else the file name's extension; bytes need `format`. All or
        nothing: BadRequestError lists the problems by line."""
        if isinstance(file, bytes):
            if format is None:
                raise ValueError("Give format='csv' or format='jsonl' to upload bytes.")
            filename, data = f"upload.{format}", file
        else:
            filename, data = Path(file).name, Path(file).read_bytes()
        form = _compact(format=format, message=message, description=description)
        return Call(
            "POST",
            _dataset_url(name, "upload"),
            SavedDatasetVersion.model_validate,
            files={"file": (filename, data)},
            form=form,
        )

    @staticmethod
    def from_logs(
        name: str,
        *,
        target: Literal["output", "correction", "corrected", "none"] = "output",
        limit: int = 1000,
        message: str | None = None,
        description: str | None = None,
        prompt: str | None = None,
        version: str | None = None,
        environment: str | None = None,
        source: Source | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        error: bool | None = None,
        end_user: str | None = None,
        metadata: Mapping[str, str] | None = None,
        feedback: str | Sequence[str] | None = None,
        judgment: str | Sequence[str] | None = None,
    ) -> Call[DatasetFromLogs]:
        """Save a version from up to `limit` logs matching every filter (as in `logs.list`):
        each log's inputs and messages, with its output as the target (`target="correction"`:
        the text a person corrected it to, only logs with one; `"corrected"`: that correction
        where there is one, else the output; `"none"`: no target). Logs whose content was
        withheld or whose call failed, and duplicates, are skipped and counted."""
        filters = _log_filters(
            prompt=prompt,
            version=version,
            environment=environment,
            source=source,
            since=since,
            until=until,
            error=error,
            end_user=end_user,
            metadata=metadata,
            feedback=feedback,
            judgment=judgment,
        )
        body = _compact(
            filters=filters, target=target, limit=limit, message=message, description=description
        )
        url = _dataset_url(name, "from-logs")
        return Call("POST", url, DatasetFromLogs.model_validate, json=body)

    @staticmethod
    def preview(
        *,
        name: str | None = None,
        target: Literal["output", "correction", "corrected", "none"] = "output",
        limit: int = 1000,
        sample: int = 5,
        held_out_fraction: float = 0.2,
        prompt: str | None = None,
        version: str | None = None,
        environment: str | None = None,
        source: Source | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        error: bool | None = None,
        end_user: str | None = None,
        metadata: Mapping[str, str] | None = None,
        feedback: str | Sequence[str] | None = None,
        judgment: str | Sequence[str] | None = None,
    ) -> Call[DatasetPreview]:
        """What `from_logs` would save with the same arguments, saving nothing: the count, the
        first `sample` datapoints as they would be stored (corrections in place of outputs,
        duplicates dropped), the logs skipped by reason, the version id it would have (with
        `name`: whether that dataset holds it already), and how a fine-tune holding out
        `held_out_fraction` would split it."""
        filters = _log_filters(
            prompt=prompt,
            version=version,
            environment=environment,
            source=source,
            since=since,
            until=until,
            error=error,
            end_user=end_user,
            metadata=metadata,
            feedback=feedback,
            judgment=judgment,
        )
        body = _compact(
            filters=filters,
            target=target,
            limit=limit,
            name=name,
            sample=sample,
            held_out_fraction=held_out_fraction,
        )
        return Call("POST", "/datasets/-/preview", DatasetPreview.model_validate, json=body)

    @staticmethod
    def list(*, prefix: str | None = None) -> Pages[Dataset]:
        """Datasets in name order, optionally only those under `prefix` (e.g. "support/")."""
        return Pages("/datasets", Dataset, _compact(prefix=prefix))

    @staticmethod
    def get(name: str) -> Call[Dataset]:
        """A dataset, with its latest version's id and size."""
        return Call("GET", _dataset_url(name), Dataset.model_validate)

    @staticmethod
    def version(name: str, version: str = "latest") -> Call[DatasetVersion]:
        """One version: `latest`, an id, or a unique prefix (4+ hex digits)."""
        url = _dataset_url(name, "versions", version)
        return Call("GET", url, DatasetVersion.model_validate)

    @staticmethod
    def versions(name: str) -> Pages[DatasetVersion]:
        """Every version of the dataset, newest first."""
        return Pages(_dataset_url(name, "versions"), DatasetVersion)

    @staticmethod
    def datapoints(name: str, version: str = "latest") -> Pages[Datapoint]:
        """A version's datapoints, in order (fetched a page at a time as you iterate)."""
        return Pages(_dataset_url(name, "versions", version, "datapoints"), Datapoint)

    @staticmethod
    def download(
        name: str, version: str = "latest", format: DatasetFormat = "jsonl"
    ) -> Call[bytes]:
        """A version as a file: JSON lines (with provenance), or CSV; `upload` reads both."""
        url = _dataset_url(name, "versions", version, "download")
        return Call("GET", url, bytes, params={"format": format}, raw=True)


class EvaluatorCalls:
    """Calls on `/evaluators`: versioned judges of a log's output."""

    @staticmethod
    def save(
        name: str,
        kind: EvaluatorKind,
        *,
        builtin: str | None = None,
        config: Mapping[str, Any] | None = None,
        source: str | None = None,
        timeout_s: float | None = None,
        judge: Mapping[str, str] | None = None,
        returns: KindType | None = None,
        choices: Sequence[str] | None = None,
        higher_is_better: bool | None = None,
        message: str | None = None,
        description: str | None = None,
    ) -> Call[SavedEvaluator]:
        """Save an evaluator version, by `kind`: "builtin" names one (`builtin="exact_match"`,
        with its `config`); "code" is Python `source` defining `def evaluate(log, datapoint)`,
        run sandboxed (developers and admins only); "llm" asks a judge prompt
        (`judge={"prompt": path, "version": id}` or `"environment"`); "human" waits for a
        reviewer. Identical content returns the existing version with `created` False."""
        body = _compact(
            kind=kind,
            builtin=builtin,
            config=None if config is None else dict(config),
            source=source,
            timeout_s=timeout_s,
            judge=None if judge is None else dict(judge),
            returns=returns,
            choices=None if choices is None else [*choices],
            higher_is_better=higher_is_better,
            message=message,
            description=description,
        )
        url = _evaluator_url(name, "versions")
        return Call("POST", url, SavedEvaluator.model_validate, json=body)

    @staticmethod
    def list() -> Call[builtins.list[Evaluator]]:
        """Every evaluator of the project, at its latest version."""
        return Call("GET", "/evaluators", _list_of(Evaluator))

    @staticmethod
    def versions(name: str) -> Call[builtins.list[Evaluator]]:
        """Every version of an evaluator, newest first."""
        return Call("GET", _evaluator_url(name, "versions"), _list_of(Evaluator))

    @staticmethod
    def try_on(
        log_id: str,
        evaluator: str | None = None,
        draft: Mapping[str, Any] | None = None,
        target: Any = None,
    ) -> Call[Outcome]:
        """Judge one log with a saved `evaluator` ("name" or "name@version") or an unsaved
        `draft` (the arguments of `save`, as a dict), against `target`; nothing is stored."""
        body = _compact(
            log_id=log_id,
            evaluator=evaluator,
            draft=None if draft is None else dict(draft),
            target=target,
        )
        return Call("POST", "/evaluators/-/try", Outcome.model_validate, json=body)


class EvaluationCalls:
    """Calls on `/evaluations` (runs) and `/judgments` (human review)."""

    @staticmethod
    def start(
        dataset: str,
        candidates: Sequence[Mapping[str, Any]],
        evaluators: Sequence[str],
        *,
        dataset_version: str | None = None,
        control: int | None = None,
        concurrency: int = 8,
        thresholds: Mapping[str, float] | None = None,
        name: str | None = None,
        mode: Literal["server", "local"] = "server",
    ) -> Call[EvaluationRun]:
        """Start a run: each candidate (`{"prompt", "version" | "environment", "model"?,
        "label"?}`) answers every datapoint of `dataset` (its latest version, or
        `dataset_version`), and each of `evaluators` ("name" or "name@version") judges the
        answers. `control` is the index of the candidate the others are compared with; by
        default what production serves. The run fails if a candidate regresses against the
        control, or its mean misses `thresholds[evaluator]`. Returns at once: `wait` for it."""
        body = _compact(
            dataset=dataset,
            dataset_version=dataset_version,
            candidates=[dict(c) for c in candidates],
            evaluators=[*evaluators],
            control=control,
            concurrency=concurrency,
            thresholds=None if thresholds is None else dict(thresholds),
            name=name,
            mode=mode,
        )
        return Call("POST", "/evaluations", EvaluationRun.model_validate, json=body)

    @staticmethod
    def get(run_id: str) -> Call[EvaluationRun]:
        """A run: its status, progress and statistics (final once completed)."""
        return Call("GET", _run_url(run_id), EvaluationRun.model_validate)

    @staticmethod
    def list() -> Pages[RunOverview]:
        """The project's runs, newest first."""
        return Pages("/evaluations", RunOverview)

    @staticmethod
    def cancel(run_id: str) -> Call[EvaluationRun]:
        """Stop a queued or running run; what was judged so far stays."""
        return Call("POST", _run_url(run_id, "cancel"), EvaluationRun.model_validate)

    @staticmethod
    def comparison(
        run_id: str, evaluator: str, candidate: str | None = None, *, limit: int = 50
    ) -> Call[builtins.list[DatapointComparison]]:
        """Per datapoint, a candidate (by label; default: the first besides the control)
        against the control on one evaluator, the biggest regressions first."""
        params = _compact(evaluator=evaluator, candidate=candidate, limit=str(limit))
        url = _run_url(run_id, "comparison")
        return Call("GET", url, _list_of(DatapointComparison), params=params)

    @staticmethod
    def datapoints(run_id: str) -> Call[LocalPlan]:
        """Local runs: the candidates' labels and the datapoints to run your function on."""
        return Call("GET", _run_url(run_id, "datapoints"), LocalPlan.model_validate)

    @staticmethod
    def record(run_id: str, outputs: Sequence[Mapping[str, Any]]) -> Call[int]:
        """Local runs: record up to 1000 outputs, each `{"datapoint": key, "output"` or
        `"error", "candidate"?, "latency_ms"?, "prompt_tokens"?, "output_tokens"?, "cost"?,
        "metadata"?}`; they are logged, then judged. Returns how many were recorded."""
        body = {"outputs": [dict(o) for o in outputs]}
        return Call("POST", _run_url(run_id, "outputs"), _recorded, json=body)

    @staticmethod
    def finish(run_id: str) -> Call[EvaluationRun]:
        """Local runs: every output is in; the server judges what is left, then completes."""
        return Call("POST", _run_url(run_id, "finish"), EvaluationRun.model_validate)

    @staticmethod
    def pending_judgments(
        *, run: str | None = None, limit: int = 50
    ) -> Call[builtins.list[PendingJudgment]]:
        """Human judgments waiting for a reviewer (of one run, or all), oldest first."""
        params = _compact(run=run, limit=str(limit))
        return Call("GET", "/judgments/pending", _list_of(PendingJudgment), params=params)

    @staticmethod
    def judge(
        judgment_id: str, value: FeedbackValue, *, explanation: str | None = None
    ) -> Call[Outcome]:
        """Give a pending human judgment; `value` must fit what the evaluator returns."""
        body = {"value": value, **_compact(explanation=explanation)}
        url = "/judgments/" + quote(judgment_id, safe="")
        return Call("POST", url, Outcome.model_validate, json=body)


def _datapoint(datapoint: DatapointIn) -> Json:
    if isinstance(datapoint, Datapoint):  # read from a dataset: its content and provenance
        return datapoint.model_dump(
            mode="json", include={"inputs", "messages", "target", "source", "log_id"}
        )
    return dict(datapoint)


def _recorded(body: Any) -> int:
    if not isinstance(body, dict) or not isinstance(body.get("recorded"), int):
        raise ValueError("expected {recorded}")
    recorded: int = body["recorded"]
    return recorded


def _strings(value: str | Sequence[str]) -> builtins.list[str]:
    return [value] if isinstance(value, str) else [*value]


def _dataset_url(name: str, *sub: str) -> str:
    return _under("/datasets", name, *sub)


def _evaluator_url(name: str, *sub: str) -> str:
    return "/-/".join([f"/evaluators/{quote(name, safe='')}", "/".join(sub)])


def _run_url(run_id: str, *sub: str) -> str:
    return "/".join(["/evaluations", quote(run_id, safe=""), *sub])


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
    return _under("/prompts", path, *sub)


def _under(root: str, path: str, *sub: str) -> str:
    # Paths keep their slashes (the server routes `{path:path}`); sub-resources follow `/-/`,
    # which no path can contain because every segment starts with a letter or digit.
    url = f"{root}/{quote(path, safe='/')}"
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


def _log_filters(
    *,
    prompt: str | None,
    version: str | None,
    environment: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    error: bool | None,
    end_user: str | None,
    metadata: Mapping[str, str] | None,
    feedback: str | Sequence[str] | None,
    judgment: str | Sequence[str] | None,
) -> Json:
    """The log filters of `datasets.from_logs` and `datasets.preview`: the API's `filters`."""
    return _compact(
        prompt=prompt,
        version=version,
        environment=environment,
        source=source,
        since=None if since is None else _aware(since).isoformat(),
        until=None if until is None else _aware(until).isoformat(),
        error=error,
        end_user=end_user,
        metadata=None if metadata is None else dict(metadata),
        feedback=None if feedback is None else _strings(feedback),
        judgments=None if judgment is None else _strings(judgment),
    )


class FineTuneCalls:
    """Calls on `/fine-tunes`: train a model on a dataset, follow it, export its set."""

    @staticmethod
    def start(
        name: str,
        *,
        dataset: str,
        prompt: str,
        dataset_version: str | None = None,
        version: str | None = None,
        environment: str | None = None,
        method: Literal["lora", "openai"] = "lora",
        base_model: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        held_out_fraction: float | None = None,
        evaluators: Sequence[str] = (),
    ) -> Call[FineTune]:
        """Start a fine-tuning job (developers and admins): each datapoint of `dataset` rendered
        through `prompt`'s version (the one production serves, or `version` / `environment`)
        and answered with its target. `method="lora"` trains the local model in a worker;
        `"openai"` uses OpenAI's fine-tuning API with the project's openai key and a
        `base_model` like "openai/gpt-4o-mini-2024-07-18". With `evaluators`, the result is
        evaluated against production on the held-out datapoints."""
        body = _compact(
            name=name,
            dataset=dataset,
            prompt=prompt,
            dataset_version=dataset_version,
            version=version,
            environment=environment,
            method=method,
            base_model=base_model,
            hyperparameters=None if hyperparameters is None else dict(hyperparameters),
            held_out_fraction=held_out_fraction,
            evaluators=[*evaluators],
        )
        return Call("POST", "/fine-tunes", FineTune.model_validate, json=body)

    @staticmethod
    def get(tune_id: str) -> Call[FineTune]:
        """A fine-tuning job: its status, progress, and once done its model and metrics."""
        return Call("GET", _tune_url(tune_id), FineTune.model_validate)

    @staticmethod
    def list() -> Pages[FineTune]:
        """The project's fine-tuning jobs, newest first."""
        return Pages("/fine-tunes", FineTune)

    @staticmethod
    def cancel(tune_id: str) -> Call[FineTune]:
        """Stop a job (between two steps; an OpenAI job is cancelled at OpenAI too)."""
        return Call("POST", _tune_url(tune_id, "cancel"), FineTune.model_validate)

    @staticmethod
    def export(
        dataset: str,
        prompt: str,
        *,
        dataset_version: str | None = None,
        version: str | None = None,
        environment: str | None = None,
    ) -> Call[bytes]:
        """A dataset version in OpenAI's chat fine-tuning format (JSON lines of
        `{"messages": [...]}`), each datapoint rendered through the prompt version. The plain
        JSON lines of the datapoints, with their provenance, are `datasets.download`."""
        params = _compact(
            dataset=dataset,
            prompt=prompt,
            dataset_version=dataset_version,
            version=version,
            environment=environment,
        )
        return Call("GET", "/fine-tunes/-/export", bytes, params=params, raw=True)


def _tune_url(tune_id: str, *sub: str) -> str:
    return "/".join(["/fine-tunes", quote(tune_id, safe=""), *sub])
