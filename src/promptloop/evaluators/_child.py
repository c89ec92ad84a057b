"""The process that runs a code evaluator (started by `sandbox.CodeSandbox`; not for import).

Run as a script (`python -I _child.py`) with the standard library only, so that it starts fast
and nothing from the server is loaded into it. Protocol, one JSON object per line:

    parent -> child   {"source", "memory_mb", "tmp", "blocked"}      once, first
    child  -> parent  {"ready": true} | {"error", "memory"?}          the code loaded, or not
    parent -> child   {"log", "datapoint"}                            one per item
    child  -> parent  {"value", "printed"?} | {"error", "memory"?, "printed"?}

The protocol uses private copies of fds 0 and 1; fds 0 and 1 themselves are pointed at
/dev/null and `sys.stdout` / `sys.stderr` at a buffer, so what the user's code prints cannot
break it (what `evaluate` printed is returned as "printed").

Before the user's code runs: an address-space limit (RLIMIT_AS), new user and network namespaces
where the kernel allows them (then the process has no network at all), and an audit hook that
refuses network use, new processes, signals, ctypes, limit changes, any access to the blocked
paths or to other processes' /proc entries, and writing outside the temporary directory.
Audit hooks are a guard against mistakes and casual misuse, not a security boundary against
deliberately hostile code; the namespaces and limits are the harder walls.
"""

from __future__ import annotations

import ctypes
import io
import json
import math
import numbers
import os
import resource
import sys
from typing import Any

FILENAME = "<evaluator>"
MAX_PRINTED = 2_000
MAX_TEXT = 100_000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1

_NETWORK = frozenset(
    {
        "socket.connect",
        "socket.bind",
        "socket.getaddrinfo",
        "socket.sendto",
        "socket.sendmsg",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
        "socket.sethostname",
    }
)
_PROCESSES = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "resource.setrlimit",
        "resource.prlimit",
    }
)
# Events whose path arguments (the positions given) may only lie inside the temporary directory.
_WRITES = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.link": (0, 1),  # a hard link to a blocked file would escape the path check
    "os.symlink": (1,),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.mkfifo": (0,),
    "os.mknod": (0,),
    "shutil.rmtree": (0,),
}
# Events whose path argument must not lie under a blocked path.
_READS = {"os.listdir": 0, "os.scandir": 0, "glob.glob": 0}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _BadValue(Exception):
    """`evaluate` returned something that is not a judgment."""


