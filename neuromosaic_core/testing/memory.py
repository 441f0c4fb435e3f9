"""An in-memory ResultsDB: a reference implementation of the contract and a test double."""

from __future__ import annotations

import copy

from neuromosaic_core.errors import StorageError
from neuromosaic_core.interfaces import ResultsDB
from neuromosaic_core.model import Experiment, StrategySnapshot, Trial, TrialStatus


class InMemoryResultsDB(ResultsDB):
    """Keeps copies, so a caller mutating a trial does not change what is stored."""

    schema_version = 1

    def __init__(self) -> None:
        self.experiments: dict[str, Experiment] = {}
        self.trials: dict[int, Trial] = {}
        self.snapshots: dict[str, StrategySnapshot] = {}

    def get_experiment(self, name: str) -> Experiment | None:
        return copy.deepcopy(self.experiments.get(name))

    def create_experiment(self, experiment: Experiment) -> Experiment:
        if experiment.name in self.experiments:
            raise StorageError(f"experiment {experiment.name!r} already exists")
        experiment.id = len(self.experiments) + 1
        self.experiments[experiment.name] = copy.deepcopy(experiment)
        return experiment

    def list_experiments(self) -> list[Experiment]:
        return [copy.deepcopy(e) for e in self.experiments.values()]

    def save_trial(self, trial: Trial) -> Trial:
        if trial.experiment not in self.experiments:
            raise StorageError(f"no experiment {trial.experiment!r}")
        if trial.id is None:
            trial.id = len(self.trials) + 1
        self.trials[trial.id] = copy.deepcopy(trial)
        return trial

    def list_trials(self, experiment: str, status: TrialStatus | None = None) -> list[Trial]:
        return [copy.deepcopy(t) for _, t in sorted(self.trials.items())
                if t.experiment == experiment and (status is None or t.status == status)]

    def find_reusable(self, reuse_key: str, experiment: str | None = None) -> Trial | None:
        twins = [t for _, t in sorted(self.trials.items())
                 if t.reuse_key == reuse_key and t.status == TrialStatus.COMPLETED and experiment in (None, t.experiment)]
        full = [t for t in twins if t.result is None or not t.result.pruned]
        return copy.deepcopy((full or twins)[0]) if twins else None

    def find_cached_code(self, cache_key: str) -> str | None:
        for _, t in sorted(self.trials.items()):
            cg = t.codegen
            if cg is not None and cg.cache_key == cache_key and not cg.fallback and t.code:
                return t.code
        return None

    def save_snapshot(self, experiment: str, snapshot: StrategySnapshot) -> None:
        if experiment not in self.experiments:
            raise StorageError(f"no experiment {experiment!r}")
        self.snapshots[experiment] = copy.deepcopy(snapshot)

    def load_snapshot(self, experiment: str) -> StrategySnapshot | None:
        return copy.deepcopy(self.snapshots.get(experiment))
