"""Evolution: regularized (aging) evolution for one objective, NSGA-II for several.

- ``aging`` (Real et al. 2019, "Regularized Evolution for Image Classifier Architecture Search"):
  a population of the last ``population`` successful individuals, in arrival order. A child is
  one mutation of the best of ``sample_size`` members drawn at random; the oldest member leaves
  when a new one arrives and the population is full.
- ``nsga2`` (Deb et al. 2002): every successful individual is kept; parents are the ``population``
  best by non-dominated sorting and crowding distance (``deap.tools.selNSGA2``), and a child is one
  mutation of the winner of a binary crowded tournament.

With a trial scheduler (multi-fidelity), a result a scheduler stopped or paused early
(``result.pruned``) is ranked below every full one, and pruned ones by fidelity: only within one
such rank do objective values compete (:meth:`SearchStrategy.fidelity_rank`).
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from deap import base, tools
from loguru import logger

from neuromosaic_core.interfaces import SearchStrategy, rng_state, set_rng_state
from neuromosaic_core.model import (
    ArchitectureVector,
    SearchSpace,
    TrialResult,
)
from neuromosaic_core.mutation import mutate
from neuromosaic_strategy_evolution.objectives import Objective, check_settings


@attrs.frozen
class Individual:
    """One successful evaluation: the vector, all its metrics, its objective values (in the order
    of the objectives, not negated), its age (the how-many-th success it was) and how far its
    value can be trusted (:meth:`SearchStrategy.fidelity_rank`: ``(1, 0)`` full, ``(0, epochs)``
    stopped early by a trial scheduler)."""

    vector: ArchitectureVector
    key: str
    metrics: Mapping[str, float]
    fitness: tuple[float, ...]
    age: int
    rank: tuple[int, int] = (1, 0)

    @property
    def pruned(self) -> bool:
        return self.rank[0] == 0


class _Candidate:
    """What ``deap.tools.selNSGA2`` selects from: an object with a DEAP ``fitness``."""

    __slots__ = ("fitness", "individual")

    def __init__(self, individual: Individual, fitness: base.Fitness) -> None:
        self.individual = individual
        self.fitness = fitness


class EvolutionSearch(SearchStrategy):
    """Aging evolution (one objective) or NSGA-II (several objectives) over a search space.

    - The first ``population`` suggestions are uniform random samples (results replayed from a
      resumed experiment count towards them, and rebuild the population, so a resume continues).
    - ``aging``: the population holds the last ``population`` successful results in arrival
      order. Each child mutates the best (by the objective) of ``sample_size`` members drawn at
      random. The objective is ``objectives`` (one entry) or else ``metric``, maximised when
      ``maximize``.
    - ``nsga2``: all successful results are kept; each batch selects ``population`` parents by
      non-dominated rank and crowding distance (``deap.tools.selNSGA2``); each child mutates the
      winner of a binary tournament (lower rank, then larger crowding distance).
    - A mutation changes exactly one active dimension of the parent (categorical: another choice;
      int: a step of one, or a resample; real: a gaussian step, in log space for ``log``
      dimensions); dimensions the change switches on are sampled, then the vector is
      canonicalised.
    - Failed results, results without a finite value of every objective and vectors outside the
      space never join the population.
    - Multi-fidelity: a result stopped or paused early by a trial scheduler (``result.pruned``)
      ranks below every full result, and below pruned ones of higher fidelity, whatever its value:
      the aging tournament picks the best by (rank, objective); NSGA-II selects among the full
      results first and fills up with pruned ones, highest fidelity first, and its tournament
      compares the rank first. When a promoted trial's vector is told again at a higher fidelity,
      the later result replaces the earlier one (in the population too, as its newest member)
      instead of adding a second individual.
    - No suggestion repeats a pending vector (suggested or marked pending) or an evaluated one: after ``max_retries``
      children it samples at random, after ``max_retries`` samples it accepts an evaluated vector
      and, when the space is exhausted, a pending one, so a tiny space never loops forever.
    - All randomness comes from a ``random.Random(seed)`` of its own (DEAP's NSGA-II selection
      and sorting draw no random numbers; the tournament is done here).
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        metric: str = "val_accuracy",
        maximize: bool = True,
        mode: str = "aging",
        population: int = 20,
        sample_size: int = 5,
        objectives: str = "",
        max_retries: int = 100,
    ) -> None:
        super().__init__(space, seed=seed, metric=metric, maximize=maximize)
        parsed = check_settings(mode, population, sample_size, objectives, max_retries)
        self.mode = mode
        self.population_size = population
        self.sample_size = sample_size
        self.max_retries = max_retries
        #: (metric, maximise) pairs, in the order of :attr:`Individual.fitness`.
        self.objectives: tuple[Objective, ...] = parsed or ((metric, maximize),)
        weights = tuple(1.0 if up else -1.0 for _, up in self.objectives)
        self._fitness_class: type[base.Fitness] = type("ObjectiveFitness", (base.Fitness,), {"weights": weights})
        self._rng = random.Random(seed)  # noqa: S311 - reproducible sampling, not cryptography
        self._archive: dict[str, Individual] = {}  # every success, latest per vector, in arrival order
        self._aging: deque[Individual] = deque()  # aging mode: the population, oldest first
        self._arrivals = 0
        self._warned: set[str] = set()  # objectives already reported missing from a successful result
        #: For each suggestion (by key), the key of the parent it was mutated from, or None when it
        #: was sampled at random. For inspection and tests.
        self.lineage: dict[str, str | None] = {}

    # -- inspection -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """How many suggestions have not been told yet."""
        return sum(self._pending.values())

    @property
    def evaluated(self) -> int:
        """How many distinct vectors have been told."""
        return len(self._evaluated)

    @property
    def warming_up(self) -> bool:
        """Whether the next suggestion is still one of the initial random samples."""
        return self._seen < self.population_size

    def population(self) -> list[Individual]:
        """The individuals children are bred from: aging mode, the population oldest first;
        nsga2 mode, the ``population`` parents NSGA-II selects from everything evaluated."""
        if self.mode == "aging":
            return list(self._aging)
        return [candidate.individual for candidate, _, _ in self._nsga2_parents()]

    def best(self) -> tuple[ArchitectureVector, float] | None:
        """The best successful vector so far by the (first) objective, with its value: a full
        result before any pruned one (see the class docstring)."""
        if not self._archive:
            return None
        top = max(self._archive.values(), key=self._standing)  # first wins ties
        return top.vector, top.fitness[0]

    def pareto_front(self) -> list[tuple[ArchitectureVector, dict[str, float]]]:
        """The non-dominated successful vectors (by all objectives) with their metrics, oldest
        first; among the full results when there are any (else those of the highest fidelity)."""
        candidates = self._candidates()
        if not candidates:
            return []
        top = max(c.individual.rank for c in candidates)
        candidates = [c for c in candidates if c.individual.rank == top]
        (front,) = tools.sortNondominated(candidates, len(candidates), first_front_only=True)
        members = {id(c) for c in front}
        return [(c.individual.vector, dict(c.individual.metrics)) for c in candidates if id(c) in members]

    # -- ask --------------------------------------------------------------------------------

    def suggest_architectures(self, n: int) -> list[ArchitectureVector]:
        if n < 0:
            raise ValueError(f"expected n >= 0, got {n}")
        pick = self._parent_picker() if n else None
        suggestions = []
        for _ in range(n):
            vector, parent = self._propose(None if self.warming_up else pick)
            key = vector.key()
            self._pending[key] += 1
            self._seen += 1
            self.lineage[key] = parent.key() if parent is not None else None
            suggestions.append(vector)
        return suggestions

    def _standing(self, ind: Individual) -> tuple[tuple[int, int], float]:
        """What ranks individuals by the first objective: fidelity first, then the value."""
        return ind.rank, ind.fitness[0] if self.objectives[0][1] else -ind.fitness[0]

    def _parent_picker(self) -> Callable[[], Individual] | None:
        """A function drawing one parent for this batch, or None with nothing to breed from."""
        if self.mode == "aging":
            members = list(self._aging)
            if not members:
                return None

            def tournament() -> Individual:
                sample = self._rng.sample(members, min(self.sample_size, len(members)))
                return max(sample, key=self._standing)  # first drawn wins ties

            return tournament
        parents = self._nsga2_parents()
        if not parents:
            return None

        def crowded_tournament() -> Individual:
            if len(parents) == 1:
                return parents[0][0].individual
            a, b = self._rng.sample(parents, 2)
            # Lower rank (fidelity group, then non-dominated front) wins, then larger crowding
            # distance; a full tie is a coin flip.
            key_a, key_b = (a[1], -a[2]), (b[1], -b[2])
            if key_a == key_b:
                return self._rng.choice((a, b))[0].individual
            return (a if key_a < key_b else b)[0].individual

        return crowded_tournament

    def _candidates(self) -> list[_Candidate]:
        return [_Candidate(ind, self._fitness_class(ind.fitness)) for ind in self._archive.values()]

    def _nsga2_parents(self) -> list[tuple[_Candidate, tuple[int, int], float]]:
        """NSGA-II survivors: (candidate, (fidelity group, front rank), crowding distance), best
        first. The groups are selected in turn, full results first, then pruned ones by fidelity,
        highest first, until ``population`` are chosen: a pruned result never displaces a full one."""
        groups: dict[tuple[int, int], list[_Candidate]] = {}
        for candidate in self._candidates():
            groups.setdefault(candidate.individual.rank, []).append(candidate)
        parents: list[tuple[_Candidate, tuple[int, int], float]] = []
        for group, fidelity in enumerate(sorted(groups, reverse=True)):
            room = self.population_size - len(parents)
            if room <= 0:
                break
            candidates = groups[fidelity]
            # selNSGA2 sorts into fronts, assigns crowding distances and truncates the last front
            # by them; none of it draws random numbers, so the global random state is not involved.
            chosen = tools.selNSGA2(candidates, min(room, len(candidates)))
            fronts = tools.sortNondominated(chosen, len(chosen))
            rank = {id(c): r for r, front in enumerate(fronts) for c in front}
            parents += [(c, (group, rank[id(c)]), c.fitness.crowding_dist) for c in chosen]
        return parents

    def _propose(self, pick: Callable[[], Individual] | None) -> tuple[ArchitectureVector, ArchitectureVector | None]:
        first: tuple[ArchitectureVector, ArchitectureVector | None] | None = None
        not_pending: tuple[ArchitectureVector, ArchitectureVector | None] | None = None
        for breed in (True, False) if pick is not None else (False,):
            for _ in range(self.max_retries):
                parent = pick().vector if breed and pick is not None else None
                vector = self._mutate(parent) if parent is not None else None
                if vector is None:  # nothing to mutate in this parent: sample instead
                    parent = None
                    vector = self.space.canonicalize(self.space.sample(self._rng))
                key = vector.key()
                if first is None:
                    first = (vector, parent)
                if key in self._pending:
                    continue
                if key not in self._evaluated:
                    return vector, parent
                if not_pending is None:
                    not_pending = (vector, parent)
        chosen = not_pending if not_pending is not None else first
        assert chosen is not None  # max_retries >= 1
        return chosen

    # -- mutation ---------------------------------------------------------------------------

    def _mutate(self, parent: ArchitectureVector) -> ArchitectureVector | None:
        return mutate(self.space, parent, self._rng, self.max_retries)

    # -- snapshots --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a suggestion depends on (``lineage``, kept for inspection, is left out)."""
        return {
            "rng": rng_state(self._rng),
            "pending": dict(self._pending),
            "evaluated": sorted(self._evaluated),
            "archive": [_individual_state(ind) for ind in self._archive.values()],
            "aging": [_individual_state(ind) for ind in self._aging],
            "arrivals": self._arrivals,
            "seen": self._seen,
            "partial": sorted(self._partial),
            "warned": sorted(self._warned),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self._rng, state["rng"])
        self._pending = Counter(state["pending"])
        self._evaluated = set(state["evaluated"])
        archive = [_individual(data) for data in state["archive"]]
        self._archive = {ind.key: ind for ind in archive}
        self._aging = deque(_individual(data) for data in state["aging"])
        self._arrivals, self._seen, self._warned = state["arrivals"], state["seen"], set(state["warned"])
        self._partial = set(state.get("partial", ()))  # absent from snapshots of 0.2

    # -- tell -------------------------------------------------------------------------------

    def update_with_results(self, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        for vector, result in results:
            canonical = self.space.member(vector)
            key = canonical.key() if canonical is not None else vector.key()
            # A replayed or foreign result counts towards the random start; a re-tell does not.
            retell = self._tell(key, result)
            if canonical is None or not result.ok:
                continue
            fitness = self._fitness(result.metrics)
            if fitness is None:
                self._warn_missing(result.metrics)
                continue
            individual = Individual(canonical, key, dict(result.metrics), fitness, self._arrivals, self.fidelity_rank(result))
            self._arrivals += 1
            self._archive.pop(key, None)  # re-evaluated: the latest result counts, as the newest
            self._archive[key] = individual
            if self.mode == "aging":
                if retell:  # the same trial at a higher fidelity: it replaces its earlier entry
                    self._aging = deque(ind for ind in self._aging if ind.key != key)
                self._aging.append(individual)
                while len(self._aging) > self.population_size:
                    self._aging.popleft()  # the oldest leaves, however good it is

    def _fitness(self, metrics: Mapping[str, Any]) -> tuple[float, ...] | None:
        values = [_finite(metrics.get(name)) for name, _ in self.objectives]
        return None if None in values else tuple(values)  # type: ignore[arg-type]

    def _warn_missing(self, metrics: Mapping[str, Any]) -> None:
        """Say once per objective that successful results lack it (a typo leaves the search random)."""
        for name, _ in self.objectives:
            if name not in self._warned and _finite(metrics.get(name)) is None:
                self._warned.add(name)
                logger.warning(
                    f"evolution strategy: a successful result has no finite {name!r} (objectives: "
                    f"{', '.join(n for n, _ in self.objectives)}; reported: {', '.join(sorted(metrics)) or 'nothing'}); "
                    "such results never join the population"
                )


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _individual_state(ind: Individual) -> dict[str, Any]:
    return {"vector": dict(ind.vector.values), "key": ind.key, "metrics": dict(ind.metrics),
            "fitness": list(ind.fitness), "age": ind.age, "rank": list(ind.rank)}


def _individual(data: dict[str, Any]) -> Individual:
    rank = tuple(data.get("rank", (1, 0)))  # absent from snapshots of 0.2: full results
    return Individual(ArchitectureVector(data["vector"]), data["key"], data["metrics"], tuple(data["fitness"]), data["age"],
                      (int(rank[0]), int(rank[1])))
