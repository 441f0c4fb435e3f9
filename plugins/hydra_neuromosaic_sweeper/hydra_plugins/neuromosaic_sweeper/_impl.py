"""The sweep: ask the strategy, launch the jobs through Hydra's launcher, store and tell the results.

The loop is the orchestrator's data flow without the architecture part (no encoder, code
generation or runner: Hydra's launcher runs the app): suggest -> store the trial (running) ->
launch -> store the result -> tell the strategy (and the meta-learner). A rerun of the same sweep
finds the experiment in the database, marks what a crash left running as interrupted, replays
the finished trials into the strategy, re-runs the interrupted ones and runs only what is missing
to reach ``n_trials``.

Logging goes through :mod:`logging`, as Hydra configures it for the app and its plugins.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.neuromosaic_sweeper._space import SweepSpace, SweepSpaceError, parse_sweep
from omegaconf import DictConfig, OmegaConf

from neuromosaic_core.errors import NeuromosaicError
from neuromosaic_core.interfaces import ResultsDB
from neuromosaic_core.model import ArchitectureVector, ErrorClass, Experiment, Trial, TrialResult, TrialStatus

log = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "maximize")
#: Trial statuses that count towards ``n_trials`` (a trial with a result).
FINISHED = (TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.INVALID)


class SweeperError(SweepSpaceError):
    """A setting or a state the sweep cannot go on with (one line, exit status 1)."""


def _plain(node: Any) -> dict[str, Any]:
    if node is None:
        return {}
    if isinstance(node, DictConfig):
        return dict(OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
    return dict(node)


def objective_metrics(value: Any, metric: str) -> dict[str, float]:
    """The metrics of one job's return value: a number is ``{metric: value}``; a mapping of numbers
    is kept whole and must hold ``metric``. Raises ``ValueError`` with the reason otherwise."""
    if isinstance(value, (Mapping, DictConfig)):
        raw = _plain(value)
        if metric not in raw:
            raise ValueError(f"the app returned a dict without {metric!r} (keys: {', '.join(map(str, raw)) or 'none'}); "
                             f"return a number or set hydra.sweeper.metric")
        metrics = {}
        for key, item in raw.items():
            metrics[str(key)] = _number(item, f"{key!r} of the returned dict")
        return metrics
    return {metric: _number(value, "the return value")}


def _number(value: Any, what: str) -> float:
    if value is None and what == "the return value":
        raise ValueError("the app returned nothing: return the objective (a number) from the @hydra.main function")
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    return number


class NeuromosaicSweeperImpl(Sweeper):
    def __init__(self, strategy: str = "random", strategy_settings: Any = None, n_trials: int = 20, n_jobs: int = 1,
                 direction: str = "minimize", metric: str = "objective", seed: int = 0, storage_url: str | None = None,
                 experiment: str | None = None, meta: str | None = None, meta_settings: Any = None, prescreen: int = 1,
                 max_failures: int = 3, params: Any = None) -> None:
        self.strategy_name = strategy
        self.strategy_settings = _plain(strategy_settings)
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.direction = direction
        self.maximize = direction == "maximize"
        self.metric = metric
        self.seed = seed
        self.storage_url = storage_url
        self.experiment_name = experiment
        self.meta_name = meta
        self.meta_settings = _plain(meta_settings)
        self.prescreen = prescreen
        self.max_failures = max_failures
        self.params = _plain(params)
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    # -- building the parts ----------------------------------------------------------------

    def _build(self, kind: str, name: str, settings: Mapping[str, Any], key: str, sweep: SweepSpace) -> Any:
        from neuromosaic_core.plugins import PluginSystem
        from neuromosaic_core.settings import structure_settings

        system = self._system if hasattr(self, "_system") else PluginSystem.load()
        self._system = system
        if name not in system.names(kind):
            valid = ", ".join(system.names(kind)) or "none installed"
            raise SweeperError(f"hydra.sweeper.{kind}={name!r} is not an installed {kind}; valid choices: {valid}")
        component = system.get(kind, name)
        if component.metadata.get("uses_llm"):
            raise SweeperError(f"hydra.sweeper.{kind}={name!r} needs an LLM code generator, which the sweeper does not set up; "
                               f"choose one of: {', '.join(n for n in system.names(kind) if n != name)}")
        built_settings = structure_settings(dict(settings), component.settings, f"hydra.sweeper.{key}") if component.settings else None
        return component.factory(space=sweep.space, seed=self.seed, settings=built_settings, metric=self.metric, maximize=self.maximize)

    def _open_storage(self) -> tuple[ResultsDB, str]:
        from neuromosaic_core.results import default_url, open_results

        url = self.storage_url or default_url()
        return open_results(url, create=True), url

    def _experiment(self, db: ResultsDB, sweep: SweepSpace) -> Experiment:
        name = self.experiment_name or f"{self.config.hydra.job.name}-{self.strategy_name}"
        self.name = name
        identity = sweep.describe()
        config = {
            "search": {"metric": self.metric, "direction": self.direction},
            "strategy": {"name": self.strategy_name, **self.strategy_settings},
            "meta": {"name": self.meta_name, **self.meta_settings} if self.meta_name else None,
            "experiment": {"name": name, "seed": self.seed},
            "sweep": identity,
            "hydra_sweeper": {"n_trials": self.n_trials, "n_jobs": self.n_jobs, "prescreen": self.prescreen},
        }
        experiment = db.get_experiment(name)
        if experiment is None:
            return db.create_experiment(Experiment(name, f"hydra:{self.config.hydra.job.name}", config))
        stored = dict(experiment.config or {})
        if stored.get("sweep") != identity:
            raise SweeperError(f"experiment {name!r} in the database was run over another sweep "
                               f"({_describe_sweep(stored.get('sweep'))}); rerun that sweep to resume it, or set hydra.sweeper.experiment")
        search = stored.get("search") or {}
        if (search.get("metric"), search.get("direction")) != (self.metric, self.direction):
            raise SweeperError(f"experiment {name!r} optimised {search.get('metric')} ({search.get('direction')}); "
                               f"resume it with the same hydra.sweeper.metric and direction, or set hydra.sweeper.experiment")
        return experiment

    # -- the sweep --------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> None:
        try:
            self._sweep(arguments)
        except NeuromosaicError as exc:  # a setting, a storage or a plugin problem: one line
            raise SweeperError(str(exc).strip().splitlines()[0]) from exc
        except ValueError as exc:  # a settings validator (attrs) said why
            raise SweeperError(str(exc).strip().splitlines()[0]) from exc

    def _check_settings(self) -> None:
        # Checked here, not in __init__: Hydra wraps an error raised while instantiating the
        # sweeper in a multi-line InstantiationException.
        if self.direction not in DIRECTIONS:
            raise SweeperError(f"hydra.sweeper.direction={self.direction!r}: expected minimize or maximize")
        for name, low in (("n_trials", 1), ("n_jobs", 1), ("prescreen", 1), ("max_failures", 1)):
            if getattr(self, name) < low:
                raise SweeperError(f"hydra.sweeper.{name}={getattr(self, name)}: must be at least {low}")
        if self.prescreen > 1 and not self.meta_name:
            raise SweeperError(f"hydra.sweeper.prescreen={self.prescreen} needs a meta-learner to rank the candidates: "
                               "add hydra.sweeper.meta=surrogate")

    def _sweep(self, arguments: list[str]) -> None:
        self._check_settings()
        given = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        sweep = parse_sweep(given, self.hydra_context.config_loader)
        # One job's composition checked before anything is stored: a mistyped key stops here with
        # Hydra's own message, instead of leaving an experiment whose sweep nobody will rerun.
        self.validate_batch_is_legal([sweep.overrides(ArchitectureVector({d.name: d.default() for d in sweep.space}))])
        strategy = self._build("strategy", self.strategy_name, self.strategy_settings, "strategy_settings", sweep)
        meta = self._build("meta", self.meta_name, self.meta_settings, "meta_settings", sweep) if self.meta_name else None
        db, url = self._open_storage()
        try:
            self._run(db, url, sweep, strategy, meta)
        finally:
            db.close()

    def _run(self, db: ResultsDB, url: str, sweep: SweepSpace, strategy: Any, meta: Any) -> None:
        experiment = self._experiment(db, sweep)
        name = experiment.name
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        db.mark_interrupted(name)
        history = db.list_history(name)
        finished = [t for t in history if t.status in FINISHED and t.result is not None]
        requeue: deque[Trial] = deque(t for t in history if t.status == TrialStatus.INTERRUPTED)
        if finished:
            strategy.update_with_results([(t.vector, t.result) for t in finished])
            if meta is not None:
                meta.observe([(t.vector, t.result) for t in finished])
        if requeue:
            strategy.mark_pending([t.vector for t in requeue])
        done = len(finished)
        log.info(f"neuromosaic sweeper: experiment {name!r} in {url}, strategy {self.strategy_name}, "
                 f"{self.direction} {self.metric}, {len(sweep.space)} dimension(s)")
        if done:
            log.info(f"resuming: {done}/{self.n_trials} trials already done" +
                     (f", {len(requeue)} cut off by a crash re-run" if requeue else ""))
        number = db.max_trial_number(name)
        failures = 0
        while done < self.n_trials:
            size = min(self.n_jobs, self.n_trials - done)
            batch = [requeue.popleft() for _ in range(min(size, len(requeue)))]
            if len(batch) < size:
                wanted = size - len(batch)
                vectors = meta.prescreen(strategy, wanted, self.prescreen) if meta is not None else strategy.suggest_architectures(wanted)
                for vector in vectors:
                    number += 1
                    batch.append(Trial(name, number, sweep.space.canonicalize(vector)))
            if not batch:
                log.warning(f"stopping: the strategy has no more points to suggest ({done}/{self.n_trials} trials done)")
                break
            overrides = [sweep.overrides(t.vector) for t in batch]
            for trial in batch:
                trial.status = TrialStatus.RUNNING
                db.save_trial(trial)  # stored before it runs: a crash leaves a trace, re-run on resume
            # No validate_batch_is_legal per batch (the basic sweeper's habit): with one job per batch
            # it composed every config twice, 40% of a sweep's time. The first composition was
            # checked before anything was stored; a value the app's config rejects fails its
            # batch here, recorded, and stops the sweep with Hydra's message.
            try:
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            except Exception as exc:
                for trial in batch:
                    trial.status, trial.result = TrialStatus.FAILED, TrialResult.failure(ErrorClass.RUNTIME, _one_line(exc))
                    db.save_trial(trial)
                raise
            self.job_idx += len(returns)
            told = []
            last_error: BaseException | None = None
            for trial, ret in zip(batch, returns, strict=True):
                result, error = self._result(ret)
                trial.result = result
                trial.status = TrialStatus.COMPLETED if result.ok else TrialStatus.FAILED
                db.save_trial(trial)
                told.append((trial.vector, result))
                done += 1
                if result.ok:
                    failures = 0
                    chosen = " ".join(overrides[len(told) - 1][len(sweep.fixed):])
                    log.info(f"trial {trial.number}: {self.metric}={result.metrics[self.metric]:.6g}  {chosen}")
                else:
                    failures += 1
                    last_error = error
                    log.warning(f"trial {trial.number} failed: {result.error.message}")  # type: ignore[union-attr]
            strategy.update_with_results(told)
            if meta is not None:
                meta.observe(told)
            if failures >= self.max_failures:
                raise SweeperError(f"stopping: {failures} jobs in a row failed (hydra.sweeper.max_failures={self.max_failures}); "
                                   f"the last: {_one_line(last_error)}") from last_error
        self._write_results(db, url, name, sweep)

    def _result(self, ret: JobReturn) -> tuple[TrialResult, BaseException | None]:
        if ret.status != JobStatus.COMPLETED:
            try:
                _ = ret.return_value  # raises the job's own exception
            except BaseException as exc:  # noqa: BLE001 - the app may raise anything; it becomes a failed trial
                return TrialResult.failure(ErrorClass.RUNTIME, _one_line(exc)), exc
            return TrialResult.failure(ErrorClass.CRASH, f"job status {ret.status}"), None
        try:
            metrics = objective_metrics(ret.return_value, self.metric)
        except ValueError as exc:
            return TrialResult.failure(ErrorClass.RUNTIME, str(exc)), exc
        if not math.isfinite(metrics[self.metric]):
            return TrialResult.failure(ErrorClass.NAN_LOSS, f"the app returned {self.metric}={metrics[self.metric]}"), None
        return TrialResult(metrics=metrics), None

    def _write_results(self, db: ResultsDB, url: str, name: str, sweep: SweepSpace) -> None:
        counts = db.count_trials(name)
        top = db.get_best_architectures(name, k=1, metric=self.metric, maximize=self.maximize)
        results: dict[str, Any] = {
            "name": "neuromosaic",
            "experiment": name,
            "storage_url": url,
            "strategy": self.strategy_name,
            "metric": self.metric,
            "direction": self.direction,
            "completed": counts.get(TrialStatus.COMPLETED, 0),
            "failed": counts.get(TrialStatus.FAILED, 0),
        }
        if top:
            best = top[0]
            results.update(best_trial=best.number, best_value=best.result.metrics[self.metric],  # type: ignore[union-attr]
                           best_params=dict(best.vector.values), best_overrides=sweep.overrides(best.vector))
            log.info(f"best {self.metric}={results['best_value']:.6g} at trial {best.number}: "
                     f"{' '.join(sweep.overrides(best.vector)[len(sweep.fixed):])}")
        else:
            log.warning("no trial completed")
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")


def _one_line(exc: BaseException | None) -> str:
    if exc is None:
        return "no error recorded"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _describe_sweep(identity: Any) -> str:
    """A stored sweep in one line: ``x in [0, 5], act in {relu, gelu}``."""
    try:
        parts = []
        for dim in identity["space"]["dimensions"]:
            domain = "{" + ", ".join(map(str, dim["choices"])) + "}" if "choices" in dim else f"[{dim['low']}, {dim['high']}]"
            parts.append(f"{dim['name']} in {domain}")
        fixed = identity.get("fixed") or []
    except (KeyError, TypeError):
        return "unknown"
    return ", ".join(parts) + (f"; fixed {' '.join(fixed)}" if fixed else "")
