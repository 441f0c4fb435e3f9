"""The search as a user runs it: the ``neuromosaic`` CLI in a subprocess with the tabular runner,
the nasbench201 encoder and task, random search and SQLite storage.

It combines several plugins, so it lives with the core's end-to-end tests (everything installed),
not in the tabular plugin's isolated nox session.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TABLE = (ROOT / ".." / "shared" / "benchmarks" / "nasbench201_cifar10.json").resolve()
EXPERIMENT = "nasbench201-nasbench201-random"


def neuromosaic(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def cell_key(spec: dict) -> str:
    ops = {(layer["params"]["to"], layer["params"]["from"]): layer["params"]["op"] for layer in spec["layers"]}
    return "+".join("|" + "|".join(f"{ops[(i, j)]}~{j}" for j in range(i)) + "|" for i in range(1, 4))


def test_a_tabular_search_end_to_end(tmp_path):
    if not TABLE.is_file():
        reason = f"the NAS-Bench-201 table is not at {TABLE} (expected ../shared/benchmarks beside the repository)"
        print(reason)
        pytest.skip(reason)
    proc = neuromosaic(tmp_path, "runner=tabular", "encoder=nasbench201", "task=nasbench201", f"runner.table={TABLE}",
                       "search.trials=10", "visualizers=[]")
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "runs" / EXPERIMENT
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["experiment"] == EXPERIMENT and summary["task"] == "nasbench201"
    assert summary["trials"] == {"completed": 10, "failed": 0, "invalid": 0, "reused": 0}

    # Independently of the stored metrics: look every stored cell up in the table, take the best by
    # validation accuracy, and check the summary reports exactly its test accuracy.
    table = json.loads(TABLE.read_text())
    with sqlite3.connect(tmp_path / "neuromosaic.db") as db:
        specs = [json.loads(row[0]) for row in db.execute("SELECT spec FROM trials")]
    assert len(specs) == 10
    cells = [cell_key(spec) for spec in specs]
    best_cell = max(cells, key=lambda c: table[c]["val_acc_200"])
    best = summary["best"]
    assert cell_key(best["spec"]) == best_cell
    assert best["test_accuracy"] == table[best_cell]["test_acc_200"] / 100
    assert best["val_accuracy"] == table[best_cell]["val_acc_200"] / 100
    assert not list((run_dir / "code").glob("*.py")), "no code is generated for a lookup runner"

    # Run again: the experiment is complete, nothing is re-evaluated and the same best comes back.
    again = neuromosaic(tmp_path, "runner=tabular", "encoder=nasbench201", "task=nasbench201", f"runner.table={TABLE}",
                        "search.trials=10", "visualizers=[]")
    assert again.returncode == 0, again.stderr
    assert json.loads((run_dir / "summary.json").read_text())["best"]["trial_id"] == best["trial_id"]


def test_an_unset_table_stops_the_cli_with_one_line(tmp_path):
    proc = neuromosaic(tmp_path, "runner=tabular", "encoder=nasbench201", "task=nasbench201", "search.trials=2", "visualizers=[]")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "neuromosaic: error: runner.table is not set: point it at a NAS-Bench-201 table, "
        "e.g. runner.table=/path/to/nasbench201_cifar10.json"]
