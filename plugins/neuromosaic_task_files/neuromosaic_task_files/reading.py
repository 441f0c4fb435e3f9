"""Reading the user's files into arrays, checking them as they are read.

Every problem is a :class:`DataError`: one line naming the file and what is wrong, raised before
anything is written (the CLI checks the data before it makes a run directory).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from neuromosaic_core.errors import ConfigError
from neuromosaic_task_files.preprocessing import InputError, column_is_numeric, fit_table, load_image, table_width, transform_table

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
TABLE_SUFFIXES = {".csv", ".parquet", ".pq"}
#: Integer labels with at most this many distinct values are classes when task.kind=auto.
MAX_INFERRED_CLASSES = 100


class DataError(ConfigError):
    """The user's data cannot be used as it is (one line: the file and the problem)."""


@attrs.define
class Dataset:
    """The arrays a run trains on, the predictor state, and the content hash of the source."""

    x_train: Any
    y_train: np.ndarray
    x_test: Any
    y_test: np.ndarray
    kind: str
    num_outputs: int
    state: dict[str, Any]
    digest: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])


class Rows:
    """Some rows of a (memory-mapped) array, taken only when written or read in slices, so the
    split of a large ``x``/``y`` file is never a copy in memory."""

    def __init__(self, source: Any, index: np.ndarray) -> None:
        self.source, self.index = source, index

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.source.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.source.dtype

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.source[self.index[key]])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        rows = np.asarray(self.source[self.index])
        return rows if dtype is None else rows.astype(dtype)


def chunks(array: Any, rows: int = 65536) -> Iterator[np.ndarray]:
    """``array`` (an array, a memory map or :class:`Rows`) in slices of ``rows`` rows."""
    for i in range(0, len(array), rows):
        yield np.asarray(array[i : i + rows])


