"""Code evaluators: a user's Python `def evaluate(log, datapoint)` run in a separate process.

    with CodeSandbox(source, blocked_paths=[data_dir]) as sandbox:
        sandbox.check()                    # InvalidInput, with the line, for code that won't do
        outcomes = sandbox.run(items)      # one Outcome per item, never raises for an item

`evaluate` receives the log and the datapoint as plain dicts (`EvalInput.log()`,
`EvalInput.datapoint()`) and returns a bool, a number or a str; what it prints becomes the
outcome's explanation.

One child process (`_child.py`) is started per sandbox and reused for every item, one JSON line
each way per item, so a thousand items cost one interpreter start. Its limits:

- time: `timeout_s` per item, enforced by the parent, which kills the child and starts a fresh
  one for the remaining items;
- memory: an address-space limit of `memory_mb` (a MemoryError, or the child dying of a crash
  signal, reads "exceeded the memory limit of N MB"; the child is replaced);
- no network (an empty network namespace where the kernel allows one, and an audit hook
  always), no new processes, no access to `blocked_paths` (the server's data directory: the
  secret key and the database) nor to other processes' /proc entries, writing only in its own
  fresh temporary directory, which is also its working directory and HOME;
- an environment with PATH and LANG only (plus TMPDIR, HOME and single-thread settings for
  numerical libraries): no PROMPTLOOP_* variable reaches it, so no secret does.

POSIX only (the limits use `resource`; the namespaces need Linux).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from promptloop.core.errors import InvalidInput
from promptloop.evaluators.base import EvalInput, Outcome

__all__ = ["CodeSandbox"]

_CHILD = Path(__file__).with_name("_child.py")
_FILENAME = "<evaluator>"  # as _child.py names the code, so tracebacks' lines match
_STARTUP_S = 10.0  # on top of timeout_s, for the interpreter to start on a busy machine
_MAX_REPLY = 16 * 1024 * 1024
_GARBLED = "the evaluator's process wrote something that is not an answer to its answer channel"
# How a process dies when an allocation fails outside Python's MemoryError (in C code).
_MEMORY_SIGNALS = {
    getattr(signal, name)
    for name in ("SIGKILL", "SIGSEGV", "SIGBUS", "SIGABRT")
    if hasattr(signal, name)
}
# Numerical libraries reserve address space per thread; one thread keeps them within the limit.
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class CodeSandbox:
    """Runs one code evaluator's source on many items in one reusable child process."""

    def __init__(
        self,
        source: str,
        *,
        timeout_s: float = 5.0,
        memory_mb: int = 256,
        blocked_paths: Sequence[Path] = (),
    ) -> None:
        if timeout_s <= 0 or memory_mb <= 0:
            raise InvalidInput("A code evaluator's time and memory limits must be positive.")
        self.source = source
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.blocked_paths = tuple(Path(path) for path in blocked_paths)
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._checked = False
        self.children_started = 0  # how many processes this sandbox has needed (for tests, stats)

    def check(self) -> None:
        """Raise InvalidInput (with the line) unless the source compiles and defines a top-level
        `evaluate` taking two positional parameters."""
        try:
            compile(self.source, _FILENAME, "exec", dont_inherit=True)
            tree = ast.parse(self.source, _FILENAME)
        except SyntaxError as exc:
            raise InvalidInput(
                f"The code does not compile: {exc.msg} (line {exc.lineno}).",
                details={"line": exc.lineno, "offset": exc.offset},
            ) from None
        except ValueError as exc:  # e.g. a null byte
            raise InvalidInput(f"The code does not compile: {exc}.") from None
        _check_evaluate(tree)
        self._checked = True

    def run(self, items: Sequence[EvalInput]) -> list[Outcome]:
        """One outcome per item, in order (blocking; one run at a time per sandbox)."""
        if not self._checked:
            self.check()
        with self._lock:
            outcomes: list[Outcome] = []
            broken: str | None = None  # the code failed to load: every item gets that error
            for item in items:
                if broken is None and self._child is None:
                    broken = self._start()
                if broken is not None:
                    outcomes.append(Outcome(error=broken))
                    continue
                outcomes.append(self._run_one(item))
            return outcomes

    def close(self) -> None:
        """Stop the child process and remove its temporary directory."""
        with self._lock:
            self._discard(graceful=True)

    def __enter__(self) -> CodeSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- the child process --------------------------------------------------------------------

    def _start(self) -> str | None:
        """Start a child and load the code into it; the error every item gets if that failed."""
        self.children_started += 1
        try:
            child = _Child()
        except OSError as exc:
            return f"could not start the evaluator's process: {exc}"
        config = {
            "source": self.source,
            "memory_mb": self.memory_mb,
            "tmp": child.tmp,
            "blocked": [str(path) for path in self.blocked_paths],
        }
        deadline = time.monotonic() + self.timeout_s + _STARTUP_S
        try:
            child.send(config, deadline)
            reply = child.receive(deadline)
        except _Timeout:
            child.kill()
            return f"timed out after {self.timeout_s:g} s while loading the code"
        except _Died as died:
            error = str(died) if died.args else self._death(child)
            child.kill()
            return f"{error} while loading the code"
        if "error" in reply:
            child.kill()
            if reply.get("memory"):
                return f"{self._memory_error()} while loading the code"
            return f"the code failed to load: {reply['error']}"
        self._child = child
        return None

    def _run_one(self, item: EvalInput) -> Outcome:
        child = self._child
        assert child is not None
        request = {"log": item.log(), "datapoint": item.datapoint()}
        deadline = time.monotonic() + self.timeout_s
        try:
            child.send(request, deadline)
            reply = child.receive(deadline)
        except _Timeout:
            self._discard()
            return Outcome(error=f"timed out after {self.timeout_s:g} s")
        except _Died as died:
            error = str(died) if died.args else self._death(child)
            self._discard()
            return Outcome(error=error)
        printed = reply.get("printed")
        explanation = str(printed) if printed is not None else None
        if reply.get("memory"):
            self._discard()  # a fresh process: the code's globals may still hold the memory
            return Outcome(error=self._memory_error(), explanation=explanation)
        if "error" in reply:
            return Outcome(error=str(reply["error"]), explanation=explanation)
        value = reply.get("value")
        if not isinstance(value, bool | int | float | str):
            self._discard()
            return Outcome(error=_GARBLED)
        return Outcome(
            value=float(value) if isinstance(value, int) and not isinstance(value, bool) else value,
            explanation=explanation,
        )

    def _memory_error(self) -> str:
        return f"exceeded the memory limit of {self.memory_mb} MB"

    def _death(self, child: _Child) -> str:
        """Why the child's answer channel closed."""
        code = child.wait()
        if code is None:
            return "the evaluator's process closed its answer channel"
        if code < 0 and -code in _MEMORY_SIGNALS:
            return self._memory_error()
        if code < 0:
            return f"the evaluator's process was ended by signal {-code}"
        detail = child.stderr_tail()
        return f"the evaluator's process exited with code {code}" + (
            f": {detail}" if detail else ""
        )

    def _discard(self, *, graceful: bool = False) -> None:
        if self._child is not None:
            self._child.kill(graceful=graceful)
            self._child = None


