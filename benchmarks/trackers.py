"""Per-trial overhead of experiment trackers: the search loop with ``trackers`` empty, with
``mlflow`` (SQLite store), with ``tensorboard``, and with both.

The loop is :mod:`benchmarks.overhead`'s: the full orchestrator loop in-process (random strategy,
``nasbench201`` encoder, ``tabular`` runner, ``sql`` storage on a SQLite file, one worker), each
trial timed between consecutive ``trial_finished`` calls; loguru writes INFO to a log file, as in
a run. A trial here takes 1-2 ms, far less than any trained one: the worst case for trackers,
whose threads compete with the loop for the interpreter all the time.

Per configuration, also from :meth:`TrackerHub.stats`: the time the loop spent in the trackers'
hook per trial (making and queueing the records), each tracker's own time per trial on its
thread, the records dropped (a full queue), and how long the drain at the end took.

First-use costs are kept out of the rounds and printed apart: a discarded warm-up run imports
MLflow and TensorBoard and makes MLflow's tables in an empty SQLite store, which each round then
starts from a copy of. The configurations run in turn ``--rounds`` times (default 3) so that load
on a shared machine hits all of them alike.

Needs the ``nasbench201`` encoder, the ``tabular`` runner, the ``sql`` storage, the ``random``
strategy and both tracker plugins. Not run by CI.

    python benchmarks/trackers.py                 # 300 trials per run, 3 rounds
    python benchmarks/trackers.py --trials 1000 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loguru import logger

from neuromosaic_core.plugins import PluginSystem

sys.path.insert(0, str(Path(__file__).parent))
from overhead import Recorder, tabular_components  # noqa: E402 - the same search loop as the overhead benchmark

MODES = {"none": [], "mlflow": ["mlflow"], "tensorboard": ["tensorboard"], "mlflow + tensorboard": ["mlflow", "tensorboard"]}


def run(trackers: list[str], trials: int, workdir: Path, store: Path | None) -> dict[str, Any]:
    from neuromosaic_core.orchestrator import Orchestrator
    from neuromosaic_core.settings import CoreSettings, ExperimentSettings, SearchSettings
    from neuromosaic_core.trackers import resolve_trackers, start_trackers, stop_trackers

    recorder = Recorder()
    system = PluginSystem.load(extra_plugins=[("trackers_recorder", recorder)])
    components, runner_settings = tabular_components(system, "random", workdir)
    if store is not None:
        shutil.copyfile(store, workdir / "mlflow.db")
    node = {"mlflow": {"tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}", "artifact_location": str(workdir / "mlartifacts")},
            "tensorboard": {"log_dir": str(workdir / "tb")}}
    hub = start_trackers(resolve_trackers(trackers, {k: v for k, v in node.items() if k in trackers}, system), system)
    name = "nasbench201-nasbench201-random"
    core = CoreSettings(experiment=ExperimentSettings(name=name), search=SearchSettings(trials=trials, max_failures=trials))
    config = {"search": {"metric": "val_accuracy", "direction": "maximize", "trials": trials}, "task": {"name": "nasbench201"},
              "strategy": {"name": "random"}, "encoder": {"name": "nasbench201"}, "runner": {"name": "tabular"}}
    orchestrator = Orchestrator(core, components, workdir / "runs" / name, hook=system.pm.hook, show_progress=False, config=config)
    try:
        asyncio.run(orchestrator.run(runner_settings))
    finally:
        started = time.perf_counter()
        stop_trackers(hub, system)
        drain = time.perf_counter() - started
        components.storage.close()
    return {"durations": recorder.durations(), "stats": hub.stats() if hub is not None else None, "drain": drain}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="nm-trackers-") as tmp:
        logger.remove()
        logger.add(Path(tmp) / "neuromosaic.log", level="INFO")  # as in a run: INFO to a log file
        warm = Path(tmp) / "warm-up"
        warm.mkdir()
        started = time.perf_counter()
        first = run(["mlflow", "tensorboard"], 20, warm, None)  # imports, MLflow's tables: discarded
        print(f"warm-up (imports, an empty SQLite store's tables): drain {first['drain']:.1f} s, "
              f"{time.perf_counter() - started:.1f} s in all", file=sys.stderr)
        store = Path(tmp) / "empty-mlflow.db"
        from mlflow import MlflowClient

        MlflowClient(f"sqlite:///{store}").search_experiments()  # MLflow's tables, once
        for r in range(args.rounds):
            for mode, trackers in MODES.items():
                workdir = Path(tmp) / f"{r}-{mode.replace(' ', '').replace('+', '_')}"
                workdir.mkdir()
                result = run(trackers, args.trials, workdir, store if "mlflow" in trackers else None)
                results[mode].append(result)
                print(f"round {r + 1}: {mode}: loop median {statistics.median(result['durations']) * 1000:.3f} ms, "
                      f"drain {result['drain']:.2f} s", file=sys.stderr)
    print(f"{args.trials} trials x {args.rounds} rounds per configuration; times per trial in ms\n")
    print("| trackers | loop median | loop p95 | round medians | in the hook | on the tracker's thread | dropped | drain at the end (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, runs in results.items():
        ms = [d * 1000 for result in runs for d in result["durations"]]
        p95 = statistics.quantiles(ms, n=20, method="inclusive")[18]
        rounds = ", ".join(f"{statistics.median(r['durations']) * 1000:.2f}" for r in runs)
        hook = own = dropped = drain = "—"
        if runs[0]["stats"] is not None:
            hook = f"{statistics.median(r['stats']['hook_ms'] for r in runs):.3f}"
            own = ", ".join(f"{name} {statistics.median(r['stats']['trackers'][name]['ms'] for r in runs):.1f}"
                            for name in runs[0]["stats"]["trackers"])
            dropped = str(sum(t["dropped"] for r in runs for t in r["stats"]["trackers"].values()))
            drain = ", ".join(f"{r['drain']:.2f}" for r in runs)
        print(f"| {mode} | {statistics.median(ms):.3f} | {p95:.3f} | {rounds} | {hook} | {own} | {dropped} | {drain} |")


if __name__ == "__main__":
    main()
