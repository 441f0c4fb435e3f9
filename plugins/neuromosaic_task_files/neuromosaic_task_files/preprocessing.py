"""Raw inputs to model inputs, and model outputs back to answers: fitted on the training rows,
saved as JSON beside the best model, and applied the same way in training and in prediction.

A *table* is a mapping of column name to a 1-D array (numbers, or strings for categorical
columns). Numeric columns are standardised with the training rows' mean and standard deviation;
categorical ones become one-hot columns of the categories seen in training (an unseen category at
prediction time is all zeros). Images are decoded with Pillow, converted to grayscale or RGB,
resized and scaled to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class InputError(ValueError):
    """Raw input that cannot be turned into model inputs (names the column or file)."""


def column_is_numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "biuf"


def fit_table(columns: Mapping[str, np.ndarray], rows: np.ndarray) -> list[dict[str, Any]]:
    """One entry per feature column, in order: ``{"name", "type": "numeric", "mean", "std"}`` or
    ``{"name", "type": "categorical", "categories"}``, fitted on ``rows`` (the training rows)."""
    spec: list[dict[str, Any]] = []
    for name, values in columns.items():
        part = values[rows]
        if column_is_numeric(values):
            mean = float(np.mean(part, dtype=np.float64)) if len(part) else 0.0
            std = float(np.std(part, dtype=np.float64)) if len(part) else 1.0
            spec.append({"name": name, "type": "numeric", "mean": mean, "std": std if std > 0 and math.isfinite(std) else 1.0})
        else:
            spec.append({"name": name, "type": "categorical", "categories": sorted({str(v) for v in part})})
    return spec


def table_width(spec: Sequence[Mapping[str, Any]]) -> int:
    return sum(1 if c["type"] == "numeric" else len(c["categories"]) for c in spec)


def transform_table(columns: Mapping[str, Any], spec: Sequence[Mapping[str, Any]], out: np.ndarray | None = None) -> np.ndarray:
    """The float32 model inputs of a table, ``(rows, table_width(spec))``; raises InputError for a
    missing column or a numeric column with a value that is not a number."""
    n = len(next(iter(columns.values()))) if columns else 0
    x = out if out is not None else np.empty((n, table_width(spec)), dtype=np.float32)
    at = 0
    for column in spec:
        name = column["name"]
        if name not in columns:
            raise InputError(f"missing column {name!r}")
        values = np.asarray(columns[name])
        if column["type"] == "numeric":
            try:
                numbers = values.astype(np.float64)
            except ValueError:
                raise InputError(f"column {name!r} holds a value that is not a number") from None
            x[:, at] = (numbers - column["mean"]) / column["std"]
            at += 1
        else:
            categories = column["categories"]
            index = {c: i for i, c in enumerate(categories)}
            block = x[:, at : at + len(categories)]
            block[:] = 0
            codes = np.fromiter((index.get(str(v), -1) for v in values), dtype=np.int64, count=len(values))
            known = codes >= 0
            block[np.flatnonzero(known), codes[known]] = 1.0
            at += len(categories)
    return x


def load_image(path: str | Path, color: str, size: tuple[int, int] | None) -> np.ndarray:
    """One image as float32 ``(channels, height, width)`` in [0, 1]; raises InputError when Pillow
    cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("L" if color == "grayscale" else "RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable image ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def transform(state: Mapping[str, Any], inputs: Any) -> np.ndarray:
    """The model inputs for raw ``inputs`` under a saved ``state`` (``preprocessing.json``):

    - ``table``: a mapping column -> values, a sequence of row mappings, or a CSV path;
    - ``images``: a sequence of image paths (or one path);
    - ``arrays``: an array of the training features' shape per row (used as it is).
    """
    form = state["input"]
    if form == "table":
        if isinstance(inputs, (str, Path)):
            from neuromosaic_task_files.reading import read_csv_columns

            columns = read_csv_columns(Path(inputs))
        elif isinstance(inputs, Mapping):
            columns = {k: np.asarray(v) for k, v in inputs.items()}
        else:
            rows = list(inputs)
            names = [c["name"] for c in state["columns"]]
            columns = {n: np.asarray([r.get(n) for r in rows]) for n in names if all(n in r for r in rows)}
        return transform_table(columns, state["columns"])
    if form == "images":
        paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
        size = tuple(state["image_size"])
        images = np.stack([load_image(p, state["color"], size) for p in paths]).astype(np.float32)  # type: ignore[arg-type]
        return images.reshape(len(paths), -1) if state.get("flatten") else images
    return np.asarray(inputs, dtype=np.float32).reshape(-1, *state["input_shape"])
