"""The sender behind `client.logs.log`: a bounded queue that a daemon thread drains in batches.

`put` only appends to memory, so logging never waits on the network and never raises. The
thread, started by the first log, posts to `/logs/batch` when `flush_at` logs wait, when
`flush_interval` has passed since it saw the first of them, or when `flush()` asks; a batch
is split to stay under `flush_bytes` of JSON. Logs are serialised in the thread, one by one.
Each log carries its id from the start, so a batch sent again (a retry after a lost answer)
is stored once.

Nothing reaches the host application; what goes wrong is reported through the `promptloop`
logger:

- queue full (the server is slow or down): new logs are dropped, counted, reported at most
  every REPORT_EVERY seconds;
- a log that is not JSON-serialisable: that log alone is dropped;
- 429, 5xx, network errors: retried, at most MAX_ATTEMPTS times, after an exponential
  backoff with jitter, or after the server's Retry-After;
- other 4xx: never retried. A batch refused for its content (400, 404, 413, 422) is split in
  halves that are sent again, so one bad log does not take its neighbours down; a single log
  refused, or a batch refused for the key (401, 403), is dropped.

Every live queue is flushed at interpreter exit; after `os.fork()` the child's queues start
empty (the parent sends what was queued) and start a new thread and connection on first use.
"""

from __future__ import annotations

import atexit
import email.utils
import json
import logging
import math
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import date, datetime
from typing import Any, Protocol

import httpx
from pydantic import BaseModel

from promptloop.sdk._errors import status_error

logger = logging.getLogger("promptloop")

MAX_ATTEMPTS = 5
BACKOFF_BASE = 0.5  # seconds before the first retry; doubles with each
BACKOFF_CAP = 10.0
RETRY_AFTER_CAP = 60.0
FLUSH_BYTES = 1_000_000
MAX_BATCH = 10_000  # the most the server takes in one request
CLOSE_TIMEOUT = 10.0  # how long close() and interpreter exit wait for the server
REPORT_EVERY = 10.0
SPLITTABLE = frozenset({400, 404, 413, 422})

Entry = dict[str, Any]


class Sender(Protocol):
    """Posts a body to `/logs/batch`; opened in the log thread, closed when the thread ends."""

    def send(self, body: bytes) -> httpx.Response: ...
    def close(self) -> None: ...


