"""``neuromosaic runner=podman`` as a user runs it: a subprocess, the installed plugins, SQLite, real
training on ``digits`` in real containers. Needs the default strategy, encoder, storage, task and
code generator plugins (``conftest.py`` leaves this module out otherwise) and podman (skipped, with
the reason, without it)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def neuromosaic(cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=environ,
                          timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_a_search_runs_its_trials_in_containers(trial_image, tmp_path, containers):
    name = f"podman-e2e-{uuid.uuid4().hex[:6]}"
    run_dir = tmp_path / "run"
    proc = neuromosaic(tmp_path, "runner=podman", "runner.workers=2", "task=digits", "search.trials=2",
                       "training.epochs=2", "training.patience=1", "visualizers=[]", f"experiment.name={name}",
                       f"storage.url=sqlite:///{tmp_path}/nm.db", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["trials"]["completed"] == 2 and summary["best"]["val_accuracy"] > 0.5
    trial_dirs = sorted((run_dir / "trials").iterdir())
    assert len(trial_dirs) == 2
    for trial_dir in trial_dirs:
        assert trial_dir.stat().st_uid == 65534  # handed to the container's user, nobody
        assert (trial_dir / "result.json").stat().st_uid == 65534  # written inside the container
        assert "trains on cpu" in (trial_dir / "output.log").read_text()
    assert len(list((run_dir / "weights").glob("trial-*.pt"))) == 2
    with sqlite3.connect(tmp_path / "nm.db") as db:
        rows = [json.loads(r[0]) for r in db.execute("select metrics from trials")]
    assert len(rows) == 2
    for metrics in rows:  # measured from outside the container
        assert metrics["cpu_seconds"] > 0 and metrics["peak_memory_mb"] > 0 and metrics["wall_seconds"] > 0
    assert containers(name) == []


def test_a_bad_runner_setting_is_one_line_and_creates_nothing(tmp_path):
    line = one_line_error(neuromosaic(tmp_path, "runner=podman", "runner.memory=lots"))
    assert "runner: memory must be a size such as 512m or 2g, got 'lots'" in line
    assert list(tmp_path.iterdir()) == []


def test_a_missing_image_is_one_line_with_the_command_that_builds_it(trial_image, tmp_path):
    line = one_line_error(neuromosaic(tmp_path, "runner=podman", "runner.image=localhost/neuromosaic-no-such-image:0",
                                      f"storage.url=sqlite:///{tmp_path}/nm.db"))
    assert "image 'localhost/neuromosaic-no-such-image:0' not found" in line
    assert "neuromosaic-podman-image build --rootfs" in line
    assert not (tmp_path / "nm.db").exists()  # stopped before the database was opened
