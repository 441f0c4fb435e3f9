"""Entry point of the trial harness: ``python -m neuromosaic_core.harness JOB.json``.

Reads a :class:`~neuromosaic_core.interfaces.TrialJob` as JSON, runs it, writes the
:class:`~neuromosaic_core.model.TrialResult` to ``job.result_path`` and exits 0; the runner reads
the result file. A missing result file means the process died (crash, out of memory, killed).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: one intra-op thread


def exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Kill this trial's process group when the process that started it goes away.

    A runner that starts the harness in a session of its own (so a timeout can kill everything the
    trial spawned) also keeps it alive when the orchestrator is killed with SIGKILL; without this
    watch the trial would run on as an orphan and write results nobody reads.
    """
    if os.getpgrp() != os.getpid():
        return  # not a group leader: killing the group would hit whoever started us

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    from neuromosaic_core.harness.training import run_job
    from neuromosaic_core.interfaces import TrialJob
    from neuromosaic_core.model import converter

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m neuromosaic_core.harness JOB.json", file=sys.stderr)
        return 2
    parent = os.environ.get("NEUROMOSAIC_PARENT_PID")
    if parent and parent.isdigit():
        exit_with_parent(int(parent))
    job = converter.structure(json.loads(Path(args[0]).read_text()), TrialJob)
    result = run_job(job)
    tmp = Path(job.result_path + ".tmp")
    tmp.write_text(json.dumps(converter.unstructure(result)))
    tmp.replace(job.result_path)  # atomic: a reader never sees half a result
    return 0


if __name__ == "__main__":
    sys.exit(main())
