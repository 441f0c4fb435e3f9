"""The one end-to-end test of the plugin: a real search through the command line (collected only
where the plugins it combines with are installed; see conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from neuromosaic_core.testing.plugins import run_neuromosaic


def test_search_on_digits_images(tmp_path: Path):
    """The one end-to-end test: `neuromosaic task=digits_images encoder=resnet2d` trains two real networks."""
    args = ["task=digits_images", "encoder=resnet2d", "encoder.max_stages=2", "encoder.max_blocks=1", "search.trials=2",
            "training.epochs=2", "training.patience=1", "visualizers=[]", "runner.workers=1", "storage.url=sqlite:///results.db",
            "codegen=template"]
    proc = run_neuromosaic(tmp_path, *args, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "runs").glob("digits_images-resnet2d-*"))
    assert len(runs) == 1, list((tmp_path / "runs").iterdir())
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["task"] == "digits_images" and summary["trials"]["completed"] == 2 and summary["trials"]["invalid"] == 0
    assert summary["best"]["test_accuracy"] > 0.2  # trained on real images: better than guessing one of 10 classes
