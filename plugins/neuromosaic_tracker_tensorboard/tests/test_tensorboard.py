"""The tensorboard tracker, its event files read back with TensorBoard's own reader
(``EventAccumulator``) and its hparams with the HParams plugin's own parser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from neuromosaic_tracker_tensorboard import TensorBoardSettings
from neuromosaic_tracker_tensorboard.tracker import TensorBoardTracker

from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing import TrackerContract
from neuromosaic_core.testing.tracker import SPEC, completed, experiment
from neuromosaic_core.trackers import TrackedSummary, TrackedTrial

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import metadata  # noqa: E402


def read(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return accumulator


def scalars(accumulator: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, round(event.value, 4)) for event in accumulator.Scalars(tag)]


def hparams(accumulator: EventAccumulator) -> dict[str, object]:
    content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    info = metadata.parse_session_start_info_plugin_data(content)
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


class TestTensorBoardTrackerMeetsTheContract(TrackerContract):
    def make_tracker(self, tmp_path):
        return TensorBoardTracker(TensorBoardSettings(log_dir=str(tmp_path / "tb")))

    def read_back(self, tmp_path, experiment):
        stored = {}
        for folder in sorted((tmp_path / "tb" / experiment).glob("trial-*")):
            accumulator = read(folder)
            stored[int(folder.name.split("-")[1])] = {tag: accumulator.Scalars(tag)[-1].value
                                                      for tag in accumulator.Tags()["scalars"]}
        return stored


def test_importing_the_plugin_does_not_import_tensorboard():
    code = "import sys, neuromosaic_tracker_tensorboard; print('tensorboard' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    info = PluginSystem.load().plugins["tensorboard"]
    assert info.error is None and info.components == {"tracker": ["tensorboard"]}


def test_each_trial_is_a_run_with_its_hparams_metrics_and_learning_curve(tmp_path):
    tracker = TensorBoardTracker(TensorBoardSettings())
    tracker.experiment_started(experiment(tmp_path / "run", "exp"))
    tracker.trial_finished(completed(1, 0.6, curve=(0.3, 0.5, 0.6)))
    tracker.trial_finished(TrackedTrial(2, "failed", {"width": 64, "activation": "gelu"}, SPEC, error="timeout"))
    tracker.experiment_finished(TrackedSummary({"stopped": "completed"}, 1))
    tracker.close()

    root = tmp_path / "run" / "tensorboard"  # the default: inside the run directory
    one = read(root / "trial-0001")
    assert hparams(one) == {"width": 16, "activation": "relu", "spec": "mlp: fc16 relu", "spec_family": "mlp"}
    assert scalars(one, "learning_curve") == [(1, 0.3), (2, 0.5), (3, 0.6)]
    assert scalars(one, "val_accuracy") == [(3, 0.6)] and scalars(one, "params") == [(3, 1234.0)]
    two = read(root / "trial-0002")
    assert hparams(two)["width"] == 64 and two.Tags()["scalars"] == []

    experiment_data = read(root).PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG]
    declared = metadata.parse_experiment_plugin_data(experiment_data)
    assert sorted(h.name for h in declared.hparam_infos) == ["activation", "spec", "spec_family", "width"]
    assert sorted(m.name.tag for m in declared.metric_infos) == ["learning_curve", "params", "test_accuracy", "val_accuracy"]


def test_a_trial_trained_on_after_a_resume_continues_its_curve(tmp_path):
    settings = TensorBoardSettings(log_dir=str(tmp_path / "tb"))
    first = TensorBoardTracker(settings)
    first.experiment_started(experiment(tmp_path / "run", "exp"))
    first.trial_finished(completed(1, 0.4, fidelity=1, pruned=True, curve=(0.4,)))
    first.close()  # interrupted
    resumed = TensorBoardTracker(settings)
    resumed.experiment_started(experiment(tmp_path / "run", "exp"))
    resumed.trial_finished(completed(1, 0.7, fidelity=3, curve=(0.4, 0.6, 0.7)))
    resumed.close()
    one = read(tmp_path / "tb" / "exp" / "trial-0001")
    assert scalars(one, "learning_curve") == [(1, 0.4), (2, 0.6), (3, 0.7)]  # no epoch twice
    assert scalars(one, "val_accuracy") == [(1, 0.4), (3, 0.7)]
    assert len(one.PluginTagToContent(metadata.PLUGIN_NAME)) == 1  # hparams once
