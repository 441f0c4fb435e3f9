"""A base for tasks whose data set fits in memory as four arrays, built once and cached as ``.npz``."""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any

import attrs

from neuromosaic_core.interfaces import Task
from neuromosaic_core.model import stable_hash


class ArrayTask(Task):
    """Implement :meth:`build_arrays`; the file name hashes the task name, ``format_version`` and the
    settings, so changed settings never reuse a stale file, and the write is atomic, so a crash never
    leaves half a file to be reused."""

    #: Bump when the arrays change for the same settings.
    format_version: int = 1

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def data_filename(self) -> str:
        settings = attrs.asdict(self.settings) if attrs.has(type(self.settings)) else self.settings
        key = stable_hash({"task": self.name, "format": self.format_version, "settings": settings})
        return f"{self.name}-{key}.npz"

    def prepare_data(self, directory: Path) -> Path:
        import numpy as np

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / self.data_filename()
        if path.exists():
            return path
        arrays = self.build_arrays()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.ascontiguousarray(arrays[k], dtype=np.int64 if k.startswith("y") else np.float32)
                            for k in ("x_train", "y_train", "x_test", "y_test")})
        os.replace(tmp, path)
        return path

    @abc.abstractmethod
    def build_arrays(self) -> dict[str, Any]:
        """``x_train``, ``y_train``, ``x_test``, ``y_test`` as arrays (cast to float32 / int64 on save)."""
