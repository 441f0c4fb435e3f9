"""The local runner: each trial runs the trial harness sandboxed on this machine.

Isolation comes from :mod:`neuromosaic_core.sandbox` (bubblewrap: read-only root, the trial
directory the only writable place, no network, uid 65534, rlimits; a process group plus rlimits
where bubblewrap is missing). Two modes:

- ``fresh``: a new sandboxed ``python -m neuromosaic_core.harness job.json`` per trial;
- ``pool``: warm sandboxed workers (:mod:`neuromosaic_core.sandbox.pool`, shared with the LLM
  code probe) that import torch once and fork a fresh child per trial.

The trial's weights are written inside its directory and moved to ``job.weights_path`` by the
runner, so the trial never needs to write anywhere else. One intra-op thread per trial
(``OMP_NUM_THREADS=1``): with several trials on few cores, more threads make everything slower.

A trial trained in segments (``job.max_epochs``) keeps its checkpoint in its directory too
(``job.checkpoint_path`` must lie there): a fresh run reads and writes it in place; a pooled one
gets a copy in its job directory, and what the harness leaves there replaces the trial's
checkpoint in one rename, so the trial directory holds a whole checkpoint at every moment, even
when the orchestrator is killed mid-trial.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from neuromosaic_core.errors import ConfigError
from neuromosaic_core.interfaces import Runner, TrialJob
from neuromosaic_core.model import ErrorClass, ExperimentError, TrialResult, converter
from neuromosaic_core.sandbox import (
    MIN_UID_PROCESSES,
    Limits,
    Outcome,
    default_cpu_seconds,
    is_regular_file,
    resolve_isolation,
    run_sandboxed,
)
from neuromosaic_runner_local import LocalRunnerSettings

OUTPUT_TAIL = 2000
#: What a trial inherits from the orchestrator's environment: enough to find Python and its
#: packages, never credentials (API keys of LLM providers live in the same environment).
#: Not coverage's variables either: its data file lies in the read-only source tree.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")
#: The name of the weights file inside the trial directory, moved to ``job.weights_path`` afterwards.
WEIGHTS_IN_TRIAL = "weights.pt"
#: A pooled trial's checkpoint in its job directory, and the name under which what the harness left
#: there comes back into the trial directory, before it replaces the trial's checkpoint.
CHECKPOINT_IN_JOB = "segment-checkpoint.pt"
#: What the runner (and a pool worker) writes in a trial's or job's directory: no checkpoint's name.
RUNNER_FILES = frozenset({"job.json", "result.json", "result.json.tmp", "output.log", "code.py", "tmp",
                          WEIGHTS_IN_TRIAL, CHECKPOINT_IN_JOB, "segment-checkpoint.tmp"})
OOM_HINTS = ("MemoryError", "can't allocate memory", "out of memory", "Cannot allocate memory")


#: The most of ``result.json`` the runner reads (a real one is a few KB).
RESULT_LIMIT = 16 << 20


# The trial directory was writable by the trial: anything in it may be a symlink to a file outside
# (the runner runs as root in CI), a directory where a file is expected, or huge. The runner never
# follows a link there, and replaces what it writes.


def write_trial_file(path: Path, text: str) -> None:
    """Write ``path`` afresh: whatever the trial left under that name (a link, a directory) goes first."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def read_trial_file(path: Path, limit: int = RESULT_LIMIT) -> str:
    """Read a plain file the trial wrote, never through a link; raises ``OSError`` otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path.name} is not a plain file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{path.name} is larger than {limit >> 20} MB")
    return data.decode()


class CheckpointPathRefused(ValueError):
    """``job.checkpoint_path`` is not a file of the trial's directory, the only place a trial may write."""


