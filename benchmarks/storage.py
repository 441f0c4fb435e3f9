"""The results database at 100,000 trials (issue 6): inserts, best-k, Pareto and resume start-up.

For each backend (a SQLite file in a temporary directory; a private PostgreSQL 15 cluster started
from ``/usr/lib/postgresql/15/bin`` in a temporary directory with the server's defaults, fsync
on) one experiment is filled with ``--trials`` trials shaped like a real search: every trial has
the test suite's ``make_trial`` vector, spec and code; 96% completed with ``val_accuracy``,
``test_accuracy``, ``test_loss`` and ``params``, 4% failed.

Measured:

* ``save_trial`` as the search loop calls it — insert pending, update completed — for the first
  ``--loop-trials`` trials (each call its own transaction): per-trial time and trials/s;
* the bulk path ``SqlResultsDB.save_trials`` (one transaction per 5,000) for the rest: rows/s;
* ``get_best_architectures(k=10)`` (median of 20, maximize val_accuracy; also minimise params);
* ``neuromosaic_core.results.best_trials(k=10)`` — what ``neuromosaic-results best`` runs: the
  metric-name check and the query (median of 20);
* ``neuromosaic_core.results.pareto_front(params, val_accuracy)`` (median of 5: the two metrics of
  every completed trial from ``trial_metrics`` in one query, the sweep in Python, then only the
  front's trials read whole);
* resume start-up: open the database and ``Orchestrator._open_experiment`` with the default
  random strategy, 4 trials left running by a "crash" (median of 3, each on a fresh
  connection), two ways: ``replay`` (no snapshot: the whole history read and told to the
  strategy, as the first resume of an experiment from before snapshots) and ``snapshot`` (the
  strategy restored from its stored snapshot, only later trials read).

    python benchmarks/storage.py                          # both backends, 100,000 trials
    python benchmarks/storage.py --backend sqlite --trials 20000

Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from loguru import logger
from neuromosaic_storage_sql.repository import SqlResultsDB
from neuromosaic_strategy_random.search import RandomSearch

from neuromosaic_core.interfaces import Task
from neuromosaic_core.model import (
    CategoricalDimension,
    ErrorClass,
    Experiment,
    IntDimension,
    RealDimension,
    SearchSpace,
    StrategySnapshot,
    TrialResult,
    TrialStatus,
)
from neuromosaic_core.orchestrator import Components, Orchestrator
from neuromosaic_core.results import best_trials, pareto_front
from neuromosaic_core.settings import CoreSettings, ExperimentSettings, SearchSettings
from neuromosaic_core.testing.storage import make_trial

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
EXP = "bench"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def result_for(i: int) -> tuple[TrialStatus, TrialResult]:
    if i % 25 == 7:
        return TrialStatus.FAILED, TrialResult.failure(ErrorClass.NAN_LOSS, f"nan at step {i}")
    acc = ((i * 7919) % 10007) / 10007
    return TrialStatus.COMPLETED, TrialResult(
        metrics={"val_accuracy": acc, "test_accuracy": acc * 0.98, "test_loss": 1 - acc, "params": float(1000 + (i * 104729) % 500000)},
        weights_path=f"/runs/bench/weights/{i}.pt")


@contextmanager
def postgres() -> Iterator[str]:
    directory = Path(tempfile.mkdtemp(prefix="nm-pg-bench-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(directory, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = directory / "data"

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True)

    run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-w", "start",
        "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {directory}")
    try:
        import psycopg2

        conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE bench")
        conn.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/bench"
    finally:
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(directory, ignore_errors=True)


def bench(name: str, url: str, n: int, loop_trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": name}
    db = SqlResultsDB(url)
    db.create_experiment(Experiment(EXP, "digits", {"search": {"trials": n}}))
    # the search loop: insert pending, then update with the result
    start = time.perf_counter()
    for i in range(loop_trials):
        t = db.save_trial(make_trial(EXP, i, reuse_key=f"rk-{i}"))
        t.status, t.result = result_for(i)
        db.save_trial(t)
    loop = time.perf_counter() - start
    out["loop_ms_per_trial"] = loop / loop_trials * 1000
    out["loop_trials_per_s"] = loop_trials / loop
    # the bulk path for the rest
    start, done = time.perf_counter(), loop_trials
    while done < n:
        batch = []
        for i in range(done, min(n, done + 5000)):
            t = make_trial(EXP, i, reuse_key=f"rk-{i}")
            t.status, t.result = result_for(i)
            batch.append(t)
        db.save_trials(batch)
        done += len(batch)
    bulk = time.perf_counter() - start
    out["bulk_rows_per_s"] = (n - loop_trials) / bulk if n > loop_trials else float("nan")
    # four trials left running by a crash
    running = [db.save_trial(make_trial(EXP, n + j, status=TrialStatus.RUNNING)) for j in range(4)]
    best = [timed(lambda: db.get_best_architectures(EXP, k=10))[0] for _ in range(20)]
    out["best10_ms"] = statistics.median(best) * 1000
    best_min = [timed(lambda: db.get_best_architectures(EXP, k=10, metric="params", maximize=False))[0] for _ in range(20)]
    out["best10_min_params_ms"] = statistics.median(best_min) * 1000
    top = db.get_best_architectures(EXP, k=10)
    accs = [t.result.metrics["val_accuracy"] for t in top]
    assert len(top) == 10 and accs == sorted(accs, reverse=True)
    # what `neuromosaic-results best` runs: the metric-name check, then the query
    out["results_best10_ms"] = statistics.median(timed(lambda: best_trials(db, EXP, k=10))[0] for _ in range(20)) * 1000
    pareto = [timed(lambda: pareto_front(db, EXP, x="params", y="val_accuracy")) for _ in range(5)]
    out["pareto_ms"] = statistics.median(p[0] for p in pareto) * 1000
    out["pareto_size"] = len(pareto[0][1])
    db.close()

    # Resume start-up as `neuromosaic` does it for the default random strategy: the first
    # resume has no snapshot and replays the whole history into the strategy; a run then leaves
    # a snapshot, from which every later resume restores the strategy instead.
    for label, snapshot in (("replay", False), ("snapshot", True)):
        if snapshot:
            db = SqlResultsDB(url)
            orch, strategy = resume_orchestrator(db, n)
            strategy.update_with_results([(t.vector, t.result) for t in db.list_history(EXP) if t.result is not None])
            through = max(t.id for t in db.list_history(EXP) if t.result is not None)
            db.save_snapshot(EXP, StrategySnapshot(orch._strategy_identity(), through, (), strategy.state_dict()))
            out["snapshot_mb"] = len(json.dumps(strategy.state_dict())) / 1e6
            db.close()
        times = []
        for _ in range(3):
            fix = SqlResultsDB(url)  # a "crash" left four trials running
            for t in running:
                t.status = TrialStatus.RUNNING
                fix.save_trial(t)
            fix.close()
            start = time.perf_counter()
            db = SqlResultsDB(url)
            orch, strategy = resume_orchestrator(db, n)
            orch.s = attrs.evolve(orch.s, search=attrs.evolve(orch.s.search, snapshot_every=100 if snapshot else 0))
            _, _, requeue = orch._open_experiment()
            times.append(time.perf_counter() - start)
            assert len(requeue) == 4 and orch.counts.completed + orch.counts.failed == n
            assert strategy.evaluated == n  # every make_trial vector differs (depth is its number)
            db.close()
        out[f"resume_{label}_s"] = statistics.median(times)
    return out


class BenchTask(Task):
    """Only what the orchestrator's resume reads of a task (it prepares no data here)."""

    name, input_shape, num_classes = "digits", (64,), 10

    def prepare_data(self, directory: Path) -> Path:  # pragma: no cover - never called
        raise NotImplementedError


