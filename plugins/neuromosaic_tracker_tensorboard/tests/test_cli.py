"""``neuromosaic trackers=[tensorboard]`` as a user runs it: a subprocess, the installed plugins,
real training of two architectures on the digits, the event files read back with TensorBoard's
own reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuromosaic_core.testing.plugins import run_neuromosaic

pytest.importorskip("tensorboard")


@pytest.mark.e2e
def test_a_search_with_trackers_tensorboard_writes_a_run_per_trial(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    proc = run_neuromosaic(
        tmp_path, "task=digits", "search.trials=2", "training.epochs=1", "training.patience=1", "runner.workers=1",
        "visualizers=[]", f"storage.url=sqlite:///{tmp_path}/nm.db", f"hydra.run.dir={tmp_path}/run",
        "trackers=[tensorboard]", f"tracker.tensorboard.log_dir={tmp_path}/tb",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "tracker tensorboard: 2 trial record(s)" in proc.stderr + proc.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    root = tmp_path / "tb" / summary["experiment"]
    assert sorted(p.name for p in root.glob("trial-*")) == ["trial-0001", "trial-0002"]
    best = EventAccumulator(str(root / f"trial-{summary['best']['trial_id']:04d}"))
    best.Reload()
    assert best.Scalars("val_accuracy")[-1].value == pytest.approx(summary["best"]["val_accuracy"], abs=1e-6)
    assert [e.step for e in best.Scalars("learning_curve")] == [1]
    content = best.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    info = metadata.parse_session_start_info_plugin_data(content)
    assert info.hparams["spec_family"].string_value == summary["best"]["spec"]["family"]
    assert not (tmp_path / "run" / "tensorboard").exists()  # it went where the setting said