def checkpoint_in_trial(job: TrialJob, trial_dir: Path) -> Path | None:
    """``job.checkpoint_path`` as a file directly in ``trial_dir`` (None without one); raises
    :class:`CheckpointPathRefused` for one elsewhere or under a name the runner uses itself."""
    if not job.checkpoint_path:
        return None
    path = Path(os.path.abspath(job.checkpoint_path))
    names = {path.name, path.with_suffix(".tmp").name}  # the harness writes the .tmp sibling first
    if path.parent.resolve() != trial_dir or names & RUNNER_FILES:
        raise CheckpointPathRefused(
            f"checkpoint_path {job.checkpoint_path} is not a file of the trial's directory {trial_dir} (the directory of "
            f"result_path), the only place a sandboxed trial may write, or it takes a name the runner uses "
            f"({', '.join(sorted(RUNNER_FILES))}); put it there, e.g. {trial_dir / 'checkpoint.pt'}")
    return trial_dir / path.name


def _remove(path: Path) -> None:
    """Remove what the trial left under ``path`` (a file, a link, a directory), never following a link."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def trial_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in INHERITED}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def usage_metrics(outcome: Outcome) -> dict[str, float]:
    """The trial's resources measured from outside (psutil over its process tree), for every result."""
    return {"peak_memory_mb": float(outcome.peak_memory_mb), "cpu_seconds": float(outcome.cpu_seconds),
            "wall_seconds": float(outcome.wall_seconds)}


def failure_from_outcome(outcome: Outcome, timeout_s: float, output_mb: int | None, limits: Limits | None = None) -> TrialResult:
    """A failed TrialResult, in words, for a trial process that did not leave a usable result."""
    metrics = usage_metrics(outcome)
    tail = outcome.output[-OUTPUT_TAIL:].strip()
    if outcome.timed_out:
        error = ExperimentError(ErrorClass.TIMEOUT, f"trial exceeded its {timeout_s:g} s limit; its processes were killed")
    elif outcome.processes_exceeded:
        most = f" (runner.processes={limits.processes})" if limits is not None else ""
        error = ExperimentError(ErrorClass.CRASH, f"too many processes: the trial started more processes and threads than it may{most}, "
                                                  "a fork bomb?; its processes were killed")
    elif outcome.cpu_exceeded:
        most = f"{limits.cpu_seconds} " if limits is not None else ""
        error = ExperimentError(ErrorClass.TIMEOUT, f"trial used more than its {most}CPU seconds (runner.cpu_seconds), all its "
                                                    "processes together; its processes were killed")
    elif outcome.output_exceeded:
        error = ExperimentError(ErrorClass.CRASH, f"too much output: more than {output_mb} MB on stdout/stderr; its processes were killed")
    else:
        cause = outcome.describe()
        if outcome.returncode == 0:
            cause = "exit code 0 without writing its result"
        if any(hint in outcome.output for hint in OOM_HINTS):
            cause = f"out of memory, {cause}"
        message = f"trial process died ({cause}): {tail}" if tail else f"trial process died ({cause})"
        error = ExperimentError(ErrorClass.CRASH, message)
    return TrialResult(metrics=metrics, error=error)


