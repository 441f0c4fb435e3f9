"""The search loop: suggest → decode → constraint check → generate code → validate → store → run →
store result → update strategy → notify observers, with ``runner.workers`` trials in flight.

The orchestrator never imports generated code (nor torch): code is validated statically here and
executed only by the trial harness inside the runner.
"""

from __future__ import annotations

import asyncio
import json
import os
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
from neuromosaic_core.encryption import EncryptedResultsDB, check_experiment_key, raw_storage, seal_run_dir, seal_trial_files
from neuromosaic_core.errors import NeuromosaicError
from neuromosaic_core.interfaces import (
    ArchitectureEncoder,
    CodeGenProvider,
    CodeGenRequest,
    Decision,
    FinishedRun,
    MetaLearner,
    ResultsDB,
    Runner,
    SearchStrategy,
    Task,
    TrialJob,
    TrialScheduler,
    Visualizer,
)
from neuromosaic_core.model import (
    ArchitectureVector,
    ErrorClass,
    Experiment,
    StrategySnapshot,
    Trial,
    TrialResult,
    TrialStatus,
    converter,
    expand_ranges,
    id_ranges,
    reuse_key,
    stable_hash,
)
from neuromosaic_core.settings import CoreSettings, MetaSettings


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
    #: The surrogate model (``meta=<name>``) and its settings, or None (no pre-screening, no warm
    #: start, no recommendations).
    meta: MetaLearner | None = None
    meta_settings: MetaSettings | None = None
    #: The trial scheduler (``scheduler=<name>``), or None: every trial trains to its end.
    scheduler: TrialScheduler | None = None


