"""Successive halving, asynchronous: ASHA (Li et al. 2018) and Hyperband over ASHA brackets
(Li et al. 2017, asynchronous as Ray Tune's and Optuna's HyperbandPruner).

A bracket is a list of rungs, milestones in epochs (30 epochs, eta 3: 3, 10, 30). A trial records
a value at each rung its training reached: its best validation score up to that rung
(``best_at``, what early stopping keeps) and, with ``objectives``, the metrics named there. When a
trial reaches rung k it trains on at once to rung k+1 if it is among the top ``n_k // eta`` of the
``n_k`` trials recorded at rung k, and pauses otherwise; a paused trial is promoted later when
enough worse trials arrive at its rung to lift it into that top.

Everything follows from the results observed: a trial is at rung k when its fidelity is at least
rung k and below rung k+1, and promoted from rung k when its fidelity reached rung k+1. The only
other state is the trials told to train on (continued or promoted) whose next result has not come
back, so a resume rebuilds the scheduler by observing the stored results again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from neuromosaic_core.interfaces import Decision, TrialScheduler
from neuromosaic_core.model import TrialResult

#: The fractional part of the golden ratio: ``number * PHI mod 1`` spreads consecutive trial
#: numbers evenly over [0, 1) (a Weyl sequence), which places trials in Hyperband's brackets.
PHI = (math.sqrt(5.0) - 1.0) / 2.0


def rungs(top: int, min_epochs: int, eta: int) -> list[int]:
    """The milestones of successive halving, ascending: ``top / eta**k`` rounded half up, those of
    at least ``min_epochs`` epochs (``top`` itself always): ``rungs(30, 3, 3) == [3, 10, 30]``."""
    if top < 1 or eta < 2:
        raise ValueError(f"rungs need top >= 1 and eta >= 2, got top={top}, eta={eta}")
    found = {top}
    k = 1
    while (rung := math.floor(top / eta**k + 0.5)) >= max(min_epochs, 1):
        found.add(rung)
        k += 1
    return sorted(found)


class SuccessiveHalving(TrialScheduler):
    """Asynchronous successive halving over one or more brackets (lists of rungs); each trial
    belongs to one bracket (:meth:`bracket_of`) and is ranked only among that bracket's trials.

    ``top``: the highest rung (``max_epochs`` unless capped lower: a trial reaching a lower cap
    stops there). ``objectives``: ``(metric, maximize)`` pairs, with ``maximize`` None to take the
    direction from the name; with any, a rung ranks by non-dominated sorting over (the curve's
    score, each objective), ties within a front broken by crowding distance (NSGA-II's order)."""

    name = "successive halving"

    def __init__(self, max_epochs: int, metric: str = "val_accuracy", maximize: bool = True, *, min_epochs: int = 1,
                 reduction_factor: int = 3, top: int | None = None,
                 objectives: Sequence[tuple[str, bool | None]] = ()) -> None:
        super().__init__(max_epochs, metric, maximize)
        if reduction_factor < 2:
            raise ValueError(f"reduction_factor must be at least 2, got {reduction_factor}")
        if min_epochs < 1:
            raise ValueError(f"min_epochs must be at least 1, got {min_epochs}")
        top = max_epochs if top is None else top
        if not 1 <= top <= max_epochs:
            raise ValueError(f"the top rung must be between 1 and max_epochs={max_epochs}, got {top}")
        self.eta = reduction_factor
        self.min_epochs = min_epochs
        self.top = top
        self.rungs = rungs(top, min_epochs, reduction_factor)
        if objectives:
            from neuromosaic_core.analysis import is_maximized

            objectives = [(name, is_maximized(name) if up is None else up) for name, up in objectives]
        self.objectives: list[tuple[str, bool]] = list(objectives)  # type: ignore[arg-type]
        self.brackets: list[list[int]] = [self.rungs]
        #: number -> (fidelity, latest result at it)
        self._results: dict[int, tuple[int, TrialResult]] = {}
        #: number -> the epochs it was told to train to (continued or promoted), until that comes back
        self._launched: dict[int, int] = {}
        #: (bracket, rung index) -> the trials in that rung's top, best first; dropped when a result changes
        self._rankings: dict[tuple[int, int], list[int]] = {}
        self._fitness_class: Any = None

    # -- which bracket -------------------------------------------------------------------------

    def bracket_of(self, number: int) -> int:
        """The bracket of trial ``number``: a function of the number alone, so a resume agrees."""
        return 0

    # -- the interface -------------------------------------------------------------------------

    def first_budget(self, number: int) -> int:
        return self.brackets[self.bracket_of(number)][0]

    def observe(self, number: int, result: TrialResult) -> None:
        if not result.ok:  # a trial that crashed is not ranked (the orchestrator tells only successes)
            known = self._results.pop(number, None)
            if known is not None:
                self._forget_rankings(number, known[0])
            self._launched.pop(number, None)
            return
        fidelity = self._fidelity(result)
        known = self._results.get(number)
        if known is None or fidelity >= known[0]:  # the same result again, or the trial trained on
            if known is None or known[1] != result:
                self._forget_rankings(number, fidelity)
            self._results[number] = (fidelity, result)
        target = self._launched.get(number)
        if target is not None and fidelity >= target:
            del self._launched[number]

    def decide(self, number: int, result: TrialResult) -> Decision:
        fidelity = self._fidelity(result)
        if self._results.get(number, (None, None))[1] != result:
            self.observe(number, result)
        bracket = self.brackets[self.bracket_of(number)]
        if fidelity >= bracket[-1]:  # the top rung, capped below training.epochs: done
            return Decision("stop")
        reached = [i for i, rung in enumerate(bracket) if rung <= fidelity]
        if not reached:  # stopped short of its first rung (not by this scheduler): go on to it
            return self._launch(number, bracket[0])
        index = reached[-1]
        if number in self._top_of(self.bracket_of(number), index):
            return self._launch(number, bracket[index + 1])
        return Decision("pause")

    def promote(self) -> tuple[int, int] | None:
        for b in self._promotion_order():
            bracket = self.brackets[b]
            for index in range(len(bracket) - 2, -1, -1):  # the highest rung first
                for number in self._top_of(b, index):
                    if self._results[number][0] < bracket[index + 1] and number not in self._launched:
                        self._launched[number] = bracket[index + 1]
                        return number, bracket[index + 1]
        return None

    def describe(self) -> str:
        return f"{self.name}: rungs at {', '.join(map(str, self.rungs))} epochs, top 1/{self.eta} promoted{self._ranked_by()}"

    # -- ranking -------------------------------------------------------------------------------

    def _promotion_order(self) -> Sequence[int]:
        return range(len(self.brackets))

    def _launch(self, number: int, budget: int) -> Decision:
        self._launched[number] = budget
        return Decision("continue", budget)

    def _fidelity(self, result: TrialResult) -> int:
        """Epochs the result reached; a result whose training ran to its end counts as full."""
        if not result.pruned or result.fidelity is None:
            return self.max_epochs
        return min(result.fidelity, self.max_epochs)

    def _score(self, result: TrialResult, rung: int) -> float:
        """The value a trial is ranked by at ``rung``: its best score up to there (NaN: worst)."""
        if result.curve:
            value = self.best_at(result.curve, rung)
        else:  # no curve (an older result): its reported metric
            value = float(result.metrics.get(self.metric, math.nan))
        return value if value == value else (-math.inf if self.maximize else math.inf)

    def _forget_rankings(self, number: int, fidelity: int) -> None:
        """A result of trial ``number`` up to ``fidelity`` changed: the rankings of its bracket's
        rungs up to there are stale (the others do not hold it)."""
        bracket = self.bracket_of(number)
        for index, rung in enumerate(self.brackets[bracket]):
            if rung <= fidelity:
                self._rankings.pop((bracket, index), None)

    def _top_of(self, bracket: int, index: int) -> list[int]:
        """The trials of ``bracket`` within the top ``n // eta`` of the ``n`` recorded at its rung
        ``index``, best first."""
        key = (bracket, index)
        if key not in self._rankings:
            rung = self.brackets[bracket][index]
            members = [(n, r) for n, (f, r) in sorted(self._results.items()) if f >= rung and self.bracket_of(n) == bracket]
            size = len(members) // self.eta
            if size == 0:
                self._rankings[key] = []
            elif self.objectives:
                self._rankings[key] = self._pareto_ranking(members, rung, size)
            else:
                sign = -1.0 if self.maximize else 1.0
                self._rankings[key] = [n for _, n in sorted((sign * self._score(r, rung), n) for n, r in members)[:size]]
        return self._rankings[key]

    def _pareto_ranking(self, members: list[tuple[int, TrialResult]], rung: int, size: int) -> list[int]:
        """The best ``size`` by non-dominated fronts over (score at ``rung``, objectives...), best
        front first, each front by crowding distance (largest first: the spread-out trade-offs),
        then number: NSGA-II's selection (``deap.tools.selNSGA2``), with DEAP's O(N log N) sort."""
        from deap import base
        from deap.tools import sortLogNondominated
        from deap.tools.emo import assignCrowdingDist

        directions = [self.maximize, *(up for _, up in self.objectives)]
        if self._fitness_class is None:
            self._fitness_class = type("RungFitness", (base.Fitness,), {"weights": tuple(1.0 if up else -1.0 for up in directions)})
        rows = [[self._score(r, rung), *(float(r.metrics.get(name, math.nan)) for name, _ in self.objectives)] for _, r in members]
        for column, up in enumerate(directions):  # a missing or infinite value: a little worse than the worst seen
            finite = [row[column] for row in rows if math.isfinite(row[column])]
            worst = (min(finite) - 1.0 if up else max(finite) + 1.0) if finite else 0.0
            for row in rows:
                if not math.isfinite(row[column]):
                    row[column] = worst

        class Entry:
            __slots__ = ("fitness", "number")

            def __init__(self, number: int, fitness: Any) -> None:
                self.number, self.fitness = number, fitness

        entries = [Entry(n, self._fitness_class(tuple(row))) for (n, _), row in zip(members, rows, strict=True)]
        order: list[int] = []
        for front in sortLogNondominated(entries, size):
            assignCrowdingDist(front)
            order += [e.number for e in sorted(front, key=lambda e: (-e.fitness.crowding_dist, e.number))]
        return order[:size]

    def _ranked_by(self) -> str:
        if not self.objectives:
            return ""
        return " by " + ", ".join([self.metric] + [f"{name}:{'max' if up else 'min'}" for name, up in self.objectives])


class AshaScheduler(SuccessiveHalving):
    """ASHA: one bracket whose first rung is the lowest (every trial starts at ``min_epochs``-ish)."""

    name = "asha"


class HyperbandScheduler(SuccessiveHalving):
    """Asynchronous Hyperband: bracket ``b`` holds the ASHA rungs from the ``b``-th up (30 epochs,
    eta 3: [3, 10, 30], [10, 30], [30]), so later brackets judge trials later and the last trains
    every trial in full. Trials are spread over the brackets in proportion to the trials
    synchronous Hyperband gives each (``ceil(B / (s + 1) * eta**s)`` for a bracket of ``s``
    halvings out of ``B``: 9, 5 and 3 above, about the same epochs per bracket), by a fixed
    sequence of the trial number. Each bracket ranks only its own trials; ``promote`` asks the
    brackets in order, the most aggressive first."""

    name = "hyperband"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        base = self.rungs
        self.brackets = [base[b:] for b in range(len(base))]
        count = len(base)
        self.weights = [math.ceil(count / (count - b) * self.eta ** (count - 1 - b)) for b in range(count)]
        total = sum(self.weights)
        self._bounds = [sum(self.weights[: b + 1]) / total for b in range(count)]

    def bracket_of(self, number: int) -> int:
        u = (number * PHI) % 1.0
        for b, bound in enumerate(self._bounds):
            if u < bound:
                return b
        return len(self._bounds) - 1

    def describe(self) -> str:
        brackets = " | ".join(",".join(map(str, b)) for b in self.brackets)
        share = ":".join(map(str, self.weights))
        return f"hyperband: brackets of rungs {brackets} epochs (trials {share}), top 1/{self.eta} promoted{self._ranked_by()}"
