"""The clients' namespaces (`client.prompts`, …), made from the call builders in `_requests`.

`_sync(build)` turns a builder into a method that sends the call and returns its result;
`_async(build)` into one that returns an awaitable. Both keep the builder's signature and
docstring, so each API call is written once and type-checks the same on both clients.
`_queued(build)` makes the same method for both: it queues a log for the client's log thread;
`_tracking(track)` too: it schedules retention checks on the client's retention thread.
`wait` and `run` of `client.evaluations` combine several calls; `_runs` holds what the two
clients share of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from pydantic import BaseModel

from promptloop.sdk._errors import PromptloopError
from promptloop.sdk._log_queue import LogQueue
from promptloop.sdk._models import CallResult, EvaluationRun, FineTune, RunDatapoint
from promptloop.sdk._requests import (
    Call,
    DatasetCalls,
    EnvironmentCalls,
    EvaluationCalls,
    EvaluatorCalls,
    FeedbackCalls,
    FineTuneCalls,
    Json,
    LogCalls,
    Pages,
    ProjectCalls,
    PromptCalls,
)
from promptloop.sdk._retention import RetentionScheduler, RetentionTracker
from promptloop.sdk._runs import (
    AsyncLocalFunction,
    Deadline,
    LocalFunction,
    ProgressCallback,
    acall,
    batches,
)
from promptloop.sdk._runs import call as call_locally
from promptloop.sdk._streams import AsyncCallStream, CallStream, Event

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


class _SyncSender(Protocol):
    _log_queue: LogQueue
    _retention: RetentionScheduler

    def _send(self, call: Call[T]) -> T: ...
    def _iterate(self, pages: Pages[M]) -> Iterator[M]: ...
    def _stream(self, call: Call[CallResult]) -> Generator[Event, None, None]: ...


class _AsyncSender(Protocol):
    _log_queue: LogQueue
    _retention: RetentionScheduler

    async def _send(self, call: Call[T]) -> T: ...
    def _iterate(self, pages: Pages[M]) -> AsyncIterator[M]: ...
    def _stream(self, call: Call[CallResult]) -> AsyncGenerator[Event, None]: ...


class _Resource:
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in vars(cls).items():
            if inspect.isfunction(value):  # made by _sync/_async: one function per class
                value.__qualname__ = f"{cls.__qualname__}.{name}"


class SyncResource(_Resource):
    """Base of `Client`'s namespaces."""

    def __init__(self, client: _SyncSender) -> None:
        self._client = client


class AsyncResource(_Resource):
    """Base of `AsyncClient`'s namespaces."""

    def __init__(self, client: _AsyncSender) -> None:
        self._client = client


