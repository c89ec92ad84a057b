"""Evaluation-run throughput: a 1,000-datapoint run at concurrency 32 against a fake upstream
that answers in 200 ms, compared with the ideal (datapoints x 200 ms / 32) and with the same
requests sent straight to the upstream by a minimal client (the floor on this machine).

    uv run python bench/evaluation.py [--datapoints 1000] [--concurrency 32] [--delay 0.2]

Everything runs on loopback: the fake upstream (OpenAI's chat-completions shape, answering
after `--delay` seconds) and `promptloop serve` (SQLite in a temporary folder, its in-process
worker running the job) each in their own process. The run is created and polled through the
REST API, as a user would; its wall time runs from the POST to the moment the API reports it
completed. The statistics are then recomputed in this process from the stored judgments and
timed on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import (  # bench/ is not a package: import its sibling by path
    Connection,
    answering,
    free_port,
    payload,
    process,
    profiled,
    promptloop_env,
    set_up_promptloop,
)

ROOT = Path(__file__).resolve().parent.parent


async def direct(port: int, *, count: int, concurrency: int) -> float:
    """The same number of requests straight to the upstream, `concurrency` at a time."""
    request = payload(port, "gpt-4o-mini", "sk-bench")
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        connection = Connection(port)
        while remaining > 0:
            remaining -= 1
            status, _ = await connection.request(request)
            assert status == 200
        connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def run_through_promptloop(
    port: int, key: str, *, datapoints: int, concurrency: int
) -> tuple[float, dict[str, Any]]:
    import httpx

    api = httpx.Client(
        base_url=f"http://127.0.0.1:{port}/api/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    version = api.post(
        "/prompts/bench/greet/-/versions",
        json={
            "provider": "openai",
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say hello to {{ name }}"}],
        },
    ).json()["id"]
    points = [
        {"inputs": {"name": f"user {i}"}, "target": "Hello! How can I help you today?"}
        for i in range(datapoints)
    ]
    api.post("/datasets/bench/-/versions", json={"datapoints": points}).raise_for_status()
    for name, builtin in (("exact", "exact_match"), ("similar", "edit_similarity")):
        api.post(
            f"/evaluators/{name}/-/versions", json={"kind": "builtin", "builtin": builtin}
        ).raise_for_status()
    started = time.perf_counter()
    run = api.post(
        "/evaluations",
        json={
            "dataset": "bench",
            "candidates": [{"prompt": "bench/greet", "version": version}],
            "evaluators": ["exact", "similar"],
            "concurrency": concurrency,
            "control": 0,
        },
    )
    run.raise_for_status()
    run_id = run.json()["id"]
    while True:
        shown = api.get(f"/evaluations/{run_id}").json()
        if shown["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.1)
    wall = time.perf_counter() - started
    if shown["status"] != "completed":
        raise RuntimeError(f"the run ended {shown['status']}: {shown.get('error')}")
    return wall, shown


def time_statistics(data_dir: Path, run_id: str) -> tuple[float, dict[str, float]]:
    """Seconds to recompute the run's statistics, and when its phases happened (seconds after
    the run was created: first and last model answer logged, job started and finished)."""
    from sqlalchemy import func, select

    from promptloop.services.evaluations import summarize
    from promptloop.settings import Settings
    from promptloop.store.db import Database
    from promptloop.store.models import EvaluationRun, Job, Log

    db = Database(Settings(data_dir=data_dir).resolved_database_url())
    try:
        with db.session(write=False) as session:
            run = session.scalars(select(EvaluationRun).where(EvaluationRun.uid == run_id)).one()
            started = time.perf_counter()
            summarize(session, run=run)
            elapsed = time.perf_counter() - started
            job = session.get(Job, run.job_id)
            first, last = session.execute(
                select(func.min(Log.created_at), func.max(Log.created_at)).where(
                    Log.source == "eval"
                )
            ).one()
            origin = run.created_at
            phases = {
                "job_started": (job.started_at - origin).total_seconds(),
                "first_answer_logged": (first - origin).total_seconds(),
                "last_answer_logged": (last - origin).total_seconds(),
                "run_finished": (run.finished_at - origin).total_seconds(),
            }
            return elapsed, {k: round(v, 3) for k, v in phases.items()}
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datapoints", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--profile", help="py-spy flame graph of the server during the run")
    parser.add_argument("--keep", action="store_true", help="keep the data folder (printed)")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.upstream:
        import uvicorn

        uvicorn.run(
            answering(args.delay), host="127.0.0.1", port=args.upstream, log_level="warning"
        )
        return

    upstream_port, port = free_port(), free_port()
    if args.keep:
        holder: Any = contextlib.nullcontext(tempfile.mkdtemp(prefix="promptloop-bench-"))
    else:
        holder = tempfile.TemporaryDirectory(prefix="promptloop-bench-")
    with holder as tmp:
        folder = Path(tmp)
        if args.keep:
            print(f"data: {folder / 'data'}", file=sys.stderr)
        data_dir = folder / "data"
        upstream_cmd = [
            sys.executable,
            __file__,
            "--upstream",
            str(upstream_port),
            "--delay",
            str(args.delay),
        ]
        serve_cmd = [
            sys.executable,
            "-m",
            "promptloop",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ]
        env = promptloop_env(data_dir)
        with (
            process(upstream_cmd, upstream_port, log=folder / "upstream.log"),
            process(serve_cmd, port, env=env, log=folder / "serve.log") as server,
        ):
            key = set_up_promptloop(port, data_dir, upstream_port)
            floor = asyncio.run(
                direct(upstream_port, count=args.datapoints, concurrency=args.concurrency)
            )
            with profiled(server.pid, args.profile):
                wall, run = run_through_promptloop(
                    port, key, datapoints=args.datapoints, concurrency=args.concurrency
                )
        statistics, phases = time_statistics(data_dir, run["id"])

    ideal = args.datapoints * args.delay / args.concurrency
    [result] = [r for r in run["summary"]["results"] if r["evaluator"] == "exact"]
    print(
        json.dumps(
            {
                "datapoints": args.datapoints,
                "concurrency": args.concurrency,
                "upstream_delay_s": args.delay,
                "ideal_s": round(ideal, 3),
                "direct_s": round(floor, 3),
                "run_s": round(wall, 3),
                "run_vs_ideal": round(wall / ideal, 3),
                "run_vs_direct": round(wall / floor, 3),
                "statistics_s": round(statistics, 4),
                "phases_s": phases,
                "exact_match_mean": result["mean"]["value"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
