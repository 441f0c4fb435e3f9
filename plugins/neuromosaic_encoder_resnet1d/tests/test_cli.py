"""``neuromosaic encoder=resnet1d`` as a user runs it: a subprocess, the installed plugins, SQLite,
real training of the template's code on MNIST-1D (a small sample, two epochs, two trials)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuromosaic_core.testing.plugins import run_neuromosaic


@pytest.mark.e2e
def test_a_resnet1d_search_trains_residual_networks(tmp_path: Path) -> None:
    proc = run_neuromosaic(
        tmp_path, "encoder=resnet1d", "encoder.max_stages=2", "encoder.max_blocks=1", "task=mnist1d", "task.num_samples=500",
        "search.trials=2", "training.epochs=2", "training.patience=1", "visualizers=[]", "runner.workers=1",
        f"storage.url=sqlite:///{tmp_path}/nm.db", f"hydra.run.dir={tmp_path}/run",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["trials"]["completed"] == 2
    best = summary["best"]
    assert best["test_accuracy"] > 0.15  # trained: better than chance (0.1) on 10 classes
    assert best["spec"]["family"] == "resnet1d"
    code = (tmp_path / "run" / "code" / "trial-0001.py").read_text()
    assert "nn.Conv1d" in code and "nn.AdaptiveAvgPool1d" in code and "# add (" in code  # the residual add is in the code
