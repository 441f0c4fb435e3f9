from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from neuromosaic_task_digits import DigitsSettings, factory
from neuromosaic_task_digits.task import DigitsTask

from neuromosaic_core.interfaces import Task
from neuromosaic_core.plugins import PluginSystem

KEYS = ("x_train", "y_train", "x_test", "y_test")


def load(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_registered_through_the_plugin_system(tmp_path):
    import neuromosaic_task_digits

    system = PluginSystem.load([("digits", neuromosaic_task_digits)], entry_points=False)
    component = system.get("task", "digits")
    assert component.settings is DigitsSettings
    task = component.factory(component.default_settings())
    assert isinstance(task, Task)
    assert (task.name, task.input_shape, task.num_classes) == ("digits", (64,), 10)
    assert "val_accuracy" in task.metrics


def test_npz_shapes_dtypes_and_ranges(tmp_path):
    path = factory(DigitsSettings()).prepare_data(tmp_path)
    assert path.suffix == ".npz" and path.parent == tmp_path
    data = load(path)
    assert sorted(data) == sorted(KEYS)
    assert data["x_train"].shape == (1437, 64) and data["x_test"].shape == (360, 64)
    assert data["y_train"].shape == (1437,) and data["y_test"].shape == (360,)
    assert data["x_train"].dtype == np.float32 and data["x_test"].dtype == np.float32
    assert data["y_train"].dtype == np.int64 and data["y_test"].dtype == np.int64
    for k in ("x_train", "x_test"):
        assert data[k].min() >= 0.0 and data[k].max() <= 1.0
    assert data["x_train"].max() == 1.0
    for k in ("y_train", "y_test"):
        assert set(np.unique(data[k])) == set(range(10))


def test_split_is_stratified(tmp_path):
    data = load(DigitsTask(DigitsSettings(test_fraction=0.25)).prepare_data(tmp_path))
    train = np.bincount(data["y_train"], minlength=10) / len(data["y_train"])
    test = np.bincount(data["y_test"], minlength=10) / len(data["y_test"])
    assert np.abs(train - test).max() < 0.02


def test_same_settings_give_identical_arrays(tmp_path):
    a = load(DigitsTask(DigitsSettings(seed=3)).prepare_data(tmp_path / "a"))
    b = load(DigitsTask(DigitsSettings(seed=3)).prepare_data(tmp_path / "b"))
    for k in KEYS:
        np.testing.assert_array_equal(a[k], b[k])


def test_different_seed_gives_a_different_split_and_file(tmp_path):
    p0 = DigitsTask(DigitsSettings(seed=0)).prepare_data(tmp_path)
    p1 = DigitsTask(DigitsSettings(seed=1)).prepare_data(tmp_path)
    assert p0 != p1
    assert not np.array_equal(load(p0)["y_test"], load(p1)["y_test"])


def test_existing_file_is_reused(tmp_path, monkeypatch):
    task = DigitsTask(DigitsSettings())
    path = task.prepare_data(tmp_path)
    mtime = path.stat().st_mtime_ns

    def fail():
        raise AssertionError("regenerated although the file exists")

    monkeypatch.setattr(task, "build_arrays", fail)
    assert DigitsTask(DigitsSettings()).data_filename() == path.name
    assert task.prepare_data(tmp_path) == path
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left behind


def test_settings_validation():
    with pytest.raises(ValueError, match="test_fraction"):
        DigitsSettings(test_fraction=1.0)


def test_importing_the_plugin_is_cheap():
    code = (
        "import sys, neuromosaic_task_digits\n"
        "print(','.join(m for m in ('numpy', 'sklearn', 'torch', 'matplotlib') if m in sys.modules))\n"
        "neuromosaic_task_digits.factory(None)\n"  # building the task must not load the data either
        "neuromosaic_task_digits.images_factory(None)\n"
        "print(','.join(m for m in ('sklearn', 'torch', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["", ""]


# -- digits_images: the same data as (1, 8, 8) images -------------------------------------------


def test_digits_images_registered_next_to_digits():
    import neuromosaic_task_digits

    system = PluginSystem.load([("digits", neuromosaic_task_digits)], entry_points=False)
    images = system.get("task", "digits_images")
    assert images.settings is DigitsSettings
    task = images.factory(images.default_settings())
    assert (task.name, task.input_shape, task.num_classes) == ("digits_images", (1, 8, 8), 10)
    flat = system.get("task", "digits").factory(None)
    assert task.data_filename() != flat.data_filename()  # its own cached file, never the flat one


def test_digits_images_are_the_digits_reshaped(tmp_path):
    from neuromosaic_task_digits.task import DigitsImagesTask

    settings = DigitsSettings(seed=2)
    images = load(DigitsImagesTask(settings).prepare_data(tmp_path))
    flat = load(DigitsTask(settings).prepare_data(tmp_path))
    assert images["x_train"].shape == (1437, 1, 8, 8) and images["x_test"].shape == (360, 1, 8, 8)
    assert images["x_train"].dtype == np.float32
    for k in KEYS:  # the same split, the same pixels, row-major as load_digits().images
        np.testing.assert_array_equal(images[k].reshape(len(images[k]), -1) if k.startswith("x") else images[k], flat[k])
    from sklearn.datasets import load_digits

    digits = load_digits()
    first = images["x_train"][0, 0]
    matches = [i for i in range(len(digits.images)) if np.allclose(digits.images[i] / 16.0, first)]
    assert matches, "an image must be the 8x8 picture itself, not a scrambled reshape"


def test_digits_images_never_share_reuse_keys_with_digits():
    import neuromosaic_task_digits

    from neuromosaic_core.model import ArchitectureSpec, Layer, TrainingSettings, reuse_key, stable_hash

    system = PluginSystem.load([("digits", neuromosaic_task_digits)], entry_points=False)
    keys = set()
    for name in ("digits", "digits_images"):
        task = system.get("task", name).factory(None)
        task_key = f"{task.name}:{stable_hash({'test_fraction': 0.2, 'seed': 0})}"  # as the orchestrator builds it
        keys.add(reuse_key(ArchitectureSpec("mlp", [Layer("flatten"), Layer("linear", {"out_features": 8})]), task_key, TrainingSettings()))
    assert len(keys) == 2


def test_flat_families_on_images_fail_with_a_clear_shape_error():
    """mlp_conv1d's specs (linear, conv1d) do not fit (1, 8, 8): the constraint check says why, before any code."""
    from neuromosaic_core.constraints import Constraints, ConstraintValidator
    from neuromosaic_core.model import ArchitectureSpec, Layer

    validator = ConstraintValidator(Constraints(), (1, 8, 8), 10)
    mlp = validator.validate_constraints(ArchitectureSpec("mlp", [Layer("linear", {"out_features": 32}), Layer("activation", {"fn": "relu"})]))
    conv = validator.validate_constraints(ArchitectureSpec("conv1d", [Layer("conv1d", {"out_channels": 8, "kernel_size": 3, "stride": 1})]))
    assert "linear expects a flat input" in mlp.message()
    assert "use conv2d for images" in conv.message()
