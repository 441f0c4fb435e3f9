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


#: The warm-up's model: our own code, run in the pool worker's process (never a trial's).
WARM_UP_MODEL = """import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2))

    def forward(self, x):
        return self.layers(x)
"""


def warm_up(directory: str) -> None:
    """Run one tiny trial of our own in this process, in ``directory``: a warm pool worker
    (:mod:`neuromosaic_core.sandbox.worker`) calls this once, so the first-use costs every trial
    would pay again in its forked child (imports, the converter's generated code, the FLOP
    counter, the optimiser, loading data, saving weights: ~20 ms) are paid once."""
    import numpy as np

    from neuromosaic_core.interfaces import TrialJob
    from neuromosaic_core.model import TrainingSettings, converter

    root = Path(directory)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)).astype(np.float32), rng.integers(0, 2, size=40)
    np.savez(root / "data.npz", x_train=x[:32], y_train=y[:32], x_test=x[32:], y_test=y[32:])
    (root / "code.py").write_text(WARM_UP_MODEL)
    job = TrialJob(trial_id=0, experiment="warm-up", code_path=str(root / "code.py"), data_path=str(root / "data.npz"),
                   result_path=str(root / "result.json"), input_shape=(4,), num_classes=2,
                   training=TrainingSettings(epochs=2, batch_size=8, patience=2), weights_path=str(root / "weights.pt"),
                   device="cpu")
    (root / "job.json").write_text(json.dumps(converter.unstructure(job)))
    # Twice: modules the first run imports register converter hooks, which empties the
    # converter's cache of the hooks it generated before.
    for _ in range(2):
        main([str(root / "job.json")])


if __name__ == "__main__":
    sys.exit(main())
