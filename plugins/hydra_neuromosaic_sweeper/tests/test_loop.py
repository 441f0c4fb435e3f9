"""The sweep loop in process, with a fake launcher and the core's in-memory database: what a job's
failure, a return value that is not a number, and a run of failures do (no plugins needed)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.neuromosaic_sweeper._impl import NeuromosaicSweeperImpl, SweeperError
from hydra_plugins.neuromosaic_sweeper._space import parse_sweep
from omegaconf import OmegaConf

from neuromosaic_core.interfaces import SearchStrategy
from neuromosaic_core.model import ArchitectureVector, ErrorClass, TrialResult, TrialStatus
from neuromosaic_core.testing.memory import InMemoryResultsDB


class Sampler(SearchStrategy):
    """Uniform samples; remembers what it was told."""

    def __init__(self, space: Any) -> None:
        super().__init__(space, metric="objective", maximize=False)
        self.rng = random.Random(0)
        self.told: list[tuple[ArchitectureVector, TrialResult]] = []

    def suggest_architectures(self, n: int) -> list[ArchitectureVector]:
        return [self.space.sample(self.rng) for _ in range(n)]

    def update_with_results(self, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        self.told.extend(results)


class Launcher:
    """Runs ``app`` on each job's overrides (``key=value`` parsed as int) in process."""

    def __init__(self, app: Callable[[dict[str, int]], Any]) -> None:
        self.app, self.jobs = app, 0

    def launch(self, batch: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        returns = []
        for overrides in batch:
            self.jobs += 1
            values = {k: int(v) for k, v in (o.split("=") for o in overrides)}
            try:
                returns.append(JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=self.app(values)))
            except Exception as exc:
                returns.append(JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=exc))
        return returns


def _sweeper(tmp_path: Path, app: Callable[[dict[str, int]], Any], **settings: Any) -> NeuromosaicSweeperImpl:
    sweeper = NeuromosaicSweeperImpl(experiment="loop", **settings)
    sweeper.config = OmegaConf.create({"hydra": {"job": {"name": "app"}, "sweep": {"dir": str(tmp_path)}}})
    sweeper.sweep_dir = tmp_path
    sweeper.launcher = Launcher(app)  # type: ignore[assignment]
    return sweeper


def app(values: dict[str, int]) -> Any:
    x = values["x"]
    if x == 0:
        raise RuntimeError("x must not be 0")
    if x == 1:
        return "not a number"
    return float(x)


def test_failed_jobs_are_stored_and_told_and_the_best_is_a_completed_one(tmp_path: Path) -> None:
    sweep = parse_sweep(["x=range(0,6)"])
    db, strategy = InMemoryResultsDB(), Sampler(sweep.space)
    sweeper = _sweeper(tmp_path, app, n_trials=12, max_failures=12)
    sweeper._run(db, "memory://", sweep, strategy, None)
    trials = db.list_trials("loop")
    assert len(trials) == 12 and sweeper.launcher.jobs == 12  # type: ignore[attr-defined]
    assert {0, 1, 2} <= {t.vector["x"] for t in trials}  # a raising job, a non-number and a number all occurred
    for t in trials:
        x = t.vector["x"]
        if x == 0:
            assert t.status == TrialStatus.FAILED and t.result.error.error_class == ErrorClass.RUNTIME
            assert t.result.error.message == "RuntimeError: x must not be 0"
        elif x == 1:
            assert t.status == TrialStatus.FAILED and "must be a number, got 'not a number'" in t.result.error.message
        else:
            assert t.status == TrialStatus.COMPLETED and t.result.metrics == {"objective": float(x)}
    assert [v.key() for v, _ in strategy.told] == [t.vector.key() for t in trials]
    found = OmegaConf.load(tmp_path / "optimization_results.yaml")
    completed = [t for t in trials if t.status == TrialStatus.COMPLETED]
    assert found.best_value == min(t.result.metrics["objective"] for t in completed) >= 2
    assert (found.completed, found.failed) == (len(completed), 12 - len(completed))


def test_a_run_of_failed_jobs_stops_the_sweep_naming_the_last_error(tmp_path: Path) -> None:
    sweep = parse_sweep(["x=range(0,6)"])
    db = InMemoryResultsDB()
    sweeper = _sweeper(tmp_path, lambda values: 1 / 0, n_trials=10, max_failures=3)
    with pytest.raises(SweeperError, match=r"^stopping: 3 jobs in a row failed \(hydra.sweeper.max_failures=3\); "
                                           r"the last: ZeroDivisionError: division by zero$"):
        sweeper._run(db, "memory://", sweep, Sampler(sweep.space), None)
    assert [t.status for t in db.list_trials("loop")] == [TrialStatus.FAILED] * 3
