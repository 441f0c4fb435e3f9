"""Uniform random search: the baseline every other strategy has to beat."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from neuromosaic_core.interfaces import SearchStrategy, rng_state, set_rng_state
from neuromosaic_core.model import ArchitectureVector, SearchSpace, TrialResult


class RandomSearch(SearchStrategy):
    """Draws each suggestion uniformly per active dimension with a seeded ``random.Random``.

    A draw equal to a pending vector (suggested or marked pending, neither told nor forgotten) is
    rejected, and so, if possible, is one equal to an evaluated vector. After ``max_retries`` draws the first draw that
    is not pending is accepted even if it was evaluated before; if every draw was pending (the
    space is exhausted) the first draw is accepted. So a tiny space never loops forever, and the
    same seed with the same history gives the same suggestions.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        metric: str = "val_accuracy",
        maximize: bool = True,
        max_retries: int = 100,
    ) -> None:
        super().__init__(space, seed=seed, metric=metric, maximize=maximize)
        if max_retries < 1:
            raise ValueError(f"expected max_retries >= 1, got {max_retries}")
        self.max_retries = max_retries
        self._rng = random.Random(seed)  # noqa: S311 - reproducible sampling, not cryptography

    @property
    def pending(self) -> int:
        """How many suggestions have not been told yet."""
        return sum(self._pending.values())

    @property
    def evaluated(self) -> int:
        """How many distinct vectors have been told."""
        return len(self._evaluated)

    def suggest_architectures(self, n: int) -> list[ArchitectureVector]:
        if n < 0:
            raise ValueError(f"expected n >= 0, got {n}")
        suggestions = []
        for _ in range(n):
            vector = self._draw()
            self._pending[vector.key()] += 1
            suggestions.append(vector)
        return suggestions

    def _draw(self) -> ArchitectureVector:
        first: ArchitectureVector | None = None
        not_pending: ArchitectureVector | None = None
        for _ in range(self.max_retries):
            vector = self.space.canonicalize(self.space.sample(self._rng))
            key = vector.key()
            if first is None:
                first = vector
            if key in self._pending:
                continue
            if key not in self._evaluated:
                return vector
            if not_pending is None:
                not_pending = vector
        chosen = not_pending if not_pending is not None else first
        assert chosen is not None  # max_retries >= 1
        return chosen

    def update_with_results(self, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        # Random search ignores the scores; it only tracks what is pending and what is known.
        for vector, _result in results:
            key = self.vector_key(vector)
            self._resolve(key)
            self._evaluated.add(key)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(self._rng), "pending": dict(self._pending),
                "evaluated": sorted(self._evaluated)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self._rng, state["rng"])
        self._pending = Counter(state["pending"])
        self._evaluated = set(state["evaluated"])