def _check_evaluate(tree: ast.Module) -> None:
    definitions = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "evaluate"
    ]
    if not definitions:
        raise InvalidInput(
            "The code defines no top-level function `evaluate`: add "
            "`def evaluate(log, datapoint):` returning a bool, a number or a str."
        )
    function = definitions[-1]  # the last definition is the one that counts
    line = function.lineno
    if isinstance(function, ast.AsyncFunctionDef):
        raise InvalidInput(
            f"`evaluate` must be a plain function, not `async def` (line {line}).",
            details={"line": line},
        )
    arguments = function.args
    positional = len(arguments.posonlyargs) + len(arguments.args)
    required = positional - len(arguments.defaults)
    required_keywords = sum(default is None for default in arguments.kw_defaults)
    if required > 2 or (positional < 2 and arguments.vararg is None) or required_keywords:
        raise InvalidInput(
            f"`evaluate` must take two parameters, `(log, datapoint)` (line {line}).",
            details={"line": line},
        )


class _Timeout(Exception):
    pass


class _Died(Exception):
    """The child's answers ended; the message says why when the process itself may live on."""


class _Child:
    """One child process and its pipes; JSON lines with deadlines."""

    def __init__(self) -> None:
        self.tmp = os.path.realpath(tempfile.mkdtemp(prefix="promptloop-evaluator-"))
        # Open for the child's lifetime: the finalizer closes it.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "TMPDIR": self.tmp,
            "HOME": self.tmp,
            **_ONE_THREAD,
        }
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", str(_CHILD)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd=self.tmp,
                env=env,
                start_new_session=True,  # away from the server's terminal signals
            )
        except OSError:
            self._stderr.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._selector = selectors.DefaultSelector()
        self._buffer = bytearray()
        # Kill the process if the sandbox is dropped without close() (and at interpreter exit).
        self._finalizer = weakref.finalize(
            self, _kill, self.process, self._selector, self._stderr, self.tmp
        )

    def send(self, message: dict[str, Any], deadline: float) -> None:
        data = memoryview((json.dumps(message, default=str) + "\n").encode("utf-8", "replace"))
        while data:
            self._wait(self._in, selectors.EVENT_WRITE, deadline)
            try:
                written = os.write(self._in, data)
            except (BrokenPipeError, ConnectionResetError):
                raise _Died from None
            except BlockingIOError:
                continue
            data = data[written:]

    def receive(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            self._wait(self._out, selectors.EVENT_READ, deadline)
            try:
                chunk = os.read(self._out, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                raise _Died
            self._buffer += chunk
            if len(self._buffer) > _MAX_REPLY:
                raise _Died(f"the evaluator's answer is larger than {_MAX_REPLY >> 20} MB")
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        try:
            reply = json.loads(line)
        except ValueError:
            raise _Died(_GARBLED) from None  # the code wrote to the protocol's fd
        if not isinstance(reply, dict):
            raise _Died(_GARBLED)
        return reply

    def _wait(self, fd: int, event: int, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Timeout
        self._selector.register(fd, event)
        try:
            if not self._selector.select(remaining):
                raise _Timeout
        finally:
            self._selector.unregister(fd)

    def wait(self) -> int | None:
        """The exit code once the process has ended; None if it had not within 1 s (then it is
        killed)."""
        try:
            return self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def stderr_tail(self) -> str:
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - 2000))
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def kill(self, *, graceful: bool = False) -> None:
        if graceful and self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()  # end of input: the child returns
                self.process.wait(timeout=1)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._finalizer()


def _kill(
    process: subprocess.Popen[bytes],
    selector: selectors.BaseSelector,
    stderr: IO[bytes],
    tmp: str,
) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    selector.close()
    stderr.close()
    shutil.rmtree(tmp, ignore_errors=True)