def _sync(build: Callable[P, Call[T]]) -> Callable[Concatenate[SyncResource, P], T]:
    def method(self: SyncResource, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._client._send(build(*args, **kwargs))

    return _like(build, method)


def _sync_pages(
    build: Callable[P, Pages[M]],
) -> Callable[Concatenate[SyncResource, P], Iterator[M]]:
    def method(self: SyncResource, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[M]:
        return self._client._iterate(build(*args, **kwargs))

    return _like(build, method)


def _async(
    build: Callable[P, Call[T]],
) -> Callable[Concatenate[AsyncResource, P], Coroutine[Any, Any, T]]:
    async def method(self: AsyncResource, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._client._send(build(*args, **kwargs))

    return _like(build, method)


def _async_pages(
    build: Callable[P, Pages[M]],
) -> Callable[Concatenate[AsyncResource, P], AsyncIterator[M]]:
    def method(self: AsyncResource, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[M]:
        return self._client._iterate(build(*args, **kwargs))

    return _like(build, method)


def _sync_stream(
    build: Callable[P, Call[CallResult]],
) -> Callable[Concatenate[SyncResource, P], CallStream]:
    def method(self: SyncResource, /, *args: P.args, **kwargs: P.kwargs) -> CallStream:
        return CallStream(self._client._stream(build(*args, **kwargs)))

    return _like(build, method)


def _async_stream(
    build: Callable[P, Call[CallResult]],
) -> Callable[Concatenate[AsyncResource, P], AsyncCallStream]:
    def method(self: AsyncResource, /, *args: P.args, **kwargs: P.kwargs) -> AsyncCallStream:
        return AsyncCallStream(self._client._stream(build(*args, **kwargs)))

    return _like(build, method)


def _queued(
    build: Callable[P, Json],
) -> Callable[Concatenate[SyncResource | AsyncResource, P], str]:
    def method(self: SyncResource | AsyncResource, /, *args: P.args, **kwargs: P.kwargs) -> str:
        entry = build(*args, **kwargs)
        self._client._log_queue.put(entry)
        return str(entry["id"])

    return _like(build, method)


def _tracking(
    track: Callable[Concatenate[RetentionScheduler, P], RetentionTracker],
) -> Callable[Concatenate[SyncResource | AsyncResource, P], RetentionTracker]:
    def method(
        self: SyncResource | AsyncResource, /, *args: P.args, **kwargs: P.kwargs
    ) -> RetentionTracker:
        return track(self._client._retention, *args, **kwargs)

    return _like(track, method, bound=True)


def _like(build: Callable[..., Any], method: F, *, bound: bool = False) -> F:
    """Give `method` the builder's name, docstring and signature (plus `self`) for help();
    `bound`: the builder is a method of another object, whose `self` is left out."""
    signature = inspect.signature(build)
    parameters = list(signature.parameters.values())[1 if bound else 0 :]
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__name__ = build.__name__
    method.__doc__ = build.__doc__
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_parameter, *parameters],
        return_annotation=inspect.Signature.empty,
    )
    return method


class Projects(SyncResource):
    """`client.projects`: list and create projects."""

    list = _sync(ProjectCalls.list)
    create = _sync(ProjectCalls.create)


class Environments(SyncResource):
    """`client.environments`: the environments of the client's project."""

    list = _sync(EnvironmentCalls.list)
    create = _sync(EnvironmentCalls.create)


class Prompts(SyncResource):
    """`client.prompts`: prompts, their versions, rendering and deployments."""

    create = _sync(PromptCalls.create)
    list = _sync_pages(PromptCalls.list)
    get_prompt = _sync(PromptCalls.get_prompt)
    get = _sync(PromptCalls.get)
    save = _sync(PromptCalls.save)
    versions = _sync_pages(PromptCalls.versions)
    render = _sync(PromptCalls.render)
    diff = _sync(PromptCalls.diff)
    deploy = _sync(PromptCalls.deploy)
    rollback = _sync(PromptCalls.rollback)
    deployments = _sync(PromptCalls.deployments)
    history = _sync_pages(PromptCalls.history)
    call = _sync(PromptCalls.call)
    stream = _sync_stream(PromptCalls.stream)


class Logs(SyncResource):
    """`client.logs`: record the calls your code made, in the background; read logs back."""

    log = _queued(LogCalls.log)
    get = _sync(LogCalls.get)
    list = _sync_pages(LogCalls.list)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every log queued so far is sent, or dropped (which is reported); False
        when `timeout` seconds passed first. `close()` and the interpreter's exit flush too,
        but a process that ends with `os._exit()` (a multiprocessing worker) must flush."""
        return self._client._log_queue.flush(timeout)


class FeedbackResource(SyncResource):
    """`client.feedback`: votes, actions, corrections and comments on logs; the kinds of
    feedback the project collects; rates per version; retention tracking."""

    vote = _sync(FeedbackCalls.vote)
    action = _sync(FeedbackCalls.action)
    correct = _sync(FeedbackCalls.correct)
    comment = _sync(FeedbackCalls.comment)
    give = _sync(FeedbackCalls.give)
    list = _sync(FeedbackCalls.list)
    token = _sync(FeedbackCalls.token)
    kinds = _sync(FeedbackCalls.kinds)
    declare = _sync(FeedbackCalls.declare)
    stats = _sync(FeedbackCalls.stats)
    track_retention = _tracking(RetentionScheduler.track)


class AsyncProjects(AsyncResource):
    """`client.projects` of `AsyncClient`; methods as in `Projects`, awaitable."""

    list = _async(ProjectCalls.list)
    create = _async(ProjectCalls.create)


class AsyncEnvironments(AsyncResource):
    """`client.environments` of `AsyncClient`; methods as in `Environments`, awaitable."""

    list = _async(EnvironmentCalls.list)
    create = _async(EnvironmentCalls.create)


class AsyncPrompts(AsyncResource):
    """`client.prompts` of `AsyncClient`; methods as in `Prompts`, awaitable (iterators are
    async iterators)."""

    create = _async(PromptCalls.create)
    list = _async_pages(PromptCalls.list)
    get_prompt = _async(PromptCalls.get_prompt)
    get = _async(PromptCalls.get)
    save = _async(PromptCalls.save)
    versions = _async_pages(PromptCalls.versions)
    render = _async(PromptCalls.render)
    diff = _async(PromptCalls.diff)
    deploy = _async(PromptCalls.deploy)
    rollback = _async(PromptCalls.rollback)
    deployments = _async(PromptCalls.deployments)
    history = _async_pages(PromptCalls.history)
    call = _async(PromptCalls.call)
    stream = _async_stream(PromptCalls.stream)


class AsyncLogs(AsyncResource):
    """`client.logs` of `AsyncClient`; as `Logs`, with `get` and `flush` awaitable, `list` an
    async iterator, and `log` a plain call (it only queues, so it never waits)."""

    log = _queued(LogCalls.log)
    get = _async(LogCalls.get)
    list = _async_pages(LogCalls.list)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every log queued so far is sent, or dropped (which is reported); False
        when `timeout` seconds passed first."""
        return await asyncio.to_thread(self._client._log_queue.flush, timeout)


class AsyncFeedbackResource(AsyncResource):
    """`client.feedback` of `AsyncClient`; as `FeedbackResource`, awaitable, with
    `track_retention` a plain call (it only schedules, so it never waits)."""

    vote = _async(FeedbackCalls.vote)
    action = _async(FeedbackCalls.action)
    correct = _async(FeedbackCalls.correct)
    comment = _async(FeedbackCalls.comment)
    give = _async(FeedbackCalls.give)
    list = _async(FeedbackCalls.list)
    token = _async(FeedbackCalls.token)
    kinds = _async(FeedbackCalls.kinds)
    declare = _async(FeedbackCalls.declare)
    stats = _async(FeedbackCalls.stats)
    track_retention = _tracking(RetentionScheduler.track)


class Datasets(SyncResource):
    """`client.datasets`: datasets, their immutable versions and datapoints."""

    create = _sync(DatasetCalls.create)
    edit = _sync(DatasetCalls.edit)
    upload = _sync(DatasetCalls.upload)
    from_logs = _sync(DatasetCalls.from_logs)
    preview = _sync(DatasetCalls.preview)
    list = _sync_pages(DatasetCalls.list)
    get = _sync(DatasetCalls.get)
    version = _sync(DatasetCalls.version)
    versions = _sync_pages(DatasetCalls.versions)
    datapoints = _sync_pages(DatasetCalls.datapoints)
    download = _sync(DatasetCalls.download)


class Evaluators(SyncResource):
    """`client.evaluators`: versioned evaluators (built-in, code, LLM judge, human)."""

    save = _sync(EvaluatorCalls.save)
    list = _sync(EvaluatorCalls.list)
    versions = _sync(EvaluatorCalls.versions)
    try_on = _sync(EvaluatorCalls.try_on)


class Evaluations(SyncResource):
    """`client.evaluations`: evaluation runs on the server (`start`, `wait`) or of your own
    function (`run`); their statistics, comparisons and human review."""

    start = _sync(EvaluationCalls.start)
    get = _sync(EvaluationCalls.get)
    list = _sync_pages(EvaluationCalls.list)
    cancel = _sync(EvaluationCalls.cancel)
    comparison = _sync(EvaluationCalls.comparison)
    datapoints = _sync(EvaluationCalls.datapoints)
    record = _sync(EvaluationCalls.record)
    finish = _sync(EvaluationCalls.finish)
    pending_judgments = _sync(EvaluationCalls.pending_judgments)
    judge = _sync(EvaluationCalls.judge)

    def wait(
        self,
        run_id: str,
        *,
        timeout: float | None = None,
        poll: float = 1.0,
        on_progress: ProgressCallback | None = None,
    ) -> EvaluationRun:
        """Wait until the run completed, failed or was cancelled, and return it, asking every
        `poll` seconds (each answer goes to `on_progress`); TimeoutError after `timeout`
        seconds, with the run left as it is."""
        deadline = Deadline(timeout, poll)
        while True:
            run = self._client._send(EvaluationCalls.get(run_id))
            if on_progress is not None:
                on_progress(run)
            if run.finished:
                return run
            time.sleep(deadline.pause(run))

    def run(
        self,
        function: LocalFunction,
        *,
        dataset: str,
        evaluators: Sequence[str],
        label: str = "local",
        dataset_version: str | None = None,
        thresholds: Mapping[str, float] | None = None,
        concurrency: int = 8,
        name: str | None = None,
        timeout: float | None = None,
        poll: float = 1.0,
    ) -> EvaluationRun:
        """Evaluate your own function on a dataset, and return the finished run:

            def answer(inputs, messages):
                return my_pipeline(inputs["question"])

            run = client.evaluations.run(answer, dataset="support/questions",
                                         evaluators=["exact"], thresholds={"exact": 0.8})
            assert run.passed, run.summary.failures

        `function(inputs, messages)` is called on each datapoint (`messages` is None for those
        without) by `concurrency` threads; it returns the output (text; anything else is sent
        as JSON), and an exception it raises is that datapoint's error. The outputs are logged
        as candidate `label`, judged by `evaluators` on the server, then the run is waited
        for as `wait` does. If this call fails midway, the run is cancelled."""
        started = self._client._send(
            EvaluationCalls.start(
                dataset,
                [{"label": label}],
                evaluators,
                dataset_version=dataset_version,
                thresholds=thresholds,
                concurrency=concurrency,
                name=name,
                mode="local",
            )
        )
        try:
            plan = self._client._send(EvaluationCalls.datapoints(started.id))

            def one(point: RunDatapoint) -> Json:
                return call_locally(function, point, label)

            with ThreadPoolExecutor(concurrency, thread_name_prefix="promptloop-eval") as pool:
                for batch in batches(plan.datapoints):
                    outputs = [*pool.map(one, batch)]
                    self._client._send(EvaluationCalls.record(started.id, outputs))
            self._client._send(EvaluationCalls.finish(started.id))
        except BaseException:
            with contextlib.suppress(PromptloopError):  # the first failure is the one to report
                self._client._send(EvaluationCalls.cancel(started.id))
            raise
        return self.wait(started.id, timeout=timeout, poll=poll)


class AsyncDatasets(AsyncResource):
    """`client.datasets` of `AsyncClient`; methods as in `Datasets`, awaitable (iterators are
    async iterators)."""

    create = _async(DatasetCalls.create)
    edit = _async(DatasetCalls.edit)
    upload = _async(DatasetCalls.upload)
    from_logs = _async(DatasetCalls.from_logs)
    preview = _async(DatasetCalls.preview)
    list = _async_pages(DatasetCalls.list)
    get = _async(DatasetCalls.get)
    version = _async(DatasetCalls.version)
    versions = _async_pages(DatasetCalls.versions)
    datapoints = _async_pages(DatasetCalls.datapoints)
    download = _async(DatasetCalls.download)


class AsyncEvaluators(AsyncResource):
    """`client.evaluators` of `AsyncClient`; methods as in `Evaluators`, awaitable."""

    save = _async(EvaluatorCalls.save)
    list = _async(EvaluatorCalls.list)
    versions = _async(EvaluatorCalls.versions)
    try_on = _async(EvaluatorCalls.try_on)


class AsyncEvaluations(AsyncResource):
    """`client.evaluations` of `AsyncClient`; methods as in `Evaluations`, awaitable (`list`
    is an async iterator); `run` takes a coroutine function or a plain one."""

    start = _async(EvaluationCalls.start)
    get = _async(EvaluationCalls.get)
    list = _async_pages(EvaluationCalls.list)
    cancel = _async(EvaluationCalls.cancel)
    comparison = _async(EvaluationCalls.comparison)
    datapoints = _async(EvaluationCalls.datapoints)
    record = _async(EvaluationCalls.record)
    finish = _async(EvaluationCalls.finish)
    pending_judgments = _async(EvaluationCalls.pending_judgments)
    judge = _async(EvaluationCalls.judge)

    async def wait(
        self,
        run_id: str,
        *,
        timeout: float | None = None,
        poll: float = 1.0,
        on_progress: ProgressCallback | None = None,
    ) -> EvaluationRun:
        """As `Evaluations.wait`, sleeping without blocking the event loop."""
        deadline = Deadline(timeout, poll)
        while True:
            run = await self._client._send(EvaluationCalls.get(run_id))
            if on_progress is not None:
                on_progress(run)
            if run.finished:
                return run
            await asyncio.sleep(deadline.pause(run))

    async def run(
        self,
        function: AsyncLocalFunction,
        *,
        dataset: str,
        evaluators: Sequence[str],
        label: str = "local",
        dataset_version: str | None = None,
        thresholds: Mapping[str, float] | None = None,
        concurrency: int = 8,
        name: str | None = None,
        timeout: float | None = None,
        poll: float = 1.0,
    ) -> EvaluationRun:
        """As `Evaluations.run`: at most `concurrency` calls of `function` at a time, awaited
        if it is a coroutine function, else each in a thread."""
        started = await self._client._send(
            EvaluationCalls.start(
                dataset,
                [{"label": label}],
                evaluators,
                dataset_version=dataset_version,
                thresholds=thresholds,
                concurrency=concurrency,
                name=name,
                mode="local",
            )
        )
        try:
            plan = await self._client._send(EvaluationCalls.datapoints(started.id))
            slots = asyncio.Semaphore(concurrency)

            async def one(point: RunDatapoint) -> Json:
                async with slots:
                    return await acall(function, point, label)

            for batch in batches(plan.datapoints):
                outputs = await asyncio.gather(*(one(point) for point in batch))
                await self._client._send(EvaluationCalls.record(started.id, outputs))
            await self._client._send(EvaluationCalls.finish(started.id))
        except BaseException:
            with contextlib.suppress(PromptloopError):  # the first failure is the one to report
                await self._client._send(EvaluationCalls.cancel(started.id))
            raise
        return await self.wait(started.id, timeout=timeout, poll=poll)


class FineTunes(SyncResource):
    """`client.fine_tunes`: train a smaller model on a dataset (LoRA on the local model, or
    OpenAI's fine-tuning API), follow the job, and export the training set."""

    start = _sync(FineTuneCalls.start)
    get = _sync(FineTuneCalls.get)
    list = _sync_pages(FineTuneCalls.list)
    cancel = _sync(FineTuneCalls.cancel)
    export = _sync(FineTuneCalls.export)

    def wait(
        self,
        tune_id: str,
        *,
        timeout: float | None = None,
        poll: float = 2.0,
        on_progress: Callable[[FineTune], object] | None = None,
    ) -> FineTune:
        """Wait until the job completed, failed or was cancelled, and return it, asking every
        `poll` seconds (each answer goes to `on_progress`); TimeoutError after `timeout`
        seconds, with the job left running."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            tune = self._client._send(FineTuneCalls.get(tune_id))
            if on_progress is not None:
                on_progress(tune)
            if tune.finished:
                return tune
            time.sleep(_pause(tune, end, poll, timeout))


class AsyncFineTunes(AsyncResource):
    """`client.fine_tunes` of `AsyncClient`; methods as in `FineTunes`, awaitable."""

    start = _async(FineTuneCalls.start)
    get = _async(FineTuneCalls.get)
    list = _async_pages(FineTuneCalls.list)
    cancel = _async(FineTuneCalls.cancel)
    export = _async(FineTuneCalls.export)

    async def wait(
        self,
        tune_id: str,
        *,
        timeout: float | None = None,
        poll: float = 2.0,
        on_progress: Callable[[FineTune], object] | None = None,
    ) -> FineTune:
        """As `FineTunes.wait`, sleeping without blocking the event loop."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            tune = await self._client._send(FineTuneCalls.get(tune_id))
            if on_progress is not None:
                on_progress(tune)
            if tune.finished:
                return tune
            await asyncio.sleep(_pause(tune, end, poll, timeout))


def _pause(tune: FineTune, end: float | None, poll: float, timeout: float | None) -> float:
    if poll <= 0:
        raise ValueError(f"poll must be a positive number of seconds, got {poll}")
    if end is None:
        return poll
    left = end - time.monotonic()
    if left <= 0:
        step, total = tune.progress.get("step", "?"), tune.progress.get("total_steps", "?")
        raise TimeoutError(
            f"Fine-tune {tune.id} is still {tune.status} (step {step}/{total}) after "
            f"{timeout:g} s; wait for it again, or cancel it."
        )
    return min(poll, left)
