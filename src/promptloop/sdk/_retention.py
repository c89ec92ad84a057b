"""`client.feedback.track_retention`: how much of an output the user keeps, measured over time.

Code assistants judge a suggestion by what survives of it in the user's file minutes later,
not by whether it was accepted. A tracker does the same for any text: at each delay after it
starts, it asks the host's callable for the text the user has now, and records the share of
the output still in it as a "retained" action carrying the nominal delay (`delay_s`).

Every tracker of a client shares one daemon thread, which sleeps until the earliest check is
due (a heap of `time.monotonic()` deadlines), so tracking returns at once, costs no thread per
check, and keeps measuring while the host is busy: a check that runs late records its nominal
delay all the same.

Nothing reaches the host application; what goes wrong is reported through the `promptloop`
logger as a warning:

- `read_current_text` raising (or not returning text): that check is skipped;
- the log's output unknown (withheld for the end user's consent, or a failed call): the
  tracker stops;
- 429, 5xx and network errors: retried, at most MAX_ATTEMPTS times, after an exponential
  backoff with jitter or the server's Retry-After; other 4xx: not retried, the check's share is
  not recorded.

Checks still pending when the client closes or the interpreter exits are dropped (a debug
message says how many); after `os.fork()` the child starts with none, and with a thread and
connection of its own on first use.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from difflib import SequenceMatcher
from typing import Any, Protocol, TypeVar

import httpx

from promptloop.sdk._log_queue import _backoff, _describe, _plural, _retry_after
from promptloop.sdk._requests import Call, FeedbackCalls, LogCalls

logger = logging.getLogger("promptloop")

T = TypeVar("T")

RETAINED = "retained"  # the action every project declares for this
MAX_ATTEMPTS = 4
MAX_PRODUCT = 4_000_000  # characters of output times characters of text, compared one by one
JOIN_TIMEOUT = 1.0


def retained_share(generated: str, current: str) -> float:
    """The share (0..1) of `generated` still present in `current`: the characters of the
    blocks `difflib.SequenceMatcher` matches, over the length of `generated` (1.0 when it is
    empty). Long texts are compared by lines and sentences rather than characters, which
    bounds the cost: a segment then counts only when it survives whole."""
    if not generated:
        return 1.0
    if len(generated) * len(current) <= MAX_PRODUCT:
        before: Sequence[str] = generated
        matcher = SequenceMatcher(None, generated, current, autojunk=False)
    else:
        # Segments repeated over and over (blank lines, closing braces) become junk to the
        # matcher, which keeps it fast; they still count inside longer matches.
        before = _segments(generated)
        matcher = SequenceMatcher(None, before, _segments(current), autojunk=True)
    kept = sum(
        len(piece)
        for block in matcher.get_matching_blocks()
        for piece in before[block.a : block.a + block.size]
    )
    return kept / len(generated)


def _segments(text: str) -> list[str]:
    """Lines, and sentences within them; nothing is lost, so their lengths add up."""
    return [piece for piece in _SEGMENT_ENDS.split(text) if piece]


_SEGMENT_ENDS = re.compile(r"(?<=\n)|(?<=[.!?] )")


class Requester(Protocol):
    """Sends one API call from the retention thread; opened there, closed when it ends."""

    def request(self, call: Call[Any]) -> httpx.Response: ...
    def close(self) -> None: ...


class RetentionTracker:
    """The retention checks of one log, as `client.feedback.track_retention` starts them.

    `results` lists the `(delay, share)` pairs recorded so far; `wait()` blocks until every
    check ran (or was skipped or cancelled); `cancel()` drops the checks not yet started.
    """

    def __init__(
        self,
        scheduler: RetentionScheduler,
        log_id: str,
        read_current_text: Callable[[], str],
        delays: Sequence[float],
        output: str | None,
    ) -> None:
        self.log_id = log_id
        self.delays = tuple(delays)
        self._scheduler = scheduler
        self._read_current_text = read_current_text
        self._output = output
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._left = len(self.delays)  # checks not finished, the running one included
        self._running = False
        self._cancelled = False
        self._results: list[tuple[float, float]] = []

    @property
    def results(self) -> list[tuple[float, float]]:
        """`(delay, share)` for each check recorded, in the order they ran."""
        with self._lock:
            return list(self._results)

    @property
    def done(self) -> bool:
        """Whether no check is left to run."""
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every check ran, was skipped or was cancelled; False when `timeout`
        seconds passed first."""
        return self._finished.wait(timeout)

    def cancel(self) -> None:
        """Run no further check; one running now still records its share."""
        self._drop()
        self._scheduler._discard(self)

    def __repr__(self) -> str:
        state = "done" if self.done else "tracking"
        return f"<RetentionTracker {self.log_id} {state} results={self.results}>"

    def _begin(self) -> bool:
        """Mark a check as running; False when the tracker was cancelled."""
        with self._lock:
            if self._cancelled:
                return False
            self._running = True
            return True

    def _end(self) -> None:
        with self._lock:
            self._running = False
            self._left = max(self._left - 1, 0)
            if not self._left:
                self._finished.set()

    def _drop(self) -> int:
        """Forget the checks not started; how many there were."""
        with self._lock:
            dropped = self._left - (1 if self._running else 0)
            self._cancelled = True
            self._left = 1 if self._running else 0
            if not self._left:
                self._finished.set()
            return dropped

    def _forget(self) -> None:
        """In a forked child: the checks are the parent's, and so may be the locks."""
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._finished.set()
        self._left, self._running, self._cancelled = 0, False, True
        self._results = list(self._results)

    def _check(self, delay: float, http: _Http) -> None:
        """Measure and record the share of the output in the user's text now."""
        if self._output is None:
            log = http.send(LogCalls.get(self.log_id), f"Reading log {self.log_id}")
            if log is None:
                if http.refused:  # no such log, or not the key's: no use asking again
                    self.cancel()
                return  # reported; unless refused, the next check tries again
            if log.output is None:
                reason = "its content was withheld" if log.withheld else "it has no output"
                logger.warning("Stopped tracking the retention of log %s: %s.", self.log_id, reason)
                self.cancel()
                return
            self._output = log.output
        try:
            text = self._read_current_text()
        except Exception:  # the host's code: anything may fail
            logger.warning(
                "Skipped the %s s retention check of log %s: read_current_text() raised.",
                _seconds(delay),
                self.log_id,
                exc_info=True,
            )
            return
        if not isinstance(text, str):
            logger.warning(
                "Skipped the %s s retention check of log %s: read_current_text() returned %s, "
                "not text.",
                _seconds(delay),
                self.log_id,
                type(text).__name__,
            )
            return
        share = round(retained_share(self._output, text), 4)
        call = FeedbackCalls.action(self.log_id, RETAINED, value=share, delay_s=delay)
        what = f"Recording the {_seconds(delay)} s retention of log {self.log_id}"
        if http.send(call, what) is not None:
            with self._lock:
                self._results.append((delay, share))


