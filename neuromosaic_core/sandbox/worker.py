"""A warm worker, run inside the sandbox: ``python -m neuromosaic_core.sandbox.worker MODULE:FUNCTION``.

It imports torch and ``MODULE`` once, then serves jobs read from stdin, one JSON line each
(``{"job": PATH, "timeout": S, "cpu_seconds": N|null, "output_limit": BYTES|null}``), and
answers each with one JSON line on stdout. Per job it forks a fresh child that calls
``FUNCTION([PATH])`` (its return value is the child's exit code), so one job's code cannot poison
the next: the child starts a session of its own, gets the job's directory as its working
directory, its output on a pipe (never the control channel: every other descriptor is closed),
its own CPU-time limit, and an empty private ``/tmp`` and ``HOME``. The worker enforces the timeout
and the output cap (the child's session is killed), reaps the child (``wait4``: its CPU time), and
inside a PID namespace kills any process the job left behind (reported as ``strays``: the pool
then replaces the worker). The worker makes itself non-dumpable so a child of the same uid cannot
ptrace it or write its memory.

Entries: the trial harness (``neuromosaic_core.harness.__main__:main``, the local runner's
``mode=pool``) and the LLM code probe (``neuromosaic_core.codegen.probe:main``).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from neuromosaic_core.sandbox import PRIVATE_TMP, empty_directory

OUTPUT_KEPT = 64 * 1024


def _prctl(option: int, value: int) -> None:
    import ctypes

    with contextlib.suppress(Exception):  # best effort: the sandbox still contains the job
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _undumpable() -> None:
    _prctl(4, 0)  # PR_SET_DUMPABLE: no ptrace, no /proc/<pid>/mem for processes of the same uid


def _die_with_parent(parent: int) -> None:
    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: without a PID namespace, nothing else would stop us
    if os.getppid() != parent:
        os._exit(1)


def _child(entry: Callable[[list[str]], int], job_path: str, out_fd: int, cpu_seconds: int | None,
           private: str) -> None:  # pragma: no cover - forked child
    code = 1
    try:
        import tempfile

        os.environ["HOME"] = os.environ["TMPDIR"] = private  # empty, and this trial's alone
        tempfile.tempdir = None  # the worker's cached choice must not outlive it
        parent = os.getppid()
        os.setsid()
        _die_with_parent(parent)  # the worker killed (or the orchestrator, in turn): so is the trial
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.closerange(3, 1 << 16)
        if cpu_seconds is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        os.chdir(os.path.dirname(job_path))
        code = entry([job_path])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported through the exit code and the output
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _others() -> list[int]:
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]


def _strays() -> int:
    """Kill every other process in this PID namespace but its init, wait until they are gone (they
    count against the process limit), and return how many there were."""
    others = _others()
    deadline = time.monotonic() + 10
    while _others() and time.monotonic() < deadline:
        try:
            os.kill(-1, signal.SIGKILL)  # in our PID namespace, as an unprivileged uid: only our own
        except ProcessLookupError:
            pass
        try:
            os.waitpid(-1, os.WNOHANG)  # our own children; bwrap's init reaps the rest
        except ChildProcessError:
            pass
        time.sleep(0.01)
    return len(others)




def private_directory(job_path: str, in_namespace: bool) -> str:
    """Where the trial gets its HOME and TMPDIR: the sandbox's /tmp (emptied after every trial), or
    without a namespace (whose /tmp is the host's) a new directory in its job directory."""
    if in_namespace:
        return PRIVATE_TMP
    private = os.path.join(os.path.dirname(job_path), "tmp")
    os.mkdir(private, 0o700)
    return private


def scrub(in_namespace: bool) -> list[str]:
    """Empty the sandbox's /tmp so the next trial finds nothing of this one; return what could not
    be removed. What is mounted there (the pool directory, which the runner empties; files exposed
    read-only) stays."""
    if not in_namespace:
        return []
    return empty_directory(PRIVATE_TMP, one_file_system=True)


def serve_one(entry: Callable[[list[str]], int], request: dict[str, Any], in_namespace: bool) -> dict[str, Any]:
    private = private_directory(request["job"], in_namespace)
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        _child(entry, request["job"], write_fd, request.get("cpu_seconds"), private)
    os.close(write_fd)
    timeout = float(request["timeout"])
    limit = request.get("output_limit")
    buf, total, timed_out, exceeded = bytearray(), 0, False, False
    deadline = start + timeout
    reaped: tuple[int, Any] | None = None  # (status, rusage) once the child has exited
    eof = False
    drain_until = 0.0
    # The child's exit wakes the loop through a pidfd (Linux 5.3+): no polling, so a job's answer
    # does not wait for the next tick; without one, a 1 ms poll.
    try:
        exited: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        exited = None
    while True:
        if reaped is None:
            wpid, status, usage = os.wait4(pid, os.WNOHANG)
            if wpid == pid:
                reaped = (status, usage)
                drain_until = time.monotonic() + 0.5
        # Once the child is gone, only what is already in the pipe is read: processes it left
        # behind may hold the pipe open for ever.
        if reaped is not None:
            wait = 0.0
        elif exited is None:
            wait = min(max(deadline - time.monotonic(), 0.0), 0.001 if eof else 0.1)
        else:
            wait = max(deadline - time.monotonic(), 0.0)
        watched = ([] if eof else [read_fd]) + ([exited] if exited is not None and reaped is None else [])
        ready, _, _ = select.select(watched, [], [], wait) if watched else ([], [], [])
        if read_fd in ready:
            chunk = os.read(read_fd, 1 << 16)
            eof = not chunk
            total += len(chunk)
            buf += chunk
            if len(buf) > 2 * OUTPUT_KEPT:
                del buf[: len(buf) - OUTPUT_KEPT]
            if limit is not None and total > limit:
                exceeded = True
                break
            if reaped is None or time.monotonic() < drain_until:
                continue
        if exited in ready:
            continue  # reaped at the top
        if reaped is not None:
            break
        if time.monotonic() >= deadline:
            timed_out = True
            break
        if watched == [] and exited is None:
            time.sleep(0.001)
    if exited is not None:
        os.close(exited)
    if reaped is None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _, status, usage = os.wait4(pid, 0)
    else:
        status, usage = reaped
    try:
        os.killpg(pid, signal.SIGKILL)  # whatever the trial started in its session
    except (ProcessLookupError, PermissionError):
        pass
    os.close(read_fd)
    strays = _strays() if in_namespace else 0
    left = scrub(in_namespace)  # after the strays: none of them can write any more
    return {
        "returncode": os.waitstatus_to_exitcode(status), "timed_out": timed_out, "output_exceeded": exceeded,
        "output": bytes(buf[-OUTPUT_KEPT:]).decode(errors="replace"), "output_bytes": total,
        "cpu_seconds": usage.ru_utime + usage.ru_stime, "max_rss_mb": usage.ru_maxrss / 1024,
        "wall_seconds": time.monotonic() - start, "strays": strays, "unclean": left[:5],
    }


def warm_up(spec: str) -> Callable[[list[str]], int]:
    """Import ``MODULE`` and pay, once and in this process, the first-use costs every job would pay
    again in its forked child: ``MODULE.warm_up(directory)`` when it has one (the harness runs a
    tiny trial of its own, the probe probes a tiny network) in a directory removed afterwards.
    Then the objects made so far are moved out of the garbage collector's reach (``gc.freeze``),
    so a child's collections do not touch, and copy, the worker's pages. Returns the entry."""
    import gc
    import importlib
    import shutil
    import tempfile

    import torch

    torch.set_num_threads(1)
    module_name, _, function = spec.partition(":")
    module = importlib.import_module(module_name)
    hook = getattr(module, "warm_up", None)
    if hook is not None:
        directory = tempfile.mkdtemp(prefix="warm-up-")
        try:
            hook(directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    gc.collect()
    gc.freeze()
    return getattr(module, function or "main")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parent = int(os.environ.get("NEUROMOSAIC_POOL_PARENT", "0"))
    if parent:
        _die_with_parent(parent)
    control = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints of the worker itself (and of its warm-up) must not garble the control channel
    entry = warm_up(args[0] if args else "neuromosaic_core.harness.__main__:main")
    _undumpable()
    in_namespace = os.environ.get("NEUROMOSAIC_POOL_NAMESPACE") == "1" and os.getpid() != 1
    control.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = serve_one(entry, json.loads(line), in_namespace)
        except Exception as exc:  # noqa: BLE001 - the runner replaces a worker that says so
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        control.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
