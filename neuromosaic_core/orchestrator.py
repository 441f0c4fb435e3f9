"""The search loop: suggest → decode → constraint check → generate code → validate → store → run →
store result → update strategy → notify observers, with ``runner.workers`` trials in flight.

The orchestrator never imports generated code (nor torch): code is validated statically here and
executed only by the trial harness inside the runner.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from neuromosaic_core.codegen.pipeline import CodeGenFailed, generate_validated_code, lookup_cached
from neuromosaic_core.constraints import ConstraintValidator
from neuromosaic_core.display import SearchProgress
from neuromosaic_core.errors import NeuromosaicError
from neuromosaic_core.interfaces import (
    ArchitectureEncoder,
    CodeGenProvider,
    CodeGenRequest,
    ResultsDB,
    Runner,
    SearchStrategy,
    Task,
    TrialJob,
    Visualizer,
)
from neuromosaic_core.model import (
    ErrorClass,
    Experiment,
    Trial,
    TrialResult,
    TrialStatus,
    converter,
    reuse_key,
    stable_hash,
)
from neuromosaic_core.settings import CoreSettings


@attrs.frozen
class _Twin:
    """A trial whose architecture is already in flight: it waits for that trial's result."""

    task: asyncio.Task[TrialResult]


async def _follow(task: asyncio.Task[TrialResult]) -> TrialResult:
    # shield: cancelling the follower must not cancel the trial it follows
    return await asyncio.shield(task)


class ExperimentAlreadyDone(NeuromosaicError):
    """The experiment already has ``search.trials`` completed trials."""

    exit_code = 0


@attrs.define
class Components:
    """The built components one search uses (what the config selected)."""

    strategy: SearchStrategy
    encoder: ArchitectureEncoder
    codegen: CodeGenProvider
    runner: Runner
    storage: ResultsDB
    task: Task
    codegen_name: str = "codegen"
    fallback: CodeGenProvider | None = None
    visualizers: list[tuple[str, Visualizer]] = attrs.field(factory=list)
    task_settings: Any = None


@attrs.define
class Counts:
    completed: int = 0
    failed: int = 0
    invalid: int = 0
    reused: int = 0
    consecutive_failures: int = 0