class LogQueue:
    """A client's queue of logs to send, and the thread that sends them."""

    def __init__(
        self,
        open_sender: Callable[[], Sender],
        *,
        max_queue: int,
        flush_at: int,
        flush_interval: float,
        flush_bytes: int = FLUSH_BYTES,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}.")
        if not 1 <= flush_at <= MAX_BATCH:
            raise ValueError(f"flush_at must be between 1 and {MAX_BATCH:,}, not {flush_at}.")
        if not flush_interval > 0:
            raise ValueError(
                f"flush_interval must be a positive number of seconds, not {flush_interval}."
            )
        self._open_sender = open_sender
        self._max_queue = max_queue
        self._flush_at = flush_at
        self._flush_interval = flush_interval
        self._flush_bytes = flush_bytes
        self._closed = False
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child, where the parent's thread is
        gone and its locks may be held forever."""
        self._cond = threading.Condition()
        self._abandon = threading.Event()
        self._items: deque[Entry] = deque()
        self._accepted = 0  # logs queued so far
        self._done = 0  # of those, how many were sent or dropped (in queue order)
        self._flush_target = 0  # flush() waits until _done reaches it: send without waiting
        self._worker: threading.Thread | None = None
        self._drops: dict[str, int] = {}
        self._last_report = -math.inf

    def put(self, entry: Entry) -> None:
        """Queue `entry` to send, or count it as dropped; never blocks on I/O, never raises."""
        with self._cond:
            if self._closed:
                reason = "the client is closed"
            elif len(self._items) >= self._max_queue:
                reason = (
                    f"the queue is full (max_queue={self._max_queue:,}): the server is slow or "
                    "unreachable"
                )
            else:
                self._items.append(entry)
                self._accepted += 1
                if self._worker is None:
                    self._start_worker()
                if len(self._items) == 1 or len(self._items) >= self._flush_at:
                    self._cond.notify()
                return
            self._drops[reason] = self._drops.get(reason, 0) + 1
        self._report_drops()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every log queued so far is sent or dropped; False if `timeout` (seconds)
        passed first."""
        with self._cond:
            target = self._accepted
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            worker = self._worker
        if worker is None or not worker.is_alive():
            self._send_batches(wait=False)  # no thread: at interpreter exit, none may start
        with self._cond:
            done = self._cond.wait_for(lambda: self._done >= target, timeout)
        self._report_drops(force=True)
        return done

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Send what is queued (waiting at most `timeout` seconds), then stop the thread."""
        sent = self.flush(timeout)
        with self._cond:
            self._closed = True
            left = len(self._items)
            self._items.clear()
            self._done += left
            self._cond.notify_all()
            worker = self._worker
        if not sent:
            self._abandon.set()  # a retry in progress gives up too
        if left:
            logger.error(
                "Dropped %d log%s: not sent within %s s of closing the client; call "
                "client.logs.flush() before close() to wait for as long as it takes.",
                left,
                _plural(left),
                timeout,
            )
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=1.0)  # it closes its connection

    @property
    def pending(self) -> int:
        """Logs queued or being sent."""
        with self._cond:
            return self._accepted - self._done

    def _start_worker(self) -> None:
        worker = threading.Thread(
            target=self._send_batches, kwargs={"wait": True}, name="promptloop-logs", daemon=True
        )
        try:
            worker.start()  # under the lock: the thread only takes it once it runs
        except RuntimeError:  # at interpreter exit no thread can start: flush() sends instead
            return
        self._worker = worker

    def _send_batches(self, *, wait: bool) -> None:
        """Send batch after batch: in the log thread (`wait`) until the queue closes, else
        from the calling thread until it is empty."""
        sender: Sender | None = None
        try:
            while (batch := self._take(wait=wait)) is not None:
                try:
                    sender = sender or self._open_sender()
                    self._deliver(sender, batch)
                except Exception:  # the thread must survive anything; the batch is lost
                    logger.exception(
                        "Dropped %d log%s: unexpected error while sending.",
                        len(batch),
                        _plural(len(batch)),
                    )
                finally:
                    self._finish(len(batch))
        finally:
            if sender is not None:
                with suppress(Exception):
                    sender.close()

    def _take(self, *, wait: bool) -> list[Entry] | None:
        """The next batch; with `wait`, blocks until there is one worth sending (None: closed)."""
        with self._cond:
            if wait:
                while not self._items:
                    if self._closed:
                        return None
                    self._cond.wait()
                deadline = time.monotonic() + self._flush_interval
                while len(self._items) < self._flush_at and not self._urgent():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            count = min(len(self._items), self._flush_at)
            return [self._items.popleft() for _ in range(count)] if count else None

    def _urgent(self) -> bool:
        return self._closed or self._flush_target > self._done

    def _finish(self, count: int) -> None:
        with self._cond:
            self._done += count
            self._cond.notify_all()
        self._report_drops()

    def _deliver(self, sender: Sender, batch: list[Entry]) -> None:
        encoded = [body for body in map(_encode, batch) if body is not None]
        for chunk in _chunks(encoded, self._flush_bytes):
            self._post(sender, chunk)

    def _post(self, sender: Sender, logs: list[bytes]) -> None:
        body = b'{"logs":[' + b",".join(logs) + b"]}"
        what = f"{len(logs)} log{_plural(len(logs))}"
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = sender.send(body)
            except httpx.TransportError as exc:
                problem, retry_after = f"could not reach the server ({exc!r})", None
            else:
                if response.is_success:
                    return
                problem = _describe(response)
                status = response.status_code
                if status != 429 and status < 500:
                    if status in SPLITTABLE and len(logs) > 1:
                        half = len(logs) // 2
                        self._post(sender, logs[:half])
                        self._post(sender, logs[half:])
                    else:
                        logger.error("Dropped %s: the server refused them (%s).", what, problem)
                    return
                retry_after = _retry_after(response)
            if attempt == MAX_ATTEMPTS:
                break
            delay = retry_after if retry_after is not None else _backoff(attempt)
            logger.info("Sending %s failed (%s); retrying in %.1f s.", what, problem, delay)
            if self._abandon.wait(delay):
                logger.error("Dropped %s: the client closed while retrying (%s).", what, problem)
                return
        logger.error("Dropped %s after %d attempts: %s.", what, MAX_ATTEMPTS, problem)

    def _report_drops(self, *, force: bool = False) -> None:
        with self._cond:
            now = time.monotonic()
            if not self._drops or (not force and now - self._last_report < REPORT_EVERY):
                return
            drops, self._drops = self._drops, {}
            self._last_report = now
        for reason, count in drops.items():
            logger.warning("Dropped %d log%s: %s.", count, _plural(count), reason)


def _encode(entry: Entry) -> bytes | None:
    """The log as JSON, or None (reported) when one of its values cannot be."""
    try:
        return _dumps(entry)
    except Exception as exc:  # the host's values: anything may fail, even their __repr__
        bad = next((key for key, value in entry.items() if not _serialisable(value)), "content")
        logger.warning(
            "Dropped log %s: its %s cannot be sent as JSON (%s: %s).",
            entry.get("id"),
            bad,
            type(exc).__name__,
            exc,
        )
        return None


def _dumps(value: Any) -> bytes:
    text = json.dumps(
        value, default=_jsonable, allow_nan=False, ensure_ascii=False, separators=(",", ":")
    )
    return text.encode()


def _serialisable(value: Any) -> bool:
    try:
        _dumps(value)
    except Exception:
        return False
    return True


def _jsonable(value: Any) -> Any:
    """What JSON cannot hold as is: pydantic models, times, other mappings."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.astimezone()).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _chunks(logs: list[bytes], limit: int) -> list[list[bytes]]:
    """`logs` in order, grouped so that each group's JSON stays under `limit` bytes (a log
    larger than that goes alone)."""
    chunks: list[list[bytes]] = []
    size = 0
    for log in logs:
        if not chunks or size + len(log) + 1 > limit:
            chunks.append([])
            size = len(b'{"logs":[]}')
        chunks[-1].append(log)
        size += len(log) + 1  # and a comma
    return chunks


def _describe(response: httpx.Response) -> str:
    error = status_error(response)
    if error.code == "http_error":
        return error.message
    return f"HTTP {error.status_code} {error.code}: {error.message}"


def _retry_after(response: httpx.Response) -> float | None:
    """The server's Retry-After in seconds (a number or an HTTP date), capped; None if absent."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - time.time()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP) if math.isfinite(seconds) else None


def _backoff(attempt: int) -> float:
    """Exponential backoff with "equal jitter": between half and all of the doubled delay."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def _plural(count: int) -> str:
    return "" if count == 1 else "s"


_live: weakref.WeakSet[LogQueue] = weakref.WeakSet()


def _flush_at_exit() -> None:
    for queue in list(_live):
        if not queue.flush(CLOSE_TIMEOUT):
            logger.error(
                "Dropped %d logs: not sent within %s s of the interpreter's exit.",
                queue.pending,
                CLOSE_TIMEOUT,
            )


def _reset_after_fork() -> None:
    for queue in list(_live):
        queue._reset()


atexit.register(_flush_at_exit)
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_reset_after_fork)
