"""The playground: run one draft kernel against several models at once, side by side.

Each model is a column: the draft with its provider and model swapped. Columns run concurrently
through the `Caller` (so every run is logged with source "playground", linked to the saved
version whose content it matches) and their events arrive merged, each tagged with its column.
A column that fails (a provider error, an unknown model, no key) reports it as its own event;
the other columns carry on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from promptloop.core import templates
from promptloop.core.access import Actor, Permission
from promptloop.core.errors import NotFound, PromptloopError
from promptloop.core.kernel import Kernel, version_id
from promptloop.providers.base import Delta
from promptloop.services import prompts
from promptloop.services.calls import Caller, CallResult, CallSpec
from promptloop.store.models import Project, PromptVersion

MAX_COLUMNS = 6


@dataclass(frozen=True)
class ColumnEvent:
    """Something that happened in one column: a piece of output (`text`), or its end: the
    logged `result` (which may carry the provider's error), or a `failure` before any call."""

    column: int
    text: str | None = None
    result: CallResult | None = None
    failure: str | None = None
    ttft_ms: float | None = None


def column_kernel(draft: Kernel, provider: str, model: str) -> Kernel:
    """The draft as one column runs it: the same templates and parameters on another model."""
    return draft.model_copy(update={"provider": provider, "model": model})


def matching_version(
    session: Session, *, project: Project, path: str | None, draft: Kernel
) -> PromptVersion | None:
    """The saved version of the prompt at `path` whose content the draft matches, if any."""
    if not path:
        return None
    try:
        prompt = prompts.get_prompt(session, project=project, path=path)
        return prompts.get_version(session, prompt=prompt, ref=version_id(draft))
    except NotFound:
        return None


def prompt_exists(session: Session, *, project: Project, path: str | None) -> bool:
    """Whether runs can be logged against the prompt at `path` (drafts of a prompt not saved
    yet are logged without one)."""
    if not path:
        return False
    try:
        prompts.get_prompt(session, project=project, path=path)
    except PromptloopError:
        return False
    return True


def require_run(actor: Actor) -> None:
    """Forbidden unless the actor may call models (which logs): members and up."""
    actor.require(Permission.write_logs)


def missing_inputs(draft: Kernel, inputs: dict[str, Any]) -> list[str]:
    """The variables the draft's templates read that `inputs` leaves empty."""
    return [name for name in templates.variables(draft) if not str(inputs.get(name, "")).strip()]


async def run(
    caller: Caller,
    *,
    actor: Actor,
    project: Project,
    prompt: str | None,
    draft: Kernel,
    inputs: dict[str, Any],
    models: list[tuple[str, str]],
) -> AsyncIterator[ColumnEvent]:
    """Run the draft on each (provider, model), concurrently, yielding their events merged.

    `prompt` names the prompt the runs are logged under (it must exist). If the consumer stops
    early, the columns still running are cancelled (and log what they produced).
    """
    require_run(actor)
    if not 1 <= len(models) <= MAX_COLUMNS:
        raise ValueError(f"run between 1 and {MAX_COLUMNS} models")
    queue: asyncio.Queue[ColumnEvent | None] = asyncio.Queue()

    async def one(index: int, provider: str, model: str) -> None:
        try:
            await _column(
                caller, queue, index, actor, project, prompt, draft, inputs, provider, model
            )
        except Exception as exc:  # one column's bug must not take the others down
            await queue.put(ColumnEvent(column=index, failure=f"The run failed: {exc}"))
        finally:
            await queue.put(None)

    tasks = [
        asyncio.create_task(one(index, provider, model))
        for index, (provider, model) in enumerate(models)
    ]
    try:
        running = len(tasks)
        while running:
            event = await queue.get()
            if event is None:
                running -= 1
            else:
                yield event
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _column(
    caller: Caller,
    queue: asyncio.Queue[ColumnEvent | None],
    index: int,
    actor: Actor,
    project: Project,
    prompt: str | None,
    draft: Kernel,
    inputs: dict[str, Any],
    provider: str,
    model: str,
) -> None:
    spec = CallSpec(
        prompt=prompt,
        kernel=column_kernel(draft, provider, model),
        inputs=inputs,
        source="playground",
    )
    try:
        events = await caller.stream(actor=actor, project=project, spec=spec)
    except PromptloopError as exc:  # nothing was called: no key, unknown provider, a bad template
        await queue.put(ColumnEvent(column=index, failure=exc.message))
        return
    started = time.perf_counter()
    ttft: float | None = None
    async for event in events:
        if isinstance(event, Delta):
            if ttft is None:
                ttft = (time.perf_counter() - started) * 1000
            await queue.put(ColumnEvent(column=index, text=event.text))
        else:
            await queue.put(ColumnEvent(column=index, result=event, ttft_ms=ttft))