#: The space of ``make_trial``'s vectors, so the random strategy takes them as its own.
BENCH_SPACE = SearchSpace([
    IntDimension("depth", low=0, high=10**6), IntDimension("width", low=1, high=128),
    RealDimension("lr", low=0.0, high=10**4), RealDimension("ratio", low=0.0, high=1.0),
    CategoricalDimension("act", choices=("gélu",)), IntDimension("big", low=0, high=2**54),
])


def resume_orchestrator(db: SqlResultsDB, n: int) -> tuple[Orchestrator, RandomSearch]:
    strategy = RandomSearch(BENCH_SPACE, seed=0)
    settings = CoreSettings(ExperimentSettings(EXP), SearchSettings(trials=n + 100))
    components = Components(strategy, None, None, None, db, BenchTask())  # type: ignore[arg-type]
    return Orchestrator(settings, components, Path(tempfile.gettempdir()), show_progress=False), strategy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--loop-trials", type=int, default=2_000, help="trials stored through save_trial x2 (default 2,000)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    logger.remove()  # the orchestrator's resume messages, four per measurement
    print(f"# {platform.node()} {platform.processor() or platform.machine()} cpus={os.cpu_count()} "
          f"load={os.getloadavg()[0]:.2f} python={platform.python_version()} trials={args.trials}")
    rows = []
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(bench("sqlite", f"sqlite:///{Path(tmp) / 'results.db'}", args.trials, args.loop_trials))
            rows[-1]["file_mb"] = (Path(tmp) / "results.db").stat().st_size / 1e6
    if args.backend in ("postgresql", "both"):
        with postgres() as url:
            rows.append(bench("postgresql", url, args.trials, args.loop_trials))
    keys = ["loop_ms_per_trial", "loop_trials_per_s", "bulk_rows_per_s", "best10_ms", "best10_min_params_ms",
            "results_best10_ms", "pareto_ms",
            "pareto_size", "resume_replay_s", "resume_snapshot_s", "snapshot_mb"]
    print("| measure | " + " | ".join(r["backend"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for r in rows) + " |")
    print(f"# load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
