"""The ``files`` task on real files built in a temporary folder: what each input becomes, the
content-keyed identity, the checks (one line naming the file, nothing created) and, end to end
through the ``neuromosaic`` command, one small search per kind of input with the best model
predicting on raw rows or image files."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from neuromosaic_task_files import FilesSettings
from neuromosaic_task_files.reading import DataError, read_dataset
from neuromosaic_task_files.task import FilesTask

from neuromosaic_core.harness.data import open_arrays
from neuromosaic_core.plugins import PluginSystem

PIL = pytest.importorskip("PIL.Image")


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def table(path: Path, n: int = 200, seed: int = 0, label: str = "class") -> Path:
    """Two numeric columns and a categorical one; the label is a word decided by all three."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(loc=50, scale=10, size=n)
    city = rng.choice(["lyon", "paris", "nice"], size=n)
    yes = a + (b - 50) / 10 + (city == "paris") * 1.5 > 0.5
    rows = [[f"{x:.4f}", f"{z:.3f}", c, "yes" if y else "no"] for x, z, c, y in zip(a, b, city, yes, strict=True)]
    return write_csv(path, ["a", "b", "city", label], rows)


def image(path: Path, value: int, size: tuple[int, int] = (8, 8), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0]), value, dtype=np.uint8)
    pixels[: size[1] // 2] = 255 - value  # a pattern, so the two classes differ in shape too
    picture = PIL.fromarray(pixels, mode="L")
    (picture.convert(mode) if mode != "L" else picture).save(path)


def image_folder(root: Path, per_class: int = 12) -> Path:
    for i in range(per_class):
        image(root / "dark" / f"{i}.png", 20 + i)
        image(root / "light" / f"{i}.png", 220 - i)
    return root


# -- what each input becomes --------------------------------------------------------------------


def test_registered_with_objective_check_and_tag():
    import neuromosaic_task_files

    system = PluginSystem.load([("files", neuromosaic_task_files)], entry_points=False)
    component = system.get("task", "files")
    assert component.settings is FilesSettings
    assert component.metadata["objective"](FilesSettings(kind="regression")) == ("val_rmse", "minimize")
    assert component.metadata["objective"](FilesSettings(kind="classification")) == ("val_accuracy", "maximize")


def test_csv_numeric_standardised_categorical_one_hot(tmp_path):
    data = read_dataset(FilesSettings(path=str(table(tmp_path / "t.csv")), label="class"))
    assert data.kind == "classification" and data.num_outputs == 2
    assert data.input_shape == (2 + 3,)  # a, b, then city one-hot (lyon, nice, paris)
    assert data.state["classes"] == ["no", "yes"]
    assert np.allclose(data.x_train[:, :2].mean(axis=0), 0, atol=1e-5)
    assert np.allclose(data.x_train[:, :2].std(axis=0), 1, atol=1e-3)
    assert set(np.unique(data.x_train[:, 2:])) == {0.0, 1.0} and np.all(data.x_train[:, 2:].sum(axis=1) == 1)
    assert len(data.y_train) + len(data.y_test) == 200 and len(data.y_test) == 40


def test_parquet_reads_like_the_same_csv(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet needs the [parquet] extra (pyarrow)")
    import pyarrow.parquet as pq

    csv_path = table(tmp_path / "t.csv")
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = {"a": [float(r["a"]) for r in rows], "b": [float(r["b"]) for r in rows],
               "city": [r["city"] for r in rows], "class": [r["class"] for r in rows]}
    pq.write_table(pa.table(columns), tmp_path / "t.parquet")
    from_csv = read_dataset(FilesSettings(path=str(csv_path), label="class"))
    from_parquet = read_dataset(FilesSettings(path=str(tmp_path / "t.parquet"), label="class"))
    assert from_parquet.state["columns"] == from_csv.state["columns"]
    assert np.allclose(from_parquet.x_train, from_csv.x_train) and np.array_equal(from_parquet.y_test, from_csv.y_test)


def test_whole_number_labels_are_classes_named_as_in_the_file(tmp_path):
    rows = [[i, i % 3] for i in range(30)]
    data = read_dataset(FilesSettings(path=str(write_csv(tmp_path / "c.csv", ["x", "y"], rows)), label="y"))
    assert data.kind == "classification" and data.state["classes"] == [0, 1, 2]


def test_regression_inferred_from_fractional_labels(tmp_path):
    rows = [[i, i * 0.5 + 0.25] for i in range(30)]
    data = read_dataset(FilesSettings(path=str(write_csv(tmp_path / "r.csv", ["x", "target"], rows)), label="target"))
    assert data.kind == "regression" and data.num_outputs == 1
    assert data.y_train.dtype == np.float32 and data.y_train.shape[1] == 1
    assert data.state["y_std"][0] > 0


def test_npz_x_y_split_seeded_and_stratified(tmp_path):
    x = np.random.default_rng(0).normal(size=(100, 3, 4)).astype(np.float32)
    y = np.repeat([0, 1, 2, 3], 25)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    a = read_dataset(FilesSettings(path=str(tmp_path / "d.npz"), test_fraction=0.2))
    b = read_dataset(FilesSettings(path=str(tmp_path / "d.npz"), test_fraction=0.2))
    assert a.input_shape == (3, 4) and a.num_outputs == 4
    assert np.array_equal(a.y_test, b.y_test) and np.array_equal(np.asarray(a.x_test), np.asarray(b.x_test))
    assert np.bincount(a.y_test).tolist() == [5, 5, 5, 5]


def test_npz_with_its_own_test_split_is_used_as_given(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "s.npz", x_train=rng.normal(size=(40, 6)), y_train=np.arange(40) % 2,
             x_test=rng.normal(size=(7, 6)), y_test=np.arange(7) % 2)
    data = read_dataset(FilesSettings(path=str(tmp_path / "s.npz")))
    assert (len(data.y_train), len(data.y_test)) == (40, 7)


def test_image_folder_resized_grayscale_and_rgb(tmp_path):
    root = image_folder(tmp_path / "imgs")
    image(root / "light" / "big.png", 200, size=(16, 12))
    gray = read_dataset(FilesSettings(path=str(root), image_size=8))
    assert gray.state["classes"] == ["dark", "light"] and gray.state["color"] == "grayscale"
    assert gray.input_shape == (64,)
    assert 0.0 <= float(np.min(gray.x_train)) and float(np.max(gray.x_train)) <= 1.0
    rgb = read_dataset(FilesSettings(path=str(root), image_size=4, color="rgb", flatten=False))
    assert rgb.input_shape == (3, 4, 4)


def test_prepared_file_is_memory_mapped_not_copied(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(50, 5)), y=np.arange(50) % 2)
    path = FilesTask(FilesSettings(path=str(tmp_path / "d.npz"))).prepare_data(tmp_path / "run")
    arrays = open_arrays(path)
    assert isinstance(arrays["x_train"], np.memmap) and arrays["x_train"].dtype == np.float32


# -- identity: the content, not the path ----------------------------------------------------------


def test_identity_follows_the_content_not_the_path(tmp_path):
    first = table(tmp_path / "a.csv")
    key = FilesTask(FilesSettings(path=str(first), label="class")).identity()
    renamed = first.rename(tmp_path / "renamed.csv")
    assert FilesTask(FilesSettings(path=str(renamed), label="class")).identity() == key
    text = renamed.read_text().replace("lyon", "lille", 1)
    renamed.write_text(text)
    assert FilesTask(FilesSettings(path=str(renamed), label="class")).identity() != key


# -- each bad input: one line naming the file and the problem ------------------------------------


def _bad_inputs(tmp_path: Path) -> list[tuple[dict[str, object], str, str]]:
    """(settings, the file named, what the message says)."""
    cases = []
    t = table(tmp_path / "t.csv")
    cases.append(({"path": str(t), "label": "price"}, str(t), "no label column 'price'"))
    one = write_csv(tmp_path / "one.csv", ["x", "y"], [[i, "same"] for i in range(10)])
    cases.append(({"path": str(one), "label": "y"}, str(one), "one class only"))
    nan = write_csv(tmp_path / "nan.csv", ["x", "y"], [[1, 0], ["", 1], [3, 0], [4, 1]])
    cases.append(({"path": str(nan), "label": "y"}, str(nan), "column 'x' has a missing or NaN value in row 2"))
    np.savez(tmp_path / "nan.npz", x=np.array([[1.0], [np.nan], [2.0], [3.0]]), y=np.array([0, 1, 0, 1]))
    cases.append(({"path": str(tmp_path / "nan.npz")}, str(tmp_path / "nan.npz"), "NaN"))
    mixed = image_folder(tmp_path / "mixed", per_class=3)
    image(mixed / "dark" / "wide.png", 30, size=(10, 8))
    cases.append(({"path": str(mixed)}, str(mixed / "dark"), "set task.image_size"))
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "dogs").mkdir()
    cases.append(({"path": str(empty)}, str(empty / "cats"), "holds no PNG or JPEG images"))
    broken = image_folder(tmp_path / "broken", per_class=3)
    (broken / "light" / "bad.png").write_bytes(b"not a png at all")
    cases.append(({"path": str(broken), "image_size": 8}, str(broken / "light" / "bad.png"), "unreadable image"))
    return cases


