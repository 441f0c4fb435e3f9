"""Surrogate pre-screening on NAS-Bench-201: does ranking candidates with the
``surrogate`` meta-learner before training find better cells for the same number of trainings?

For each strategy named (default: random, evolution), each seed 0..N-1 and each pre-screening
factor (default 1 = off, and 10), the strategy and the surrogate are built with
``neuromosaic_core.library`` on the ``nasbench201`` encoder's space and driven one trial at a
time: ``surrogate.prescreen(strategy, 1, k)`` (what the orchestrator does with
``search.prescreen=k``: ask for k candidates, train the one the surrogate ranks best, forget the
others), then the table's ``val_acc_200`` is told to both. Only trained candidates count against
the budget. Table and scoring are ``benchmarks/search_quality.py``'s (``--dataset``, ``--table``):
the score of the best-by-validation cell within the budget (prefixes of one run of the largest
budget), its validation accuracy on the packaged NAS-Bench-201, its ``test_acc_200`` on a table
that has one.

Printed: median [25th, 75th percentile] per budget, and the paired win/tie/loss count of
pre-screening against the same strategy and seed without it; the share of the space the strategy
counts as tried without its having been trained (candidates it will not propose again; mean over
seeds, after the largest budget); then the surrogate's own prediction
quality, the Spearman rank correlation between its predicted and the true validation accuracy
on 1,000 held-out random cells, after fitting on n random cells (the same seeds).

    python benchmarks/surrogate.py                         # random and evolution, 20 seeds, k=10
    python benchmarks/surrogate.py random --seeds 5 --factors 1 4 10
    python benchmarks/surrogate.py evolution --factors 1 10 --acquisition ucb

Needs the ``nasbench201`` encoder, the strategies' and the ``surrogate`` plugins and scipy
(installed with scikit-learn). Not run by CI.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_quality import (  # noqa: E402
    DATASETS,
    best_test_by_budget,
    describe_source,
    load_source,
    make_key,
    quartiles,
    random_search_median,
)

from neuromosaic_core.library import create_encoder, create_meta_learner, create_strategy  # noqa: E402
from neuromosaic_core.model import TrialResult  # noqa: E402
from neuromosaic_core.plugins import PluginSystem  # noqa: E402

BUDGETS = (30, 100)


def run(name: str, seed: int, budget: int, factor: int, space, key, table, system,  # noqa: ANN001
        acquisition: str = "mean", score: str = "val_acc_200") -> tuple[list[tuple[float, float]], int]:
    """(val, score) of each trained cell, in order; and how many vectors the strategy counts as
    tried (its ``_evaluated`` account) without their having been trained."""
    strategy = create_strategy(name, space, seed=seed, system=system)
    # k=1 is the plain strategy: no surrogate is fitted (nothing would use it).
    surrogate = (create_meta_learner("surrogate", space, seed=seed, system=system, acquisition=acquisition)
                 if factor > 1 else None)
    trace: list[tuple[float, float]] = []
    trained: set[str] = set()
    while len(trace) < budget:
        (vector,) = surrogate.prescreen(strategy, 1, factor) if surrogate else strategy.suggest_architectures(1)
        trained.add(space.canonicalize(vector).key())
        entry = table[key(vector)]
        trace.append((entry["val_acc_200"], entry[score]))
        told = [(vector, TrialResult({"val_accuracy": entry["val_acc_200"] / 100.0}))]
        strategy.update_with_results(told)
        if surrogate:
            surrogate.observe(told)
    return trace, len(set(getattr(strategy, "_evaluated", ())) - trained)


def prediction_quality(seeds: int, sizes: tuple[int, ...], space, key, table, system) -> dict[int, list[float]]:  # noqa: ANN001
    """Spearman correlation on 1,000 held-out random cells after fitting on ``n`` random cells."""
    from scipy.stats import spearmanr

    out: dict[int, list[float]] = {n: [] for n in sizes}
    for seed in range(seeds):
        rng = random.Random(seed)
        cells = {}
        while len(cells) < max(sizes) + 1000:
            vector = space.sample(rng)
            cells.setdefault(key(vector), vector)
        vectors = list(cells.values())
        truth = [table[key(v)]["val_acc_200"] for v in vectors]
        held_out, held_truth = vectors[-1000:], truth[-1000:]
        for n in sizes:
            surrogate = create_meta_learner("surrogate", space, seed=seed, system=system)
            surrogate.observe([(v, TrialResult({"val_accuracy": t / 100.0})) for v, t in zip(vectors[:n], truth[:n], strict=True)])
            means, _ = surrogate.predict(held_out)
            out[n].append(float(spearmanr(means, held_truth).statistic))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("strategies", nargs="*", default=["random", "evolution"])
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (default 20)")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 10], help="pre-screening factors k (1 = off)")
    parser.add_argument("--acquisition", choices=("mean", "ei", "ucb"), default="mean",
                        help="how the surrogate ranks candidates (the plugin's setting; default mean)")
    parser.add_argument("--dataset", choices=DATASETS, default="cifar10", help="NAS-Bench-201's data set (default cifar10)")
    parser.add_argument("--table", type=Path, help="a JSON table of your own instead (the tabular runner's format)")
    args = parser.parse_args(argv)
    budgets = tuple(sorted(args.budgets))
    table, score = load_source(args.dataset, args.table, "surrogate")
    system = PluginSystem.load()
    encoder = create_encoder("nasbench201", system=system)
    space, key = encoder.search_space(), make_key(encoder)

    scores: dict[tuple[str, int], dict[int, list[float]]] = {}
    walls: dict[tuple[str, int], float] = {}
    untried: dict[tuple[str, int], float] = {}
    for name in args.strategies:
        for factor in args.factors:
            started = time.perf_counter()
            per_budget: dict[int, list[float]] = {b: [] for b in budgets}
            lost = 0
            for seed in range(args.seeds):
                trace, not_trained = run(name, seed, budgets[-1], factor, space, key, table, system, args.acquisition, score)
                lost += not_trained
                for b, test in best_test_by_budget(trace, budgets).items():
                    per_budget[b].append(test)
            walls[name, factor] = time.perf_counter() - started
            untried[name, factor] = 100.0 * lost / args.seeds / len(table)
            scores[name, factor] = per_budget
            print(f"done: {name} k={factor} ({walls[name, factor]:.1f} s)", file=sys.stderr)

    print(f"{describe_source(args.dataset, args.table, score)}, {args.seeds} seeds (0..{args.seeds - 1}): "
          "median [25th, 75th percentile]; wins/ties/losses against the same strategy and seed with k=1\n")
    print("| strategy | pre-screening | " + " | ".join(f"{b} trials" for b in budgets) + " | tried, not trained | wall time |")
    print("|---|---|" + "---|" * len(budgets) + "---|---|")
    for (name, factor), per_budget in scores.items():
        cells = []
        for b in budgets:
            q1, med, q3 = quartiles(per_budget[b])
            cell = f"{med:.2f} [{q1:.2f}, {q3:.2f}]"
            base = scores.get((name, 1))
            if factor != 1 and base is not None:
                pairs = list(zip(per_budget[b], base[b], strict=True))
                wins, ties = sum(a > c for a, c in pairs), sum(a == c for a, c in pairs)
                cell += f" ({wins}/{ties}/{len(pairs) - wins - ties})"
            cells.append(cell)
        label = "off" if factor == 1 else f"k={factor}"
        print(f"| {name} | {label} | " + " | ".join(cells) + f" | {untried[name, factor]:.1f}% | {walls[name, factor]:.1f} s |")
    print("| random (exact) | off | " + " | ".join(f"{random_search_median(table, score, b):.2f}" for b in budgets) + " | | |")

    sizes = (30, 100)
    quality = prediction_quality(args.seeds, sizes, space, key, table, system)
    print("\nSurrogate prediction quality: Spearman rank correlation, predicted vs true validation accuracy, "
          "1,000 held-out random cells: median [25th, 75th percentile]\n")
    print("| fitted on | " + " | ".join(f"{n} random cells" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    print("| Spearman | " + " | ".join("{1:.2f} [{0:.2f}, {2:.2f}]".format(*quartiles(quality[n])) for n in sizes) + " |")


if __name__ == "__main__":
    main()
