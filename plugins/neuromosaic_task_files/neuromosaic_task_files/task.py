"""The ``files`` task: the user's data, checked, preprocessed and written once per run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from neuromosaic_core.interfaces import Task
from neuromosaic_core.model import stable_hash
from neuromosaic_task_files import OBJECTIVES, FilesSettings, load
from neuromosaic_task_files.reading import write_npz


class FilesTask(Task):
    """A search on the arrays of :func:`neuromosaic_task_files.load`: its kind, shapes and metric
    come from the data; its identity is the data's content hash and the settings other than the
    path, so a renamed file reuses results and an edited one never does."""

    name = "files"

    def __init__(self, settings: FilesSettings | None = None) -> None:
        self.settings = settings if settings is not None else FilesSettings()
        self.dataset = load(self.settings)
        self.kind = self.dataset.kind
        self.metric, self.direction = OBJECTIVES[self.kind]
        self.metrics = (self.metric, f"test_{self.metric[4:]}", "test_loss")
        self.input_shape = self.dataset.input_shape
        self.num_classes = self.dataset.num_outputs

    def identity(self) -> Any:
        rest = {k: v for k, v in attrs.asdict(self.settings).items() if k != "path"}
        return {"content": self.dataset.digest, "settings": rest, "format": 1}

    def prepare_data(self, directory: Path) -> Path:
        """``files-<identity>.npz``, stored uncompressed so every trial memory-maps it rather than
        holding a copy; an existing file of the same identity is reused."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"files-{stable_hash(self.identity())}.npz"
        if path.exists():
            return path
        data = self.dataset
        arrays = {"x_train": data.x_train, "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}
        if data.kind == "regression":
            arrays["y_mean"] = np.asarray(data.state["y_mean"], dtype=np.float32)
            arrays["y_std"] = np.asarray(data.state["y_std"], dtype=np.float32)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # written slice by slice, float32 features (the contract): a large input is never copied whole in memory
        write_npz(tmp, arrays, {"x_train": np.float32, "x_test": np.float32})
        os.replace(tmp, path)
        return path

    def predictor_state(self) -> dict[str, Any]:
        return {"predictor": "neuromosaic_task_files.predictor:FilesPredictor", **self.dataset.state}
