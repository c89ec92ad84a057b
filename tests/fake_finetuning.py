"""A fake of OpenAI's fine-tuning API on loopback: files, jobs, their events and cancellation,
for tests that drive the real SDK without touching the internet.

A job moves one step each time it is read: `validating_files`, then `running` through
`steps` steps (a `metrics` event each), then `succeeded` with a fine-tuned model name. Set
`hold` to keep jobs running (until cancelled), `fail_at` to fail them at that step with
`failure`, or `refuse` to answer job creation with that status and message.

    with FakeFineTuning() as fake:
        AsyncOpenAI(base_url=fake.openai_url, api_key="sk-test").fine_tuning.jobs...
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.upstream import BackgroundServer


@dataclass
class FakeJob:
    id: str
    model: str
    training_file: str
    validation_file: str | None
    suffix: str | None
    method: dict[str, Any] | None
    created_at: int
    status: str = "validating_files"
    step: int = 0
    fine_tuned_model: str | None = None
    error: dict[str, Any] | None = None
    finished_at: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


class FakeFineTuning:
    def __init__(self, *, steps: int = 3) -> None:
        self.steps = steps
        self.hold = False
        self.fail_at: int | None = None
        self.failure = "The job failed"
        self.refuse: tuple[int, str] | None = None
        self.files: dict[str, tuple[str, bytes]] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.cancelled: list[str] = []
        self.keys: set[str] = set()
        self._lock = threading.Lock()
        self._server = BackgroundServer(
            Starlette(
                routes=[
                    Route("/v1/files", self._upload, methods=["POST"]),
                    Route("/v1/fine_tuning/jobs", self._create, methods=["POST"]),
                    Route("/v1/fine_tuning/jobs/{job_id}", self._retrieve, methods=["GET"]),
                    Route("/v1/fine_tuning/jobs/{job_id}/events", self._events, methods=["GET"]),
                    Route("/v1/fine_tuning/jobs/{job_id}/cancel", self._cancel, methods=["POST"]),
                ]
            )
        )

    @property
    def openai_url(self) -> str:
        return f"{self._server.url}/v1"

    def __enter__(self) -> FakeFineTuning:
        self._server.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.stop()

    def _seen(self, request: Request) -> None:
        self.keys.add(request.headers.get("authorization", ""))

    async def _upload(self, request: Request) -> Response:
        self._seen(request)
        async with request.form() as form:
            upload = form["file"]
            assert not isinstance(upload, str)
            data = await upload.read()
            name = upload.filename or "file"
            purpose = str(form.get("purpose"))
        file_id = f"file-{uuid.uuid4().hex[:12]}"
        self.files[file_id] = (name, data)
        return JSONResponse(
            {
                "id": file_id,
                "object": "file",
                "bytes": len(data),
                "created_at": int(time.time()),
                "filename": name,
                "purpose": purpose,
                "status": "processed",
            }
        )

    async def _create(self, request: Request) -> Response:
        self._seen(request)
        body = await request.json()
        if self.refuse is not None:
            status, message = self.refuse
            return _error(status, message)
        for key in ("training_file", "validation_file"):
            if body.get(key) is not None and body[key] not in self.files:
                return _error(400, f"File {body[key]} not found.")
        job = FakeJob(
            id=f"ftjob-{uuid.uuid4().hex[:12]}",
            model=body["model"],
            training_file=body["training_file"],
            validation_file=body.get("validation_file"),
            suffix=body.get("suffix"),
            method=body.get("method"),
            created_at=int(time.time()) - 30,
        )
        with self._lock:
            self.jobs[job.id] = job
        return JSONResponse(_job(job))

    async def _retrieve(self, request: Request) -> Response:
        self._seen(request)
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "No such job")
        with self._lock:
            self._advance(job)
        return JSONResponse(_job(job))

    async def _events(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "No such job")
        newest_first = list(reversed(job.events))
        return JSONResponse({"object": "list", "data": newest_first, "has_more": False})

    async def _cancel(self, request: Request) -> Response:
        self._seen(request)
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "No such job")
        with self._lock:
            self.cancelled.append(job.id)
            if job.status not in ("succeeded", "failed", "cancelled"):
                job.status, job.finished_at = "cancelled", int(time.time())
        return JSONResponse(_job(job))

    def _advance(self, job: FakeJob) -> None:
        if job.status in ("succeeded", "failed", "cancelled"):
            return
        if job.status == "validating_files":
            job.status = "running"
            return
        if self.hold and job.step >= 1:
            return
        job.step += 1
        if self.fail_at is not None and job.step >= self.fail_at:
            job.status, job.finished_at = "failed", int(time.time())
            job.error = {"code": "invalid_training_file", "message": self.failure, "param": None}
            return
        job.events.append(
            {
                "id": f"ftevent-{uuid.uuid4().hex[:8]}",
                "object": "fine_tuning.job.event",
                "created_at": int(time.time()),
                "level": "info",
                "message": f"Step {job.step}/{self.steps}",
                "type": "metrics",
                "data": {
                    "step": job.step,
                    "total_steps": self.steps,
                    "train_loss": round(2.0 / job.step, 4),
                    "valid_loss": round(2.5 / job.step, 4),
                },
            }
        )
        if job.step >= self.steps:
            job.status, job.finished_at = "succeeded", int(time.time())
            job.fine_tuned_model = f"ft:{job.model}:promptloop:{job.suffix}:{job.id[-8:]}"


def _job(job: FakeJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "created_at": job.created_at,
        "error": job.error,
        "fine_tuned_model": job.fine_tuned_model,
        "finished_at": job.finished_at,
        "hyperparameters": {"n_epochs": "auto", "batch_size": "auto"},
        "model": job.model,
        "organization_id": "org-test",
        "result_files": [],
        "seed": 0,
        "status": job.status,
        "trained_tokens": 1000 * job.step if job.status == "succeeded" else None,
        "training_file": job.training_file,
        "validation_file": job.validation_file,
        "estimated_finish": job.created_at + 60 if job.status == "running" else None,
        "method": job.method,
    }


def _error(status: int, message: str) -> Response:
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error", "param": None}},
        status_code=status,
    )
