"""Hill climbing: a random warm-up, then one-dimension mutations of the best vectors so far."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from neuromosaic_core.interfaces import SearchStrategy
from neuromosaic_core.model import (
    AnyDimension,
    ArchitectureVector,
    CategoricalDimension,
    IntDimension,
    RealDimension,
    Scalar,
    SearchSpace,
    TrialResult,
)

#: Standard deviation of a real (or log-int) step, as a fraction of the dimension's range.
STEP_FRACTION = 0.1
#: Probability that an int mutation resamples the dimension instead of stepping by one.
RESAMPLE_PROBABILITY = 0.2


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
    - No suggestion repeats a pending suggestion or an evaluated vector: after ``max_retries``
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
        self._pending: Counter[str] = Counter()  # a Counter: duplicates exist once the space is exhausted
        self._evaluated: set[str] = set()
        self._failed: set[str] = set()
        self._scores: dict[str, tuple[float, ArchitectureVector]] = {}  # in order of first success
        self._seen = 0  # suggestions made plus results told for vectors that were not pending
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
        """The candidate parents: the ``top_k`` best successful vectors, best first, with scores."""
        ranked = sorted(self._scores.values(), key=lambda item: item[0], reverse=self.maximize)  # stable: ties keep age order
        return [(vector, score) for score, vector in ranked[: self.top_k]]

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
        """``parent`` with one active dimension changed, or None if no active dimension can change."""
        values: dict[str, Scalar] = dict(parent.values)
        mutable = [d for d in self.space.active_dimensions(values) if _can_change(d)]
        if not mutable:
            return None
        dim = self._rng.choice(mutable)
        values[dim.name] = self._change(dim, values[dim.name])
        # Dimensions the change switches on hold their canonical default in the parent: sample them.
        was_active = {d.name for d in self.space.active_dimensions(parent.values)}
        active: dict[str, Scalar] = {}
        for d in self.space.dimensions:
            if all(p in active and active[p] in allowed for p, allowed in d.active_if.items()):
                if d.name not in was_active:
                    values[d.name] = d.sample(self._rng)
                active[d.name] = values[d.name]
        return self.space.canonicalize(values)

    def _change(self, dim: AnyDimension, current: Scalar) -> Scalar:
        """A value of ``dim`` different from ``current`` (``_can_change(dim)`` holds)."""
        rng = self._rng
        if isinstance(dim, CategoricalDimension):
            return rng.choice([c for c in dim.choices if not _same(c, current)])
        if isinstance(dim, IntDimension):
            cur = int(current) if isinstance(current, (int, float)) else dim.low
            for _ in range(self.max_retries):
                if rng.random() < RESAMPLE_PROBABILITY:
                    new = dim.sample(rng)
                elif dim.log and dim.low > 0:
                    step = rng.gauss(0.0, STEP_FRACTION * (math.log(dim.high) - math.log(dim.low)))
                    new = int(round(math.exp(math.log(max(cur, dim.low)) + step)))
                    if new == cur:
                        new = cur + (1 if step >= 0 else -1)
                else:
                    new = cur + rng.choice((-1, 1))
                new = min(dim.high, max(dim.low, new))
                if new != cur:
                    return new
            return dim.low if cur != dim.low else dim.high
        assert isinstance(dim, RealDimension)
        cur_f = float(current) if isinstance(current, (int, float)) else float(dim.low)
        log = dim.log and dim.low > 0
        low, high = (math.log(dim.low), math.log(dim.high)) if log else (float(dim.low), float(dim.high))
        here = math.log(min(max(cur_f, dim.low), dim.high)) if log else min(max(cur_f, low), high)
        for _ in range(self.max_retries):
            new = _reflect(here + rng.gauss(0.0, STEP_FRACTION * (high - low)), low, high)
            value = min(max(math.exp(new) if log else new, dim.low), dim.high)
            if value != cur_f:
                return value
        return float(dim.low) if cur_f != dim.low else float(dim.high)

    # -- tell -------------------------------------------------------------------------------

    def update_with_results(self, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        for vector, result in results:
            canonical = self._canonical(vector)
            key = canonical.key() if canonical is not None else vector.key()
            if self._pending.get(key, 0) > 0:
                self._pending[key] -= 1
                if self._pending[key] == 0:
                    del self._pending[key]
            else:
                self._seen += 1  # a replayed or foreign result counts towards the warm-up
            self._evaluated.add(key)
            if not result.ok:
                self._failed.add(key)
                self._scores.pop(key, None)
                continue
            score = _score(result.metrics.get(self.metric))
            if canonical is None or score is None or key in self._failed:
                continue
            previous = self._scores.get(key)
            if previous is None or _better(score, previous[0], self.maximize):
                self._scores[key] = (score, canonical)

    def _canonical(self, vector: ArchitectureVector) -> ArchitectureVector | None:
        """``vector`` canonicalised, or None when it is not a point of the space (a foreign vector)."""
        try:
            canonical = self.space.canonicalize(vector)
        except (KeyError, TypeError, ValueError):
            return None
        return canonical if self.space.contains(canonical) else None


def _same(a: Any, b: Any) -> bool:
    return a == b and type(a) is type(b)


def _can_change(dim: AnyDimension) -> bool:
    if isinstance(dim, CategoricalDimension):
        return len(dim.choices) > 1
    return dim.high > dim.low


def _reflect(x: float, low: float, high: float) -> float:
    """Fold ``x`` back into ``[low, high]`` (a step past an edge bounces off it)."""
    if high <= low:
        return low
    span = high - low
    x = (x - low) % (2 * span)
    return low + (x if x <= span else 2 * span - x)


def _score(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b