class Orchestrator:
    """Runs one experiment to ``search.trials`` completed trials (resuming a stored one)."""

    def __init__(self, settings: CoreSettings, components: Components, run_dir: Path,
                 hook: Any = None, config: dict[str, Any] | None = None, show_progress: bool = True) -> None:
        self.s = settings
        self.c = components
        self.run_dir = run_dir
        self.hook = hook
        self.config = config or {}
        self.show_progress = show_progress
        self.name = settings.experiment.name
        self.maximize = settings.search.direction == "maximize"
        self.log = logger.bind(experiment=self.name)
        self.counts = Counts()
        self.best: float | None = None
        self.task_key = f"{components.task.name}:{stable_hash(converter.unstructure(components.task_settings))}"
        self.validator = ConstraintValidator(settings.constraints, components.task.input_shape, components.task.num_classes)
        self.progress: SearchProgress | None = None
        self._running: dict[str, tuple[Trial, asyncio.Task[TrialResult]]] = {}
        self.stop_reason = "completed"

    # -- observers ---------------------------------------------------------------------------

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        if self.hook is None:
            return
        # Each plugin's observer is called on its own, so one that raises neither stops the search
        # nor hides the event from the others (pluggy would stop at the first exception).
        for impl in getattr(self.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception as exc:
                self.log.warning(f"observer {impl.plugin_name}.{hook_name} failed: {type(exc).__name__}: {exc}")

    # -- set-up and resume -------------------------------------------------------------------

    def _open_experiment(self) -> tuple[Experiment, list[Trial], list[Trial]]:
        storage = self.c.storage
        experiment = storage.get_experiment(self.name)
        if experiment is None:
            experiment = storage.create_experiment(Experiment(self.name, self.c.task.name, self.config))
            return experiment, [], []
        if experiment.task != self.c.task.name:
            raise NeuromosaicError(
                f"experiment {self.name!r} was run on task {experiment.task!r}, not {self.c.task.name!r}; "
                "choose another experiment.name"
            )
        storage.mark_interrupted(self.name)
        history = storage.list_history(self.name)
        # Every interrupted trial is re-run in place (same row, same number) until it ends, so a
        # crash during a resume cannot lose it. Rows of the same architecture all come back: the
        # first trains, the others share its result.
        interrupted = [t for t in history if t.status == TrialStatus.INTERRUPTED]
        completed = sum(1 for t in history if t.status == TrialStatus.COMPLETED)
        if completed >= self.s.search.trials:
            raise ExperimentAlreadyDone(
                f"experiment {self.name!r}: {completed}/{self.s.search.trials} trials done; "
                "raise search.trials or choose another experiment.name"
            )
        if interrupted:
            self.log.warning(f"{len(interrupted)} trial(s) cut off by an earlier crash will be re-run")
        self.log.info(f"resuming: {completed}/{self.s.search.trials} trials already done")
        return experiment, history, interrupted

    def _replay(self, history: Sequence[Trial]) -> None:
        told = [(t.vector, t.result) for t in history if t.result is not None and t.status != TrialStatus.INTERRUPTED]
        if told:
            self.c.strategy.update_with_results(told)  # type: ignore[arg-type]
        for t in history:
            if t.status == TrialStatus.COMPLETED and t.result is not None:
                self.counts.completed += 1
                self._track_best(t.result)
            elif t.status == TrialStatus.FAILED:
                self.counts.failed += 1
            elif t.status == TrialStatus.INVALID:
                self.counts.invalid += 1

    def _track_best(self, result: TrialResult) -> None:
        value = result.metrics.get(self.s.search.metric)
        if value is not None and (self.best is None or (value > self.best if self.maximize else value < self.best)):
            self.best = value

    # -- one trial ---------------------------------------------------------------------------

    async def _prepare(self, trial: Trial) -> TrialResult | TrialJob | _Twin:
        """Decode, check, reuse or generate code. Returns a result when nothing needs running, and
        the in-flight twin when the same architecture is already training."""
        log = self.log.bind(trial=trial.number)
        trial.spec, trial.code, trial.result, trial.reused_from = None, None, None, None
        try:
            trial.spec = self.c.encoder.decode(trial.vector)
        except ValueError as exc:
            return TrialResult.failure(ErrorClass.CONSTRAINT, f"cannot decode vector: {exc}")
        needs_code = getattr(self.c.runner, "needs_code", True)
        if needs_code:
            check = self.validator.validate_constraints(trial.spec)
            if not check.ok:
                log.info(f"invalid architecture ({check.message()}); not trained")
                return TrialResult.failure(ErrorClass.CONSTRAINT, check.message())
        trial.reuse_key = reuse_key(trial.spec, self.task_key, self.s.training)
        reuse = self.s.search.reuse
        twin = None if reuse == "none" else self.c.storage.find_reusable(trial.reuse_key, None if reuse == "all" else self.name)
        if twin is not None and twin.result is not None:
            log.info(f"same architecture as trial {twin.number} of {twin.experiment}: result reused")
            trial.code, trial.reused_from = twin.code, twin.id
            return twin.result
        running = self._running.get(trial.reuse_key) if reuse != "none" else None
        if running is not None:
            log.info(f"same architecture as trial {running[0].number}, still training: sharing its result")
            trial.code, trial.reused_from = running[0].code, running[0].id
            return _Twin(running[1])
        # Absolute paths, computed from one resolved run directory (the runner creates the folder).
        result_path = self._abs_run_dir / "trials" / f"trial-{trial.number:04d}" / "result.json"
        result_path.unlink(missing_ok=True)
        if not needs_code:
            return self._job(trial, "", result_path)
        request = CodeGenRequest(trial.spec, tuple(self.c.task.input_shape), self.c.task.num_classes)
        # The cache is asked here, on the loop's thread (storage connections stay on one thread).
        outcome = lookup_cached(self.c.codegen, request, self.c.codegen_name, self.c.storage.find_cached_code)
        if outcome is not None:
            log.info(f"code from the cache (same spec, {self.c.codegen_name} model and prompt template as before)")
        else:
            try:
                outcome = await asyncio.to_thread(
                    generate_validated_code, self.c.codegen, request, self.s.search.codegen_attempts,
                    self.c.codegen_name, self.c.fallback, "template",
                )
            except CodeGenFailed as exc:
                log.warning(f"code generation failed: {exc}")
                trial.codegen = exc.record
                return TrialResult.failure(ErrorClass.INVALID_CODE, str(exc))
        if outcome.rejections:
            log.info(f"code accepted after {outcome.attempts} attempt(s) by {outcome.provider}; rejected: {outcome.rejections}")
        trial.code, trial.codegen = outcome.code, outcome.record
        code_path = self._code_path(trial.number)
        code_path.write_text(outcome.code)
        return self._job(trial, str(self._abs_run_dir / code_path.relative_to(self.run_dir)), result_path)

    def _job(self, trial: Trial, code_path: str, result_path: Path) -> TrialJob:
        return TrialJob(
            trial_id=trial.number,
            experiment=self.name,
            code_path=code_path,
            data_path=self._abs_data_path,
            result_path=str(result_path),
            input_shape=tuple(self.c.task.input_shape),
            num_classes=self.c.task.num_classes,
            training=self.s.training,
            weights_path=str(self._abs_run_dir / "weights" / f"trial-{trial.number:04d}.pt"),
            timeout_s=float(getattr(self._runner_settings, "timeout", 600.0)),
            max_params=self.s.constraints.max_params,
            spec=trial.spec,
            device=str(getattr(self._runner_settings, "device", "cpu")),
        )

    def _code_path(self, number: int) -> Path:
        path = self.run_dir / "code" / f"trial-{number:04d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _finish(self, trial: Trial, result: TrialResult) -> None:
        trial.result = result
        if trial.reuse_key is not None and self._running.get(trial.reuse_key, (None,))[0] is trial:
            del self._running[trial.reuse_key]
        log = self.log.bind(trial=trial.number)
        if result.ok:
            trial.status = TrialStatus.COMPLETED
            self.counts.completed += 1
            self.counts.consecutive_failures = 0
            self.counts.reused += trial.reused_from is not None
            self._track_best(result)
            m = result.metrics
            log.info(f"completed: {self.s.search.metric}={m.get(self.s.search.metric, float('nan')):.4f} "
                     f"test_accuracy={m.get('test_accuracy', float('nan')):.4f} params={int(m.get('params', 0)):,} "
                     f"{trial.spec.describe() if trial.spec else ''}")
        else:
            assert result.error is not None
            if result.error.error_class == ErrorClass.CONSTRAINT:
                trial.status = TrialStatus.INVALID
                self.counts.invalid += 1
            else:
                trial.status = TrialStatus.FAILED
                self.counts.failed += 1
                log.warning(f"failed ({result.error.error_class.value}): {result.error.message}")
            self.counts.consecutive_failures += 1
        self.c.storage.save_trial(trial)
        self.c.strategy.update_with_results([(trial.vector, result)])
        self._notify("trial_finished", trial=trial)
        if self.progress:
            self.progress.update(self.counts.completed, self.counts.failed, self.counts.invalid, self.best)

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, runner_settings: Any = None) -> dict[str, Any]:
        """Search until ``search.trials`` trials completed or the failure limit; return the summary."""
        self._runner_settings = runner_settings
        started = time.perf_counter()
        # SIGTERM (a scheduler, `kill`) stops the search like Ctrl-C does: trials are cancelled and
        # their process groups killed, instead of being orphaned.
        current = asyncio.current_task()
        if current is not None:
            for sig in (signal.SIGTERM, signal.SIGHUP):  # a closed terminal or ssh session too
                asyncio.get_running_loop().add_signal_handler(sig, current.cancel)
        experiment, history, requeue = self._open_experiment()
        self._replay(history)
        number = max((t.number for t in history), default=0)
        self._notify("experiment_started", experiment=experiment, config=self.config, run_dir=self.run_dir)
        self.log.info(f"preparing task {self.c.task.name!r}")
        self.data_path = await asyncio.to_thread(self.c.task.prepare_data, self.run_dir / "data")
        self._abs_data_path = str(Path(self.data_path).resolve())
        self._abs_run_dir = self.run_dir.resolve()
        queue: deque[Trial] = deque(requeue)
        in_flight: dict[asyncio.Task[TrialResult], Trial] = {}
        self._running: dict[str, tuple[Trial, asyncio.Task[TrialResult]]] = {}  # reuse key -> trial in flight
        workers = max(1, self.c.runner.workers)
        target = self.s.search.trials
        self.log.info(f"searching: {target} trials, {workers} worker(s), runner {type(self.c.runner).__name__}")
        self.progress = SearchProgress(target, self.s.search.metric) if self.show_progress else None
        if self.progress:
            self.progress.__enter__()
            self.progress.update(self.counts.completed, self.counts.failed, self.counts.invalid, self.best)
        try:
            while True:
                if self.counts.completed >= target:
                    break
                if self.counts.consecutive_failures >= self.s.search.max_failures:
                    self.stop_reason = "max_failures"
                    self.log.error(f"stopping: {self.counts.consecutive_failures} consecutive failed trials "
                                   f"(search.max_failures={self.s.search.max_failures})")
                    break
                slots = min(workers - len(in_flight), target - self.counts.completed - len(in_flight))
                if slots > 0:
                    trials = [queue.popleft() for _ in range(min(slots, len(queue)))]
                    if len(trials) < slots:
                        # In a thread: an LLM-guided strategy may take seconds, and trials in
                        # flight must not wait for it.
                        vectors = await asyncio.to_thread(self.c.strategy.suggest_architectures, slots - len(trials))
                        if not vectors and not trials and not in_flight:
                            # Nothing left to try and nothing running that could change the
                            # strategy's mind: asking again would spin forever.
                            self.stop_reason = "exhausted"
                            self.log.warning(f"stopping: the strategy has no more architectures to suggest "
                                             f"({self.counts.completed}/{target} trials completed)")
                            break
                        for vector in vectors:
                            number += 1
                            trials.append(Trial(self.name, number, self.c.encoder.search_space().canonicalize(vector)))
                    for trial in trials:
                        if self.counts.consecutive_failures >= self.s.search.max_failures:
                            break  # the remaining suggestions would only add to a failing streak
                        prepared = await self._prepare(trial)
                        if isinstance(prepared, TrialResult):
                            self._finish(trial, prepared)
                            continue
                        trial.status = TrialStatus.RUNNING
                        self.c.storage.save_trial(trial)  # stored before it runs: a crash leaves a trace
                        self._notify("trial_started", trial=trial)
                        if isinstance(prepared, _Twin):
                            # The same architecture is already training: share its result.
                            task = asyncio.create_task(_follow(prepared.task))
                        else:
                            task = asyncio.create_task(self.c.runner.run_trial(prepared))
                            if trial.reuse_key is not None:
                                self._running[trial.reuse_key] = (trial, task)
                        in_flight[task] = trial
                if not in_flight:
                    continue
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._finish(in_flight.pop(task), task.result())
        finally:
            if in_flight:
                # Interrupted (Ctrl-C, an error): stop the trials. Their rows stay `running`, which the
                # next start turns into `interrupted` and re-runs, exactly as after a hard crash.
                for task in in_flight:
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)
            if self.progress:
                self.progress.__exit__(None, None, None)
            await self.c.runner.close()
        summary = self.finalize(time.perf_counter() - started)
        self._notify("experiment_finished", experiment=experiment, summary=summary)
        return summary

    # -- outputs -----------------------------------------------------------------------------

    def _prune_weights(self) -> None:
        keep = self.s.harness.keep_weights
        if keep == "all":
            return
        ranked = self.c.storage.get_best_architectures(self.name, k=10**9, metric=self.s.search.metric, maximize=self.maximize)
        for trial in ranked[int(keep):]:
            if trial.result and trial.result.weights_path and trial.reused_from is None:
                Path(trial.result.weights_path).unlink(missing_ok=True)
                trial.result = attrs.evolve(trial.result, weights_path=None)
                self.c.storage.save_trial(trial)

    def _materialise(self, trial: Trial) -> dict[str, str | None]:
        """Make sure the best trial's code and weights are in this run directory; relative paths."""
        code_path = self._code_path(trial.number)
        if trial.code and not code_path.exists():
            code_path.write_text(trial.code)
        weights = None
        source = Path(trial.result.weights_path) if trial.result and trial.result.weights_path else None
        if source is not None and source.exists():
            target = self.run_dir / "weights" / f"trial-{trial.number:04d}.pt"
            if source.resolve() != target.resolve():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            weights = str(target.relative_to(self.run_dir))
        return {"code": str(code_path.relative_to(self.run_dir)) if trial.code else None, "weights": weights}

    def finalize(self, elapsed: float | None = None) -> dict[str, Any]:
        """Prune weights, write summary.json and the plots; return the summary."""
        self._prune_weights()
        metric = self.s.search.metric
        top = self.c.storage.get_best_architectures(self.name, k=self.s.search.top_k, metric=metric, maximize=self.maximize)
        trials = self.c.storage.list_trials(self.name)
        summary: dict[str, Any] = {
            "experiment": self.name,
            "task": self.c.task.name,
            "metric": metric,
            "direction": self.s.search.direction,
            "stopped": self.stop_reason,
            "trials": {
                "completed": sum(t.status == TrialStatus.COMPLETED for t in trials),
                "failed": sum(t.status == TrialStatus.FAILED for t in trials),
                "invalid": sum(t.status == TrialStatus.INVALID for t in trials),
                "reused": sum(t.reused_from is not None for t in trials),
            },
            "best": None,
            "top": [],
        }
        if elapsed is not None:
            summary["elapsed_seconds"] = round(elapsed, 1)
        for rank, trial in enumerate(top):
            assert trial.result is not None
            entry = {"trial_id": trial.number, **{k: trial.result.metrics.get(k) for k in
                     ("val_accuracy", "test_accuracy", "params", "flops", "latency_ms", "train_seconds")}}
            entry["params"] = int(entry["params"]) if entry["params"] is not None else None
            entry["spec"] = converter.unstructure(trial.spec)
            if rank == 0:
                entry.update(self._materialise(trial))
                summary["best"] = entry
            summary["top"].append(entry)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        plots = self.run_dir / "plots"
        plots.mkdir(exist_ok=True)
        for name, visualizer in self.c.visualizers:
            try:
                paths = visualizer.plot_performance_landscape(trials, plots, metric)
                self.log.info(f"{name}: wrote {', '.join(str(p.relative_to(self.run_dir)) for p in paths)}")
            except Exception as exc:  # a broken plot must not lose a finished search
                self.log.warning(f"visualizer {name} failed: {type(exc).__name__}: {exc}")
        self.top = top
        return summary
