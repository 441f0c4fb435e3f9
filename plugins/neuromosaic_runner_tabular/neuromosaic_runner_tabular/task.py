"""The ``nasbench201`` task: one of NAS-Bench-201's data sets as the benchmark trained on it, for
``runner=tabular``.

Nothing is downloaded or trained: the results come from the table the runner reads. The task
exists so that experiment names read ``nasbench201-nasbench201-<strategy>`` and the reuse key
(architecture, task, training settings) names the right data set. ``prepare_data`` writes only a
small JSON marker naming the data set; the runner reads it (``job.data_path``) to pick the
data set's results when ``runner.table`` is not set.
"""

from __future__ import annotations

import json
from pathlib import Path

from neuromosaic_core.interfaces import Task
from neuromosaic_runner_tabular import NasBench201TaskSettings

#: ``task.dataset`` -> (input shape, classes), as NAS-Bench-201 trained on it.
SHAPES = {"cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100), "ImageNet16-120": ((3, 16, 16), 120)}
MARKER_NAME = "nasbench201.json"
NOTE = "No data is stored here: runner=tabular reads every result from NAS-Bench-201's table (or runner.table)."


def marker(dataset: str) -> str:
    return json.dumps({"benchmark": "NAS-Bench-201 (Dong & Yang, ICLR 2020)", "dataset": dataset, "note": NOTE}) + "\n"


class NasBench201Task(Task):
    name = "nasbench201"
    metrics = ("val_accuracy", "params", "latency_ms")

    def __init__(self, settings: NasBench201TaskSettings | None = None) -> None:
        self.settings = settings if settings is not None else NasBench201TaskSettings()
        self.dataset = self.settings.dataset
        self.input_shape, self.num_classes = SHAPES[self.dataset]
        if self.dataset != "cifar10":
            # Experiments, warm starts and the listing group by task name: the data sets must not mix.
            self.name = f"nasbench201-{self.dataset}"

    def prepare_data(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / MARKER_NAME
        text = marker(self.dataset)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        return path
