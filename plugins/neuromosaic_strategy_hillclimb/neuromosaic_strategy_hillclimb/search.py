"""Hill climbing: a random warm-up, then one-dimension mutations of the best vectors so far."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from neuromosaic_core import mutation
from neuromosaic_core.interfaces import SearchStrategy, rng_state, set_rng_state
from neuromosaic_core.model import (
    ArchitectureVector,
    SearchSpace,
    TrialResult,
)


class HillClimbSearch(SearchStrategy):
    """Local search around the best architectures found so far.

    - The first ``warmup`` suggestions are uniform random samples (results replayed from a resumed
      experiment count towards the warm-up, so a resume does not start over).
    - Afterwards each suggestion mutates one parent drawn from the ``top_k`` best evaluated vectors
      (by ``result.metrics[metric]``, maximised when ``maximize``): one *active* dimension changes
      (categorical: another choice; int: a step of one or a resample; real: a gaussian step, in log
      space for ``log`` dimensions), dimensions the change activates are sampled, and the result
      is canonicalised. With no usable parent yet (everything failed) it samples at random.
    - A vector whose result failed is remembered and never becomes a parent, even if it reported
      metrics, and even if it is evaluated again later.
    - Multi-fidelity: a result a trial scheduler stopped or paused early (``result.pruned``) ranks
      below every full result, and below pruned ones of a higher fidelity, whatever its value
      (:meth:`SearchStrategy.fidelity_rank`), so the climb never moves to a neighbour on the
      strength of a few epochs while full results exist. A vector told again at a higher fidelity
      (a promoted trial) takes its later result instead of the earlier one.
    - No suggestion repeats a pending vector (suggested or marked pending) or an evaluated one: after ``max_retries``
      mutations it samples at random instead, and after ``max_retries`` samples it accepts a
      vector already evaluated (or, when the space is exhausted, a pending one), so a tiny space
      never loops forever.
    - Everything random comes from a ``random.Random(seed)`` owned by the strategy, so a seed and a
      history give the same suggestions every time.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        metric: str = "val_accuracy",
        maximize: bool = True,
        warmup: int = 8,
        top_k: int = 3,
        max_retries: int = 100,
    ) -> None:
        super().__init__(space, seed=seed, metric=metric, maximize=maximize)
        for name, value, minimum in (("warmup", warmup, 0), ("top_k", top_k, 1), ("max_retries", max_retries, 1)):
            if value < minimum:
                raise ValueError(f"expected {name} >= {minimum}, got {value}")
        self.warmup = warmup
        self.top_k = top_k
        self.max_retries = max_retries
        self._rng = random.Random(seed)  # noqa: S311 - reproducible sampling, not cryptography
        self._failed: set[str] = set()
        #: key -> (fidelity rank, score, vector), in order of first success
        self._scores: dict[str, tuple[tuple[int, int], float, ArchitectureVector]] = {}
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
        """Whether the next suggestion is still a random warm-up sample."""
        return self._seen < self.warmup

    def parents(self) -> list[tuple[ArchitectureVector, float]]:
        """The candidate parents: the ``top_k`` best successful vectors, best first (full results
        before pruned ones), with scores."""
        sign = 1.0 if self.maximize else -1.0
        # stable: ties keep age order
        ranked = sorted(self._scores.values(), key=lambda item: (item[0], sign * item[1]), reverse=True)
        return [(vector, score) for _, score, vector in ranked[: self.top_k]]

    def best(self) -> tuple[ArchitectureVector, float] | None:
        """The best successful vector so far and its score."""
        parents = self.parents()
        return parents[0] if parents else None

    # -- ask --------------------------------------------------------------------------------

    def suggest_architectures(self, n: int) -> list[ArchitectureVector]:
        if n < 0:
            raise ValueError(f"expected n >= 0, got {n}")
        suggestions = []
        for _ in range(n):
            parents = [] if self.warming_up else [vector for vector, _ in self.parents()]
            vector, parent = self._propose(parents)
            key = vector.key()
            self._pending[key] += 1
            self._seen += 1
            self.lineage[key] = parent.key() if parent is not None else None
            suggestions.append(vector)
        return suggestions

    def _propose(self, parents: list[ArchitectureVector]) -> tuple[ArchitectureVector, ArchitectureVector | None]:
        first: tuple[ArchitectureVector, ArchitectureVector | None] | None = None
        not_pending: tuple[ArchitectureVector, ArchitectureVector | None] | None = None
        for mutate in (True, False) if parents else (False,):
            for _ in range(self.max_retries):
                parent = self._rng.choice(parents) if mutate else None
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

    def _mutate(self, parent: ArchitectureVector) -> ArchitectureVector | None:
        return mutation.mutate(self.space, parent, self._rng, self.max_retries)

    # -- snapshots --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a suggestion depends on (``lineage``, kept for inspection, is left out)."""
        return {
            "rng": rng_state(self._rng),
            "pending": dict(self._pending),
            "evaluated": sorted(self._evaluated),
            "failed": sorted(self._failed),
            "scores": [[key, score, dict(vector.values), list(rank)] for key, (rank, score, vector) in self._scores.items()],
            "seen": self._seen,
            "partial": sorted(self._partial),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self._rng, state["rng"])
        self._pending = Counter(state["pending"])
        self._evaluated = set(state["evaluated"])
        self._failed = set(state["failed"])
        self._scores = {}
        for key, score, values, *rank in state["scores"]:  # no rank in snapshots of 0.2: full results
            fidelity_rank = (int(rank[0][0]), int(rank[0][1])) if rank else (1, 0)
            self._scores[key] = (fidelity_rank, score, ArchitectureVector(values))
        self._seen = state["seen"]
        self._partial = set(state.get("partial", ()))

    # -- tell -------------------------------------------------------------------------------

    def update_with_results(self, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        for vector, result in results:
            canonical = self.space.member(vector)
            key = canonical.key() if canonical is not None else vector.key()
            # A replayed or foreign result counts towards the warm-up; a re-tell does not.
            retell = self._tell(key, result)
            if not result.ok:
                self._failed.add(key)
                self._scores.pop(key, None)
                continue
            score = _score(result.metrics.get(self.metric))
            if canonical is None or score is None or key in self._failed:
                continue
            rank = self.fidelity_rank(result)
            previous = self._scores.get(key)
            # A re-tell supersedes the earlier result; a vector evaluated twice keeps its better
            # result, a full one before a pruned one.
            sign = 1.0 if self.maximize else -1.0
            if previous is None or retell or (rank, sign * score) > (previous[0], sign * previous[1]):
                self._scores[key] = (rank, score, canonical)


def _score(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
