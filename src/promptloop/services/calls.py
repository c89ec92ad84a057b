"""Calling models: render a prompt version (or a draft kernel), call its provider, log the call.

Every call is logged, failed ones included, and the caller gets the log id. Streaming calls
yield text as it arrives and log once the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from promptloop.core import templates
from promptloop.core.access import Actor, Permission
from promptloop.core.errors import InvalidInput, NotFound
from promptloop.core.kernel import Kernel, Parameters
from promptloop.providers.base import ChatRequest, Completion, Credentials, Delta, ProviderError
from promptloop.providers.registry import get_provider
from promptloop.services import catalogue, prompts, provider_keys
from promptloop.services.logs import LogEntry, Logger
from promptloop.services.secrets import SecretBox
from promptloop.store.db import Database
from promptloop.store.models import Project, Prompt, PromptVersion


@dataclass(frozen=True)
class BareModel:
    """A provider's model called directly (the gateway): `CallSpec.messages` are sent as they
    are, never rendered as templates."""

    provider: str
    model: str
    parameters: Parameters = field(default_factory=Parameters)
    tools: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CallSpec:
    """What to call: a saved version (by prompt, environment or id), a draft kernel, or a bare
    provider model."""

    prompt: str | None = None
    environment: str | None = None
    version: str | None = None
    kernel: Kernel | None = None
    model: BareModel | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)  # appended after the template's
    source: str = "api"
    end_user: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    trace_id: str | None = None
    parent_id: str | None = None
    consent: bool | None = None  # the end user's consent to capture of their content
    log_id: str | None = None  # the log's id, chosen up front (so a stream can announce it)
    timeout: float | None = None  # seconds the provider gets (default: ChatRequest's)


@dataclass(frozen=True)
class CallResult:
    log_id: str
    completion: Completion | None
    error: ProviderError | None
    prompt: str | None
    version: str | None
    provider: str
    model: str
    cost: float | None
    latency_ms: float

    @property
    def failure_message(self) -> str:
        """What to tell the caller when the provider failed (streamed or not, any API shape)."""
        assert self.error is not None
        return f"The {self.provider} provider failed: {self.error.message}"


@dataclass(frozen=True)
class Target:
    """What calls go to, resolved once: a saved version's (or a draft's) kernel, and the
    provider's credentials."""

    kernel: Kernel
    credentials: Credentials
    prompt: str | None
    version: str | None
    environment: str | None
    draft: Kernel | None  # logged as the draft kernel (playground runs, model swaps)
    resolved: tuple[Prompt, PromptVersion] | None = None  # the rows, detached, for the log


@dataclass(frozen=True)
class _Prepared:
    provider: str
    model: str
    request: ChatRequest
    credentials: Credentials
    entry: LogEntry


