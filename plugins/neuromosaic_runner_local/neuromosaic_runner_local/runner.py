"""The local runner: each trial runs the trial harness in a separate Python process.

The child starts a new session (its own process group), so on timeout or cancellation the whole
group is killed, including anything the trial spawned. One intra-op thread per trial
(``OMP_NUM_THREADS=1``): with several trials on few cores, more threads make everything slower.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from neuromosaic_core.interfaces import Runner, TrialJob
from neuromosaic_core.model import ErrorClass, TrialResult, converter
from neuromosaic_runner_local import LocalRunnerSettings

OUTPUT_TAIL = 2000
#: What a trial inherits from the orchestrator's environment: enough to find Python and its
#: packages, never credentials (API keys of LLM providers live in the same environment).
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "COVERAGE_PROCESS_START")


def trial_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in INHERITED or k.startswith("COVERAGE_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


class LocalRunner(Runner):
    def __init__(self, settings: LocalRunnerSettings | None = None) -> None:
        self.settings = settings or LocalRunnerSettings()
        self.workers = self.settings.resolved_workers()
        self.python = self.settings.python or sys.executable

    async def run_trial(self, job: TrialJob) -> TrialResult:
        result_path = Path(job.result_path)
        result_path.parent.mkdir(parents=True, exist_ok=True)
        job_path = result_path.with_name("job.json")
        job_path.write_text(json.dumps(converter.unstructure(job)))
        env = {**trial_environment(), "NEUROMOSAIC_PARENT_PID": str(os.getpid())}  # the harness exits with us
        proc = await asyncio.create_subprocess_exec(
            self.python, "-m", "neuromosaic_core.harness", str(job_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True, env=env, cwd=str(result_path.parent),
        )
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), timeout=job.timeout_s)
        except TimeoutError:
            await self._kill(proc)
            return TrialResult.failure(ErrorClass.TIMEOUT, f"trial exceeded its {job.timeout_s:g} s limit; its processes were killed")
        except asyncio.CancelledError:
            await self._kill(proc)
            raise
        text = output.decode(errors="replace")
        result_path.with_name("output.log").write_text(text)
        if result_path.exists():
            return converter.structure(json.loads(result_path.read_text()), TrialResult)
        code = proc.returncode
        cause = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if code in (-signal.SIGKILL, 137):
            cause += " (out of memory?)"
        return TrialResult.failure(ErrorClass.CRASH, f"trial process died ({cause}): {text[-OUTPUT_TAIL:].strip()}")

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
