"""Background jobs: a queue in the database that workers claim.

`promptloop serve` runs a worker in-process; more workers (`promptloop worker`) may run on other
machines against the same PostgreSQL, claiming with `FOR UPDATE SKIP LOCKED`. A running job
heartbeats; one whose heartbeat went stale (its worker died with the server) is claimed again
and resumes: handlers skip work already stored, so nothing finished is repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from promptloop.core.errors import NotFound
from promptloop.store.db import Database
from promptloop.store.models import Job, Project
from promptloop.store.types import utcnow

logger = logging.getLogger("promptloop.worker")

FINISHED = ("completed", "failed", "cancelled")


class Cancelled(Exception):
    """Raised inside a handler once its job's cancellation was requested."""


class Waiting(Exception):
    """Raised by a handler with nothing to do until something outside happens (a local run
    waiting for outputs): the job goes back to the queue, unclaimable for `after` seconds or
    until `requeue` is called, and holds no worker slot meanwhile."""

    def __init__(self, after: float) -> None:
        super().__init__(f"waiting up to {after} s")
        self.after = after


def requeue(session: Session, *, job_id: int) -> None:
    """Make a waiting job claimable now (what it waited for happened)."""
    session.execute(
        update(Job).where(Job.id == job_id, Job.status == "queued").values(run_after=None)
    )


def enqueue(session: Session, *, project: Project, kind: str, payload: dict[str, Any]) -> Job:
    job = Job(project_id=project.id, kind=kind, payload=payload, status="queued")
    session.add(job)
    session.flush()
    return job


def request_cancel(session: Session, *, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"No job {job_id}.")
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", utcnow()
    elif job.status == "running":
        job.cancel_requested = True
    session.flush()
    return job


@dataclass
class JobContext:
    """What a handler gets: the job, a way to report progress, and a cancellation check."""

    db: Database
    job_id: int
    project_id: int
    payload: dict[str, Any]
    progress: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False  # set once a checkpoint saw the cancellation

    async def checkpoint(self, **progress: Any) -> None:
        """Record progress and heartbeat; raise Cancelled if the job was cancelled."""
        self.progress.update(progress)
        cancelled = await asyncio.to_thread(self._beat)
        if cancelled:
            self.cancelled = True
            raise Cancelled()

    def _beat(self) -> bool:
        with self.db.session(write=True) as session:
            session.execute(
                update(Job)
                .where(Job.id == self.job_id)
                .values(heartbeat_at=utcnow(), progress=dict(self.progress))
            )
            return bool(session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))


Handler = Callable[[JobContext], Awaitable[None]]


class Worker:
    """Claims queued jobs and runs their handlers, up to `slots` at a time, in this event loop."""

    def __init__(
        self,
        db: Database,
        handlers: dict[str, Handler],
        *,
        slots: int = 4,
        poll_s: float = 1.0,
        stale_after_s: float = 30.0,
    ) -> None:
        self.db = db
        self.handlers = handlers
        self.slots = slots
        self.poll_s = poll_s
        self.stale_after_s = stale_after_s
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        self._loop_task = self._event_loop.create_task(self._loop())

    def wake(self) -> None:
        """A job was queued in this process: look now rather than at the next poll. Safe from
        any thread (sync routes run in a thread pool)."""
        loop = self._event_loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def stop(self) -> None:
        """Stop claiming; running jobs are interrupted and resume after their heartbeat goes
        stale (in this or another worker), as after a crash."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                while len(self._running) < self.slots:
                    claimed = await asyncio.to_thread(self._claim)
                    if claimed is None:
                        break
                    task = asyncio.get_running_loop().create_task(self._run(claimed))
                    self._running.add(task)
                    task.add_done_callback(self._finished)
            except Exception:  # the database may be briefly unavailable: retry at the next poll
                logger.exception("Could not claim jobs")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free

    def _claim(self) -> JobContext | None:
        now = utcnow()
        stale = now - timedelta(seconds=self.stale_after_s)
        query = (
            select(Job)
            .where(
                Job.kind.in_(self.handlers),
                or_(
                    (Job.status == "queued") & or_(Job.run_after.is_(None), Job.run_after <= now),
                    (Job.status == "running") & (Job.heartbeat_at < stale),
                ),
            )
            .order_by(Job.id)
            .limit(1)
        )
        # An idle worker polls with a read; only a claim takes the write lock (on SQLite,
        # BEGIN IMMEDIATE would otherwise contend with the log writer every poll).
        with self.db.session(write=False) as session:
            if session.scalars(query.with_only_columns(Job.id)).first() is None:
                return None
        with self.db.session(write=True) as session:
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            job = session.scalars(query).first()
            if job is None:
                return None
            if job.status == "running":
                logger.info(
                    "Resuming job %s (%s): its worker stopped heartbeating", job.id, job.kind
                )
            job.status = "running"
            job.run_after = None
            job.claimed_by = self.name
            job.heartbeat_at = now
            job.attempts += 1
            job.started_at = job.started_at or now
            return JobContext(
                db=self.db,
                job_id=job.id,
                project_id=job.project_id,
                payload=dict(job.payload),
                progress=dict(job.progress or {}),
            )

    async def _run(self, ctx: JobContext) -> None:
        kind = await asyncio.to_thread(self._kind, ctx.job_id)
        handler = self.handlers[kind]
        beating = asyncio.get_running_loop().create_task(self._heartbeat(ctx))
        status, error, after = "completed", None, None
        try:
            await handler(ctx)
        except Cancelled:
            status = "cancelled"
        except Waiting as waiting:
            status, after = "queued", waiting.after
        except asyncio.CancelledError:
            beating.cancel()
            raise  # the worker is stopping: leave the job running, to be resumed
        except Exception as exc:
            logger.exception("Job %s (%s) failed", ctx.job_id, kind)
            status, error = "failed", "".join(traceback.format_exception_only(exc)).strip()
        finally:
            beating.cancel()
        await asyncio.to_thread(self._finish, ctx, status, error, after)

    async def _heartbeat(self, ctx: JobContext) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.stale_after_s / 3))
            try:
                await asyncio.to_thread(ctx._beat)
            except Exception:
                logger.exception("Heartbeat of job %s failed", ctx.job_id)

    def _kind(self, job_id: int) -> str:
        with self.db.session(write=False) as session:
            kind: str = session.scalars(select(Job.kind).where(Job.id == job_id)).one()
            return kind

    def _finish(self, ctx: JobContext, status: str, error: str | None, after: float | None) -> None:
        now = utcnow()
        values: dict[str, Any] = {"status": status, "error": error, "progress": dict(ctx.progress)}
        if status == "queued":  # waiting: back in the queue, claimable later
            values |= {"run_after": now + timedelta(seconds=after or 0), "claimed_by": None}
        else:
            values |= {"finished_at": now, "heartbeat_at": now}
        with self.db.session(write=True) as session:
            query = update(Job).where(Job.id == ctx.job_id)
            if status == "queued":
                # Cancelled while the handler ran: do not queue it again.
                cancelled = query.where(Job.cancel_requested.is_(True))
                session.execute(cancelled.values(status="cancelled", finished_at=now))
                query = query.where(Job.cancel_requested.is_(False))
            session.execute(query.values(**values))
