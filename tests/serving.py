"""A real `promptloop serve` process for tests that need one (kill -9, real HTTP)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServeProcess:
    """`python -m promptloop serve` on a free loopback port, with its own data folder."""

    def __init__(self, data_dir: Path, *, database_url: str | None = None) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLOOP_")}
        env["PROMPTLOOP_DATA_DIR"] = str(self.data_dir)
        env["PROMPTLOOP_WARM_LOCAL_MODEL"] = "0"
        if self.database_url:
            env["PROMPTLOOP_DATABASE_URL"] = self.database_url
        return env

    def start(self, timeout: float = 60) -> ServeProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "promptloop", "serve", "--port", str(self.port)],
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"promptloop serve exited:\n{self.process.stderr.read() if self.process.stderr else ''}"
                )
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("promptloop serve did not become healthy in time")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing; what is on disk is all that remains."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