def main() -> None:
    # The protocol keeps private copies of fds 0 and 1; the originals go to /dev/null.
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdin = io.TextIOWrapper(io.BytesIO())

    config = json.loads(proto_in.readline())
    limit = int(config["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _isolate()
    tmp = os.path.realpath(config["tmp"])
    blocked = [os.path.realpath(path) for path in config["blocked"]]
    sys.addaudithook(_guard(tmp, blocked))

    namespace: dict[str, Any] = {"__name__": "__evaluator__", "__builtins__": __builtins__}
    ready = _call(_load, config["source"], namespace)
    ready.pop("printed", None)
    _send(proto_out, ready if "error" in ready else {"ready": True})
    if "error" in ready:
        return
    evaluate = namespace["evaluate"]
    for line in proto_in:
        request = json.loads(line)
        _send(proto_out, _call(evaluate, request["log"], request["datapoint"]))
        del request


def _isolate() -> None:
    """No network (new, empty network namespace) and death with the parent, where possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET)  # fails on some kernels: the hook still guards
        libc.prctl(_PR_SET_PDEATHSIG, 9)  # SIGKILL when the parent goes; set after unshare
    except (OSError, AttributeError):
        pass


def _load(source: str, namespace: dict[str, Any]) -> bool:
    exec(compile(source, FILENAME, "exec", dont_inherit=True), namespace)
    if not callable(namespace.get("evaluate")):
        raise NameError("the code defines no function `evaluate(log, datapoint)`")
    return True


def _call(function: Any, *args: Any) -> dict[str, Any]:
    """Call user code with its printing captured; the reply to send."""
    buffer = io.StringIO()
    sys.stdout = sys.stderr = buffer
    reply: dict[str, Any]
    try:
        reply = {"value": _value(function(*args))}
    except MemoryError:
        reply = {"error": "MemoryError", "memory": True}
    except _BadValue as exc:
        reply = {"error": str(exc)}
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are the code's errors too
        reply = {"error": _describe(exc)}
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    printed = buffer.getvalue()
    if printed:
        reply["printed"] = printed[:MAX_PRINTED] + ("…" if len(printed) > MAX_PRINTED else "")
    return reply


def _value(result: Any) -> bool | float | str:
    if isinstance(result, bool):
        return result
    if type(result).__name__ == "bool_" and hasattr(result, "item"):  # numpy's boolean
        return bool(result)
    if isinstance(result, numbers.Real):
        number = float(result)
        if not math.isfinite(number):
            raise _BadValue(f"evaluate returned {number}; return a finite number")
        return number
    if isinstance(result, str):
        if len(result) > MAX_TEXT:
            raise _BadValue(
                f"evaluate returned {len(result):,} characters; the limit is {MAX_TEXT:,}"
            )
        return result
    raise _BadValue(f"evaluate returned {type(result).__name__}; return a bool, a number or a str")


def _describe(exc: BaseException) -> str:
    """'Type: message (line N)', N being the last line of the user's code in the traceback."""
    line = getattr(exc, "lineno", None) if getattr(exc, "filename", None) == FILENAME else None
    trace = exc.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == FILENAME:
            line = trace.tb_lineno
        trace = trace.tb_next
    message = str(exc)
    if len(message) > MAX_PRINTED:
        message = message[:MAX_PRINTED] + "…"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"{text} (line {line})" if line else text


def _send(fd: int, reply: dict[str, Any]) -> None:
    data = (json.dumps(reply, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
    while data:
        data = data[os.write(fd, data) :]


def _guard(tmp: str, blocked: list[str]) -> Any:
    """The audit hook: PermissionError for what evaluator code may not do."""
    own = str(os.getpid())
    realpath, sep = os.path.realpath, os.sep

    def inside(path: str, folder: str) -> bool:
        return path == folder or path.startswith(folder.rstrip(sep) + sep)

    def resolve(path: Any) -> str | None:
        if path is None:
            return None
        if isinstance(path, int):  # an open fd: judge the file it is open on
            try:
                return os.readlink(f"/proc/self/fd/{path}")
            except OSError:
                return None
        return realpath(os.fsdecode(os.fspath(path)))

    def check_read(path: Any) -> None:
        real = resolve(path)
        if real is None:
            return
        if any(inside(real, folder) for folder in blocked):
            raise PermissionError(f"evaluators may not read {real}")
        parts = real.split(sep)
        if len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit() and parts[2] != own:
            raise PermissionError("evaluators may not look into other processes")

    def check_write(path: Any) -> None:
        check_read(path)
        real = resolve(path)
        if real is not None and not inside(real, tmp) and real != os.devnull:
            raise PermissionError(
                f"evaluators may only write in their temporary directory, not {real}"
            )

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = (*args, None, None, None)[:3]
            writes = (
                bool(flags & _WRITE_FLAGS)
                if isinstance(flags, int)
                else any(c in (mode or "") for c in "wax+")
            )
            (check_write if writes else check_read)(path)
        elif event in _NETWORK:
            raise PermissionError(f"evaluators have no network access ({event})")
        elif event in _PROCESSES or event.startswith("ctypes."):
            raise PermissionError(f"evaluators may not do this ({event})")
        elif event in _WRITES:
            for position in _WRITES[event]:
                if position < len(args):
                    check_write(args[position])
        elif event in _READS and args:
            check_read(args[_READS[event]])

    return hook


if __name__ == "__main__":
    main()
