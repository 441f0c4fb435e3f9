"""``neuromosaic runner=ray`` as a user runs it: a subprocess, the installed plugins, SQLite, real
training on ``digits`` across the two-node cluster. Needs the default strategy, encoder, code
generator, storage and the digits task (``conftest.py`` leaves this module out otherwise)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

FAST = ["task=digits", "training.epochs=2", "training.patience=1", "visualizers=[]"]


def neuromosaic(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=environ,
                          timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr


@pytest.mark.e2e
def test_a_search_runs_across_the_cluster_and_is_stored(tmp_path: Path, cluster) -> None:
    db = tmp_path / "nm.db"
    proc = neuromosaic(tmp_path, "runner=ray", f"runner.address={cluster.address}", "search.trials=3", *FAST,
                       f"storage.url=sqlite:///{db}", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"ray: joined {cluster.address}: 2 CPUs on 2 node(s)" in proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["trials"]["completed"] == 3 and summary["best"]["test_accuracy"] > 0.5
    assert (tmp_path / "run" / summary["best"]["weights"]).is_file()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("select status, metrics from trials").fetchall()
    assert [status for status, _ in rows] == ["completed"] * 3
    for _, metrics_json in rows:
        metrics = json.loads(metrics_json)
        assert metrics["val_accuracy"] > 0 and metrics["wall_seconds"] > 0 and metrics["cpu_seconds"] > 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["runner.address=127.0.0.1:1"], "runner.address='127.0.0.1:1': no Ray cluster answers there"),
     (["runner.address=nowhere"], "runner.address='nowhere': expected host:port"),
     (["runner.num_cpus=-1"], "num_cpus must be at least 0"),
     (["runner.max_retries=often"], "runner.max_retries: expected an integer, got 'often'")],
)
def test_bad_runner_settings_exit_2_with_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    proc = neuromosaic(tmp_path, "runner=ray", *args, *FAST, f"storage.url=sqlite:///{tmp_path}/nm.db")
    assert_one_line_error(proc, expected)
