from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
from neuromosaic_task_mnist1d import Mnist1dSettings, factory
from neuromosaic_task_mnist1d.task import Mnist1dTask

from neuromosaic_core.interfaces import Task
from neuromosaic_core.plugins import PluginSystem

KEYS = ("x_train", "y_train", "x_test", "y_test")


def load(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def default_file(tmp_path_factory):
    return factory(Mnist1dSettings()).prepare_data(tmp_path_factory.mktemp("mnist1d"))


def test_registered_through_the_plugin_system():
    import neuromosaic_task_mnist1d

    system = PluginSystem.load([("mnist1d", neuromosaic_task_mnist1d)], entry_points=False)
    component = system.get("task", "mnist1d")
    assert component.settings is Mnist1dSettings
    task = component.factory(component.default_settings())
    assert isinstance(task, Task)
    assert (task.name, task.input_shape, task.num_classes) == ("mnist1d", (40,), 10)


def test_npz_shapes_dtypes_and_ranges(default_file):
    data = load(default_file)
    assert sorted(data) == sorted(KEYS)
    assert data["x_train"].shape == (4000, 40) and data["x_test"].shape == (1000, 40)
    assert data["y_train"].shape == (4000,) and data["y_test"].shape == (1000,)
    assert data["x_train"].dtype == np.float32 and data["x_test"].dtype == np.float32
    assert data["y_train"].dtype == np.int64 and data["y_test"].dtype == np.int64
    assert np.isfinite(data["x_train"]).all() and np.isfinite(data["x_test"]).all()
    for k in ("y_train", "y_test"):
        assert set(np.unique(data[k])) == set(range(10))


def test_same_settings_give_identical_arrays(default_file, tmp_path):
    again = load(Mnist1dTask(Mnist1dSettings()).prepare_data(tmp_path))
    first = load(default_file)
    for k in KEYS:
        np.testing.assert_array_equal(first[k], again[k])


def test_seed_and_num_samples_are_used(tmp_path):
    small = Mnist1dTask(Mnist1dSettings(seed=1, num_samples=500))
    other = Mnist1dTask(Mnist1dSettings(seed=2, num_samples=500))
    a, b = load(small.prepare_data(tmp_path)), load(other.prepare_data(tmp_path))
    assert a["x_train"].shape == (400, 40) and a["x_test"].shape == (100, 40)
    assert small.data_filename() != other.data_filename()
    assert not np.array_equal(a["x_train"], b["x_train"])


def test_existing_file_is_reused(tmp_path, monkeypatch):
    task = Mnist1dTask(Mnist1dSettings(num_samples=200))
    path = task.prepare_data(tmp_path)
    mtime = path.stat().st_mtime_ns

    def fail():
        raise AssertionError("regenerated although the file exists")

    monkeypatch.setattr(task, "build_arrays", fail)
    assert task.prepare_data(tmp_path) == path
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left behind


def test_global_random_state_is_restored(tmp_path):
    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.random())
    random.seed(5)
    np.random.seed(5)
    Mnist1dTask(Mnist1dSettings(num_samples=100)).prepare_data(tmp_path)
    assert (random.random(), np.random.random()) == expected


def test_never_downloads(tmp_path, monkeypatch):
    import mnist1d.data

    def no_download(*args, **kwargs):
        raise AssertionError("get_dataset downloads; the task must call make_dataset")

    monkeypatch.setattr(mnist1d.data, "get_dataset", no_download)
    monkeypatch.chdir(tmp_path)
    Mnist1dTask(Mnist1dSettings(num_samples=100)).prepare_data(tmp_path / "data")
    assert not list(tmp_path.glob("*.pkl"))


def test_settings_validation():
    with pytest.raises(ValueError, match="num_samples"):
        Mnist1dSettings(num_samples=10)


def test_importing_the_plugin_is_cheap():
    code = (
        "import sys, neuromosaic_task_mnist1d\n"
        "print(','.join(m for m in ('numpy', 'mnist1d', 'torch', 'matplotlib') if m in sys.modules))\n"
        "neuromosaic_task_mnist1d.factory(None)\n"  # building the task must not load the data either
        "print(','.join(m for m in ('mnist1d', 'torch', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["", ""]
