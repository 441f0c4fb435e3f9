"""What a scheduler costs the search loop per reported step, with the result stored in SQLite.

A "step" is what the orchestrator does when a trial's segment ends under a scheduler: show the
result to the scheduler (``observe``), ask it what the trial does next (``decide``, when the result
is below full fidelity), store the trial with its learning curve (``save_trial`` in a real SQLite
file through the ``sql`` storage plugin), and ask ``promote()`` before a new trial would start.
No training: the results are synthetic learning curves (the scheduler contract suite's), driven
the way the orchestrator drives them with one worker, so only the scheduling and storing are timed.

Printed per scheduler: steps, and the median and 99th percentile of the scheduler's own time and
of the whole step (scheduler + SQLite) in milliseconds, for ``--trials`` trials.

    python benchmarks/scheduler_overhead.py                   # 1,000 trials, every installed scheduler
    python benchmarks/scheduler_overhead.py --trials 200 --schedulers asha

Needs the scheduler plugins and the sql storage plugin. Not run by CI.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path

from neuromosaic_core.model import ArchitectureSpec, ArchitectureVector, Experiment, Layer, Trial, TrialResult, TrialStatus
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing.scheduler import synthetic_trials

EPOCHS = 30


def measure(name: str, trials: int) -> dict[str, float]:
    system = PluginSystem.load()
    component = system.get("scheduler", name)
    scheduler = component.factory(settings=component.default_settings(), max_epochs=EPOCHS, metric="val_accuracy", maximize=True)
    storage_component = system.get("storage", "sql")
    with tempfile.TemporaryDirectory() as tmp:
        settings = storage_component.settings(url=f"sqlite:///{Path(tmp) / 'bench.db'}")
        storage = storage_component.factory(settings=settings)
        storage.create_experiment(Experiment("bench", "synthetic"))
        truth = {t.number: t for t in synthetic_trials(trials, EPOCHS, seed=0)}
        stored: dict[int, Trial] = {}
        sched_ms: list[float] = []
        step_ms: list[float] = []
        queue: deque[tuple[int, int]] = deque()  # (trial, epochs to train to) decided to continue
        started = 0
        while True:
            t0 = time.perf_counter()
            promoted = scheduler.promote() if not queue else None
            sched = time.perf_counter() - t0
            if queue:
                number, budget = queue.popleft()
            elif promoted is not None:
                number, budget = promoted
            elif started < trials:
                started += 1
                number, budget = started, scheduler.first_budget(started)
                spec = ArchitectureSpec("mlp", (Layer("linear", {"out_features": number}),))
                stored[number] = storage.save_trial(Trial("bench", number, ArchitectureVector({"width": number}), spec,
                                                          TrialStatus.RUNNING, code="# code\n" * 40))
            else:
                break
            fidelity = min(budget, EPOCHS)
            curve = truth[number].curve(fidelity)
            result = TrialResult({"val_accuracy": max(curve), "test_accuracy": max(curve), "params": truth[number].params},
                                 curve=curve, fidelity=fidelity, pruned=fidelity < EPOCHS)
            t1 = time.perf_counter()
            scheduler.observe(number, result)
            decision = scheduler.decide(number, result) if result.pruned else None
            t2 = time.perf_counter()
            trial = stored[number]
            trial.result, trial.status = result, TrialStatus.COMPLETED
            storage.save_trial(trial)
            t3 = time.perf_counter()
            sched_ms.append((sched + t2 - t1) * 1000)
            step_ms.append((sched + t3 - t1) * 1000)
            if decision is not None and decision.action == "continue":
                queue.append((number, int(decision.budget)))
        storage.close()

    def p99(values: list[float]) -> float:
        return sorted(values)[int(0.99 * (len(values) - 1))]

    return {"steps": len(step_ms), "sched_median": statistics.median(sched_ms), "sched_p99": p99(sched_ms),
            "step_median": statistics.median(step_ms), "step_p99": p99(step_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--schedulers", nargs="+", default=None, help="default: every installed scheduler")
    args = parser.parse_args()
    names = args.schedulers or PluginSystem.load().names("scheduler")
    print(f"{args.trials} trials of {EPOCHS} epochs (synthetic curves), SQLite file\n")
    print("| scheduler | steps | scheduler median (ms) | scheduler p99 (ms) | step with SQLite median (ms) | p99 (ms) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        r = measure(name, args.trials)
        print(f"| {name} | {r['steps']} | {r['sched_median']:.3f} | {r['sched_p99']:.3f} | {r['step_median']:.3f} | {r['step_p99']:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
