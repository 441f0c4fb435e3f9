"""Early stopping at fixed milestones: the base of the ``median`` and ``curve`` schedulers, and
the median stopping rule (Golovin et al. 2017, Google Vizier; Optuna's ``MedianPruner``)."""

from __future__ import annotations

import statistics

from neuromosaic_core.interfaces import Decision, TrialScheduler
from neuromosaic_core.model import TrialResult


class MilestoneScheduler(TrialScheduler):
    """Milestones at ``grace_epochs``, then every ``interval`` epochs, and ``max_epochs``: a trial
    is judged at each (:meth:`judge`) and either stopped there for good or trained on to the next.
    Never pauses, so never promotes.

    State: each trial's latest successful result (the highest fidelity observed), nothing else,
    so a resume that observes the stored results rebuilds it exactly."""

    name = "milestones"

    def __init__(self, max_epochs: int, metric: str = "val_accuracy", maximize: bool = True, *, grace_epochs: int = 5,
                 interval: int = 5) -> None:
        super().__init__(max_epochs, metric, maximize)
        if grace_epochs < 1 or interval < 1:
            raise ValueError(f"grace_epochs and interval must be at least 1, got {grace_epochs} and {interval}")
        self.grace_epochs, self.interval = grace_epochs, interval
        #: number -> (fidelity, its latest result)
        self.results: dict[int, tuple[int, TrialResult]] = {}

    def first_budget(self, number: int) -> int:
        return min(self.grace_epochs, self.max_epochs)

    def next_milestone(self, fidelity: int) -> int:
        """The first milestone above ``fidelity`` (``max_epochs`` at most)."""
        if fidelity < self.grace_epochs:
            return min(self.grace_epochs, self.max_epochs)
        steps = (fidelity - self.grace_epochs) // self.interval + 1
        return min(self.grace_epochs + steps * self.interval, self.max_epochs)

    def milestones(self) -> list[int]:
        found, at = [], 0
        while at < self.max_epochs:
            at = self.next_milestone(at)
            found.append(at)
        return found

    def observe(self, number: int, result: TrialResult) -> None:
        if not result.ok:  # a crashed trial is no reference (the orchestrator tells only successes)
            self.results.pop(number, None)
            return
        fidelity = self.fidelity(result)
        known = self.results.get(number)
        if known is None or fidelity >= known[0]:
            self.results[number] = (fidelity, result)

    def decide(self, number: int, result: TrialResult) -> Decision:
        self.observe(number, result)
        fidelity = self.fidelity(result)
        if fidelity >= self.max_epochs:  # not asked by the orchestrator; nothing left to train
            return Decision("stop")
        if fidelity >= self.grace_epochs and self.judge(number, result, fidelity):
            return Decision("stop")
        return Decision("continue", self.next_milestone(fidelity))

    def judge(self, number: int, result: TrialResult, epochs: int) -> bool:
        """Whether trial ``number``, at ``epochs`` epochs with ``result``, stops there."""
        raise NotImplementedError

    def fidelity(self, result: TrialResult) -> int:
        """Epochs the result reached; a result whose training ran to its end counts as full."""
        if not result.pruned or result.fidelity is None:
            return self.max_epochs
        return min(result.fidelity, self.max_epochs)

    def describe_milestones(self) -> str:
        """``5, 10, 15, 20, 25 of 30``: where trials are judged, out of full fidelity."""
        stones = [m for m in self.milestones() if m < self.max_epochs]
        shown = stones if len(stones) <= 6 else [*stones[:4], "...", stones[-1]]
        return f"{', '.join(map(str, shown)) or 'no milestone'} of {self.max_epochs}"


class MedianScheduler(MilestoneScheduler):
    """At each milestone of ``e`` epochs a trial stops when its best score so far
    (``best_at(curve, e)``) is worse than the median of the same value of every other trial whose
    curve reaches ``e`` epochs — once at least ``min_trials`` such trials exist; else it trains on
    to the next milestone."""

    name = "median"

    def __init__(self, max_epochs: int, metric: str = "val_accuracy", maximize: bool = True, *, grace_epochs: int = 5,
                 interval: int = 5, min_trials: int = 5) -> None:
        super().__init__(max_epochs, metric, maximize, grace_epochs=grace_epochs, interval=interval)
        if min_trials < 1:
            raise ValueError(f"min_trials must be at least 1, got {min_trials}")
        self.min_trials = min_trials

    def judge(self, number: int, result: TrialResult, epochs: int) -> bool:
        others = [self.best_at(r.curve, epochs) for n, (_, r) in self.results.items() if n != number and len(r.curve) >= epochs]
        if len(others) < self.min_trials:
            return False
        return self.better(statistics.median(others), self.best_at(result.curve, epochs))

    def describe(self) -> str:
        return (f"median: stops a trial worse than the median at {self.describe_milestones()} epochs "
                f"(once {self.min_trials} others reached the milestone)")
