"""Gateway overhead: the same chat completion sent straight to an upstream, and through
promptloop's OpenAI-compatible gateway (and LiteLLM's proxy, when it is installed).

    uv run python bench/gateway.py [--requests 2000] [--concurrency 1,16,64] [--litellm PATH]
                                   [--profile flame.svg]  # py-spy on promptloop's process

Everything runs on loopback, each server in its own process: a minimal fake upstream (raw ASGI
on uvicorn, one fixed answer), `promptloop serve` on SQLite in a temporary folder (a provider
key whose `base_url` is the fake), and LiteLLM's proxy when `--litellm` (default
/tmp/litellm/bin/litellm) exists. The load generator is a small keep-alive HTTP/1.1 client on
raw asyncio sockets, so that its own cost stays small and the same for every target. Each
(target, concurrency) pair gets a warm-up, then a bounded number of requests; the report gives
p50/p99 latency, throughput, and the latency promptloop adds over the direct path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LITELLM_KEY = "sk-" + "0123456789abcdef" * 4  # LiteLLM refuses to start without a master key
ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
    }
).encode()


# The fake upstream ---------------------------------------------------------------------------


def answering(delay: float = 0.0) -> Any:
    """A raw ASGI app: drain the body, wait `delay` seconds, answer the fixed completion."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        if delay:
            await asyncio.sleep(delay)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(ANSWER)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": ANSWER})

    return app


upstream_app = answering()


def run_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(upstream_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# The load generator --------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = head.lower()
        if b"transfer-encoding: chunked" in headers:
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            start = headers.index(b"content-length:") + len(b"content-length:")
            length = int(headers[start : headers.index(b"\r\n", start)])
            body = await self.reader.readexactly(length)
        if b"connection: close" in headers:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def payload(port: int, model: str, key: str) -> bytes:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}
    ).encode()
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class Result:
    target: str
    concurrency: int
    latencies_ms: list[float]
    wall_s: float
    errors: int

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.wall_s


async def load(port: int, request: bytes, *, concurrency: int, count: int) -> Result:
    """`count` requests from `concurrency` connections, each sending its next one as soon as
    the previous answer arrived (a closed loop)."""
    remaining = count
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal remaining, errors
        connection = Connection(port)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                status, body = await connection.request(request)
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    errors += 1
                    if errors == 1:
                        print(f"  first error: {status} {body[:300]!r}", file=sys.stderr)
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout=600)
    return Result("", concurrency, latencies, time.perf_counter() - started, errors)


# Servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"a server exited with {process.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


