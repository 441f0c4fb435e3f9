"""The MNIST-1D task: ``mnist1d.data.make_dataset`` with the package's default arguments.

``make_dataset`` is called directly; ``get_dataset`` is never used, because it downloads a pickle
from GitHub (and falls back to generating only on failure).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import attrs
import numpy as np

from neuromosaic_core.interfaces import Task
from neuromosaic_core.model import stable_hash
from neuromosaic_task_mnist1d import Mnist1dSettings

#: Bump when the generated arrays change for the same settings, so stale files are not reused.
FORMAT_VERSION = 1


class Mnist1dTask(Task):
    """MNIST-1D: the ten digit templates as 1-D signals, randomly padded, shifted, scaled, sheared
    and noised, down-sampled to 40 points; 10 classes. Defaults: 4,000 train and 1,000 test."""

    name = "mnist1d"
    input_shape = (40,)
    num_classes = 10

    def __init__(self, settings: Mnist1dSettings | None = None) -> None:
        self.settings = settings if settings is not None else Mnist1dSettings()

    def data_filename(self) -> str:
        """The file name: the task name and a hash of everything that determines the arrays."""
        key = stable_hash({"task": self.name, "format": FORMAT_VERSION, "settings": attrs.asdict(self.settings)})
        return f"{self.name}-{key}.npz"

    def prepare_data(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / self.data_filename()
        if path.exists():
            return path
        arrays = self.build_arrays()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written file to be reused
        return path

    def build_arrays(self) -> dict[str, np.ndarray]:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.seed = self.settings.seed
        args.num_samples = self.settings.num_samples
        # make_dataset seeds the global `random` and `numpy.random` generators; put them back.
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            data = make_dataset(args)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        return {
            "x_train": np.ascontiguousarray(data["x"], dtype=np.float32),
            "y_train": np.ascontiguousarray(data["y"], dtype=np.int64),
            "x_test": np.ascontiguousarray(data["x_test"], dtype=np.float32),
            "y_test": np.ascontiguousarray(data["y_test"], dtype=np.int64),
        }