class _Http:
    """The retention thread's requests: retried when worth it, failures reported, never raised."""

    def __init__(self, requester: Requester, stopping: threading.Event) -> None:
        self._requester = requester
        self._stopping = stopping
        self.refused = False  # the last call failed for good (4xx other than 429)

    def send(self, call: Call[T], what: str) -> T | None:
        """The call's result, or None when it failed (reported)."""
        self.refused = False
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = self._requester.request(call)
            except httpx.TransportError as exc:
                problem, retry_after = f"could not reach the server ({exc!r})", None
            else:
                if response.is_success:
                    try:
                        return call.read(response.json())
                    except ValueError as exc:
                        logger.warning("%s failed (unexpected answer: %s).", what, exc)
                        return None
                problem = _describe(response)
                status = response.status_code
                if status != 429 and status < 500:
                    logger.warning("%s failed (%s).", what, problem)
                    self.refused = True
                    return None
                retry_after = _retry_after(response)
            if attempt == MAX_ATTEMPTS:
                break
            delay = retry_after if retry_after is not None else _backoff(attempt)
            logger.info("%s failed (%s); retrying in %.1f s.", what, problem, delay)
            if self._stopping.wait(delay):
                logger.debug("%s: given up, the client closed (%s).", what, problem)
                return None
        logger.warning("%s failed after %d attempts (%s).", what, MAX_ATTEMPTS, problem)
        return None


