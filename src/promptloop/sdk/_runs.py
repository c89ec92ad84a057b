"""Waiting for evaluation runs, and local runs: your function called on each datapoint.

A local run's function takes a datapoint's inputs and its chat messages (None for datapoints
without them) and returns the output: text, or anything else, sent as JSON. An exception is
the datapoint's `error` (the run counts it; it never stops the run). These helpers are shared
by `Client` and `AsyncClient`, which differ only in how they call the function and the server.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from promptloop.sdk._models import EvaluationRun, RunDatapoint

T = TypeVar("T")
Json = dict[str, Any]
Messages = list[dict[str, Any]] | None
LocalFunction = Callable[[dict[str, Any], Messages], Any]
"""`function(inputs, messages) -> output`, as `evaluations.run` calls it."""
AsyncLocalFunction = Callable[[dict[str, Any], Messages], Awaitable[Any] | Any]
"""As `LocalFunction`, or a coroutine function: what `AsyncClient.evaluations.run` takes."""
ProgressCallback = Callable[[EvaluationRun], object]

MAX_BATCH = 1000  # outputs per request, as the server takes them
MAX_OUTPUT = 1_000_000  # characters of one output the server stores
MAX_ERROR = 10_000  # characters of an exception's message kept


class Deadline:
    """When `wait` gives up: after `timeout` seconds (None: never), polling every `poll`."""

    def __init__(self, timeout: float | None, poll: float) -> None:
        if poll <= 0:
            raise ValueError(f"poll must be a positive number of seconds, got {poll}")
        self._poll = poll
        self._end = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout

    def pause(self, run: EvaluationRun) -> float:
        """Seconds to sleep before asking again; TimeoutError once the time is up."""
        if self._end is None:
            return self._poll
        left = self._end - time.monotonic()
        if left <= 0:
            done = run.progress.get("done", "?")
            total = run.progress.get("total", "?")
            raise TimeoutError(
                f"Evaluation run {run.id} is still {run.status} ({done}/{total} judged) "
                f"after {self._timeout:g} s; wait for it again, or cancel it."
            )
        return min(self._poll, left)


def batches(items: Sequence[T], size: int = MAX_BATCH) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def call(function: LocalFunction, point: RunDatapoint, label: str) -> Json:
    """Call `function` on one datapoint: the output, or the error, and how long it took."""
    started = time.perf_counter()
    try:
        value = function(dict(point.inputs), _messages(point))
    except Exception as exc:  # the user's code: any failure is this datapoint's error
        return output(point, label, started, error=exc)
    return output(point, label, started, value=value)


async def acall(function: AsyncLocalFunction, point: RunDatapoint, label: str) -> Json:
    """`call` for `AsyncClient`: coroutine functions are awaited, others run in a thread."""
    started = time.perf_counter()
    try:
        if inspect.iscoroutinefunction(function):
            value = await function(dict(point.inputs), _messages(point))
        else:
            value = await asyncio.to_thread(function, dict(point.inputs), _messages(point))
            if inspect.isawaitable(value):
                value = await value
    except Exception as exc:
        return output(point, label, started, error=exc)
    return output(point, label, started, value=value)


def output(
    point: RunDatapoint,
    label: str,
    started: float,
    *,
    value: Any = None,
    error: BaseException | None = None,
) -> Json:
    """What the server records for one datapoint (`POST /evaluations/{id}/outputs`)."""
    entry: Json = {
        "datapoint": point.key,
        "candidate": label,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    text = None if value is None or error is not None else _text(value)
    if error is None and text is not None and len(text) > MAX_OUTPUT:
        entry["error"] = f"The output has {len(text)} characters; at most {MAX_OUTPUT} are kept."
    elif error is not None:
        entry["error"] = f"{type(error).__name__}: {error}"[:MAX_ERROR]
    else:
        entry["output"] = text
    return entry


def _messages(point: RunDatapoint) -> Messages:
    return [dict(m) for m in point.messages] if point.messages is not None else None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
