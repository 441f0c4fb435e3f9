"""The ray runner: overhead per trial, and the parallel speed-up of a fixed search on 2 workers.

Both parts run on a real cluster on this machine started with
``neuromosaic_runner_ray.local_cluster.LocalCluster``: a head node and a separate worker node with
1 CPU each (two raylets, two object stores), joined by address as a user would.

1. **Overhead per trial on an empty model** (``--trials``, default 20, one at a time): a ``Net``
   with a single ``nn.Linear`` trained for one epoch on 64 samples. Per trial: the total time of
   ``await runner.run_trial(job)`` and the trial process's own wall time (``wall_seconds``, which
   the sandbox measures from outside the process: start of bubblewrap to its exit). The overhead
   is the difference: submitting the task, moving the job/code/data reference, scheduling, the
   worker's private directory, returning result and weights through the object store, and writing
   the files. The first trial (Ray starting its worker process) is reported separately.
   For reference the ``local`` runner's total on the same job (same sandbox, no Ray) is printed
   when that plugin is installed.
2. **Parallel speed-up**: the same ``--search`` trials (default 8; a 64-128-128-10 MLP, 40 epochs on
   2,000 × 64 samples, a few seconds each) with ``workers=1`` and ``workers=2``, each trial
   submitted as soon as a slot is free (as the orchestrator does). Speed-up = time(1) / time(2).
   Goal ≥ 1.7× on 2 cores.

    python benchmarks/ray_runner.py
    python benchmarks/ray_runner.py --trials 30 --search 10

Needs ``neuromosaic-runner-ray`` (and so Ray) and torch. Not run by CI (about 2 minutes).
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

import numpy as np

from neuromosaic_core.interfaces import TrialJob
from neuromosaic_core.model import TrainingSettings

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

EMPTY = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
"""

MLP = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
"""


def make_data(path: Path, n: int, features: int, classes: int) -> Path:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(classes, features)) * 2
    y = rng.integers(0, classes, size=n)
    x = (centers[y] + rng.normal(size=(n, features))).astype(np.float32)
    cut = int(n * 0.8)
    np.savez(path, x_train=x[:cut], y_train=y[:cut], x_test=x[cut:], y_test=y[cut:])
    return path


def job(root: Path, name: str, n: int, code: str, data: Path, shape: tuple[int, ...], classes: int,
        training: TrainingSettings) -> TrialJob:
    code_path = root / f"{name}-{n}.py"
    code_path.write_text(code)
    return TrialJob(trial_id=n, experiment=name, code_path=str(code_path), data_path=str(data),
                    result_path=str(root / name / f"trial-{n:04d}" / "result.json"), input_shape=shape,
                    num_classes=classes, training=training, weights_path=str(root / name / f"w-{n}.pt"), timeout_s=600)


async def timed(runner, jobs: list[TrialJob]) -> list[tuple[float, float]]:
    out = []
    for j in jobs:
        start = time.perf_counter()
        result = await runner.run_trial(j)
        if not result.ok:
            raise SystemExit(f"trial failed: {result.error}")
        out.append((time.perf_counter() - start, result.metrics["wall_seconds"]))
    return out


async def search(runner, jobs: list[TrialJob], workers: int) -> float:
    slots = asyncio.Semaphore(workers)

    async def one(j: TrialJob) -> None:
        async with slots:
            result = await runner.run_trial(j)
            if not result.ok:
                raise SystemExit(f"trial failed: {result.error}")

    start = time.perf_counter()
    await asyncio.gather(*(one(j) for j in jobs))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="empty-model trials for the overhead")
    parser.add_argument("--search", type=int, default=8, help="trials of the fixed search for the speed-up")
    args = parser.parse_args()

    from neuromosaic_runner_ray import RayRunnerSettings
    from neuromosaic_runner_ray.local_cluster import LocalCluster

    root = Path(tempfile.mkdtemp(prefix="nm-ray-bench-"))
    tiny = make_data(root / "tiny.npz", 80, 8, 3)
    small = make_data(root / "small.npz", 2500, 64, 10)
    one_epoch = TrainingSettings(epochs=1, batch_size=32, patience=1)
    forty = TrainingSettings(epochs=40, batch_size=64, patience=40)
    print(f"machine: {len(os.sched_getaffinity(0))} CPUs, Python {sys.version.split()[0]}")
    with LocalCluster(head_cpus=1) as cluster:
        cluster.add_node(cpus=1)
        from neuromosaic_runner_ray.runner import RayRunner  # imports ray: after the cluster set its token

        runner = RayRunner(RayRunnerSettings(address=cluster.address))
        try:
            empty = [job(root, "empty", n, EMPTY, tiny, (8,), 3, one_epoch) for n in range(args.trials + 1)]
            times = asyncio.run(timed(runner, empty))
            first, rest = times[0], times[1:]
            totals = [t for t, _ in rest]
            overheads = [t - w for t, w in rest]
            print(f"\n## Overhead per trial, empty model ({len(rest)} trials after a first one)\n")
            print("| | median ms | min ms | max ms |\n|---|---|---|---|")
            print(f"| ray: total per trial | {statistics.median(totals) * 1000:.0f} | {min(totals) * 1000:.0f} | {max(totals) * 1000:.0f} |")
            print(f"| ray: trial process (wall_seconds) | {statistics.median([w for _, w in rest]) * 1000:.0f} | | |")
            print(f"| **ray: runner overhead** (total - process) | **{statistics.median(overheads) * 1000:.0f}** | "
                  f"{min(overheads) * 1000:.0f} | {max(overheads) * 1000:.0f} |")
            print(f"| ray: first trial (Ray starts a worker) | {first[0] * 1000:.0f} (overhead {(first[0] - first[1]) * 1000:.0f}) | | |")
            try:
                from neuromosaic_runner_local import LocalRunnerSettings
                from neuromosaic_runner_local.runner import LocalRunner
            except ImportError:
                print("| local: total per trial | (neuromosaic-runner-local not installed) | | |")
            else:
                local = asyncio.run(timed(LocalRunner(LocalRunnerSettings(workers=1)),
                                          [job(root, "local", n, EMPTY, tiny, (8,), 3, one_epoch) for n in range(args.trials)]))
                lt = [t for t, _ in local]
                print(f"| local: total per trial (reference) | {statistics.median(lt) * 1000:.0f} | "
                      f"{min(lt) * 1000:.0f} | {max(lt) * 1000:.0f} |")

            jobs = [job(root, "search", n, MLP, small, (64,), 10, forty) for n in range(args.search)]
            one = asyncio.run(search(runner, jobs, 1))
            jobs = [job(root, "search2", n, MLP, small, (64,), 10, forty) for n in range(args.search)]
            two = asyncio.run(search(runner, jobs, 2))
            print(f"\n## Parallel speed-up, {args.search} trials (MLP 64-128-128-10, 40 epochs, 2,000 samples)\n")
            print("| workers | wall s | per trial s |\n|---|---|---|")
            print(f"| 1 | {one:.1f} | {one / args.search:.2f} |\n| 2 | {two:.1f} | {two / args.search:.2f} |")
            print(f"\n**speed-up: {one / two:.2f}×** (goal ≥ 1.7×)")
        finally:
            asyncio.run(runner.close())


if __name__ == "__main__":
    main()
