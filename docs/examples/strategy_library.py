"""Drive a Neuromosaic search strategy as a plain library: no Hydra, no orchestrator.

    python docs/examples/strategy_library.py [strategy-name ...]

A toy space with a conditional dimension; the score is known, so the loop needs no training.
"""

from __future__ import annotations

import sys

from neuromosaic_core.library import create_strategy
from neuromosaic_core.model import (
    ArchitectureVector,
    CategoricalDimension,
    ErrorClass,
    IntDimension,
    RealDimension,
    SearchSpace,
    TrialResult,
)

SPACE = SearchSpace(
    [
        CategoricalDimension("family", choices=["mlp", "cnn"]),
        IntDimension("depth", low=1, high=8),
        IntDimension("kernel", low=1, high=9, active_if={"family": ["cnn"]}),
        RealDimension("dropout", low=0.0, high=0.5),
    ]
)


def score(v: ArchitectureVector) -> float | None:
    """Best at a 5-deep CNN with kernel 5 and little dropout; depth 8 'crashes'."""
    if v["depth"] == 8:
        return None
    s = 1.0 - abs(v["depth"] - 5) / 10 - v["dropout"]
    if v["family"] == "cnn":
        s += 0.5 - abs(v["kernel"] - 5) / 10
    return round(s, 4)


def run(name: str, trials: int = 40, batch: int = 4, seed: int = 0) -> float:
    strategy = create_strategy(name, SPACE, seed=seed)  # settings as keyword arguments, checked
    best = float("-inf")
    for _ in range(trials // batch):
        vectors = strategy.suggest_architectures(batch)  # n at once, no duplicates among pending
        results = []
        for v in vectors:
            s = score(v)
            result = TrialResult({"val_accuracy": s}) if s is not None else TrialResult.failure(ErrorClass.CRASH, "depth 8")
            results.append((v, result))
            best = max(best, s if s is not None else best)
        strategy.update_with_results(results)  # failures are fine
    return best


if __name__ == "__main__":
    for name in sys.argv[1:] or ["random", "hillclimb"]:
        print(f"{name:10s} best score after 40 trials: {run(name):.4f}")