class RetentionScheduler:
    """A client's due retention checks and the daemon thread that runs them."""

    def __init__(self, open_requester: Callable[[], Requester]) -> None:
        self._open_requester = open_requester
        self._closed = False
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child, where the parent's thread is
        gone and its locks may be held forever."""
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._due: list[tuple[float, int, float, RetentionTracker]] = []
        self._order = itertools.count()  # ties never compare trackers
        self._worker: threading.Thread | None = None
        self._trackers: weakref.WeakSet[RetentionTracker] = weakref.WeakSet()

    def track(
        self,
        log_id: str,
        read_current_text: Callable[[], str],
        after: Sequence[float] = (30, 120, 600),
        *,
        output: str | None = None,
    ) -> RetentionTracker:
        """Measure how much of a log's output the user keeps: `after` each of these delays
        (seconds from now) call `read_current_text()` for the text the user has now and record
        the share of the output still in it (0..1) as a "retained" action with that delay.

            tracker = client.feedback.track_retention(
                result.log_id, lambda: editor.text, output=result.output
            )

        Returns at once; the checks run in the client's background thread, and their failures
        are reported through the `promptloop` logger, never raised. `output` defaults to the
        log's, read once from the server. `read_current_text` runs in that thread, so it must
        be safe to call from there. Pending checks are dropped when the client closes."""
        delays = _delays(after)
        if not callable(read_current_text):
            raise TypeError("read_current_text must be a callable that returns the user's text.")
        tracker = RetentionTracker(self, log_id, read_current_text, delays, output)
        start = time.monotonic()
        with self._cond:
            if self._closed:
                logger.warning(
                    "Not tracking the retention of log %s: the client is closed.", log_id
                )
                tracker._drop()
                return tracker
            self._trackers.add(tracker)
            for delay in delays:
                heapq.heappush(self._due, (start + delay, next(self._order), delay, tracker))
            if self._worker is None:
                self._start_worker()
            self._cond.notify()
        return tracker

    @property
    def pending(self) -> int:
        """Checks scheduled and not started."""
        with self._cond:
            return len(self._due)

    def close(self, *, join: bool = True) -> None:
        """Drop the pending checks and stop the thread (waiting a moment for a running one)."""
        with self._cond:
            self._closed = True
            dropped = self._drop_all()
            self._cond.notify_all()
            worker = self._worker
        self._stopping.set()
        if dropped:
            logger.debug("Dropped %d pending retention check%s.", dropped, _plural(dropped))
        if join and worker is not None and worker is not threading.current_thread():
            worker.join(timeout=JOIN_TIMEOUT)

    def _drop_all(self) -> int:
        trackers = {id(tracker): tracker for *_, tracker in self._due}
        self._due.clear()
        return sum(tracker._drop() for tracker in trackers.values())

    def _discard(self, tracker: RetentionTracker) -> None:
        with self._cond:
            kept = [entry for entry in self._due if entry[3] is not tracker]
            if len(kept) != len(self._due):
                heapq.heapify(kept)
                self._due = kept

    def _start_worker(self) -> None:
        worker = threading.Thread(target=self._run, name="promptloop-retention", daemon=True)
        try:
            worker.start()
        except RuntimeError:  # at interpreter exit no thread can start
            self._drop_all()
            return
        self._worker = worker

    def _run(self) -> None:
        requester: Requester | None = None
        try:
            while (check := self._next()) is not None:
                delay, tracker = check
                try:
                    requester = requester or self._open_requester()
                    tracker._check(delay, _Http(requester, self._stopping))
                except Exception:  # the thread must survive anything; the check is lost
                    logger.warning(
                        "Skipped the %s s retention check of log %s: unexpected error.",
                        _seconds(delay),
                        tracker.log_id,
                        exc_info=True,
                    )
                finally:
                    tracker._end()
        finally:
            if requester is not None:
                try:
                    requester.close()
                except Exception:
                    logger.debug("Closing the retention thread's connection failed.", exc_info=True)

    def _next(self) -> tuple[float, RetentionTracker] | None:
        """The next due check, once it is due (None: closed)."""
        with self._cond:
            while not self._closed:
                if not self._due:
                    self._cond.wait()
                    continue
                due, _, delay, tracker = self._due[0]
                remaining = due - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                heapq.heappop(self._due)
                if tracker._begin():
                    return delay, tracker
            return None


def _delays(after: Sequence[float]) -> list[float]:
    try:
        delays = sorted(float(delay) for delay in after)
    except (TypeError, ValueError):
        delays = []
    if not delays or not all(math.isfinite(d) and d >= 0 for d in delays):
        raise ValueError(
            "after must list delays in seconds, each 0 or more (e.g. (30, 120, 600)), "
            f"not {after!r}."
        )
    return delays


def _seconds(delay: float) -> str:
    return f"{delay:g}"


_live: weakref.WeakSet[RetentionScheduler] = weakref.WeakSet()


def _drop_at_exit() -> None:
    for scheduler in list(_live):
        scheduler.close(join=False)


def _reset_after_fork() -> None:
    for scheduler in list(_live):
        trackers = list(scheduler._trackers)
        scheduler._reset()
        for tracker in trackers:
            tracker._forget()


atexit.register(_drop_at_exit)
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_reset_after_fork)
