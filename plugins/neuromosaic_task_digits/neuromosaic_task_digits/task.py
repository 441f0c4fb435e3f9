"""The digits task: scikit-learn's ``load_digits`` scaled to [0, 1], split once, stored as ``.npz``."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import numpy as np

from neuromosaic_core.interfaces import Task
from neuromosaic_core.model import stable_hash
from neuromosaic_task_digits import DigitsSettings

#: Bump when the generated arrays change for the same settings, so stale files are not reused.
FORMAT_VERSION = 1


class DigitsTask(Task):
    """1,797 grey 8x8 images of digits flattened to 64 features in [0, 1]; 10 classes."""

    name = "digits"
    input_shape = (64,)
    num_classes = 10

    def __init__(self, settings: DigitsSettings | None = None) -> None:
        self.settings = settings if settings is not None else DigitsSettings()

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
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        x = (np.asarray(digits.data, dtype=np.float64) / 16.0).astype(np.float32)
        y = np.asarray(digits.target, dtype=np.int64)
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=self.settings.test_fraction, random_state=self.settings.seed, stratify=y
        )
        return {
            "x_train": np.ascontiguousarray(x_train, dtype=np.float32),
            "y_train": np.ascontiguousarray(y_train, dtype=np.int64),
            "x_test": np.ascontiguousarray(x_test, dtype=np.float32),
            "y_test": np.ascontiguousarray(y_test, dtype=np.int64),
        }
