"""Multi-fidelity against full training on a fixed wall-clock budget, side by side.

Each arm is the default search (``neuromosaic`` on MNIST-1D, the default family, random search,
local pool runner, SQLite) with ``search.time_budget`` seconds and more trials than the budget
allows, run as a user runs it (a subprocess, its own directory and database), for each seed:

* ``full``: every trial trains to its end (today's default);
* ``asha``: ``scheduler=asha`` with its defaults;
* ``hyperband``: ``scheduler=hyperband`` with its defaults;
* ``asha-min1`` (only when asked for with ``--arms``): ASHA with ``scheduler.min_epochs=1``.

Printed per run and as medians per arm: architectures assessed (``trials.completed``, pruned ones
included), how many were pruned, the best trial's test accuracy (the best by validation accuracy
among full-fidelity results, what ``summary.json`` names), the seconds until a full-fidelity trial
with a test accuracy of at least ``--target`` had finished (from the trial rows' times), and the
wall time (the budget plus the segments that were running when it ran out).

    python benchmarks/multi_fidelity.py                              # 3 seeds x 3 arms x 300 s
    python benchmarks/multi_fidelity.py --seeds 1 --budget 60 --arms full asha
    python benchmarks/multi_fidelity.py --json mf.json -- training.epochs=20   # extra overrides

Record the table in docs/benchmarks.md with the machine state. Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

CLI = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
ARMS = {"full": [], "asha": ["scheduler=asha"], "hyperband": ["scheduler=hyperband"],
        # not run by default: ASHA from one epoch (rungs 1, 3, 10, 30), like Ray Tune's grace_period=1
        "asha-min1": ["scheduler=asha", "scheduler.min_epochs=1"]}


def run_arm(arm: str, seed: int, budget: float, target: float, extra: list[str]) -> dict:
    name = f"mf-{arm}-{seed}"
    with tempfile.TemporaryDirectory(prefix="neuromosaic-mf-") as tmp:
        argv = [sys.executable, "-c", CLI, *ARMS[arm], f"search.time_budget={budget}",
                "search.trials=100000", f"experiment.seed={seed}", f"experiment.name={name}", "visualizers=[]",
                "log.json=true", *extra]
        start = time.monotonic()
        out = subprocess.run(argv, cwd=tmp, capture_output=True, text=True)
        wall = time.monotonic() - start
        if out.returncode != 0:
            raise SystemExit(f"{arm} seed {seed} failed ({out.returncode}):\n{out.stderr[-2000:]}")
        summary = json.loads((Path(tmp) / "runs" / name / "summary.json").read_text())
        with sqlite3.connect(Path(tmp) / "neuromosaic.db") as db:
            created = db.execute("select created_at from experiments where name = ?", (name,)).fetchone()[0]
            rows = db.execute(
                "select t.updated_at, t.metrics, t.pruned from trials t join experiments e on t.experiment_id = e.id "
                "where e.name = ? and t.status = 'completed'", (name,)).fetchall()
    t0 = datetime.fromisoformat(created)
    reached = [(datetime.fromisoformat(updated) - t0).total_seconds() for updated, metrics, pruned in rows
               if not pruned and json.loads(metrics).get("test_accuracy", 0.0) >= target]
    best = summary["best"] or {}
    return {"arm": arm, "seed": seed, "assessed": summary["trials"]["completed"], "pruned": summary["trials"].get("pruned", 0),
            "best_test": best.get("test_accuracy"), "best_val": best.get("val_accuracy"),
            "time_to_target": min(reached) if reached else None, "wall": wall}


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=["full", "asha", "hyperband"])
    parser.add_argument("--budget", type=float, default=300.0, help="search.time_budget in seconds (default 300)")
    parser.add_argument("--target", type=float, default=0.95, help="test accuracy for the time-to-target column")
    parser.add_argument("--json", type=Path, help="write every run's numbers here")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run (after --)")
    args = parser.parse_args()
    runs = []
    print(f"| arm | seed | assessed | pruned | best test acc | time to {args.target:.0%} (s) | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        for arm in args.arms:  # arms interleaved per seed: a drift in the machine's load hits every arm alike
            r = run_arm(arm, seed, args.budget, args.target, args.overrides)
            runs.append(r)
            print(f"| {arm} | {seed} | {r['assessed']} | {r['pruned']} | {fmt(r['best_test'], '.3f')} | "
                  f"{fmt(r['time_to_target'], '.0f')} | {r['wall']:.0f} |", flush=True)
    print("\nmedians over seeds:\n")
    print(f"| arm | assessed | pruned | best test acc | time to {args.target:.0%} (s) | reached it |")
    print("|---|---|---|---|---|---|")
    for arm in args.arms:
        mine = [r for r in runs if r["arm"] == arm]
        reached = sum(r["time_to_target"] is not None for r in mine)
        print(f"| {arm} | {fmt(median([r['assessed'] for r in mine]), '.0f')} | {fmt(median([r['pruned'] for r in mine]), '.0f')} | "
              f"{fmt(median([r['best_test'] for r in mine]), '.3f')} | {fmt(median([r['time_to_target'] for r in mine]), '.0f')} | "
              f"{reached}/{len(mine)} |")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