def test_each_bad_input_is_one_line_naming_the_file(tmp_path):
    for settings, named, problem in _bad_inputs(tmp_path):
        with pytest.raises(DataError) as caught:
            read_dataset(FilesSettings(**settings))  # type: ignore[arg-type]
        message = str(caught.value)
        assert "\n" not in message and named in message and problem in message, message


# -- end to end through the command line --------------------------------------------------------


def _search_missing() -> str | None:
    """Why a search cannot run here: the end-to-end tests need torch and the default components
    (installed with requirements.txt, absent in the plugin's own nox session, which has only the
    core beside it)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    system = PluginSystem.load()
    wanted = {"strategy": "random", "encoder": "mlp_conv1d", "codegen": "template", "runner": "local", "storage": "sql"}
    missing = [f"{kind}={name}" for kind, name in wanted.items() if name not in system.names(kind)]
    return f"a search needs {', '.join(missing)} (pip install -r requirements.txt)" if missing else None


_MISSING = _search_missing()
# Not a skip (CI's strict skips would fail the plugin's own nox session): conftest.py deselects
# these where a search cannot run, and the session header says why.
needs_search = pytest.mark.needs_search

FAST = ["search.trials=2", "training.epochs=4", "training.patience=2", "visualizers=[]", "runner.workers=1",
        "storage.url=sqlite:///results.db", "codegen=template"]


def neuromosaic(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def run_dirs(cwd: Path) -> list[Path]:
    return sorted((cwd / "runs").glob("files-*")) if (cwd / "runs").exists() else []


@needs_search
def test_bad_input_from_the_command_line_creates_nothing(tmp_path):
    t = table(tmp_path / "t.csv")
    proc = neuromosaic(tmp_path, "task=files", f"task.path={t}", "task.label=price", *FAST)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"neuromosaic: error: {t}: no label column 'price'; the columns are a, b, city, class"]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results.db").exists()


@needs_search
def test_search_on_a_csv_then_predict_raw_rows(tmp_path):
    t = table(tmp_path / "table.csv")
    proc = neuromosaic(tmp_path, "task=files", f"task.path={t}", "task.label=class", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = run_dirs(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["metric"], summary["direction"]) == ("val_accuracy", "maximize")
    assert summary["best"]["preprocessing"] == "preprocessing.json"
    from neuromosaic_core.loading import load_best_model, load_best_predictor

    assert hasattr(load_best_model(run), "forward")
    predictor = load_best_predictor(run)
    rows = [{"a": "2.5", "b": "70", "city": "paris"}, {"a": "-2.5", "b": "30", "city": "lyon"}]
    assert predictor.predict(rows) == ["yes", "no"]
    assert len(predictor.predict(str(t))) == 200

    # the same data renamed: the same experiment, every trial reused or already done
    renamed = t.rename(tmp_path / "renamed.csv")
    again = neuromosaic(tmp_path, "task=files", f"task.path={renamed}", "task.label=class", *FAST)
    assert again.returncode == 0 and "2/2 trials done" in again.stderr + again.stdout
    # edited: another experiment, trained afresh
    renamed.write_text(renamed.read_text().replace("paris", "nice", 3))
    edited = neuromosaic(tmp_path, "task=files", f"task.path={renamed}", "task.label=class", *FAST)
    assert edited.returncode == 0, edited.stderr[-2000:]
    assert len(run_dirs(tmp_path)) == 2


@needs_search
def test_regression_search_minimises_rmse_and_predicts_in_the_targets_units(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(size=300)
    price = 1000 + 30 * a - 20 * b
    path = write_csv(tmp_path / "houses.csv", ["a", "b", "price"], [[f"{x:.4f}", f"{z:.4f}", f"{p:.2f}"] for x, z, p in zip(a, b, price, strict=True)])
    proc = neuromosaic(tmp_path, "task=files", f"task.path={path}", "task.label=price", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = run_dirs(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["metric"], summary["direction"]) == ("val_rmse", "minimize")
    best = summary["best"]
    assert best["val_rmse"] <= min(t["val_rmse"] for t in summary["top"])
    assert best["test_rmse"] < 36  # the targets' own std is about 36: the model learnt something
    from neuromosaic_core.loading import load_best_predictor

    (guess,) = load_best_predictor(run).predict([{"a": 0, "b": 0}])
    assert abs(guess - 1000) < 40


@needs_search
def test_search_on_an_npz(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    x = (rng.normal(size=(120, 10)) + y[:, None] * 1.5).astype(np.float32)
    np.savez(tmp_path / "arrays.npz", x=x, y=y)
    proc = neuromosaic(tmp_path, "task=files", f"task.path={tmp_path / 'arrays.npz'}", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = run_dirs(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["test_accuracy"] > 0.8


@needs_search
def test_search_on_an_image_folder_then_predict_image_files(tmp_path):
    root = image_folder(tmp_path / "my_images")
    image(root / "dark" / "wide.png", 25, size=(12, 10))  # another size: resized
    proc = neuromosaic(tmp_path, "task=files", f"task.path={root}", "task.image_size=8", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = run_dirs(tmp_path)
    from neuromosaic_core.loading import load_best_predictor

    predictor = load_best_predictor(run)
    image(tmp_path / "new" / "d.png", 15, size=(20, 20))
    image(tmp_path / "new" / "l.png", 235, size=(20, 20))
    assert predictor.predict([tmp_path / "new" / "d.png", tmp_path / "new" / "l.png"]) == ["dark", "light"]
