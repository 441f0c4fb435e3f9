"""The ``nasbench201`` task: CIFAR-10 as NAS-Bench-201 trained on it, for ``runner=tabular``.

Nothing is downloaded or trained: the results come from the table the runner reads. The task
exists so that experiment names read ``nasbench201-nasbench201-<strategy>`` and the reuse key
(architecture, task, training settings) names the right data set. ``prepare_data`` writes only a
small marker file saying so.
"""

from __future__ import annotations

from pathlib import Path

from neuromosaic_core.interfaces import Task

MARKER = ("NAS-Bench-201 on CIFAR-10 (Dong & Yang, ICLR 2020). No data is stored here: "
          "runner=tabular reads every result from its table (runner.table).\n")


class NasBench201Task(Task):
    name = "nasbench201"
    input_shape = (3, 32, 32)
    num_classes = 10
    metrics = ("val_accuracy", "test_accuracy", "rank")

    def __init__(self, settings: object = None) -> None:
        self.settings = settings

    def prepare_data(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "nasbench201.txt"
        if not path.exists() or path.read_text() != MARKER:
            path.write_text(MARKER)
        return path
