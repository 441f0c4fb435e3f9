"""The harness trains a trial in segments (multi-fidelity): a trial paused at a milestone and
continued from its checkpoint ends exactly where one uninterrupted run ends."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest

from neuromosaic_core.interfaces import TrialJob
from neuromosaic_core.model import TrainingSettings
from neuromosaic_core.testing.hostile import model_code

pytest.importorskip("torch")


@pytest.fixture
def job(tmp_path: Path) -> TrialJob:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 1.5
    y = rng.integers(0, 3, size=300)
    x = (centers[y] + rng.normal(size=(300, 8))).astype(np.float32)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    code = tmp_path / "net.py"
    code.write_text(model_code())
    return TrialJob(trial_id=1, experiment="e", code_path=str(code), data_path=str(data),
                    result_path=str(tmp_path / "result.json"), input_shape=(8,), num_classes=3,
                    training=TrainingSettings(epochs=6, batch_size=32, patience=50))


def test_segments_from_checkpoints_train_exactly_like_one_run(job, tmp_path):
    from neuromosaic_core.harness.training import run_job

    whole = run_job(job)
    assert whole.ok, whole.error
    assert len(whole.curve) == 6 and whole.fidelity == 6

    checkpoint = tmp_path / "trial" / "checkpoint.pt"
    parts = [run_job(attrs.evolve(job, max_epochs=budget, checkpoint_path=str(checkpoint))) for budget in (2, 5, 6)]
    assert [p.fidelity for p in parts] == [2, 5, 6]
    assert [len(p.curve) for p in parts] == [2, 5, 6]
    assert parts[-1].curve == pytest.approx(whole.curve, abs=1e-6)  # the same epochs, the same numbers
    assert parts[-1].metrics["test_accuracy"] == pytest.approx(whole.metrics["test_accuracy"])
    assert parts[-1].metrics["epochs"] == 6
    assert not checkpoint.exists()  # training ran to its end: nothing left to continue


def test_early_stopping_ends_a_segment_at_full_fidelity(job, tmp_path):
    from neuromosaic_core.harness.training import run_job

    stuck = attrs.evolve(job, training=attrs.evolve(job.training, epochs=40, patience=1, learning_rate=1e-9),
                         max_epochs=20, checkpoint_path=str(tmp_path / "c.pt"))
    result = run_job(stuck)
    assert result.ok, result.error
    assert result.metrics["epochs"] < 20  # no progress: early stopping ended training before the milestone
    assert result.fidelity == 40  # so it is a full result, never promoted
    assert not (tmp_path / "c.pt").exists()
