"""Per-trial overhead of the search loop, against Optuna, on a tabular benchmark (no training).

Ours: the full orchestrator loop (suggest, decode, store, ``tabular`` run, store the result,
update the strategy, notify observers) for ``--trials`` trials (default 1,000) with the ``sql``
storage on a SQLite file in a temporary directory, one worker, built in-process as
``neuromosaic_core.cli.build_components`` builds it and run with ``Orchestrator(...).run()``
(``show_progress=False``, loguru at WARNING to stderr, no log file). Each trial is timed by a small
observer plugin's ``trial_finished`` hook (registered with
``PluginSystem.load(extra_plugins=[...])``): the time between consecutive ``trial_finished``
calls, the first one measured from ``experiment_started``.

Optuna: ``optuna.create_study(storage=optuna.storages.RDBStorage("sqlite:///..."))`` on the same
six categorical edges with ``RandomSampler(seed)`` and ``TPESampler(seed)``, the same table
lookup as the objective, ``--trials`` trials, each timed by a study callback the same way (from
the previous callback; the first from just before ``optimize``).

Printed: a markdown table with the per-trial time's median and 95th percentile, the median over
trials 100-200 and over trials 900-1000 (growth), and the total.

Durability differs by default: the ``sql`` storage opens SQLite in WAL mode with
``synchronous=NORMAL`` (a commit survives a crash of the process, not necessarily a power cut),
Optuna uses SQLite's defaults (rollback journal, ``synchronous=FULL``: fsync on every commit).
``--matched-durability`` adds a row for each side with the other's setting.

Needs the ``nasbench201`` encoder, the ``tabular`` runner and the ``sql`` storage plugins, the
strategies' plugins; optional: ``optuna`` (its rows are skipped with a note without it). Not
run by CI.

    python benchmarks/overhead.py                        # random, 1,000 trials, with Optuna
    python benchmarks/overhead.py random hillclimb --trials 300
    python benchmarks/overhead.py --profile prof.out     # cProfile of our loop (the first strategy)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loguru import logger

from neuromosaic_core import hookimpl
from neuromosaic_core.plugins import PluginSystem


class Recorder:
    """An observer plugin: the time of every ``trial_finished`` call."""

    def __init__(self) -> None:
        self.start = 0.0
        self.stamps: list[float] = []

    @hookimpl
    def experiment_started(self, experiment: Any, config: Any) -> None:
        self.start = time.perf_counter()

    @hookimpl
    def trial_finished(self, trial: Any) -> None:
        self.stamps.append(time.perf_counter())

    def durations(self) -> list[float]:
        return _diffs(self.start, self.stamps)


def _diffs(start: float, stamps: list[float]) -> list[float]:
    return [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)]


def tabular_components(system: PluginSystem, strategy: str, workdir: Path, seed: int = 0,
                       table: Path | None = None) -> tuple[Any, Any]:
    """The components of a search on the NAS-Bench-201 table (``runner=tabular``, one worker,
    SQLite in ``workdir``) and the runner's settings; ``benchmarks/alerting.py`` uses them too."""
    from neuromosaic_runner_tabular import TabularSettings
    from neuromosaic_storage_sql.settings import SqlStorageSettings

    from neuromosaic_core.orchestrator import Components

    def make(kind: str, name: str, settings: Any = None, **kwargs: Any) -> Any:
        component = system.get(kind, name)
        return component.factory(settings=settings if settings is not None else component.default_settings(), **kwargs)

    encoder = make("encoder", "nasbench201")
    runner_settings = TabularSettings(workers=1, table=str(table) if table is not None else "")
    components = Components(
        strategy=make("strategy", strategy, space=encoder.search_space(), seed=seed, metric="val_accuracy", maximize=True),
        encoder=encoder,
        codegen=make("codegen", "template"),
        codegen_name="template",
        runner=make("runner", "tabular", runner_settings),
        storage=make("storage", "sql", SqlStorageSettings(url=f"sqlite:///{workdir / 'neuromosaic.db'}")),
        task=make("task", "nasbench201"),
        task_settings=system.get("task", "nasbench201").default_settings(),
    )
    return components, runner_settings


def run_ours(strategy: str, trials: int, table: Path | None, workdir: Path, seed: int = 0, profile: Path | None = None,
             full_sync: bool = False) -> list[float]:
    from neuromosaic_core.orchestrator import Orchestrator
    from neuromosaic_core.settings import CoreSettings, ExperimentSettings, SearchSettings

    recorder = Recorder()
    system = PluginSystem.load(extra_plugins=[("overhead_recorder", recorder)])
    components, runner_settings = tabular_components(system, strategy, workdir, seed, table)
    if full_sync:  # fsync the WAL on every commit, like SQLite's default (the plugin uses synchronous=NORMAL)
        components.storage.db.execute_sql("PRAGMA synchronous=FULL")
        assert components.storage.db.execute_sql("PRAGMA synchronous").fetchone()[0] == 2
    name = f"nasbench201-nasbench201-{strategy}"
    core = CoreSettings(experiment=ExperimentSettings(name=name, seed=seed), search=SearchSettings(trials=trials, max_failures=trials))
    orchestrator = Orchestrator(core, components, workdir / "runs" / name, hook=system.pm.hook, show_progress=False)
    profiler = cProfile.Profile() if profile else None
    try:
        if profiler:
            profiler.enable()
        summary = asyncio.run(orchestrator.run(runner_settings))
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
    finally:
        components.storage.close()
    assert summary["trials"]["completed"] == trials, summary["trials"]
    return recorder.durations()