class LocalRunner(Runner):
    def __init__(self, settings: LocalRunnerSettings | None = None) -> None:
        self.settings = settings or LocalRunnerSettings()
        self.workers = self.settings.resolved_workers()
        self.python = self.settings.python or sys.executable
        self.isolation = resolve_isolation(self.settings.isolation)
        self._pool = None
        if self.settings.mode == "pool":
            from neuromosaic_core.sandbox.pool import HARNESS, PoolConfig, WarmPool

            config = PoolConfig(HARNESS, self.python, self.isolation, self.limits(0), trial_environment(),
                                gpu=self.settings.device != "cpu")
            self._pool = WarmPool(config)
        logger.debug(f"local runner: mode={self.settings.mode}, isolation={self.isolation}, workers={self.workers}")

    def check_code_trust(self, codegen: Any, name: str = "") -> None:
        """Refuse, before a search starts, to run code of a generator that is not ``trusted`` (an
        LLM's) without a sandbox, unless the user chose ``runner.isolation=process-group`` on
        purpose: where bubblewrap is missing, ``auto`` falls back to a process group, which as
        root contains nothing. The template generator's code (trusted) runs with the warning."""
        if self.isolation == "bubblewrap" or self.settings.isolation == "process-group" or getattr(codegen, "trusted", False):
            return
        which = f"codegen={name}" if name else "the code generator"
        raise ConfigError(f"bubblewrap (bwrap) is not installed, and {which} writes untrusted code that would run unsandboxed: "
                          "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), choose runner=podman, or accept "
                          "the risk with runner.isolation=process-group")

    def limits(self, timeout_s: float) -> Limits:
        """A trial's limits: ``cpu_seconds=auto`` derives the CPU time from the timeout; the kernel's
        process backstop is shared by the ``workers`` sandboxes that run at once (one uid)."""
        s = self.settings
        cpu = default_cpu_seconds(timeout_s) if s.cpu_seconds == "auto" else s.cpu_seconds
        uid = max(MIN_UID_PROCESSES, 2 * s.processes * self.workers) if s.processes else None
        return Limits(timeout_s=timeout_s, memory_mb=s.memory_mb, cpu_seconds=cpu, processes=s.processes,
                      file_size_mb=s.file_size_mb, output_mb=s.output_mb, uid_processes=uid)

    def prepare(self, job: TrialJob) -> tuple[Path, TrialJob]:
        """The trial directory and the job as the sandbox sees it (weights written inside the
        directory; the checkpoint, which stays between the trial's segments, is a plain file or
        nothing). Raises :class:`CheckpointPathRefused` for a checkpoint outside the directory."""
        trial_dir = Path(job.result_path).resolve().parent
        trial_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = checkpoint_in_trial(job, trial_dir)
        stale = ["result.json", "result.json.tmp", WEIGHTS_IN_TRIAL, CHECKPOINT_IN_JOB]
        if checkpoint is not None:
            stale.append(checkpoint.with_suffix(".tmp").name)  # half a checkpoint of a trial killed mid-write
            if not is_regular_file(checkpoint):
                stale.append(checkpoint.name)  # a link or a folder the trial planted: no checkpoint
        for name in stale:
            _remove(trial_dir / name)
        inner = attrs.evolve(job, result_path=str(trial_dir / "result.json"),
                             weights_path=str(trial_dir / WEIGHTS_IN_TRIAL) if job.weights_path else None,
                             checkpoint_path=str(checkpoint) if checkpoint is not None else None)
        write_trial_file(trial_dir / "job.json", json.dumps(converter.unstructure(inner)))
        return trial_dir, inner

    async def run_trial(self, job: TrialJob) -> TrialResult:
        try:
            trial_dir, inner = self.prepare(job)
        except CheckpointPathRefused as exc:
            return TrialResult.failure(ErrorClass.RUNTIME, str(exc))
        limits = self.limits(job.timeout_s)
        if self._pool is not None:
            keep = ("result.json", WEIGHTS_IN_TRIAL) + ((CHECKPOINT_IN_JOB,) if inner.checkpoint_path else ())
            outcome = await self._pool.run(lambda job_dir: self.pool_job(inner, job_dir), limits, into=trial_dir,
                                           keep=keep, readable=job.data_path)
        else:
            argv = [self.python, "-m", "neuromosaic_core.harness", str(trial_dir / "job.json")]
            outcome = await run_sandboxed(argv, trial_dir, limits, trial_environment(),
                                          readable=[job.code_path, job.data_path], isolation=self.isolation,
                                          gpu=job.device != "cpu")
        result = self.collect(job, trial_dir, outcome, limits)
        if self._pool is not None and inner.checkpoint_path:
            self.settle_checkpoint(Path(inner.checkpoint_path), trial_dir, result.ok)
        return result

    @staticmethod
    def pool_job(job: TrialJob, job_dir: Path) -> Path:
        """The trial's files in a pool worker's job directory: its code, a copy of its checkpoint and
        ``job.json``, which points the harness at them (the result, the weights and the checkpoint
        are written there and moved out)."""
        code = job_dir / "code.py"
        shutil.copyfile(job.code_path, code) if job.code_path else code.write_text("")
        checkpoint = None
        if job.checkpoint_path:
            checkpoint = job_dir / CHECKPOINT_IN_JOB
            if is_regular_file(job.checkpoint_path):  # prepare() removed anything else
                shutil.copyfile(job.checkpoint_path, checkpoint)
        inner = attrs.evolve(job, code_path=str(code) if job.code_path else "", result_path=str(job_dir / "result.json"),
                             weights_path=str(job_dir / WEIGHTS_IN_TRIAL) if job.weights_path else None,
                             checkpoint_path=str(checkpoint) if checkpoint is not None else None)
        (job_dir / "job.json").write_text(json.dumps(converter.unstructure(inner)))
        return job_dir / "job.json"

    @staticmethod
    def settle_checkpoint(checkpoint: Path, trial_dir: Path, ok: bool) -> None:
        """After a pooled segment: the checkpoint that came back (a plain file: the copy sent, or
        the one the harness wrote in its place) replaces the trial's in one rename; none after a
        successful run means training reached its end, so the trial's goes too; none after a
        failure leaves the trial's as it was."""
        came_back = trial_dir / CHECKPOINT_IN_JOB
        if is_regular_file(came_back):
            os.replace(came_back, checkpoint)
        elif ok:
            checkpoint.unlink(missing_ok=True)

    def collect(self, job: TrialJob, trial_dir: Path, outcome: Outcome, limits: Limits | None = None) -> TrialResult:
        """Turn what the sandbox saw and what the harness wrote into the trial's result."""
        write_trial_file(trial_dir / "output.log", outcome.output)
        result_path = trial_dir / "result.json"
        weights = trial_dir / WEIGHTS_IN_TRIAL
        finished = (outcome.returncode == 0 and not outcome.timed_out and not outcome.output_exceeded
                    and not outcome.processes_exceeded and not outcome.cpu_exceeded)
        if not (finished and (result_path.is_symlink() or result_path.exists())):
            if is_regular_file(weights) or weights.is_symlink():
                weights.unlink()
            return failure_from_outcome(outcome, job.timeout_s, self.settings.output_mb, limits)
        try:
            result = converter.structure(json.loads(read_trial_file(result_path)), TrialResult)
        except Exception as exc:  # noqa: BLE001 - the file is written by untrusted code's process
            if not is_regular_file(result_path):
                result_path.unlink(missing_ok=True) if result_path.is_symlink() else shutil.rmtree(result_path, True)
            return TrialResult(metrics=usage_metrics(outcome),
                               error=ExperimentError(ErrorClass.CRASH, f"the trial wrote an unreadable result: {type(exc).__name__}: {exc}"))
        weights_path = None
        if result.ok and job.weights_path and is_regular_file(weights):
            Path(job.weights_path).parent.mkdir(parents=True, exist_ok=True)
            Path(job.weights_path).unlink(missing_ok=True)
            shutil.move(str(weights), job.weights_path)
            weights_path = job.weights_path
        elif is_regular_file(weights) or weights.is_symlink():
            weights.unlink()
        metrics = {k: float(v) for k, v in result.metrics.items()}
        metrics.update(usage_metrics(outcome))
        # the learning curve and the fidelity go through; ``pruned`` is the scheduler's word, never a trial's
        return TrialResult(metrics=metrics, error=result.error, weights_path=weights_path,
                           curve=tuple(float(v) for v in result.curve), fidelity=result.fidelity)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


async def run_one(job: TrialJob, settings: LocalRunnerSettings | None = None) -> TrialResult:
    """Run one job with a fresh runner (scripts and tests)."""
    runner = LocalRunner(settings)
    try:
        return await runner.run_trial(job)
    finally:
        await runner.close()


__all__ = ["CheckpointPathRefused", "LocalRunner", "checkpoint_in_trial", "failure_from_outcome", "run_one",
           "trial_environment", "usage_metrics"]