@attrs.define
class Counts:
    completed: int = 0
    failed: int = 0
    invalid: int = 0
    reused: int = 0
    consecutive_failures: int = 0
    #: Completed trials a scheduler stopped or paused below full fidelity (counted in ``completed`` too).
    pruned: int = 0


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
        identity = components.task.identity()  # a task on the user's files: their content's hash, not their path
        identity = converter.unstructure(components.task_settings) if identity is None else identity
        self.task_key = f"{components.task.name}:{stable_hash(identity)}"
        self.validator = ConstraintValidator(settings.constraints, components.task.input_shape, components.task.num_classes)
        self.progress: SearchProgress | None = None
        self._running: dict[str, tuple[Trial, asyncio.Task[TrialResult]]] = {}
        self.stop_reason = "completed"
        #: Keys of the architectures proposed by warm start: their results may be reused from any
        #: experiment (they come from earlier experiments), whatever ``search.reuse`` scopes.
        self._warm_keys: set[str] = set()
        self._meta_fed = False  # whether the meta-learner has been told this experiment's history
        self._screening = False  # whether pre-screening has started (logged once)
        self._told: set[int] = set()  # ids of stored trials the strategy has been told (see _snapshot)
        self._open: set[int] = set()  # ids of stored trials not told yet: running or queued to re-run
        self._since_snapshot = 0  # trials told since the last strategy snapshot
        #: Multi-fidelity: the scheduler, the full fidelity (epochs), continuations decided but not
        #: started yet (trial, epochs to train to) and the in-flight tasks that continue a trial.
        self.scheduler = components.scheduler
        self.max_epochs = settings.training.epochs
        self._continue: deque[tuple[Trial, int]] = deque()
        self._continuations: set[asyncio.Task[TrialResult]] = set()
        self._paused: dict[int, Trial] = {}  # paused trials by number, for promotion
        self._trained_in_full: set[int] = set()  # trials sent to full fidelity at the end (once each)
        self._deadline: float | None = None
        self._abs_run_dir = run_dir.resolve()
        storage = components.storage
        #: The keys of encryption at rest when it is on: code and weights are sealed as each trial ends.
        self._keys = storage.keys if isinstance(storage, EncryptedResultsDB) and storage.encrypt else None

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
        counts = storage.count_trials(self.name)
        completed = counts.get(TrialStatus.COMPLETED, 0)
        if completed >= self.s.search.trials and self.scheduler is None:
            raise self._already_done(completed)
        self.counts.completed = completed
        self.counts.failed = counts.get(TrialStatus.FAILED, 0)
        self.counts.invalid = counts.get(TrialStatus.INVALID, 0)
        for best in storage.get_best_architectures(self.name, k=1, metric=self.s.search.metric, maximize=self.maximize):
            if not best.result.pruned:  # type: ignore[union-attr]
                self._track_best(best.result)  # type: ignore[arg-type]
        # Every interrupted trial is re-run in place (same row, same number) until it ends, so a
        # crash during a resume cannot lose it. Rows of the same architecture all come back: the
        # first trains, the others share its result.
        interrupted = storage.list_trials(self.name, TrialStatus.INTERRUPTED)
        if interrupted:
            self.log.warning(f"{len(interrupted)} trial(s) cut off by an earlier crash will be re-run")
        self.log.info(f"resuming: {completed}/{self.s.search.trials} trials already done")
        history = self._replay()
        self._restore_scheduler(history)
        if completed >= self.s.search.trials and not self._continue:
            raise self._already_done(completed)  # with a scheduler: unless a trial was cut off between segments
        return experiment, history, interrupted

    def _already_done(self, completed: int) -> ExperimentAlreadyDone:
        return ExperimentAlreadyDone(f"experiment {self.name!r}: {completed}/{self.s.search.trials} trials done; "
                                     "raise search.trials or choose another experiment.name")

    def _restore_scheduler(self, history: Sequence[Trial]) -> None:
        """Rebuild the scheduler from the stored learning curves (it keeps no state of its own) and
        pick up the trials left between two segments by a crash or the time budget: a pruned trial
        whose checkpoint is still there is asked again what it does next, so nothing trains twice."""
        completed = [t for t in history if t.status == TrialStatus.COMPLETED and t.result is not None]
        self.counts.pruned = sum(t.result.pruned for t in completed)  # type: ignore[union-attr]
        if self.scheduler is None:
            return
        trained = [t for t in completed if t.reused_from is None]
        for trial in trained:
            self.scheduler.observe(trial.number, trial.result)  # type: ignore[arg-type]
        waiting = [t for t in trained if t.result.pruned and self._checkpoint(t.number).exists()]  # type: ignore[union-attr]
        for trial in waiting:
            self._decided(trial, self.scheduler.decide(trial.number, trial.result))  # type: ignore[arg-type]
        if waiting:
            self.log.info(f"{len(waiting)} trial(s) between two segments: continued from their checkpoints when the scheduler says so")

    def _strategy_identity(self) -> str:
        """What a snapshot must match to be restored: the strategy's class, its and the encoder's
        settings, the seed, the metric and its direction (a resume with any other replays)."""
        cls = type(self.c.strategy)
        return f"{cls.__module__}.{cls.__qualname__}:" + stable_hash({
            "strategy": self.config.get("strategy"), "encoder": self.config.get("encoder"),
            "seed": self.s.experiment.seed, "metric": self.s.search.metric, "direction": self.s.search.direction})

    def _replay(self) -> list[Trial]:
        """Bring the strategy (and the meta-learner) up to date with the stored history; return
        the trials read.

        The strategy's latest snapshot, when there is one of this strategy, is restored and only
        the trials it had not been told are read and told, so a large experiment resumes in a
        fraction of a second. The trials that were open when the snapshot was taken are pending
        in the restored strategy and are not in flight any more: they are forgotten first (the
        interrupted ones are marked pending again when the search re-queues them). A meta-learner
        refits on everything, so with one the whole history is read."""
        storage, strategy = self.c.storage, self.c.strategy
        snapshot = storage.load_snapshot(self.name) if self.s.search.snapshot_every else None
        if snapshot is not None and snapshot.strategy != self._strategy_identity():
            self.log.info("the stored strategy snapshot is of another strategy or settings: replaying the history")
            snapshot = None
        through = 0
        if snapshot is not None:
            strategy.load_state_dict(dict(snapshot.state))
            through, self._told = snapshot.told_through, expand_ranges(snapshot.told)
        # A meta-learner refits on everything and a scheduler rebuilds its rungs from every curve.
        whole = self.c.meta is not None or self.scheduler is not None
        history = storage.list_history(self.name, after=0 if whole else through)
        if snapshot is not None:
            stale = [t.vector for t in history if t.id is not None and t.id > through and t.id not in self._told]
            if stale:
                strategy.forget(stale)
        finished = [t for t in history if t.result is not None and t.status != TrialStatus.INTERRUPTED]
        untold = [t for t in finished if t.id is not None and t.id > through and t.id not in self._told]
        if untold:
            strategy.update_with_results([(t.vector, t.result) for t in untold])  # type: ignore[misc]
            self._told.update(t.id for t in untold if t.id is not None)
        if snapshot is not None:
            self.log.info(f"strategy restored from its snapshot; {len(untold)} later trial(s) replayed")
        if self.c.meta is not None:
            self.c.meta.observe([(t.vector, t.result) for t in finished])  # type: ignore[misc]
            self._meta_fed = True
        return history

    def _snapshot(self) -> None:
        """Store the strategy's state with what it has been told (see :meth:`_replay`): every
        trial up to the oldest one still open (stored, not yet told), and the ids told above it."""
        state = self.c.strategy.state_dict()
        if state is None:
            return
        through = min(self._open) - 1 if self._open else max(self._told, default=0)
        self._told = {i for i in self._told if i > through}  # what is below is covered by `through`
        try:
            self.c.storage.save_snapshot(self.name, StrategySnapshot(
                self._strategy_identity(), through, id_ranges(self._told), state))
        except Exception as exc:  # a snapshot only speeds up a resume: never stop the search for one
            self.log.warning(f"strategy snapshot not stored: {type(exc).__name__}: {exc}")
        self._since_snapshot = 0

    def _warm_start(self, history: Sequence[Trial]) -> list[ArchitectureVector]:
        """With ``meta.warm_start``: fit the meta-learner on every trial of the earlier experiments
        of this database run on the same task (or those in ``meta.warm_start_experiments``) and
        return their best ``meta.warm_start_top`` architectures not yet in this experiment, best
        first, to be proposed before the strategy's. Their results are reused from storage (any
        experiment, same reuse key) unless ``search.reuse=none``, so nothing is trained twice."""
        meta, settings = self.c.meta, self.c.meta_settings
        if meta is None or settings is None or not settings.warm_starts:
            return []
        storage, task = self.c.storage, self.c.task.name
        candidates = {e.name: e for e in storage.list_experiments() if e.name != self.name and e.task == task}
        wanted = settings.warm_start_experiments or sorted(candidates)
        unknown = [name for name in wanted if name not in candidates]
        if unknown:
            raise NeuromosaicError(
                f"meta.warm_start_experiments: no experiment {', '.join(map(repr, unknown))} on task {task!r} in "
                f"this database (there are: {', '.join(sorted(candidates)) or 'none'})"
            )
        metric, space = self.s.search.metric, self.c.encoder.search_space()
        earlier, best = [], []
        for name in wanted:
            earlier += [(t.vector, t.result) for t in storage.list_history(name) if t.result is not None]
            best += storage.get_best_architectures(name, k=settings.warm_start_top, metric=metric, maximize=self.maximize)
        if earlier:
            meta.observe(earlier)
        best.sort(key=lambda t: t.result.metrics[metric], reverse=self.maximize)  # type: ignore[union-attr]
        seen = {t.vector.key() for t in history}
        proposals: list[ArchitectureVector] = []
        for trial in best:
            vector = space.member(trial.vector)
            if vector is None or vector.key() in seen:
                continue  # another space's vector, or already tried here (a resume)
            seen.add(vector.key())
            proposals.append(vector)
            if len(proposals) == settings.warm_start_top:
                break
        self._warm_keys = {v.key() for v in proposals}
        self.log.info(f"warm start: surrogate fitted on {len(earlier)} trial(s) of {len(wanted)} earlier experiment(s); "
                      f"proposing their best {len(proposals)} first")
        return proposals

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
        anywhere = reuse == "all" or trial.vector.key() in self._warm_keys
        twin = None if reuse == "none" else self.c.storage.find_reusable(trial.reuse_key, None if anywhere else self.name)
        if twin is not None and twin.result is not None and twin.result.pruned and (
                self.scheduler is None or twin.experiment != self.name):
            twin = None  # a result at low fidelity is never reused as a full one (it stays this search's own)
        if twin is not None and twin.result is not None:
            at = f" at {twin.result.fidelity}/{self.max_epochs} epochs (its scheduler paused it)" if twin.result.pruned else ""
            log.info(f"same architecture as trial {twin.number} of {twin.experiment}: result reused{at}")
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
        if trial.id is None:  # a new trial (an interrupted one goes on from its checkpoint)
            self._checkpoint(trial.number).unlink(missing_ok=True)
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

    def _checkpoint(self, number: int) -> Path:
        """Where a trial's training state waits between two segments (multi-fidelity)."""
        return self._abs_run_dir / "trials" / f"trial-{number:04d}" / "checkpoint.pt"

    def _job(self, trial: Trial, code_path: str, result_path: Path, budget: int | None = None) -> TrialJob:
        """The job of a trial; with a scheduler, of its segment up to ``budget`` epochs (its first
        milestone when None)."""
        if self.scheduler is not None and budget is None:
            budget = self.scheduler.first_budget(trial.number)
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
            kind=str(getattr(self.c.task, "kind", "classification")),
            max_epochs=budget if self.scheduler is not None else None,
            checkpoint_path=str(self._checkpoint(trial.number)) if self.scheduler is not None else None,
        )

    def _continuation(self, trial: Trial, budget: int) -> tuple[Trial, TrialJob]:
        """The trial, whole (after a resume it is read back: the history holds no spec nor code, and
        the trial is stored again when the segment ends), and the job that trains it on from its
        checkpoint to ``budget`` epochs: same trial, same code, more epochs."""
        if trial.spec is None or (trial.code is None and getattr(self.c.runner, "needs_code", True)):
            stored = self.c.storage.find_trial(self.name, trial.number)  # after a resume: history holds no code
            if stored is None:
                raise NeuromosaicError(f"trial {trial.number} of {self.name!r} is not in the database any more")
            trial = stored
        result_path = self._abs_run_dir / "trials" / f"trial-{trial.number:04d}" / "result.json"
        result_path.unlink(missing_ok=True)
        checkpoint = self._checkpoint(trial.number)
        if self._keys is not None and checkpoint.is_file():  # sealed at rest between segments
            clear = checkpoint.with_name(f".{checkpoint.name}.opening")
            clear.write_bytes(self._keys.read_file(checkpoint))
            os.replace(clear, checkpoint)
        code = ""
        if trial.code is not None:
            path = self._code_path(trial.number)
            path.write_text(trial.code)  # the clear code (sealed at rest after the last segment when encrypting)
            code = str(self._abs_run_dir / path.relative_to(self.run_dir))
        return trial, self._job(trial, code, result_path, budget)

    def _decided(self, trial: Trial, decision: Decision) -> None:
        """Carry out a scheduler's decision for a trial that reached a milestone."""
        log = self.log.bind(trial=trial.number)
        if decision.action == "continue" and self._time_up():
            log.info(f"time budget spent: paused at {trial.result.fidelity} epochs instead of continuing")  # type: ignore[union-attr]
        elif decision.action == "continue":
            self._continue.append((trial, int(decision.budget)))  # type: ignore[arg-type]
        elif decision.action == "stop":
            self._checkpoint(trial.number).unlink(missing_ok=True)
        if decision.action != "stop" and not (decision.action == "continue" and not self._time_up()):
            self._paused[trial.number] = trial

    def _train_best_in_full(self, time_up: bool) -> bool:
        """When a scheduler's search has nothing left to start: if the most promising trial by
        ``search.metric`` (at any fidelity) is a pruned one with its checkpoint, it trains on to
        full fidelity now, so the search does not end recommending a result that stopped short
        (a 12-trial ASHA search from 1 epoch promotes nobody to the top rung by itself). Once
        per trial; never after the time budget. Returns whether a trial was queued."""
        if self.scheduler is None or time_up:
            return False
        metric = self.s.search.metric
        done = [t for t in self.c.storage.list_trials(self.name, TrialStatus.COMPLETED)
                if t.result is not None and t.reused_from is None and metric in t.result.metrics]
        if not done:
            return False
        value = lambda t: t.result.metrics[metric]  # noqa: E731
        top = max(done, key=value) if self.maximize else min(done, key=value)
        if not top.result.pruned or top.number in self._trained_in_full or not self._checkpoint(top.number).is_file():  # type: ignore[union-attr]
            return False
        self._trained_in_full.add(top.number)
        self.log.bind(trial=top.number).info(
            f"the most promising trial ({metric}={value(top):.4f} at {top.result.fidelity}/{self.max_epochs} epochs) "  # type: ignore[union-attr]
            "trains on to full fidelity before the search ends")
        self._continue.append((top, self.max_epochs))
        return True

    def _paused_trial(self, number: int) -> Trial:
        trial = self._paused.pop(number, None)
        if trial is None:  # paused before a resume: read it back
            trial = self.c.storage.find_trial(self.name, number)
            if trial is None:
                raise NeuromosaicError(f"the scheduler promoted trial {number}, which {self.name!r} does not have")
        return trial

    def _time_up(self) -> bool:
        return self._deadline is not None and time.perf_counter() >= self._deadline

    def _code_path(self, number: int) -> Path:
        path = self.run_dir / "code" / f"trial-{number:04d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _finish(self, trial: Trial, result: TrialResult, continued: bool = False) -> None:
        """Store a trial's result, tell the strategy, the scheduler and the observers. ``continued``:
        the result of a later segment of a trial that already counts as completed."""
        log = self.log.bind(trial=trial.number)
        if result.ok and result.fidelity is not None:
            result = attrs.evolve(result, pruned=result.fidelity < self.max_epochs)
        if continued and not result.ok:
            assert result.error is not None and trial.result is not None
            log.warning(f"training on from {trial.result.fidelity} epochs failed ({result.error.error_class.value}): "
                        f"{result.error.message}; it keeps its result at that fidelity")
            self._checkpoint(trial.number).unlink(missing_ok=True)
            return
        was_pruned = continued and trial.result is not None and trial.result.pruned
        trial.result = result
        if trial.reuse_key is not None and self._running.get(trial.reuse_key, (None,))[0] is trial:
            del self._running[trial.reuse_key]
        decision = None
        if result.ok:
            trial.status = TrialStatus.COMPLETED
            if not continued:
                self.counts.completed += 1
                self.counts.reused += trial.reused_from is not None
            self.counts.pruned += int(result.pruned) - int(was_pruned)
            self.counts.consecutive_failures = 0
            if not result.pruned:  # the best is chosen among full results
                self._track_best(result)
            if self.scheduler is not None and trial.reused_from is None:
                self.scheduler.observe(trial.number, result)
                if result.pruned:
                    decision = self.scheduler.decide(trial.number, result)
            m = result.metrics
            if result.pruned:
                what = {"continue": "milestone", "pause": "paused", "stop": "stopped early"}[decision.action] if decision else "reused"
                status = f"{what} at {result.fidelity}/{self.max_epochs} epochs"
            else:
                status = "completed"
            log.info(f"{status}: {self.s.search.metric}={m.get(self.s.search.metric, float('nan')):.4f} "
                     + (f"test_accuracy={m['test_accuracy']:.4f} " if "test_accuracy" in m else "")  # a lookup table may have none
                     + f"params={int(m.get('params', 0)):,} "
                     f"{trial.spec.describe() if trial.spec and not continued else ''}")
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
        if self._keys is not None:  # the trial is over: its code and weights leave the clear
            # (a reused result's weights belong to the trial that trained them, maybe in another run)
            seal_trial_files(self._keys, self.run_dir / "code" / f"trial-{trial.number:04d}.py",
                             result.weights_path if trial.reused_from is None else None,
                             self._checkpoint(trial.number) if self.scheduler is not None else None)
        self.c.storage.save_trial(trial)
        self.c.strategy.update_with_results([(trial.vector, result)])
        if trial.id is not None:
            self._told.add(trial.id)
            self._open.discard(trial.id)
        self._since_snapshot += 1
        if self.c.meta is not None:
            self.c.meta.observe([(trial.vector, result)])
        self._notify("trial_finished", trial=trial)
        self._show_progress()
        if decision is not None:
            self._decided(trial, decision)

    def _show_progress(self) -> None:
        if self.progress:
            self.progress.update(self.counts.completed, self.counts.failed, self.counts.invalid, self.best,
                                 self.counts.pruned if self.scheduler is not None else None)

    # -- the loop ----------------------------------------------------------------------------

    def _suggest(self, n: int) -> list[ArchitectureVector]:
        """``n`` suggestions of the strategy; with a meta-learner and ``search.prescreen`` k > 1,
        the best ``n`` of k x ``n`` by the surrogate, the others withdrawn from the strategy (see
        :meth:`MetaLearner.prescreen`)."""
        meta, factor = self.c.meta, self.s.search.prescreen
        if meta is None:
            return self.c.strategy.suggest_architectures(n)
        if factor > 1 and meta.ready and not self._screening:
            self._screening = True
            self.log.info(f"pre-screening on: the surrogate ranks {factor} candidates per free slot; the best are trained")
        return meta.prescreen(self.c.strategy, n, factor)

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
        if self._keys is not None:
            check_experiment_key(self.c.storage, self.name, self._keys)  # a resume with another key stops here
            seal_run_dir(self.run_dir, self._keys)  # what a crash left in clear
        experiment, history, requeue = self._open_experiment()
        self._open = {t.id for t in requeue if t.id is not None}
        number = self.c.storage.max_trial_number(self.name)
        for vector in self._warm_start(history):
            number += 1
            requeue.append(Trial(self.name, number, vector))
        if requeue:
            # Re-run and warm-start trials were not suggested by this strategy instance: without
            # this it could propose the same architectures again, each copy a wasted trial.
            self.c.strategy.mark_pending([t.vector for t in requeue])
        self._notify("experiment_started", experiment=experiment, config=self.config, run_dir=self.run_dir)
        self.log.info(f"preparing task {self.c.task.name!r}")
        self.data_path = await asyncio.to_thread(self.c.task.prepare_data, self.run_dir / "data")
        self._abs_data_path = str(Path(self.data_path).resolve())
        queue: deque[Trial] = deque(requeue)
        trials: list[Trial] = []  # the batch being started
        in_flight: dict[asyncio.Task[TrialResult], Trial] = {}
        self._running: dict[str, tuple[Trial, asyncio.Task[TrialResult]]] = {}  # reuse key -> trial in flight
        workers = max(1, self.c.runner.workers)
        target = self.s.search.trials
        self.log.info(f"searching: {target} trials, {workers} worker(s), runner {type(self.c.runner).__name__}")
        if self.scheduler is not None:
            self.log.info(f"scheduler: {self.scheduler.describe()}")
        if self.s.search.time_budget is not None:
            self._deadline = started + self.s.search.time_budget
        self.progress = SearchProgress(target, self.s.search.metric) if self.show_progress else None
        if self.progress:
            self.progress.__enter__()
            self._show_progress()
        try:
            while True:
                # Snapshots are taken here, where every suggestion made so far is stored (a resume
                # forgets the open trials a snapshot had pending; it cannot see unstored ones).
                if self.s.search.snapshot_every and self._since_snapshot >= self.s.search.snapshot_every:
                    self._snapshot()
                if self.counts.consecutive_failures >= self.s.search.max_failures:
                    self.stop_reason = "max_failures"
                    self.log.error(f"stopping: {self.counts.consecutive_failures} consecutive failed trials "
                                   f"(search.max_failures={self.s.search.max_failures})")
                    break
                time_up = self._time_up()
                if time_up and self.stop_reason == "completed":
                    self.stop_reason = "time_budget"
                    self.log.info(f"time budget of {self.s.search.time_budget:g} s spent: no trial starts any more; "
                                  f"{len(in_flight)} running finish their segment")
                free = workers - len(in_flight)
                # Trials already started go first: a continuation the scheduler decided, then a
                # promotion of a paused trial; only then a new architecture.
                while free > 0 and not time_up and self.scheduler is not None:
                    if self._continue:
                        trial, budget = self._continue.popleft()
                    elif (promoted := self.scheduler.promote()) is not None:
                        trial, budget = self._paused_trial(promoted[0]), promoted[1]
                        if not self._checkpoint(trial.number).is_file():  # its training on failed once: it stays as it is
                            self.log.bind(trial=trial.number).info("promoted, but it has no checkpoint to train on from: it keeps its result")
                            continue
                        self.log.bind(trial=trial.number).info(f"promoted: trains on from its checkpoint to {budget} epochs")
                    else:
                        break
                    trial, job = self._continuation(trial, budget)
                    task = asyncio.create_task(self.c.runner.run_trial(job))
                    in_flight[task] = trial
                    self._continuations.add(task)
                    free -= 1
                new_in_flight = len(in_flight) - len(self._continuations)
                slots = 0 if time_up else min(free, target - self.counts.completed - new_in_flight)
                if slots > 0:
                    trials = [queue.popleft() for _ in range(min(slots, len(queue)))]
                    if len(trials) < slots:
                        # In a thread: an LLM-guided strategy may take seconds, and trials in
                        # flight must not wait for it.
                        vectors = await asyncio.to_thread(self._suggest, slots - len(trials))
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
                        self._open.add(trial.id)  # type: ignore[arg-type]
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
                    if slots <= 0:
                        if self._train_best_in_full(time_up):
                            continue
                        break  # nothing running and nothing left to start
                    continue  # every trial of the batch ended at once (reused, invalid): start more
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    continued = task in self._continuations
                    self._continuations.discard(task)
                    self._finish(in_flight.pop(task), task.result(), continued)
        finally:
            # Suggestions and warm-start proposals never stored will never get a result.
            unstored = [t.vector for t in (*trials, *queue) if t.id is None]
            if unstored:
                try:
                    self.c.strategy.forget(unstored)
                except Exception as exc:  # must not hide why the search stopped
                    self.log.warning(f"strategy.forget failed: {type(exc).__name__}: {exc}")
            if in_flight:
                # Interrupted (Ctrl-C, an error): stop the trials. Their rows stay `running`, which the
                # next start turns into `interrupted` and re-runs, exactly as after a hard crash.
                for task in in_flight:
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)
            if self.progress:
                self.progress.__exit__(None, None, None)
            if self.s.search.snapshot_every and self._since_snapshot:
                self._snapshot()  # the next resume (more trials, or after Ctrl-C) starts from here
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

    def _write_predictor_state(self) -> str | None:
        """The task's fitted preprocessing (:meth:`Task.predictor_state`) beside the best model, as
        ``preprocessing.json``; its path relative to the run directory, or None when the task has none."""
        try:
            state = self.c.task.predictor_state()
        except Exception as exc:  # never lose a finished search over it
            self.log.warning(f"task preprocessing not saved: {type(exc).__name__}: {exc}")
            return None
        if state is None:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "preprocessing.json").write_text(json.dumps(state, indent=1))
        return "preprocessing.json"

    def _recommendations(self, trials: Sequence[Trial]) -> dict[str, Any] | None:
        """The meta-learner's regions worth exploring next (see
        :meth:`MetaLearner.generate_recommendations`), logged; None without a meta-learner, with
        ``meta.recommendations=0``, or before it has enough results."""
        meta, settings = self.c.meta, self.c.meta_settings
        count = settings.recommendations if settings is not None else 5
        if meta is None or count == 0:
            return None
        if not self._meta_fed:  # finalize of an experiment already done: nothing was replayed
            meta.observe([(t.vector, t.result) for t in trials if t.result is not None])
            self._meta_fed = True
        try:
            recommendations = meta.generate_recommendations(count, tried=[t.vector for t in trials])
        except Exception as exc:  # a broken surrogate must not lose a finished search
            self.log.warning(f"meta-learner recommendations failed: {type(exc).__name__}: {exc}")
            return None
        if recommendations is None:
            self.log.info("no recommendations: the surrogate has too few results")
            return None
        lines = []
        for name, info in recommendations["dimensions"].items():
            if "choices" in info:
                lines.append(f"  {name}: " + " > ".join(f"{c['value']} ({c['predicted']:.4f})" for c in info["choices"]))
            elif "range" in info:
                lines.append(f"  {name}: {info['range'][0]}..{info['range'][1]}")
        for entry in recommendations["vectors"]:
            values = " ".join(f"{k}={v}" for k, v in entry["vector"].items())
            lines.append(f"  try: {values}  predicted {self.s.search.metric}={entry['predicted']:.4f} ± {entry['std']:.4f}")
        self.log.info("recommendations (surrogate: predicted best value per dimension, then untried architectures):\n"
                      + "\n".join(lines))
        return recommendations

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
                # completed below full fidelity: stopped or paused by the scheduler (in `completed` too)
                "pruned": sum(t.status == TrialStatus.COMPLETED and t.result is not None and t.result.pruned for t in trials),
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
            entry["fidelity"] = trial.result.fidelity  # epochs it was allowed (None: not recorded, full)
            entry["pruned"] = trial.result.pruned
            entry.update({k: trial.result.metrics[k] for k in (metric, "val_rmse", "test_rmse") if k in trial.result.metrics})
            entry["spec"] = converter.unstructure(trial.spec)
            if rank == 0:
                entry.update(self._materialise(trial))
                entry["preprocessing"] = self._write_predictor_state()
                summary["best"] = entry
            summary["top"].append(entry)
        recommendations = self._recommendations(trials)
        if recommendations is not None:
            summary["recommendations"] = recommendations
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        plots = self.run_dir / "plots"
        plots.mkdir(exist_ok=True)
        rendered: list[Path] = []
        space = self.c.encoder.search_space()
        for name, visualizer in self.c.visualizers:
            try:
                paths = visualizer.render(trials, plots, metric, space=space, maximize=self.maximize)
                rendered.extend(paths)
                if paths:  # html draws nothing here: its report comes in summarise, below
                    self.log.info(f"{name}: wrote {', '.join(str(p.relative_to(self.run_dir)) for p in paths)}")
            except Exception as exc:  # a broken plot must not lose a finished search
                self.log.warning(f"visualizer {name} failed: {type(exc).__name__}: {exc}")
        if self._keys is not None:
            seal_run_dir(self.run_dir, self._keys)  # the best trial's code and weights just materialised
        # Then what sums up the run from those files (the html visualizer's report.html). Encrypted
        # at rest, it reads the values as stored, so nothing it writes to the run directory shows code.
        finished = FinishedRun(self.name, self.run_dir, raw_storage(self.c.storage) if self._keys is not None else self.c.storage,
                               tuple(rendered), metric, self.maximize, self.s.search.top_k, elapsed)
        for name, visualizer in self.c.visualizers:
            try:
                paths = visualizer.summarise(finished)
                if paths:
                    self.log.info(f"{name}: wrote {', '.join(str(p.relative_to(self.run_dir)) for p in paths)}")
            except Exception as exc:  # nor a broken report
                self.log.warning(f"visualizer {name} failed: {type(exc).__name__}: {exc}")
        self.top = top
        return summary