class Caller:
    """Calls models for one server process."""

    def __init__(self, db: Database, logger: Logger, box: SecretBox) -> None:
        self.db = db
        self.logger = logger
        self.box = box
        self._background: set[asyncio.Task[CallResult]] = set()

    async def call(
        self,
        *,
        actor: Actor,
        project: Project,
        spec: CallSpec,
        target: Target | None = None,
        limit: asyncio.Semaphore | None = None,
    ) -> CallResult:
        """Call and log. With a `target` resolved beforehand, the call touches no database
        before the provider answers (only the log write). `limit` bounds the requests in flight
        to the provider: it is held while the provider answers, not while the log commits."""
        if target is None:
            prepared = await asyncio.to_thread(self._prepare, actor, project, spec)
        else:
            prepared = self.render(target, spec)
        provider = get_provider(prepared.provider)
        completion, error = None, None
        async with limit or contextlib.nullcontext():
            started = time.perf_counter()
            try:
                completion = await provider.complete(prepared.request, prepared.credentials)
            except ProviderError as exc:
                error = exc
            latency = (time.perf_counter() - started) * 1000
        return await self._log(actor, project, prepared, completion, error, latency, ttft=None)

    async def stream(
        self, *, actor: Actor, project: Project, spec: CallSpec
    ) -> AsyncIterator[Delta | CallResult]:
        """Yield deltas, then the CallResult (logged). Preparation errors raise before the first
        yield, so a caller can still answer them with a plain error response."""
        prepared = await asyncio.to_thread(self._prepare, actor, project, spec)
        provider = get_provider(prepared.provider)
        return self._streamed(actor, project, prepared, provider)

    async def _streamed(
        self, actor: Actor, project: Project, prepared: _Prepared, provider: Any
    ) -> AsyncIterator[Delta | CallResult]:
        started = time.perf_counter()
        ttft: float | None = None
        completion, error = None, None
        received: list[str] = []
        try:
            async for event in provider.stream(prepared.request, prepared.credentials):
                if isinstance(event, Delta):
                    if ttft is None:
                        ttft = (time.perf_counter() - started) * 1000
                    received.append(event.text)
                    yield event
                else:
                    completion = event
        except ProviderError as exc:
            error = exc
        except (GeneratorExit, asyncio.CancelledError):
            # The client went away mid-stream. The call still happened: log what it produced,
            # in a task of its own, since this one is being torn down.
            latency = (time.perf_counter() - started) * 1000
            partial = Completion(output="".join(received), finish_reason="disconnected")
            gone = ProviderError(
                "the client disconnected before the end", status=499, kind="client_disconnected"
            )
            task = asyncio.get_running_loop().create_task(
                self._log(actor, project, prepared, partial, gone, latency, ttft=ttft)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            raise
        latency = (time.perf_counter() - started) * 1000
        yield await self._log(actor, project, prepared, completion, error, latency, ttft=ttft)

    def _prepare(self, actor: Actor, project: Project, spec: CallSpec) -> _Prepared:
        if spec.model is not None:
            actor.require(Permission.write_logs)
            return self._prepare_bare(project, spec, spec.model)
        return self.render(self.resolve(actor=actor, project=project, spec=spec), spec)

    def resolve(self, *, actor: Actor, project: Project, spec: CallSpec) -> Target:
        """The version (or draft), its kernel and the provider's credentials for `spec`: the
        database work of a call, which a batch of calls to one target (an evaluation run) does
        once. Call from a thread."""
        actor.require(Permission.write_logs)
        with self.db.session(write=False) as session:
            version = None
            if spec.kernel is not None:
                kernel = spec.kernel
                templates.check_syntax(kernel)
            elif spec.prompt is not None:
                version = prompts.resolve_version(
                    session,
                    project=project,
                    path=spec.prompt,
                    environment=spec.environment,
                    version=spec.version,
                )
                kernel = prompts.kernel_of(version)
            else:
                raise InvalidInput(
                    "Name a prompt (with an environment or version) or give a kernel to call."
                )
            catalogue.check_access(
                session,
                project=project,
                provider=kernel.provider,
                name=kernel.model,
                prices=self.logger.prices,
            )
            credentials = self._credentials(session, project, kernel.provider)
            resolved = None
            if version is not None:
                prompt = session.get(Prompt, version.prompt_id)
                assert prompt is not None
                session.expunge(prompt)
                session.expunge(version)
                resolved = (prompt, version)
        return Target(
            kernel=kernel,
            credentials=credentials,
            prompt=spec.prompt,
            version=version.version_id if version else None,
            environment=spec.environment if version else None,
            draft=spec.kernel,
            resolved=resolved,
        )

    def render(self, target: Target, spec: CallSpec) -> _Prepared:
        """Render the target's templates with the spec's inputs: no database, no I/O."""
        kernel = target.kernel
        rendered = templates.render(kernel, spec.inputs)
        messages = None
        if rendered.messages is not None:
            messages = [m.model_dump() for m in rendered.messages] + list(spec.messages)
        elif spec.messages:
            raise InvalidInput(
                "Extra messages need a chat template; this version is a completion template."
            )
        request = ChatRequest(
            model=kernel.model,
            messages=messages,
            prompt=rendered.prompt,
            parameters=kernel.parameters,
            tools=[t.model_dump(exclude_none=True) for t in kernel.tools],
        )
        return _prepared(
            spec,
            request,
            target.credentials,
            provider=kernel.provider,
            prompt=target.prompt,
            version=target.version,
            environment=target.environment,
            kernel=target.draft,
            resolved=target.resolved,
            logged_messages=messages
            if messages is not None
            else [{"role": "prompt", "content": rendered.prompt}],
        )

    def _prepare_bare(self, project: Project, spec: CallSpec, target: BareModel) -> _Prepared:
        if not spec.messages:
            raise InvalidInput("Give at least one message to send to the model.")
        with self.db.session(write=False) as session:
            catalogue.check_access(
                session,
                project=project,
                provider=target.provider,
                name=target.model,
                prices=self.logger.prices,
            )
            credentials = self._credentials(session, project, target.provider)
        request = ChatRequest(
            model=target.model,
            messages=list(spec.messages),
            parameters=target.parameters,
            tools=list(target.tools),
        )
        return _prepared(
            spec, request, credentials, provider=target.provider, logged_messages=request.messages
        )

    def _credentials(self, session: Any, project: Project, provider_name: str) -> Credentials:
        provider = get_provider(provider_name)
        try:
            stored = provider_keys.stored(session, project=project, provider=provider_name)
        except NotFound:
            if provider.needs_key:
                raise InvalidInput(
                    f"No {provider_name!r} key in project {project.name!r}: a developer can add one "
                    f"with PUT /api/v1/provider-keys/{provider_name}."
                ) from None
            return Credentials()
        api_key = self.box.decrypt(stored.ciphertext)
        return Credentials(api_key=api_key, base_url=stored.base_url)

    async def _log(
        self,
        actor: Actor,
        project: Project,
        prepared: _Prepared,
        completion: Completion | None,
        error: ProviderError | None,
        latency: float,
        *,
        ttft: float | None,
    ) -> CallResult:
        entry = prepared.entry
        if completion is not None:
            entry.output = completion.output
            entry.tool_calls = completion.tool_calls
            entry.finish_reason = completion.finish_reason
            entry.prompt_tokens = completion.usage.prompt_tokens
            entry.output_tokens = completion.usage.output_tokens
        if error is not None:
            entry.error = f"{error.kind} ({error.status}): {error.message}"
        entry.latency_ms = latency
        entry.ttft_ms = ttft
        [log_id] = await self.logger.record(self.db, actor=actor, project=project, entries=[entry])
        cost = self.logger.prices.cost(
            entry.provider, entry.model, entry.prompt_tokens, entry.output_tokens
        )
        return CallResult(
            log_id=log_id,
            completion=completion,
            error=error,
            prompt=entry.prompt,
            version=entry.version,
            provider=prepared.provider,
            model=prepared.model,
            cost=cost,
            latency_ms=latency,
        )


def _prepared(
    spec: CallSpec,
    request: ChatRequest,
    credentials: Credentials,
    *,
    provider: str,
    logged_messages: list[dict[str, Any]] | None,
    prompt: str | None = None,
    version: str | None = None,
    environment: str | None = None,
    kernel: Kernel | None = None,
    resolved: tuple[Prompt, PromptVersion] | None = None,
) -> _Prepared:
    """A call ready to send, and the log entry it will be recorded as."""
    if spec.timeout is not None:
        request = replace(request, timeout=spec.timeout)
    entry = LogEntry(
        uid=spec.log_id or uuid.uuid4().hex,
        source=spec.source,
        prompt=prompt,
        version=version,
        environment=environment,
        kernel=kernel,
        provider=provider,
        model=request.model,
        inputs=spec.inputs or None,
        messages=logged_messages,
        end_user=spec.end_user,
        metadata=spec.metadata,
        trace_id=spec.trace_id,
        parent_id=spec.parent_id,
        consent=spec.consent,
        resolved=resolved,
    )
    return _Prepared(
        provider=provider,
        model=request.model,
        request=request,
        credentials=credentials,
        entry=entry,
    )
