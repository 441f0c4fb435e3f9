"""Contract tests for :class:`~neuromosaic_core.trackers.Tracker` plugins.

Subclass :class:`TrackerContract` in a class whose name starts with ``Test`` and implement
:meth:`~TrackerContract.make_tracker` and :meth:`~TrackerContract.read_back`::

    from neuromosaic_core.testing import TrackerContract

    class TestMyTracker(TrackerContract):
        def make_tracker(self, tmp_path):
            return MyTracker(MySettings(store=str(tmp_path / "store")))

        def read_back(self, tmp_path, experiment):
            ...  # read the store with the service's own client: {trial number: {metric: value}}

The suite drives the tracker directly, on the test's thread, with the records the core's
:class:`~neuromosaic_core.trackers.TrackerHub` makes: a completed trial with a learning curve, a
failed one, an invalid one (no spec, no code), a trial recorded at a milestone and again at full
fidelity, and a resumed experiment. It needs pytest only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuromosaic_core.model import ArchitectureSpec, Layer
from neuromosaic_core.trackers import TrackedExperiment, TrackedSummary, TrackedTrial, Tracker

SPEC = ArchitectureSpec("mlp", (Layer("linear", {"out_features": 16}), Layer("relu")))
CODE = "import torch.nn as nn\n\n\nclass Net(nn.Module):\n    pass\n"


def experiment(run_dir: Path, name: str = "contract-exp") -> TrackedExperiment:
    """The experiment record the suite starts each tracker with."""
    return TrackedExperiment(name, "digits", run_dir, {"search": {"metric": "val_accuracy", "direction": "maximize"}},
                             "val_accuracy", "maximize")


def completed(number: int, accuracy: float, *, fidelity: int | None = None, pruned: bool = False,
              curve: tuple[float, ...] = (0.2, 0.4, 0.5), weights: str | None = None) -> TrackedTrial:
    """A completed trial record with ``val_accuracy`` ``accuracy`` and a learning curve."""
    return TrackedTrial(number, "completed", {"width": 16 * number, "activation": "relu"}, SPEC,
                        {"val_accuracy": accuracy, "test_accuracy": accuracy - 0.01, "params": 1234.0},
                        curve, fidelity, pruned, None, CODE, weights)


class TrackerContract:
    """The tracker contract as tests. Subclass it (in a ``Test*`` class) and implement
    :meth:`make_tracker` and :meth:`read_back`."""

    def make_tracker(self, tmp_path: Path) -> Tracker:
        """A fresh tracker recording under ``tmp_path`` (called again for a resumed experiment:
        the same store)."""
        raise NotImplementedError("subclasses of TrackerContract implement make_tracker(tmp_path)")

    def read_back(self, tmp_path: Path, experiment: str) -> dict[int, dict[str, float]]:
        """What the store holds for ``experiment``, read with the service's own reader: the final
        value of each metric per trial number."""
        raise NotImplementedError("subclasses of TrackerContract implement read_back(tmp_path, experiment)")

    # -- helpers --------------------------------------------------------------------------------

    def _run(self, tmp_path: Path, trials: list[TrackedTrial], name: str = "contract-exp",
             end: TrackedSummary | None = None) -> None:
        tracker = self.make_tracker(tmp_path)
        try:
            tracker.experiment_started(experiment(tmp_path / "run", name))
            for trial in trials:
                tracker.trial_finished(trial)
            if end is not None:
                tracker.experiment_finished(end)
        finally:
            tracker.close()

    # -- the contract ---------------------------------------------------------------------------

    def test_every_trial_is_recorded_with_its_metrics(self, tmp_path: Path) -> None:
        weights = tmp_path / "run" / "weights" / "trial-0001.pt"
        weights.parent.mkdir(parents=True)
        weights.write_bytes(b"weights")
        trials = [completed(1, 0.8, weights=str(weights)),
                  TrackedTrial(2, "failed", {"width": 32, "activation": "gelu"}, SPEC, error="runtime_error: boom", code=CODE),
                  TrackedTrial(3, "invalid", {"width": 4096, "activation": "relu"}, None, error="constraint: too many parameters")]
        summary = {"stopped": "completed", "metric": "val_accuracy", "trials": {"completed": 1, "failed": 1, "invalid": 1},
                   "best": {"trial_id": 1, "val_accuracy": 0.8, "weights": "weights/trial-0001.pt"}}
        self._run(tmp_path, trials, end=TrackedSummary(summary, 1, weights))
        stored = self.read_back(tmp_path, "contract-exp")
        assert sorted(stored) == [1, 2, 3]
        assert abs(stored[1]["val_accuracy"] - 0.8) < 1e-6
        assert "val_accuracy" not in stored[2] and "val_accuracy" not in stored[3]

    def test_a_milestone_and_the_full_result_of_one_trial_are_one_trial(self, tmp_path: Path) -> None:
        self._run(tmp_path, [completed(1, 0.4, fidelity=1, pruned=True, curve=(0.4,)),
                             completed(1, 0.7, fidelity=3, curve=(0.4, 0.6, 0.7))])
        stored = self.read_back(tmp_path, "contract-exp")
        assert list(stored) == [1]
        assert abs(stored[1]["val_accuracy"] - 0.7) < 1e-6

    def test_a_resumed_experiment_is_recorded_in_the_same_place(self, tmp_path: Path) -> None:
        self._run(tmp_path, [completed(1, 0.5), completed(2, 0.6)])  # interrupted: no experiment_finished
        self._run(tmp_path, [completed(3, 0.7)], end=TrackedSummary({"stopped": "completed", "best": {"trial_id": 3}}, 3))
        assert sorted(self.read_back(tmp_path, "contract-exp")) == [1, 2, 3]

    def test_experiments_are_kept_apart(self, tmp_path: Path) -> None:
        self._run(tmp_path, [completed(1, 0.5)], name="first")
        self._run(tmp_path, [completed(1, 0.9), completed(2, 0.3)], name="second")
        assert list(self.read_back(tmp_path, "first")) == [1]
        assert abs(self.read_back(tmp_path, "second")[1]["val_accuracy"] - 0.9) < 1e-6

    def test_close_without_a_start_does_not_raise(self, tmp_path: Path) -> None:
        tracker: Any = self.make_tracker(tmp_path)
        tracker.close()
