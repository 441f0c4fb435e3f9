"""The digits tasks: scikit-learn's ``load_digits`` scaled to [0, 1], split once, stored as ``.npz``."""

from __future__ import annotations

import numpy as np

from neuromosaic_core.tasks import ArrayTask
from neuromosaic_task_digits import DigitsSettings


class DigitsTask(ArrayTask):
    """1,797 grey 8x8 images of digits flattened to 64 features in [0, 1]; 10 classes."""

    name = "digits"
    input_shape = (64,)
    num_classes = 10

    def __init__(self, settings: DigitsSettings | None = None) -> None:
        super().__init__(settings if settings is not None else DigitsSettings())

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


class DigitsImagesTask(DigitsTask):
    """The same images and split as :class:`DigitsTask`, shaped ``(1, 8, 8)``: one grey channel.

    Its own name keeps its data file, reuse keys and experiment names apart from ``digits``.
    """

    name = "digits_images"
    input_shape = (1, 8, 8)

    def build_arrays(self) -> dict[str, np.ndarray]:
        arrays = super().build_arrays()
        for key in ("x_train", "x_test"):
            arrays[key] = np.ascontiguousarray(arrays[key].reshape(-1, *self.input_shape))
        return arrays
