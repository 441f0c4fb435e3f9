"""Search quality on NAS-Bench-201 (CIFAR-10): how good is the cell each strategy finds?

For every strategy named on the command line (default: random, hillclimb, evolution, optuna; one
that is not installed is skipped with a note), every seed 0..N-1 and the budgets 10, 30 and 100,
the strategy is built with ``neuromosaic_core.library.create_strategy(name, space, seed=seed)`` on
the ``nasbench201`` encoder's space and driven in a batch-1 ask/tell loop. It sees only the table's
``val_acc_200`` (as ``val_accuracy``, a fraction, as the orchestrator reports it); the cell with
the best validation accuracy within the budget is scored by its ``test_acc_200``, as in the NAS
literature. Every suggestion counts against the budget, repeats included.

Strategies do not know the budget, so one run of the largest budget per seed gives every smaller
budget as a prefix (the same numbers separate runs would give).

Optuna's TPE driven directly (``optuna.create_study(sampler=TPESampler(seed=seed))``, one
``suggest_categorical`` per edge) is the outside reference, row ``optuna-tpe (direct)``.

Reference (``shared/benchmarks/README.md``, random search, median of 200 seeds):
10 trials 93.09, 30 trials 93.53, 100 trials 93.81.

Needs the ``nasbench201`` encoder plugin and the strategies' plugins; optional: ``optuna`` (the
direct reference and the ``optuna`` strategy). Not run by CI.

    python benchmarks/search_quality.py                      # all four, 20 seeds
    python benchmarks/search_quality.py random hillclimb --seeds 5
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

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TABLE = ROOT / ".." / "shared" / "benchmarks" / "nasbench201_cifar10.json"
DEFAULT_STRATEGIES = ("random", "hillclimb", "evolution", "optuna")
BUDGETS = (10, 30, 100)
REFERENCE = {10: 93.09, 30: 93.53, 100: 93.81}
OPTUNA_DIRECT = "optuna-tpe (direct)"


def load_table(path: Path) -> dict[str, dict[str, float]]:
    return json.loads(path.read_text())


def make_key(encoder) -> Callable[[ArchitectureVector], str]:  # noqa: ANN001
    from neuromosaic_encoder_nasbench201.encoder import cell_string

    return lambda vector: cell_string(encoder.decode(vector))


def best_test_by_budget(trace: list[tuple[float, float]], budgets: tuple[int, ...]) -> dict[int, float]:
    """``trace``: (val, test) per trial in order. The test accuracy of the best-by-val cell of
    each prefix (the first one found on ties)."""
    out: dict[int, float] = {}
    best_val, best_test = float("-inf"), float("nan")
    for n, (val, test) in enumerate(trace, start=1):
        if val > best_val:
            best_val, best_test = val, test
        if n in budgets:
            out[n] = best_test
    return out


def run_strategy(name: str, seed: int, budget: int, space, key, table, system) -> list[tuple[float, float]]:  # noqa: ANN001
    strategy = create_strategy(name, space, seed=seed, system=system)
    trace: list[tuple[float, float]] = []
    while len(trace) < budget:
        (vector,) = strategy.suggest_architectures(1)
        entry = table[key(vector)]
        trace.append((entry["val_acc_200"], entry["test_acc_200"]))
        strategy.update_with_results([(vector, TrialResult({"val_accuracy": entry["val_acc_200"] / 100.0}))])
    return trace


def run_optuna_direct(seed: int, budget: int, space, key, table) -> list[tuple[float, float]]:  # noqa: ANN001
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trace: list[tuple[float, float]] = []

    def objective(trial: optuna.Trial) -> float:
        vector = ArchitectureVector({dim.name: trial.suggest_categorical(dim.name, list(dim.choices)) for dim in space})
        entry = table[key(vector)]
        trace.append((entry["val_acc_200"], entry["test_acc_200"]))
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
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--no-optuna-direct", action="store_true", help="skip the direct Optuna TPE reference")
    args = parser.parse_args(argv)
    budgets = tuple(sorted(args.budgets))
    logging.getLogger("optuna").setLevel(logging.WARNING)

    if not args.table.is_file():
        sys.exit(f"search_quality: the table is not at {args.table}; pass --table")
    table = load_table(args.table)
    system = PluginSystem.load()
    encoder = create_encoder("nasbench201", system=system)
    space, key = encoder.search_space(), make_key(encoder)

    runs: dict[str, Callable[[int], list[tuple[float, float]]]] = {}
    for name in args.strategies:
        if name not in system.names("strategy"):
            print(f"note: strategy {name!r} is not installed; skipped", file=sys.stderr)
            continue
        runs[name] = lambda seed, name=name: run_strategy(name, seed, budgets[-1], space, key, table, system)
    if not args.no_optuna_direct:
        try:
            import optuna  # noqa: F401
        except ImportError:
            print("note: optuna is not installed; the direct TPE reference is skipped", file=sys.stderr)
        else:
            runs[OPTUNA_DIRECT] = lambda seed: run_optuna_direct(seed, budgets[-1], space, key, table)

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

    print(f"Test accuracy (%) of the best-by-validation cell, {args.seeds} seeds (0..{args.seeds - 1}): "
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
    print("| random (README, 200 seeds) | " + " | ".join(f"{REFERENCE[b]:.2f}" if b in REFERENCE else "-" for b in budgets)
          + " | |")


if __name__ == "__main__":
    main()
