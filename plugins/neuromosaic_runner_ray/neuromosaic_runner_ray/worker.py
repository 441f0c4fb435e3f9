"""What a Ray task does on a worker node for one trial (plain Python: no Ray import needed here).

The orchestrator and the worker share no file system: the task receives the job, the code text and
the data bytes, writes them into a private temporary directory, runs the trial harness there in
the shared sandbox (:mod:`neuromosaic_core.sandbox`: never inside the Ray worker process itself,
since generated code is untrusted), and returns a plain dict: the result, the weights bytes, the
harness's output and what the trial used. A trial trained in segments travels the same way: the
checkpoint's bytes come with the job and go back with the reply when the harness left one (it
paused at ``max_epochs``). The directory is removed before the task returns; the orchestrator alone
writes files and storage.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

OUTPUT_TAIL = 2000
#: Start of the name of each trial's private directory on a worker.
WORKDIR_PREFIX = "neuromosaic-ray-trial-"
#: What a trial inherits from the Ray worker's environment: enough to find Python and its packages
#: and the GPUs Ray assigned, never credentials.
INHERITED = ("PATH", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH", "CUDA_VISIBLE_DEVICES")


def trial_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in INHERITED}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def read_trial_file(path: Path) -> bytes | None:
    """The bytes of a plain file the trial wrote, never through a link it planted (this process
    may be root, the trial is not); None when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read()


def execute_trial(job: dict[str, Any], code: str, data: bytes, limits: dict[str, Any],
                  checkpoint: bytes | None = None) -> dict[str, Any]:
    """Run one trial in a private directory on this machine; see the module docstring.

    ``job`` is an unstructured :class:`~neuromosaic_core.interfaces.TrialJob` with the
    orchestrator's paths; ``limits`` the keyword arguments of
    :class:`~neuromosaic_core.sandbox.Limits` except ``timeout_s`` (the job's); ``checkpoint``
    the bytes of the trial's checkpoint when an earlier segment left one. Returns
    ``{"result": unstructured TrialResult, "weights": bytes | None, "checkpoint": bytes | None,
    "output": str, "resources": {...}, "host": str, "isolation": str}``: ``checkpoint`` is what the
    harness left after a successful segment (None: training reached its end, or the trial failed).
    """
    from neuromosaic_core.model import ErrorClass, TrialResult, converter
    from neuromosaic_core.sandbox import Limits, run_sandboxed_sync

    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{int(job['trial_id']):04d}-"))
    try:
        local = dict(job)
        local.update(
            code_path=str(workdir / "code.py") if job.get("code_path") else "",
            data_path=str(workdir / "data.npz"),
            result_path=str(workdir / "result.json"),
            weights_path=str(workdir / "weights.pt") if job.get("weights_path") else None,
            checkpoint_path=str(workdir / "checkpoint.pt") if job.get("checkpoint_path") else None,
        )
        if local["checkpoint_path"] and checkpoint is not None:
            Path(local["checkpoint_path"]).write_bytes(checkpoint)
        if local["code_path"]:
            Path(local["code_path"]).write_text(code)
        Path(local["data_path"]).write_bytes(data)
        (workdir / "job.json").write_text(json.dumps(local))
        outcome = run_sandboxed_sync(
            [sys.executable, "-m", "neuromosaic_core.harness", str(workdir / "job.json")],
            workdir, Limits(timeout_s=float(job["timeout_s"]), **limits), trial_environment(),
        )
        result_file = workdir / "result.json"
        if outcome.timed_out:
            result = TrialResult.failure(
                ErrorClass.TIMEOUT, f"trial exceeded its {float(job['timeout_s']):g} s limit; its processes were killed")
        elif result_file.exists():
            result = converter.structure(json.loads(result_file.read_text()), TrialResult)
        else:
            tail = outcome.output[-OUTPUT_TAIL:].strip()
            result = TrialResult.failure(ErrorClass.CRASH, f"trial process died ({outcome.describe()}): {tail}")
        weights = read_trial_file(workdir / "weights.pt") if result.ok and local["weights_path"] else None
        left = read_trial_file(Path(local["checkpoint_path"])) if result.ok and local["checkpoint_path"] else None
        return {
            "result": converter.unstructure(result),
            "weights": weights,
            "checkpoint": left,
            "output": outcome.output,
            "resources": {"peak_memory_mb": outcome.peak_memory_mb, "cpu_seconds": outcome.cpu_seconds,
                          "wall_seconds": outcome.wall_seconds},
            "host": socket.gethostname(),
            "isolation": outcome.isolation,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
