"""The MNIST-1D task: ``mnist1d.data.make_dataset`` with the package's default arguments.

``make_dataset`` is called directly; ``get_dataset`` is never used, because it downloads a pickle
from GitHub (and falls back to generating only on failure).
"""

from __future__ import annotations

import random

import numpy as np

from neuromosaic_core.tasks import ArrayTask
from neuromosaic_task_mnist1d import Mnist1dSettings


class Mnist1dTask(ArrayTask):
    """MNIST-1D: the ten digit templates as 1-D signals, randomly padded, shifted, scaled, sheared
    and noised, down-sampled to 40 points; 10 classes. Defaults: 4,000 train and 1,000 test."""

    name = "mnist1d"
    input_shape = (40,)
    num_classes = 10

    def __init__(self, settings: Mnist1dSettings | None = None) -> None:
        super().__init__(settings if settings is not None else Mnist1dSettings())

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
