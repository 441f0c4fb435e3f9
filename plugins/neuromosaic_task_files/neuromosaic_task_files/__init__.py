"""Neuromosaic plugin: the ``files`` task, a search on the user's own data.

``task.path`` names a ``.npz`` (``x``/``y`` or ``x_train``/``y_train``/``x_test``/``y_test``), a
CSV or Parquet table with a label column (``task.label``), or a folder of images with one
subfolder per class. Cheap to import: numpy, Pillow and pyarrow load only when data is read.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.1.0"

#: The metric each kind of task is searched by, and its direction.
OBJECTIVES = {"classification": ("val_accuracy", "maximize"), "regression": ("val_rmse", "minimize")}


@attrs.frozen
class FilesSettings:
    """``path``: the data (file or folder); ``label``: a table's label column; ``kind``:
    ``classification``, ``regression`` or ``auto`` (from the labels: text or few distinct integers
    are classes, other numbers are targets); ``image_size``: resize every image to NxN (0: keep,
    all must be one size); ``color``: ``grayscale``, ``rgb`` or ``auto`` (RGB if any image has
    colour); ``flatten``: images as one row of pixels (for the ``mlp_conv1d`` family) rather than
    channels x height x width; ``test_fraction`` and ``seed``: the seeded, stratified test split
    when the files give none."""

    path: str = ""
    label: str = ""
    kind: Literal["auto", "classification", "regression"] = "auto"
    image_size: int = attrs.field(default=0)
    color: Literal["auto", "grayscale", "rgb"] = "auto"
    flatten: bool = True
    test_fraction: float = attrs.field(default=0.2)
    seed: int = 0

    @image_size.validator
    def _check_size(self, _attribute: Any, value: int) -> None:
        if value < 0:
            raise ValueError(f"image_size must be 0 (keep) or a number of pixels, got {value}")

    @test_fraction.validator
    def _check_fraction(self, _attribute: Any, value: float) -> None:
        if not 0 < value < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {value}")


_LOADED: dict[tuple[Any, ...], Any] = {}
_DIGESTS: dict[tuple[Any, ...], str] = {}


def _stamp(path_text: str) -> tuple[str, Any]:
    """The resolved path and its files' sizes and modification times (what a cached read of it
    depends on)."""
    import os
    from pathlib import Path

    path = Path(os.path.expanduser(path_text)).resolve() if path_text else None
    try:
        stamp: Any = (path.stat().st_size, path.stat().st_mtime_ns) if path is not None else None
        if path is not None and path.is_dir():
            stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*")))
    except OSError:
        stamp = None
    return str(path), stamp


def experiment_tag(node: Any) -> str:
    """The first 8 hex digits of the data's content hash, for the default experiment name
    (``files-3fa2c1d0-mlp_conv1d-random``): a renamed file resumes its experiment, an edited or
    other file starts another. Empty when there is no readable data (the check reports it)."""
    from pathlib import Path

    from neuromosaic_task_files.reading import content_digest

    path_text = str(node.get("path", "") or "") if hasattr(node, "get") else ""
    key = _stamp(path_text)
    if key[1] is None:
        return ""
    if key not in _DIGESTS:
        try:
            _DIGESTS[key] = content_digest(Path(key[0]))[:8]
        except OSError:
            return ""
    return _DIGESTS[key]


def load(settings: FilesSettings) -> Any:
    """The :class:`~neuromosaic_task_files.reading.Dataset` of ``settings``, read and checked once
    per process: the CLI's check before the run directory exists and the search share it. A
    file changed since (size or modification time) is read again."""
    from neuromosaic_task_files.reading import read_dataset

    key = (*_stamp(settings.path), attrs.astuple(settings))
    if key not in _LOADED:
        _LOADED.clear()  # one data set at a time: a search never needs two
        _LOADED[key] = read_dataset(settings)
    return _LOADED[key]


def objective(settings: FilesSettings | None) -> tuple[str, str]:
    """What the search optimises by default: classification by validation accuracy (maximise),
    regression by validation RMSE (minimise). Reads (and checks) the data when the kind is auto."""
    settings = settings if settings is not None else FilesSettings()
    kind = settings.kind if settings.kind != "auto" else load(settings).kind
    return OBJECTIVES[kind]


def check(settings: FilesSettings | None) -> None:
    """Read and check the data (a one-line DataError), before the run directory exists."""
    load(settings if settings is not None else FilesSettings())


def factory(settings: FilesSettings | None) -> Any:
    from neuromosaic_task_files.task import FilesTask

    return FilesTask(settings if settings is not None else FilesSettings())


@hookimpl
def register_tasks(register: Any) -> None:
    register("files", factory, settings=FilesSettings, objective=objective, check=check, experiment_tag=experiment_tag,
             description="your own data: a .npz, a CSV/Parquet table (task.label) or an image folder (task.path)")
