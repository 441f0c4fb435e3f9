"""Warm sandboxed fork-server workers (:mod:`neuromosaic_core.sandbox.worker`), shared by the local
runner's ``mode=pool`` and the LLM code probe.

Each worker is one sandbox (the same bubblewrap sandbox and rlimits as a fresh run, see
:mod:`neuromosaic_core.sandbox`) around a Python that imported torch and the worker's entry once.
Its only writable directory is a private pool directory; per job the caller writes the job's
files into a new job directory there (``prepare``), the worker forks a child that calls the entry
in it, and the files named by ``keep`` are moved out (never through a link) before the job
directory is deleted. A worker that dies, does not answer within the job's timeout (plus a grace
period), had a job leave processes or files behind, or needs another readable path (a data file)
is killed and replaced (without bubblewrap also after a job's timeout or flood of output).

:class:`WarmPool` is for coroutines; :class:`SyncWarmPool` runs one on a loop thread of its own
for synchronous callers (the probe, which code generation calls from worker threads).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from neuromosaic_core.sandbox import (
    PRIVATE_TMP,
    SAMPLE_INTERVAL_S,
    SANDBOX_UID,
    Limits,
    Outcome,
    TreeSampler,
    _chown_tree,
    _set_limits,
    bwrap_argv,
    empty_directory,
    is_regular_file,
)

#: Seconds a worker may take beyond a job's timeout to answer before it is killed.
GRACE_S = 10.0
#: Seconds a new worker may take to import torch and say it is ready.
START_TIMEOUT_S = 120.0
#: The trial harness: the local runner's entry.
HARNESS = "neuromosaic_core.harness.__main__:main"
_ids = itertools.count(1)


@attrs.frozen
class PoolConfig:
    """What every worker of a pool shares. ``entry``: ``MODULE:FUNCTION`` the worker calls per job
    with ``[job_path]``; ``python``: the interpreter (a real one: the worker is a Python module);
    ``isolation``: ``bubblewrap`` or ``process-group`` (resolved, see
    :func:`~neuromosaic_core.sandbox.resolve_isolation`); ``limits``: the worker's own rlimits
    (memory, processes, file size; its start-up gets :data:`START_TIMEOUT_S` and no CPU limit);
    ``env``: its environment; ``gpu``: show the NVIDIA devices."""

    entry: str
    python: str
    isolation: str
    limits: Limits
    env: Mapping[str, str]
    gpu: bool = False


class WorkerDied(Exception):
    pass


class _Worker:
    def __init__(self, config: PoolConfig, readable: str) -> None:
        self.config = config
        self.readable = readable
        self.dir = Path(tempfile.mkdtemp(prefix="neuromosaic-pool-")).resolve()
        self.proc: asyncio.subprocess.Process | None = None
        self.dirty = False
        self.jobs = 0

    @property
    def sandboxed(self) -> bool:
        return self.config.isolation == "bubblewrap"

    async def start(self) -> None:
        limits = attrs.evolve(self.config.limits, timeout_s=START_TIMEOUT_S, cpu_seconds=None)
        argv = [self.config.python, "-m", "neuromosaic_core.sandbox.worker", self.config.entry]
        env = dict(self.config.env)
        if self.sandboxed:
            argv = bwrap_argv(argv, self.dir, limits, readable=[self.readable], gpu=self.config.gpu)
            env.update(HOME=PRIVATE_TMP, TMPDIR=PRIVATE_TMP, NEUROMOSAIC_POOL_NAMESPACE="1")
            if os.geteuid() == 0:
                os.chown(self.dir, SANDBOX_UID, SANDBOX_UID)
        else:
            env["NEUROMOSAIC_POOL_PARENT"] = str(os.getpid())  # no namespace dies with us: the worker watches
        self.stderr = open(self.dir.with_name(self.dir.name + ".log"), "wb")  # noqa: SIM115 - lives with the worker
        self.proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=self.stderr,
            cwd=str(self.dir), env=env, start_new_session=True, limit=1 << 20,
            preexec_fn=lambda: _set_limits(limits),  # noqa: PLW1509
        )
        line = await self._read(START_TIMEOUT_S)
        if not line.get("ready"):
            raise WorkerDied(f"the pool worker did not start: {line}")

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise WorkerDied(f"the pool worker did not answer within {timeout:g} s") from None
        if not raw:
            self.stderr.flush()
            log = Path(self.stderr.name).read_text(errors="replace")[-1000:]
            raise WorkerDied(f"the pool worker died (exit status {await self._exit_status()}){': ' + log if log else ''}")
        return json.loads(raw)

    async def _exit_status(self) -> int | None:
        assert self.proc is not None
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.proc.wait(), 2)
        return None

    def tree(self) -> list[Any]:
        import psutil

        try:
            root = psutil.Process(self.proc.pid)  # type: ignore[union-attr]
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    async def run(self, prepare: Callable[[Path], Path], keep: Iterable[str], into: Path, limits: Limits) -> Outcome:
        job_dir = self.dir / f"job-{next(_ids)}-{uuid.uuid4().hex[:8]}"
        job_dir.mkdir()
        job_path = prepare(job_dir)
        if self.sandboxed and os.geteuid() == 0:
            _chown_tree(job_dir, SANDBOX_UID, SANDBOX_UID)
        assert self.proc is not None
        watch = TreeSampler(self.proc.pid, limits, skip=[p.pid for p in self.tree()])  # the job: what the worker forks
        start = time.monotonic()

        async def sample() -> None:
            while watch.exceeded is None:
                watch.sample()
                await asyncio.sleep(SAMPLE_INTERVAL_S)
            # Too many processes or too much CPU time: the job's processes are killed until none is
            # left (the worker reaps its child and answers with its output); the worker is replaced.
            self.dirty = True
            while True:
                self.kill_trial(watch.skip)
                await asyncio.sleep(SAMPLE_INTERVAL_S)

        request = {"job": str(job_path), "timeout": limits.timeout_s, "cpu_seconds": limits.cpu_seconds,
                   "output_limit": None if limits.output_mb is None else limits.output_mb << 20}
        sampler = asyncio.create_task(sample())
        self.jobs += 1
        try:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            await self.proc.stdin.drain()
            reply = await self._read(limits.timeout_s + GRACE_S)
        except (WorkerDied, ConnectionError, BrokenPipeError) as exc:
            self.dirty = True
            status = self.proc.returncode if self.proc is not None else None
            if status is not None and self.sandboxed and 128 < status < 128 + 65:
                status = 128 - status  # bwrap reports a command killed by signal N as 128+N
            stopped = watch.exceeded
            return Outcome(-signal.SIGKILL if stopped else status if status else None, "" if stopped else str(exc), False,
                           round(watch.peak_memory / (1 << 20), 1), round(watch.cpu_seconds(), 3),
                           round(time.monotonic() - start, 3), self.config.isolation,
                           processes_exceeded=stopped == "processes", cpu_exceeded=stopped == "cpu")
        finally:
            sampler.cancel()
            for name in keep:
                if is_regular_file(job_dir / name):  # never a link the job planted
                    shutil.move(str(job_dir / name), str(into / name))
                    with contextlib.suppress(OSError):
                        os.chown(into / name, os.getuid(), os.getgid())
            shutil.rmtree(job_dir, ignore_errors=True)
            if empty_directory(self.dir):  # what the trial left beside its job directory goes too
                self.dirty = True
        if "error" in reply:
            self.dirty = True
            return Outcome(None, f"the pool worker failed: {reply['error']}", False, 0.0, 0.0, 0.0, self.config.isolation,
                           worker_failed=True)
        if reply.get("strays"):
            logger.warning(f"{into.name} left {reply['strays']} process(es) behind; replacing its pool worker")
            self.dirty = True
        if reply.get("unclean"):
            logger.warning(f"{into.name} left files its pool worker could not remove ({', '.join(reply['unclean'])}); "
                           "replacing the worker")
            self.dirty = True
        if (reply.get("timed_out") or reply.get("output_exceeded")) and not self.sandboxed:
            self.dirty = True  # without a PID namespace the worker cannot tell whether all of the trial is gone
        # The trial's summed PSS (pages it shares with the warm worker count half); its own RSS
        # (wait4) only when no sample saw it: a trial of a few ms.
        peak_mb = watch.peak_memory / (1 << 20) or float(reply.get("max_rss_mb", 0.0))
        stopped = watch.exceeded
        return Outcome(reply["returncode"], reply["output"], bool(reply["timed_out"]) and not stopped, round(peak_mb, 1),
                       round(max(float(reply["cpu_seconds"]), watch.cpu_seconds()), 3), round(float(reply["wall_seconds"]), 3),
                       self.config.isolation, output_exceeded=bool(reply["output_exceeded"]) and not stopped,
                       output_bytes=int(reply["output_bytes"]), processes_exceeded=stopped == "processes",
                       cpu_exceeded=stopped == "cpu")

    def kill_trial(self, worker_pids: set[int]) -> None:
        """SIGKILL what the worker's trial started: every process under the worker but the worker
        (and bubblewrap around it), each with its process group (the trial's session)."""
        import psutil

        worker_groups = set()
        for pid in worker_pids:
            with contextlib.suppress(OSError):
                worker_groups.add(os.getpgid(pid))
        for proc in self.tree():
            if proc.pid in worker_pids:
                continue
            with contextlib.suppress(OSError):
                group = os.getpgid(proc.pid)
                if group not in worker_groups:  # a child not yet in its own session: only itself
                    os.killpg(group, signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def kill(self) -> list[Any]:
        """SIGKILL the worker and everything under it; returns what was killed."""
        import psutil

        tree = self.tree()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        return tree

    async def stop(self) -> None:
        import psutil

        if self.proc is not None:
            tree = self.kill()
            await self.proc.wait()
            # Until they are gone they count against the sandbox uid's process limit, which the
            # next worker needs: wait for the namespace to be torn down.
            await asyncio.to_thread(psutil.wait_procs, tree, 10)
        with contextlib.suppress(Exception):
            self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.with_name(self.dir.name + ".log").unlink(missing_ok=True)


class WarmPool:
    """Warm workers of one :class:`PoolConfig`, started on demand, kept idle up to ``keep_idle``,
    and replaced when they misbehave. How many run at once is the callers' choice (the local runner
    runs ``runner.workers`` trials at once)."""

    def __init__(self, config: PoolConfig, keep_idle: int | None = None) -> None:
        self.config = config
        self.keep_idle = keep_idle
        self.idle: list[_Worker] = []
        self.busy: set[_Worker] = set()
        self.started = 0
        self.replaced = 0

    async def _acquire(self, readable: str) -> _Worker:
        for worker in [w for w in self.idle if w.proc is None or w.proc.returncode is not None]:
            self.idle.remove(worker)  # died while idle
            self.replaced += 1
            await worker.stop()
        for worker in self.idle:
            if worker.readable == readable:
                self.idle.remove(worker)
                return worker
        if self.idle:  # a worker for another readable path: replace the oldest
            await self.idle.pop(0).stop()
        worker = _Worker(self.config, readable)
        try:
            await worker.start()
        except BaseException:
            await worker.stop()
            raise
        self.started += 1
        return worker

    async def run(self, prepare: Callable[[Path], Path], limits: Limits, *, into: Path, keep: Iterable[str] = (),
                  readable: str = "") -> Outcome:
        """Run one job: ``prepare(job_dir)`` writes its files into a fresh job directory and returns
        the path the entry is called with; afterwards the plain files named in ``keep`` are moved
        to ``into``. ``readable``: a path outside the job directory the job reads (its data); a
        worker sees one, so jobs are routed to a worker started for theirs. A job the worker could not
        run at all (``Outcome.worker_failed``: its fork failed at the sandbox uid's process limit,
        say) runs once more, on a new worker, so the job is not blamed for the machine."""
        outcome = await self._run_once(prepare, limits, into, tuple(keep), readable)
        if outcome.worker_failed:
            logger.warning(f"a warm worker could not run a job ({outcome.output}); once more on a new worker")
            outcome = await self._run_once(prepare, limits, into, tuple(keep), readable)
        return outcome

    async def _run_once(self, prepare: Callable[[Path], Path], limits: Limits, into: Path, keep: tuple[str, ...],
                        readable: str) -> Outcome:
        try:
            worker = await self._acquire(readable)
        except WorkerDied as exc:
            return Outcome(None, str(exc), False, 0.0, 0.0, 0.0, self.config.isolation)
        self.busy.add(worker)
        try:
            outcome = await worker.run(prepare, keep, into, limits)
        except BaseException:
            self.busy.discard(worker)
            await worker.stop()
            raise
        self.busy.discard(worker)
        if worker.dirty or (worker.proc is not None and worker.proc.returncode is not None):
            self.replaced += 1
            await worker.stop()
        elif self.keep_idle is not None and len(self.idle) >= self.keep_idle:
            await worker.stop()
        else:
            self.idle.append(worker)
        return outcome

    async def close(self) -> None:
        for worker in [*self.idle, *self.busy]:
            await worker.stop()
        self.idle.clear()
        self.busy.clear()


class SyncWarmPool:
    """A :class:`WarmPool` for synchronous callers, from any thread: its workers are driven by an
    event loop on a daemon thread of its own, started with the first job. :meth:`close` (also run
    at interpreter exit) stops the workers; bubblewrap's ``--die-with-parent`` and the fallback's
    parent-death signal stop them if this process is killed."""

    def __init__(self, config: PoolConfig, keep_idle: int | None = 1) -> None:
        self.pool = WarmPool(config, keep_idle)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="neuromosaic-warm-pool", daemon=True).start()
                self._loop = loop
                atexit.register(self.close)
            return self._loop

    def run(self, prepare: Callable[[Path], Path], limits: Limits, *, into: Path, keep: Iterable[str] = (),
            readable: str = "") -> Outcome:
        """:meth:`WarmPool.run`, waited for."""
        job = self.pool.run(prepare, limits, into=into, keep=tuple(keep), readable=readable)
        return asyncio.run_coroutine_threadsafe(job, self._running_loop()).result()

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.pool.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        atexit.unregister(self.close)
