"""Per-trial overhead of a runner: what it costs to run a trial beyond the trial's own training.

``--trials`` trials (default 20) of a tiny MLP (8 -> 16 -> 3) on 300 samples for one epoch are run
one after another through the runner named by ``--runner`` (any registered runner; its settings
with ``--set KEY=VALUE``, structured and checked like the command line's ``runner.KEY=VALUE``),
built as the CLI builds it. Each trial is timed around ``await runner.run_trial(job)``; the
harness's own ``train_seconds`` is subtracted to get the overhead (process start, imports,
sandbox set-up, data loading, FLOP counting, evaluation, result hand-over). The first trial is
reported apart: a pool's worker start-up lands there.

Printed: a markdown row per run with the runner, its settings, the isolation used, the first
trial's wall time, the median and 95th percentile of the later trials' wall time and overhead.

    python benchmarks/runner_overhead.py --runner local --set mode=fresh
    python benchmarks/runner_overhead.py --runner local --set mode=pool
    python benchmarks/runner_overhead.py --runner local --set mode=fresh --set isolation=process-group
    python benchmarks/runner_overhead.py --runner podman --trials 10
    python benchmarks/runner_overhead.py --runner ray --trials 10        # a private local cluster

``--speedup N`` instead runs a fixed search of N trials (the same MLP, 30 epochs on 3,000
samples: a few CPU-seconds each) with ``workers=1`` and then ``workers=2``, each trial submitted
as soon as a slot is free (as the orchestrator does), and prints both wall times and their ratio:

    python benchmarks/runner_overhead.py --runner local --speedup 8

Needs torch and the runner's plugin. Not run by CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import attrs

from neuromosaic_core.interfaces import Runner, TrialJob
from neuromosaic_core.model import TrainingSettings
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import structure_settings
from neuromosaic_core.testing.hostile import make_job, model_code, write_data


def parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"--set expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


async def measure(runner_name: str, node: dict[str, str], trials: int) -> dict[str, object]:
    system = PluginSystem.load()
    component = system.get("runner", runner_name)
    settings = structure_settings({"workers": 1, **node}, component.settings, "runner") if component.settings else None
    runner = component.factory(settings=settings)
    walls, overheads = [], []
    with tempfile.TemporaryDirectory(prefix="neuromosaic-overhead-") as tmp:
        root = Path(tmp)
        data = write_data(root / "data" / "data.npz")
        code = model_code()
        try:
            for n in range(1, trials + 1):
                job = make_job(root, data, code, trial=n, timeout=300)
                start = time.perf_counter()
                result = await runner.run_trial(job)
                wall = time.perf_counter() - start
                if not result.ok:
                    sys.exit(f"trial {n} failed: {result.error}")
                walls.append(wall)
                overheads.append(wall - result.metrics.get("train_seconds", 0.0))
        finally:
            await runner.close()
    later_w, later_o = walls[1:] or walls, overheads[1:] or overheads
    return {
        "runner": runner_name, "settings": " ".join(f"{k}={v}" for k, v in node.items()) or "(defaults)",
        "isolation": getattr(runner, "isolation", "?"), "first_s": walls[0],
        "median_s": statistics.median(later_w), "p95_s": _p95(later_w), "overhead_median_s": statistics.median(later_o),
    }


async def speedup(runner_name: str, node: dict[str, str], trials: int) -> dict[str, float]:
    """Wall time of the same ``trials`` jobs with 1 and with 2 workers."""
    system = PluginSystem.load()
    component = system.get("runner", runner_name)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="neuromosaic-speedup-") as tmp:
        root = Path(tmp)
        data = write_data(root / "data" / "data.npz", n=3000)
        training = TrainingSettings(epochs=30, batch_size=32, patience=30)
        for workers in (1, 2):
            settings = structure_settings({**node, "workers": workers}, component.settings, "runner")
            runner = component.factory(settings=settings)
            slots = asyncio.Semaphore(workers)
            jobs = [attrs.evolve(make_job(root / f"w{workers}", data, model_code(), trial=n, timeout=600), training=training)
                    for n in range(1, trials + 1)]

            async def one(job: TrialJob, runner: Runner = runner, slots: asyncio.Semaphore = slots) -> None:
                async with slots:
                    result = await runner.run_trial(job)
                    if not result.ok:
                        sys.exit(f"trial {job.trial_id} failed: {result.error}")

            try:
                await runner.run_trial(jobs[0])  # warm-up (a pool's workers, Ray's worker processes)
                start = time.perf_counter()
                await asyncio.gather(*(one(j) for j in jobs))
                out[f"workers_{workers}_s"] = time.perf_counter() - start
            finally:
                await runner.close()
    out["speedup"] = out["workers_1_s"] / out["workers_2_s"]
    return out


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runner", default="local")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a runner setting (repeatable)")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--speedup", type=int, default=0, metavar="N", help="time a fixed search of N trials on 1 and 2 workers")
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    print(f"# load {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    if args.speedup:
        r = asyncio.run(speedup(args.runner, parse_sets(args.set), args.speedup))
        print(f"{args.runner} {' '.join(args.set)}: {args.speedup} trials, 1 worker {r['workers_1_s']:.1f} s, "
              f"2 workers {r['workers_2_s']:.1f} s, speed-up {r['speedup']:.2f}x")
        return
    row = asyncio.run(measure(args.runner, parse_sets(args.set), args.trials))
    print("| runner | settings | isolation | first trial (s) | median (s) | p95 (s) | median overhead (s) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {row['runner']} | {row['settings']} | {row['isolation']} | {row['first_s']:.2f} | {row['median_s']:.3f} "
          f"| {row['p95_s']:.3f} | {row['overhead_median_s']:.3f} |")


if __name__ == "__main__":
    main()