def write_npz(path: Path, arrays: dict[str, Any], dtypes: dict[str, Any]) -> None:
    """An uncompressed ``.npz`` written slice by slice (``np.savez`` needs each array whole in
    memory), each member cast to ``dtypes[name]``; readable by ``np.load`` and memory-mappable."""
    import zipfile

    from numpy.lib import format as npy

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            dtype = np.dtype(dtypes.get(name, array.dtype))
            shape = tuple(int(d) for d in np.shape(array)) if not isinstance(array, Rows) else array.shape
            with archive.open(f"{name}.npy", "w", force_zip64=True) as out:
                npy.write_array_header_1_0(out, {"descr": npy.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
                if len(shape) == 0:
                    out.write(np.asarray(array, dtype=dtype).tobytes())
                    continue
                for part in chunks(array):
                    out.write(np.ascontiguousarray(part, dtype=dtype).tobytes())


def content_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative paths and bytes, sorted): the
    same for a renamed or moved copy, different after any edit."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
    for file in files:
        if file is not path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _hidden(file: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in file.relative_to(root).parts)


# -- labels, kinds and splits -------------------------------------------------------------------


def infer_kind(labels: np.ndarray, where: str, kind: str) -> str:
    """``task.kind`` when given; otherwise classification for text or few distinct integers,
    regression for non-integer numbers; a DataError when it cannot tell."""
    if kind != "auto":
        return kind
    if not column_is_numeric(labels):
        return "classification"
    if labels.ndim > 1:
        return "regression"
    integral = labels.dtype.kind in "biu" or bool(np.all(np.equal(np.mod(labels, 1), 0)))
    if not integral:
        return "regression"
    if len(np.unique(labels)) <= MAX_INFERRED_CLASSES:
        return "classification"
    raise DataError(f"{where}: the labels are {len(np.unique(labels))} distinct integers; "
                    "say what they are with task.kind=classification or task.kind=regression")


def encode_classes(labels: np.ndarray, where: str) -> tuple[np.ndarray, list[Any]]:
    """Labels as class indices 0..k-1 (sorted distinct values) and the class values; a
    DataError for fewer than two classes."""
    if column_is_numeric(labels) and labels.ndim == 1:
        classes, codes = np.unique(labels, return_inverse=True)
        # whole numbers read from a CSV arrive as floats: name the classes 0, 1, not 0.0, 1.0
        names: list[Any] = [int(c) if float(c).is_integer() else c.item() for c in classes]
    else:
        classes, codes = np.unique(np.asarray([str(v) for v in labels.reshape(-1)]), return_inverse=True)
        names = [str(c) for c in classes]
    if len(names) < 2:
        raise DataError(f"{where}: the labels hold one class only ({names[0]!r} if any); a classifier needs at least two")
    return codes.astype(np.int64), names


def split_rows(y: np.ndarray, kind: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(train, test)`` row indices: stratified by class for classification (each class
    with two or more rows keeps at least one in each part), shuffled for regression."""
    rng = np.random.default_rng(seed)
    if kind != "classification":
        order = rng.permutation(len(y))
        n_test = max(1, int(round(len(y) * fraction)))
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    train, test = [], []
    for value in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == value))
        n_test = int(round(len(rows) * fraction))
        if len(rows) >= 2:
            n_test = min(max(n_test, 1), len(rows) - 1)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _finish_labels(y_train: np.ndarray, y_test: np.ndarray, kind: str, where: str) -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
    """Class indices (classification) or float targets with their training mean and std (regression)."""
    if kind == "classification":
        codes, names = encode_classes(np.concatenate([y_train, y_test]), where)
        return codes[: len(y_train)], codes[len(y_train):], len(names), {"classes": names}
    try:
        targets = [np.asarray(y, dtype=np.float32) for y in (y_train, y_test)]
    except ValueError:
        raise DataError(f"{where}: task.kind=regression but the labels are not all numbers") from None
    train, test = (t.reshape(len(t), -1) for t in targets)
    if not (np.isfinite(train).all() and np.isfinite(test).all()):
        raise DataError(f"{where}: the labels hold NaN or infinite values")
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0).astype(np.float32)
    return train, test, train.shape[1], {"y_mean": mean.tolist(), "y_std": std.tolist()}


# -- .npz ---------------------------------------------------------------------------------------


def read_npz(path: Path, settings: Any) -> Dataset:
    from neuromosaic_core.harness.data import open_arrays

    where = str(path)
    try:
        arrays = open_arrays(path)  # memory-mapped: a large file is not read into memory here
    except Exception as exc:
        raise DataError(f"{where}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        x_train, y_train, x_test, y_test = (arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    elif {"x", "y"} <= arrays.keys():
        x, y = arrays["x"], np.asarray(arrays["y"])
        if len(x) != len(y):
            raise DataError(f"{where}: x has {len(x)} rows but y has {len(y)}")
        kind = infer_kind(y, where, settings.kind)
        train, test = split_rows(y, kind, settings.test_fraction, settings.seed)
        x_train, y_train, x_test, y_test = Rows(x, train), y[train], Rows(x, test), y[test]
    else:
        raise DataError(f"{where}: expected arrays x and y (or x_train, y_train, x_test, y_test); found {', '.join(sorted(arrays)) or 'none'}")
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DataError(f"{where}: x_{name} has {len(x)} rows but y_{name} has {len(y)}")
        if len(x) == 0:
            raise DataError(f"{where}: the {name} part has no rows")
        if x.dtype.kind not in "biuf":
            raise DataError(f"{where}: the features are {x.dtype}, not numbers")
        if x.dtype.kind == "f" and not _all_finite(x):
            raise DataError(f"{where}: x_{name} holds NaN or infinite values; fill or drop them first")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{where}: x_train rows are {x_train.shape[1:]} but x_test rows are {x_test.shape[1:]}")
    kind = infer_kind(y_train, where, settings.kind)
    y_train, y_test, outputs, labels = _finish_labels(y_train, y_test, kind, where)
    state = {"input": "arrays", "input_shape": list(x_train.shape[1:]), "kind": kind, **labels}
    return Dataset(x_train, y_train, x_test, y_test, kind, outputs, state, content_digest(path))


def _all_finite(x: Any, rows: int = 65536) -> bool:
    """Checked in slices, so a memory-mapped array is never read into memory whole."""
    return all(np.isfinite(x[i : i + rows]).all() for i in range(0, len(x), rows))


# -- tables -------------------------------------------------------------------------------------


def _to_column(values: list[str]) -> np.ndarray:
    """Numbers when every value parses as one (an empty cell is NaN), else strings."""
    try:
        return np.array([float(v) if v.strip() else math.nan for v in values], dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=object)


def read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    """A CSV with a header row as column -> array (numbers or strings)."""
    where = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise DataError(f"{where}: the file is empty; expected a header row and data rows")
            cells: list[list[str]] = [[] for _ in header]
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(f"{where}: line {line} has {len(row)} fields, the header {len(header)}")
                for column, value in zip(cells, row, strict=True):
                    column.append(value)
    except UnicodeDecodeError:
        raise DataError(f"{where}: not a UTF-8 text file; save the table as UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataError(f"{where}: not a readable CSV file ({exc})") from None
    if len(set(header)) != len(header):
        raise DataError(f"{where}: the header names a column twice")
    return {name.strip(): _to_column(values) for name, values in zip(header, cells, strict=True)}


def read_parquet_columns(path: Path) -> dict[str, np.ndarray]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install 'neuromosaic-task-files[parquet]'") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    columns = {}
    for name in table.column_names:
        values = table.column(name).to_numpy(zero_copy_only=False)
        numeric = values.dtype.kind in "biuf"
        columns[name] = values.astype(np.float64) if numeric else np.array([None if v is None else str(v) for v in values], dtype=object)
    return columns


def read_table(path: Path, settings: Any) -> Dataset:
    where = str(path)
    columns = read_parquet_columns(path) if path.suffix.lower() in (".parquet", ".pq") else read_csv_columns(path)
    if not settings.label:
        raise DataError(f"{where}: say which column holds the labels with task.label=<column> (columns: {', '.join(columns)})")
    if settings.label not in columns:
        raise DataError(f"{where}: no label column {settings.label!r}; the columns are {', '.join(columns)}")
    labels = columns.pop(settings.label)
    if len(labels) == 0:
        raise DataError(f"{where}: the table has no data rows")
    if not columns:
        raise DataError(f"{where}: the table has no feature columns besides the label {settings.label!r}")
    for name, values in {settings.label: labels, **columns}.items():
        bad = _missing(values)
        if len(bad):
            raise DataError(f"{where}: column {name!r} has a missing or NaN value in row {int(bad[0]) + 1} "
                            f"({len(bad)} in all); fill or drop them first")
    kind = infer_kind(labels, where, settings.kind)
    if kind == "classification":
        encode_classes(labels, where)  # one class only: say so before splitting
    train, test = split_rows(np.asarray([str(v) for v in labels]) if not column_is_numeric(labels) else labels,
                             kind, settings.test_fraction, settings.seed)
    spec = fit_table(columns, train)
    x = np.empty((len(labels), table_width(spec)), dtype=np.float32)
    try:
        transform_table(columns, spec, out=x)
    except InputError as exc:
        raise DataError(f"{where}: {exc}") from None
    y_train, y_test, outputs, label_state = _finish_labels(labels[train], labels[test], kind, where)
    state = {"input": "table", "label": settings.label, "columns": spec, "kind": kind, **label_state}
    return Dataset(x[train], y_train, x[test], y_test, kind, outputs, state, content_digest(path))


def _missing(values: np.ndarray) -> np.ndarray:
    if column_is_numeric(values):
        return np.flatnonzero(~np.isfinite(values))
    return np.flatnonzero([v is None or (isinstance(v, str) and not v.strip()) for v in values])


# -- image folders ------------------------------------------------------------------------------


def _image_files(folder: Path) -> Iterator[Path]:
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES and not _hidden(file, folder):
            yield file


def _class_folders(root: Path) -> dict[str, list[Path]]:
    return {d.name: list(_image_files(d)) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def read_image_folder(path: Path, settings: Any) -> Dataset:
    where = str(path)
    parts = {p: _class_folders(path / p) for p in ("train", "test") if (path / p).is_dir()}
    if set(parts) == {"train", "test"}:  # the split is given: train/<class>/..., test/<class>/...
        train_classes, test_classes = parts["train"], parts["test"]
        unknown = sorted(set(test_classes) - set(train_classes))
        if unknown:
            raise DataError(f"{path / 'test'}: classes {', '.join(unknown)} have no training images")
    else:
        train_classes, test_classes = _class_folders(path), {}
    for name, files in {**train_classes, **{f"test/{k}": v for k, v in test_classes.items()}}.items():
        if not files:
            raise DataError(f"{path / name}: the folder holds no PNG or JPEG images")
    if not train_classes:
        raise DataError(f"{where}: no class folders; put each class's images in a subfolder of its own (cats/, dogs/)")
    if len(train_classes) < 2:
        raise DataError(f"{where}: one class only ({next(iter(train_classes))}/); a classifier needs at least two class folders")
    names = list(train_classes)
    files = [(f, names.index(c)) for c, fs in train_classes.items() for f in fs]
    test_files = [(f, names.index(c)) for c, fs in test_classes.items() for f in fs]
    size = (settings.image_size, settings.image_size) if settings.image_size else None
    color = settings.color
    if color == "auto":
        color = "grayscale" if all(_is_gray(f) for f, _ in files + test_files) else "rgb"
    if size is None:  # every image must already be of one size
        first: tuple[tuple[int, int], Path] | None = None
        for f, _ in files + test_files:
            dims = _image_size(f)
            if first is None:
                first = (dims, f)
            elif dims != first[0]:
                raise DataError(f"{f}: {dims[0]}x{dims[1]} pixels but {first[1]} is {first[0][0]}x{first[0][1]}; "
                                "set task.image_size=N to resize every image to NxN")
        assert first is not None
        size = (first[0][1], first[0][0])

    def load(items: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
        channels = 1 if color == "grayscale" else 3
        x = np.empty((len(items), channels, *size), dtype=np.float32)
        for i, (f, _) in enumerate(items):
            try:
                x[i] = load_image(f, color, size)
            except InputError as exc:
                raise DataError(str(exc)) from None
        return (x.reshape(len(items), -1) if settings.flatten else x), np.asarray([c for _, c in items], dtype=np.int64)

    x_all, y_all = load(files)
    if test_files:
        x_train, y_train = x_all, y_all
        x_test, y_test = load(test_files)
    else:
        train, test = split_rows(y_all, "classification", settings.test_fraction, settings.seed)
        x_train, y_train, x_test, y_test = x_all[train], y_all[train], x_all[test], y_all[test]
    state = {"input": "images", "image_size": list(size), "color": color, "flatten": settings.flatten,
             "kind": "classification", "classes": names}
    return Dataset(x_train, y_train, x_test, y_test, "classification", len(names), state, content_digest(path))


def _is_gray(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode in ("1", "L", "LA", "I", "I;16", "F")
    except Exception:  # unreadable: the loader names it
        return True


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except Exception as exc:
        raise DataError(f"{path}: unreadable image ({type(exc).__name__})") from None


# -- entry --------------------------------------------------------------------------------------


def read_dataset(settings: Any) -> Dataset:
    """The dataset ``settings.path`` names (a ``.npz``, ``.csv``/``.parquet`` or an image folder)."""
    if not settings.path:
        raise DataError("task.path is required: a .csv, .parquet or .npz file, or a folder of images with one subfolder per class")
    path = Path(os.path.expanduser(settings.path))
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (task.path)")
    if path.is_dir():
        return read_image_folder(path, settings)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return read_npz(path, settings)
    if suffix in TABLE_SUFFIXES:
        return read_table(path, settings)
    raise DataError(f"{path}: unknown kind of file {suffix or '(no suffix)'!r}; expected .csv, .parquet, .npz or a folder of images")
