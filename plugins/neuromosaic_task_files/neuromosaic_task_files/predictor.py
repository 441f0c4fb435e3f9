"""The best model of a ``files`` search with its preprocessing: predicts on raw rows, CSV files
or image files.

    from neuromosaic_core.loading import load_best_predictor
    predictor = load_best_predictor("runs/files-mlp_conv1d-random")
    predictor.predict([{"age": 41, "city": "Lyon"}])     # a table: rows, columns or a CSV path
    predictor.predict(["photos/cat-1.png"])               # an image folder: image files
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neuromosaic_task_files.preprocessing import transform


class FilesPredictor:
    """``model`` (eval mode) and ``state`` (``preprocessing.json``)."""

    def __init__(self, model: Any, state: Mapping[str, Any]) -> None:
        self.model = model
        self.state = dict(state)
        self.kind = self.state.get("kind", "classification")
        self.classes = self.state.get("classes")

    def inputs(self, raw: Any) -> np.ndarray:
        """The model inputs for ``raw`` (see :func:`neuromosaic_task_files.preprocessing.transform`)."""
        return transform(self.state, raw)

    def _outputs(self, raw: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(self.inputs(raw))).numpy()

    def predict_proba(self, raw: Any) -> np.ndarray:
        """Class probabilities, one row per input, columns in the order of ``classes``."""
        if self.kind != "classification":
            raise TypeError("predict_proba is for classification; this model predicts numbers (predict)")
        out = self._outputs(raw)
        out = np.exp(out - out.max(axis=1, keepdims=True))
        return out / out.sum(axis=1, keepdims=True)

    def predict(self, raw: Any) -> list[Any]:
        """Class labels as the data named them, or the predicted numbers in the targets' own units
        (one per input, a list per input with several targets)."""
        out = self._outputs(raw)
        if self.kind == "classification":
            return [self.classes[i] for i in out.argmax(axis=1)] if self.classes else out.argmax(axis=1).tolist()
        values = out * np.asarray(self.state["y_std"]) + np.asarray(self.state["y_mean"])
        return [row[0] if len(row) == 1 else row for row in values.tolist()]