def run_optuna(sampler_name: str, trials: int, table: dict, workdir: Path, seed: int = 0, wal: bool = False) -> list[float]:
    import optuna
    from neuromosaic_encoder_nasbench201.encoder import DIMENSIONS, OPS, cell_string

    from neuromosaic_core.model import ArchitectureVector

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.RandomSampler(seed=seed) if sampler_name == "random" else optuna.samplers.TPESampler(seed=seed)
    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / f'optuna-{sampler_name}.db'}")
    if wal:  # the pragmas of neuromosaic's sql storage, on every connection Optuna opens
        from sqlalchemy import event

        @event.listens_for(storage.engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        storage.engine.dispose()  # connections opened while creating the schema get the pragmas too
    study = optuna.create_study(study_name=f"nasbench201-{sampler_name}", storage=storage, sampler=sampler, direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        vector = ArchitectureVector({name: trial.suggest_categorical(name, list(OPS)) for name in DIMENSIONS})
        return table[cell_string(vector)]["val_acc_200"] / 100.0

    stamps: list[float] = []
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials, callbacks=[lambda _study, _trial: stamps.append(time.perf_counter())])
    storage.engine.dispose()
    return _diffs(start, stamps)


def describe(durations: list[float]) -> dict[str, float]:
    ms = [d * 1000 for d in durations]
    n = len(ms)
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if n > 1 else ms[0]
    early = ms[99:200] if n >= 200 else []
    late = ms[899:1000] if n >= 1000 else []
    return {
        "median": statistics.median(ms), "p95": p95,
        "early": statistics.median(early) if early else float("nan"),
        "late": statistics.median(late) if late else float("nan"),
        "total": sum(durations),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("strategies", nargs="*", default=["random"])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--table", type=Path, help="a JSON table of your own (default: NAS-Bench-201 CIFAR-10 as the tabular plugin ships it)")
    parser.add_argument("--no-optuna", action="store_true", help="skip the Optuna rows")
    parser.add_argument("--matched-durability", action="store_true",
                        help="add rows with the other side's SQLite durability: ours with synchronous=FULL (SQLite's "
                             "default, as Optuna runs), Optuna random with WAL + synchronous=NORMAL (as ours runs)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of our loop (first strategy) to this file")
    args = parser.parse_args(argv)
    if args.table is not None and not args.table.is_file():
        sys.exit(f"overhead: the table is not at {args.table}")
    table_path = args.table.resolve() if args.table is not None else None
    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="nm-overhead-") as tmp:
        installed = PluginSystem.load().names("strategy")
        for i, strategy in enumerate(args.strategies):
            if strategy not in installed:
                print(f"note: strategy {strategy!r} is not installed; skipped", file=sys.stderr)
                continue
            workdir = Path(tmp) / f"ours-{strategy}"
            workdir.mkdir()
            durations = run_ours(strategy, args.trials, table_path, workdir,
                                 profile=args.profile if i == 0 else None)
            rows.append((f"neuromosaic {strategy} (sql/SQLite WAL, synchronous=NORMAL)", describe(durations)))
            print(f"done: {rows[-1][0]}", file=sys.stderr)
            if args.matched_durability and i == 0:
                workdir = Path(tmp) / f"ours-{strategy}-full"
                workdir.mkdir()
                durations = run_ours(strategy, args.trials, table_path, workdir, full_sync=True)
                rows.append((f"neuromosaic {strategy} (sql/SQLite WAL, synchronous=FULL)", describe(durations)))
                print(f"done: {rows[-1][0]}", file=sys.stderr)
        if not args.no_optuna:
            try:
                import optuna  # noqa: F401
            except ImportError:
                print("note: optuna is not installed; its rows are skipped", file=sys.stderr)
            else:
                if table_path is not None:
                    import json

                    table = json.loads(table_path.read_text())
                else:
                    from neuromosaic_runner_tabular.packaged import packaged_table

                    table = packaged_table("cifar10")
                for sampler in ("random", "tpe"):
                    workdir = Path(tmp) / f"optuna-{sampler}"
                    workdir.mkdir()
                    durations = run_optuna(sampler, args.trials, table, workdir)
                    label = "TPE" if sampler == "tpe" else sampler
                    rows.append((f"optuna {label} (RDBStorage/SQLite, SQLite defaults)", describe(durations)))
                    print(f"done: {rows[-1][0]}", file=sys.stderr)
                    if args.matched_durability and sampler == "random":
                        workdir = Path(tmp) / "optuna-random-wal"
                        workdir.mkdir()
                        durations = run_optuna(sampler, args.trials, table, workdir, wal=True)
                        rows.append(("optuna random (RDBStorage/SQLite WAL, synchronous=NORMAL)", describe(durations)))
                        print(f"done: {rows[-1][0]}", file=sys.stderr)

    print(f"Per-trial time (ms), {args.trials} trials, one at a time, durable SQLite storage on both sides\n")
    print("| loop | median | p95 | median, trials 100-200 | median, trials 900-1000 | total |")
    print("|---|---|---|---|---|---|")
    for name, d in rows:
        print(f"| {name} | {d['median']:.2f} | {d['p95']:.2f} | {d['early']:.2f} | {d['late']:.2f} | {d['total']:.1f} s |")


if __name__ == "__main__":
    main()