@contextmanager
def process(
    command: list[str], port: int, *, env: dict[str, str] | None = None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        started = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_port(port, started)
            yield started
        finally:
            started.send_signal(signal.SIGINT)
            try:
                started.wait(15)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait(5)


@contextmanager
def profiled(pid: int, output: str | None) -> Iterator[None]:
    """Sample `pid` with py-spy (when asked and installed: `uv tool install py-spy`)."""
    spy_path = shutil.which("py-spy") or shutil.which(str(Path.home() / ".local/bin/py-spy"))
    if not output or not spy_path:
        if output:
            print("py-spy not found: no profile", file=sys.stderr)
        yield
        return
    spy = subprocess.Popen(
        [spy_path, "record", "--pid", str(pid), "--output", output, "--rate", "200"]
        + (["--format", "raw", "--gil"] if output.endswith(".txt") else []),  # GIL holders only
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
        print(f"profile: {output}", file=sys.stderr)


def promptloop_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLOOP_")}
    env["PROMPTLOOP_DATA_DIR"] = str(data_dir)
    # The offline model's background warm-up (import torch, convert the GGUF: tens of seconds
    # of CPU) would run during the measurement; the gateway benchmark never calls it.
    env["PROMPTLOOP_WARM_LOCAL_MODEL"] = "0"
    return env


def set_up_promptloop(port: int, data_dir: Path, upstream_port: int) -> str:
    """An admin API key, and the openai provider key pointing at the fake upstream."""
    import httpx

    from promptloop.services import local
    from promptloop.settings import Settings

    key = local.create_api_key(
        Settings(data_dir=data_dir), project="default", role="admin", name="bench"
    ).secret
    response = httpx.put(
        f"http://127.0.0.1:{port}/api/v1/provider-keys/openai",
        headers={"Authorization": f"Bearer {key}"},
        json={"api_key": "sk-bench", "base_url": f"http://127.0.0.1:{upstream_port}/v1"},
    )
    response.raise_for_status()
    return key


def litellm_config(folder: Path, upstream_port: int) -> Path:
    config = folder / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o-mini\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o-mini\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
    )
    return config


# The run -------------------------------------------------------------------------------------


async def measure(
    name: str, port: int, request: bytes, concurrencies: list[int], count: int
) -> list[Result]:
    results = []
    for concurrency in concurrencies:
        await load(port, request, concurrency=concurrency, count=max(100, count // 10))  # warm-up
        result = await load(port, request, concurrency=concurrency, count=count)
        result.target = name
        results.append(result)
        print(
            f"  {name:<10} c={concurrency:<3} p50 {result.percentile(50):7.2f} ms  "
            f"p99 {result.percentile(99):7.2f} ms  {result.throughput:7.0f} req/s"
            + (f"  ERRORS {result.errors}" if result.errors else ""),
            file=sys.stderr,
        )
    return results


def report(results: list[Result]) -> str:
    direct = {r.concurrency: r for r in results if r.target == "direct"}
    lines = [
        "| target | concurrency | p50 ms | p99 ms | req/s | added p50 ms | added p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        base = direct[r.concurrency]
        added = (
            ("—", "—")
            if r.target == "direct"
            else (
                f"{r.percentile(50) - base.percentile(50):.2f}",
                f"{r.percentile(99) - base.percentile(99):.2f}",
            )
        )
        lines.append(
            f"| {r.target} | {r.concurrency} | {r.percentile(50):.2f} | {r.percentile(99):.2f} "
            f"| {r.throughput:.0f} | {added[0]} | {added[1]} | {r.errors} |"
        )
    by_target = {(r.target, r.concurrency): r for r in results}
    if any(r.target == "litellm" for r in results):
        lines += [
            "",
            "| concurrency | promptloop req/s / litellm req/s | litellm p50 / promptloop p50 |",
            "|---|---|---|",
        ]
        for concurrency in sorted(direct):
            ours, theirs = (
                by_target.get(("promptloop", concurrency)),
                by_target.get(("litellm", concurrency)),
            )
            if ours and theirs:
                lines.append(
                    f"| {concurrency} | {ours.throughput / theirs.throughput:.2f} "
                    f"| {theirs.percentile(50) / ours.percentile(50):.2f} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="Measured requests per run.")
    parser.add_argument("--concurrency", default="1,16,64", help="Comma-separated levels.")
    parser.add_argument("--litellm", default="/tmp/litellm/bin/litellm", help="LiteLLM's CLI.")
    parser.add_argument("--only", default="", help="Comma-separated targets to run.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder.")
    parser.add_argument("--profile", help="Write a py-spy flame graph of promptloop's process.")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)  # run as the fake
    args = parser.parse_args()
    if args.upstream:
        run_upstream(args.upstream)
        return
    count = min(args.requests, 100_000)
    concurrencies = [min(int(c), 512) for c in args.concurrency.split(",")]
    only = set(filter(None, args.only.split(",")))
    folder = Path(tempfile.mkdtemp(prefix="promptloop-bench-"))
    print(f"bench folder: {folder}; load average {os.getloadavg()}", file=sys.stderr)
    results: list[Result] = []
    upstream_port, gateway_port = free_port(), free_port()
    try:
        with process(
            [sys.executable, __file__, "--upstream", str(upstream_port)],
            upstream_port,
            log=folder / "upstream.log",
        ):
            results += asyncio.run(
                measure(
                    "direct",
                    upstream_port,
                    payload(upstream_port, "gpt-4o-mini", "sk-bench"),
                    concurrencies,
                    count,
                )
            )
            if not only or "promptloop" in only:
                data_dir = folder / "promptloop"
                with (
                    process(
                        [sys.executable, "-m", "promptloop", "serve", "--port", str(gateway_port)],
                        gateway_port,
                        env=promptloop_env(data_dir),
                        log=folder / "promptloop.log",
                    ) as server,
                    profiled(server.pid, args.profile),
                ):
                    key = set_up_promptloop(gateway_port, data_dir, upstream_port)
                    request = payload(gateway_port, "openai/gpt-4o-mini", key)
                    results += asyncio.run(
                        measure("promptloop", gateway_port, request, concurrencies, count)
                    )
            if (not only or "litellm" in only) and shutil.which(args.litellm):
                litellm_port = free_port()
                env = {
                    **os.environ,
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    "LITELLM_LOG": "ERROR",
                }
                command = [
                    args.litellm,
                    "--config",
                    str(litellm_config(folder, upstream_port)),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(litellm_port),
                    "--num_workers",
                    "1",
                ]
                with process(command, litellm_port, env=env, log=folder / "litellm.log"):
                    request = payload(litellm_port, "gpt-4o-mini", LITELLM_KEY)
                    results += asyncio.run(
                        measure("litellm", litellm_port, request, concurrencies, count)
                    )
            elif not only or "litellm" in only:
                print(f"LiteLLM not found at {args.litellm}: skipped", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(report(results))


if __name__ == "__main__":
    main()
