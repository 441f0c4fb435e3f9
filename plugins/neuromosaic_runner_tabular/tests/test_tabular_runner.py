"""Tests of the tabular runner and the nasbench201 task, against the real NAS-Bench-201 table
(``../shared/benchmarks/nasbench201_cifar10.json`` beside the repository)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path

import neuromosaic_runner_tabular as plugin
import pytest
from neuromosaic_runner_tabular.runner import OPS, TabularRunner, cell_key, load_table
from neuromosaic_runner_tabular.task import NasBench201Task

from neuromosaic_core.errors import ConfigError
from neuromosaic_core.interfaces import TrialJob
from neuromosaic_core.model import ArchitectureSpec, ErrorClass, Layer, TrainingSettings
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import structure_settings

#: The repository root: tests/ -> the plugin -> plugins/ -> the root.
ROOT = Path(__file__).resolve().parents[3]
TABLE = (ROOT / ".." / "shared" / "benchmarks" / "nasbench201_cifar10.json").resolve()
EDGES = [(i, j) for i in range(1, 4) for j in range(i)]


@pytest.fixture(scope="module")
def table_path() -> Path:
    if not TABLE.is_file():
        reason = f"the NAS-Bench-201 table is not at {TABLE} (expected ../shared/benchmarks beside the repository)"
        print(reason)
        pytest.skip(reason)
    return TABLE


@pytest.fixture(scope="module")
def table(table_path: Path) -> dict:
    return json.loads(table_path.read_text())


def cell(*ops: str) -> ArchitectureSpec:
    return ArchitectureSpec("nasbench201", [Layer("cell_edge", {"to": i, "from": j, "op": op})
                                            for (i, j), op in zip(EDGES, ops, strict=True)])


def job(tmp_path: Path, spec: ArchitectureSpec | None) -> TrialJob:
    return TrialJob(trial_id=1, experiment="t", code_path="", data_path=str(tmp_path / "d.txt"),
                    result_path=str(tmp_path / "result.json"), input_shape=(3, 32, 32), num_classes=10,
                    training=TrainingSettings(), spec=spec)


def run(runner: TabularRunner, j: TrialJob):
    return asyncio.run(runner.run_trial(j))


def test_cell_key_is_the_benchmark_spelling():
    spec = cell("nor_conv_3x3", "skip_connect", "avg_pool_3x3", "none", "nor_conv_1x1", "skip_connect")
    assert cell_key(spec) == "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    reordered = ArchitectureSpec(spec.family, list(reversed(spec.layers)))
    assert cell_key(reordered) == cell_key(spec)


def test_results_match_the_table(tmp_path, table_path, table):
    runner = TabularRunner(plugin.TabularSettings(table=str(table_path)))
    assert runner.needs_code is False and runner.workers == 1
    rng = random.Random(0)
    specs = [cell(*(rng.choice(OPS) for _ in EDGES)) for _ in range(200)]
    specs.append(cell("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "nor_conv_3x3"))
    for spec in specs:
        entry = table[cell_key(spec)]
        result = run(runner, job(tmp_path, spec))
        assert result.ok, result.error
        assert result.metrics == {"val_accuracy": entry["val_acc_200"] / 100, "test_accuracy": entry["test_acc_200"] / 100,
                                  "rank": float(entry["rank"])}
        assert 0.0 <= result.metrics["val_accuracy"] <= 1.0 and 0.0 <= result.metrics["test_accuracy"] <= 1.0


def test_the_best_cell_has_rank_1(tmp_path, table_path, table):
    best_key = min(table, key=lambda k: table[k]["rank"])
    ops = [item.split("~")[0] for group in best_key.split("+") for item in group.strip("|").split("|")]
    result = run(TabularRunner(plugin.TabularSettings(table=str(table_path))), job(tmp_path, cell(*ops)))
    assert result.metrics["rank"] == 1.0
    assert result.metrics["test_accuracy"] == pytest.approx(max(e["test_acc_200"] for e in table.values()) / 100)


def test_a_cell_missing_from_the_table_is_a_failed_trial(tmp_path):
    small = tmp_path / "small.json"
    key = cell_key(cell(*["none"] * 6))
    small.write_text(json.dumps({key: {"val_acc_200": 10.0, "test_acc_200": 10.0, "rank": 15625}}))
    runner = TabularRunner(plugin.TabularSettings(table=str(small)))
    assert run(runner, job(tmp_path, cell(*["none"] * 6))).metrics["val_accuracy"] == pytest.approx(0.1)
    result = run(runner, job(tmp_path, cell(*["skip_connect"] * 6)))
    assert not result.ok and result.error.error_class == ErrorClass.RUNTIME
    assert "|skip_connect~0|+" in result.error.message and "is not in the table" in result.error.message


@pytest.mark.parametrize(("spec", "message"), [
    (None, "carries no spec"),
    (ArchitectureSpec("conv1d", [Layer("linear", {"out_features": 4})]), "evaluates 'nasbench201' specs"),
    (ArchitectureSpec("nasbench201", [Layer("cell_edge", {"to": 1, "from": 0, "op": "none"})]), "exactly the 6 edges"),
])
def test_a_spec_that_is_not_a_cell_is_a_failed_trial(tmp_path, spec, message):
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"k": {"val_acc_200": 1.0, "test_acc_200": 1.0, "rank": 1}}))
    result = run(TabularRunner(plugin.TabularSettings(table=str(small))), job(tmp_path, spec))
    assert not result.ok and result.error.error_class == ErrorClass.RUNTIME and message in result.error.message


def test_an_unset_table_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"^runner.table is not set: point it at") as info:
        TabularRunner(plugin.TabularSettings())
    assert "\n" not in str(info.value)


def test_a_missing_table_is_a_one_line_config_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="runner.table='nope.json': no such file") as info:
        TabularRunner(plugin.TabularSettings(table="nope.json"))
    assert str(tmp_path / "nope.json") in str(info.value) and "\n" not in str(info.value)


def test_a_relative_path_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "t.json").write_text(json.dumps({"k": {"val_acc_200": 1.0, "test_acc_200": 1.0, "rank": 1}}))
    monkeypatch.chdir(tmp_path)
    runner = TabularRunner(plugin.TabularSettings(table="t.json"))
    assert runner.path == (tmp_path / "t.json").resolve()


@pytest.mark.parametrize("content", ["not json", "[]", "{}", '{"k": {"val_acc_200": 1}}'])
def test_a_malformed_table_is_a_config_error_on_first_use(tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    runner = TabularRunner(plugin.TabularSettings(table=str(bad)))  # read lazily: construction succeeds
    with pytest.raises(ConfigError, match="runner.table="):
        run(runner, job(tmp_path, cell(*["none"] * 6)))


def test_the_table_is_read_once(tmp_path, monkeypatch):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"k": {"val_acc_200": 1.0, "test_acc_200": 1.0, "rank": 1}}))
    first = load_table(path)
    assert load_table(path) is first
    TabularRunner(plugin.TabularSettings(table=str(path))).table  # noqa: B018 - the property reads it
    assert TabularRunner(plugin.TabularSettings(table=str(path))).table is first


def test_the_task_writes_only_a_marker(tmp_path):
    task = NasBench201Task()
    assert (task.name, task.input_shape, task.num_classes) == ("nasbench201", (3, 32, 32), 10)
    path = task.prepare_data(tmp_path / "data")
    assert path.is_file() and path.stat().st_size < 1024
    assert task.prepare_data(tmp_path / "data") == path


def test_the_plugin_registers_the_runner_and_the_task(tmp_path):
    system = PluginSystem.load([("tabular", plugin)], entry_points=False)
    runner = system.get("runner", "tabular")
    settings = structure_settings({"table": str(tmp_path), "workers": 2}, runner.settings, "runner")
    assert settings == plugin.TabularSettings(workers=2, table=str(tmp_path))
    with pytest.raises(ConfigError, match="unknown key"):
        structure_settings({"tabel": "x"}, runner.settings, "runner")
    task = system.get("task", "nasbench201")
    assert isinstance(task.factory(settings=task.default_settings()), NasBench201Task)


def test_discovering_the_plugin_imports_neither_the_runner_nor_torch():
    code = ("import sys, neuromosaic_runner_tabular\n"
            "print('neuromosaic_runner_tabular.runner' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
