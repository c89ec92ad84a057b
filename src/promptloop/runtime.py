"""What a promptloop process runs on: the database, the secret box, the log writer, the model
caller and the job executor, built the same way for `serve` and for `worker`."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

from promptloop.providers import local as local_provider
from promptloop.providers.registry import providers
from promptloop.services import demo, evaluations, finetunes
from promptloop.services.calls import Caller
from promptloop.services.catalogue import Prices
from promptloop.services.evaluations import Executor
from promptloop.services.jobs import Worker
from promptloop.services.logs import Logger
from promptloop.services.secrets import SecretBox
from promptloop.settings import Settings
from promptloop.store.db import Database
from promptloop.store.logs import SqlLogStore

logger = logging.getLogger("promptloop")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    secret_box: SecretBox
    logger: Logger
    caller: Caller
    executor: Executor
    worker: Worker

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Open (and migrate) the database and wire the services; start nothing yet."""
        local_provider.configure(models_dir=settings.data_dir / "models")
        db = Database(settings.resolved_database_url(), pool_size=settings.database_pool_size)
        db.migrate()
        box = SecretBox.load(configured=settings.secret_key, data_dir=settings.data_dir)
        log_writer = Logger(SqlLogStore(db), Prices(db))
        caller = Caller(db, log_writer, box)
        executor = Executor(db, caller, blocked_paths=[settings.data_dir])
        trainer = finetunes.Trainer(db, data_dir=settings.data_dir, box=box)
        handlers: dict[str, Any] = {evaluations.JOB_KIND: executor, finetunes.JOB_KIND: trainer}
        seeder = demo.Seeder(db, caller, log_writer)  # the demo project's slow part (docs/demo.md)
        worker = Worker(
            db,
            {kind: handlers[kind] for kind in settings.worker_jobs} | {demo.JOB_KIND: seeder},
            stale_after_s=settings.job_stale_after_s,
        )
        trainer.wake = worker.wake  # a finished fine-tune queues its evaluation
        seeder.wake = worker.wake  # ...and so does the demo, its fine-tune and run
        finetunes.register_adapters(settings.data_dir)
        return cls(settings, db, box, log_writer, caller, executor, worker)

    async def close(self) -> None:
        await self.worker.stop()
        for provider in providers().values():  # HTTP clients close while their loop runs
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()
        self.logger.close()
        self.db.dispose()


async def run_worker(settings: Settings) -> None:
    """`promptloop worker`: claim and run background jobs until SIGINT or SIGTERM."""
    runtime = Runtime.build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime.worker.start()
    logger.info("promptloop worker %s waiting for jobs", runtime.worker.name)
    try:
        await stop.wait()
    finally:
        await runtime.close()
