"""The extension points: one small base class per component kind, its contract in the docstring.

A plugin registers a *factory* for each component (see :mod:`neuromosaic_core.hookspecs`); the
factory returns an instance of one of these classes. Contract test suites for each live in
:mod:`neuromosaic_core.testing`.
"""

from __future__ import annotations

import abc
import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from neuromosaic_core.model import (
    ArchitectureSpec,
    ArchitectureVector,
    CategoricalDimension,
    Experiment,
    SearchSpace,
    StrategySnapshot,
    TrainingSettings,
    Trial,
    TrialResult,
    TrialStatus,
)


class SearchStrategy(abc.ABC):
    """ISearchStrategy: batch ask/tell, synchronous, usable as a plain library.

    Contract:
    - ``suggest_architectures(n)`` returns ``n`` vectors of the space (canonical form), none equal
      to a pending vector unless the space is exhausted. *Pending* means suggested (or marked
      with :meth:`mark_pending`) and neither told nor forgotten since.
    - It prefers vectors not tried yet: a vector is *tried* once a result for it was told
      (:meth:`forget` does not make it tried).
    - ``update_with_results`` accepts any mix of completed and failed results; a failed result
      (``result.ok`` false, no metrics) must not stall the search.
    - Results may arrive in any order and for vectors the strategy never suggested (a resumed
      experiment replays its stored history this way).
    - :meth:`mark_pending` tells it of vectors that will be evaluated although it did not suggest
      them in this process (the interrupted trials a resume re-runs, warm-start proposals); their
      results are told later as usual.
    - :meth:`forget` withdraws pending vectors that will never get a result (screened out by a
      surrogate, rejected as not novel): they stop being pending, are not tried, and may be
      suggested again; a strategy waiting for its suggestions (a generation) must not stall.
    - The score is ``result.metrics[self.metric]``, to be maximised when ``self.maximize``.
    - Results at reduced fidelity (a trial scheduler is on): a result with ``result.pruned`` is the
      trial's value at ``result.fidelity`` epochs, fewer than the training's ``epochs``, because the
      scheduler stopped or paused it early; ``result.curve`` holds its validation score after each
      epoch. Such a value is not an equal of a full result's (``pruned`` false): rank full results
      before pruned ones and pruned ones by fidelity, and compare values only within one rank
      (:meth:`fidelity_rank`).
    - The re-tell rule: when the scheduler promotes a paused trial and it trains on, the same
      vector is told again with its later result (at a higher fidelity: pruned again, or full).
      The later result supersedes the earlier one: it replaces the vector's earlier entry instead
      of adding another, it is not a new evaluation (nothing pending is resolved by it, nothing is
      counted towards a warm-up), and the vector, tried since its first result, is not proposed
      again meanwhile.

    The base class keeps the pending and tried vectors for its subclasses, by :meth:`vector_key`:
    ``self._pending`` (a ``Counter``; a key is pending twice once the space is exhausted) and
    ``self._evaluated`` (the tried keys). A strategy that adds a suggestion to ``_pending``, skips
    pending keys when it proposes, and books each told result with :meth:`_tell` (or, for a
    strategy written before multi-fidelity, resolves it with :meth:`_resolve`) gets
    :meth:`mark_pending` and :meth:`forget` right from the defaults. ``self._seen`` counts what a
    random warm-up counts: suggestions made or marked pending, less those forgotten; a strategy
    adds one per suggestion, and :meth:`_tell` one per result told for a vector that was not
    pending (a replayed history) unless the result is a re-tell. ``self._partial`` holds the keys
    whose latest result was pruned (what tells a re-tell apart); a strategy taking snapshots keeps
    it in its state with ``_pending``, ``_evaluated`` and ``_seen``. A strategy keeping its own
    account (an optimiser's open trials) overrides :meth:`mark_pending` and :meth:`forget`.
    """

    def __init__(self, space: SearchSpace, seed: int = 0, metric: str = "val_accuracy", maximize: bool = True) -> None:
        self.space = space
        self.seed = seed
        self.metric = metric
        self.maximize = maximize
        self._pending: Counter[str] = Counter()
        self._evaluated: set[str] = set()
        self._seen = 0
        self._partial: set[str] = set()

    def get_search_space(self) -> SearchSpace:
        return self.space

    @abc.abstractmethod
    def suggest_architectures(self, n: int) -> list[ArchitectureVector]:
        """Propose ``n`` architectures to evaluate next."""

    @abc.abstractmethod
    def update_with_results(self, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        """Learn from finished trials."""

    def mark_pending(self, vectors: Sequence[ArchitectureVector]) -> None:
        """``vectors`` will be evaluated and their results told, though this instance did not
        suggest them: until then no suggestion may equal one (unless the space is exhausted).
        A resume marks the interrupted trials it re-runs, so a restored or replayed strategy does
        not propose the architectures that were in flight again.

        The default counts each as pending in ``self._pending`` and in ``self._seen``."""
        for vector in vectors:
            self._pending[self.vector_key(vector)] += 1
        self._seen += len(vectors)

    def forget(self, vectors: Sequence[ArchitectureVector]) -> None:
        """Pending ``vectors`` (suggested or marked) that will never get a result: pre-screening
        trained others instead, or they were rejected before training. Each stops being pending
        as if it had never been suggested, is not tried, and may be suggested again. Vectors not
        pending are ignored.

        The default takes each out of ``self._pending`` and ``self._seen``."""
        for vector in vectors:
            if self._resolve(self.vector_key(vector)):
                self._seen = max(0, self._seen - 1)

    def vector_key(self, vector: ArchitectureVector) -> str:
        """The key ``_pending`` and ``_evaluated`` keep ``vector`` under: its canonical form's key,
        or its own key when it is not a point of the space (another space's history)."""
        canonical = self.space.member(vector)
        return canonical.key() if canonical is not None else vector.key()

    def _resolve(self, key: str) -> bool:
        """One pending instance of ``key`` ends (told or forgotten); False when none was pending."""
        if self._pending.get(key, 0) <= 0:
            return False
        self._pending[key] -= 1
        if self._pending[key] == 0:
            del self._pending[key]
        return True

    def _tell(self, key: str, result: TrialResult) -> bool:
        """Book one result told for ``key``: True when it is a re-tell, False when it is new.

        A re-tell (a later result of a trial whose latest result was pruned, and no other instance
        of the vector pending) resolves nothing and counts nothing: the strategy replaces the
        vector's earlier entry with it. A new result resolves one pending instance of ``key``, or,
        when none was pending (a replayed history), counts one in ``_seen``. Either way the key is
        tried afterwards, and kept in ``_partial`` while its latest result is pruned."""
        retell = key in self._partial and self._pending.get(key, 0) <= 0
        if not retell and not self._resolve(key):
            self._seen += 1
        self._evaluated.add(key)
        if result.ok and result.pruned:
            self._partial.add(key)
        else:
            self._partial.discard(key)
        return retell

    @staticmethod
    def fidelity_rank(result: TrialResult) -> tuple[int, int]:
        """How far a successful ``result``'s value can be trusted, higher first: ``(1, 0)`` for a
        full result (``pruned`` false, whatever its ``fidelity``), ``(0, fidelity)`` for a pruned one.
        Rank results by ``(fidelity_rank(result), value)`` (value negated when minimising), so a
        pruned result never beats a full one, nor one pruned at a higher fidelity."""
        if not result.pruned:
            return (1, 0)
        return (0, result.fidelity or 0)

    def state_dict(self) -> dict[str, Any] | None:
        """Everything the strategy has learnt and its random state, JSON-able, or None (the
        default) when it cannot take a snapshot. The orchestrator stores one every
        ``search.snapshot_every`` trials; a resume restores it with :meth:`load_state_dict`, forgets
        the vectors that were pending then (:meth:`forget`), and tells the strategy only the trials
        finished after it, instead of its whole history.

        Contract: a strategy restored from ``state_dict()`` suggests what the original would
        have suggested next."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (by this class, with the same settings)."""
        raise NotImplementedError(f"{type(self).__name__} takes no snapshots")


def rng_state(rng: random.Random) -> list[Any]:
    """``rng``'s state as JSON (for :meth:`SearchStrategy.state_dict`)."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng: random.Random, state: Sequence[Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


class ArchitectureEncoder(abc.ABC):
    """IArchitectureEncoder: a search space and the two-way map between its vectors and specs.

    Contract: for every ``v`` in the space, ``encode(decode(v)) == space.canonicalize(v)`` and for
    every ``spec = decode(v)``, ``decode(encode(spec)) == spec``.
    """

    @abc.abstractmethod
    def search_space(self) -> SearchSpace:
        """The space this encoder decodes."""

    @abc.abstractmethod
    def decode(self, vector: ArchitectureVector) -> ArchitectureSpec:
        """Vector to spec. Raises ``ValueError`` for a vector outside the space."""

    @abc.abstractmethod
    def encode(self, spec: ArchitectureSpec) -> ArchitectureVector:
        """Spec to canonical vector. Raises ``ValueError`` for a spec this encoder cannot express."""

    def validate(self, vector: ArchitectureVector) -> bool:
        return self.search_space().contains(vector)


@attrs.frozen
class CodeGenRequest:
    """What a code generator is asked: write ``class Net`` for ``spec`` on a task's shapes.

    ``feedback`` and ``previous_code`` are set on a repair attempt: the validator's complaint about
    the previous answer; ``attempt`` counts the rounds (1 for the first).
    """

    spec: ArchitectureSpec
    input_shape: tuple[int, ...]
    num_classes: int
    feedback: str | None = None
    previous_code: str | None = None
    attempt: int = 1


class LLMProvider(abc.ABC):
    """A provider that answers free-form prompts. LLM-backed code generators implement it beside
    :class:`CodeGenProvider`, so other components (the ``llm`` search strategy) can use any
    registered LLM."""

    @abc.abstractmethod
    def complete(self, prompt: str, system: str | None = None) -> str:
        """The model's answer to ``prompt`` (raise on transport errors; callers retry or fall back)."""


@attrs.frozen
class Generation:
    """One answer of a code generator with what it cost: the prompt sent (empty for generators
    without one), seconds, and token counts where the provider reports them."""

    text: str
    prompt: str = ""
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class GenerationError(Exception):
    """A provider call that failed, with what was sent (for the trial's audit record).
    ``unavailable``: the provider is known to be down (circuit open); do not ask again now."""

    def __init__(self, message: str, prompt: str = "", latency_s: float = 0.0, unavailable: bool = False) -> None:
        super().__init__(message)
        self.prompt = prompt
        self.latency_s = latency_s
        self.unavailable = unavailable


class CodeGenProvider(abc.ABC):
    """ICodeGenProvider: turns a spec into the source of a Python module defining ``class Net``.

    The answer may contain prose or markdown fences (LLMs do); the core extracts and validates the
    code. The generated-code contract is in ``docs/generated-code.md``.

    Unless ``trusted`` (code correct by construction, like the template generator's), accepted
    code is also instantiated and run on a dummy batch in a sandboxed subprocess (at most
    ``probe_timeout`` seconds) and compared with the spec: layer types and sizes in call order,
    and the parameter count within ``fidelity_tolerance`` (relative). With ``cache``, accepted
    code is reused for an identical request (see :meth:`identity`).
    """

    trusted: bool = False
    fidelity_tolerance: float = 0.05
    probe_timeout: float = 60.0
    cache: bool = True

    @abc.abstractmethod
    def generate_code(self, request: CodeGenRequest) -> str:
        """Return source code (or an answer containing it)."""

    def generate(self, request: CodeGenRequest) -> Generation:
        """:meth:`generate_code` with its cost; LLM providers override it to report the prompt
        and token counts."""
        start = time.perf_counter()
        text = self.generate_code(request)
        return Generation(text, "", time.perf_counter() - start)

    def identity(self) -> tuple[str, str]:
        """``(model, prompt template version)``: with the provider's name and the request, what
        makes two answers interchangeable (the cache key)."""
        return "", ""

    def identity_for(self, request: CodeGenRequest) -> tuple[str, str]:
        """:meth:`identity` for one request; a provider whose prompt depends on the spec's kind
        (sequential or graph) says so here. Defaults to :meth:`identity`."""
        return self.identity()

    def preflight(self) -> None:
        """Called once before a search: raise a ``NeuromosaicError`` for a setting that cannot
        work (an unknown model); a server that is down only warns (the fallback covers it)."""

    def close(self) -> None:
        """Release clients, servers or loaded models."""


@attrs.frozen
class TrialJob:
    """Everything a runner needs to run the trial harness for one trial (JSON-serialisable).

    Paths are absolute. ``max_params`` is checked on the instantiated model too (an LLM's code may not
    match the spec it was given). The harness writes its :class:`~neuromosaic_core.model.TrialResult` as JSON
    to ``result_path``. ``device`` is where the harness trains: ``cpu``, ``cuda:N``, or ``auto``
    (the harness picks ``cuda:0`` when torch sees a GPU, else ``cpu``; the orchestrator never imports torch).
    """

    trial_id: int
    experiment: str
    code_path: str
    data_path: str
    result_path: str
    input_shape: tuple[int, ...]
    num_classes: int
    training: TrainingSettings
    weights_path: str | None = None
    timeout_s: float = 600.0
    max_params: int | None = None
    spec: ArchitectureSpec | None = None
    device: str = "cpu"
    #: What the harness optimises: ``classification`` (cross-entropy, accuracy; ``num_classes``
    #: outputs) or ``regression`` (mean squared error, RMSE; ``num_classes`` is the number of targets).
    kind: str = "classification"
    #: Multi-fidelity (a scheduler is on): train until this many epochs in all, then stop with a
    #: checkpoint; None trains to ``training.epochs`` (or early stopping).
    max_epochs: int | None = None
    #: Where the harness keeps this trial's training state between segments: it resumes from the
    #: file when it exists and writes it when it stops at ``max_epochs`` before its training's end.
    #: Inside the trial's directory, so every runner that gives the harness that directory keeps it.
    checkpoint_path: str | None = None


class Runner(abc.ABC):
    """IEnvironmentManager: executes the trial harness in isolation, asynchronously.

    Contract:
    - ``await run_trial(job)`` returns one :class:`TrialResult` per job, never raises for a trial's
      own failure (crash, timeout and bad code come back as failed results).
    - Cancelling the awaiting task stops the trial and frees its resources.
    - ``workers`` trials may run at once.
    - A trial cut off by an orchestrator crash is never re-attached: it is re-run on resume.
    """

    workers: int = 1
    #: False for runners that evaluate a spec without running code (a lookup table): the
    #: orchestrator then skips code generation and the analytic constraint check, and the job
    #: carries the spec (``job.spec``) with an empty ``code_path``.
    needs_code: bool = True

    @abc.abstractmethod
    async def run_trial(self, job: TrialJob) -> TrialResult:
        """Run one trial to completion (or failure)."""

    async def close(self) -> None:
        """Release resources (processes, containers, clusters)."""


def _number(value: object) -> bool:
    """A metric value the queries can rank: an int or float that is not NaN (bools are not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


class ResultsDB(abc.ABC):
    """IResultsDB: the repository of experiments and trials, chosen by URL.

    Contract: every trial is stored before it runs and updated when it ends; ``find_reusable``
    returns a completed trial with the same reuse key (architecture, task, training settings).
    """

    schema_version: int

    @abc.abstractmethod
    def get_experiment(self, name: str) -> Experiment | None: ...

    @abc.abstractmethod
    def create_experiment(self, experiment: Experiment) -> Experiment: ...

    @abc.abstractmethod
    def list_experiments(self) -> list[Experiment]: ...

    @abc.abstractmethod
    def save_trial(self, trial: Trial) -> Trial:
        """Insert (``trial.id`` is None, an id is assigned) or update a trial."""

    @abc.abstractmethod
    def list_trials(self, experiment: str, status: TrialStatus | None = None) -> list[Trial]:
        """Trials of an experiment in creation order."""

    @abc.abstractmethod
    def find_reusable(self, reuse_key: str, experiment: str | None = None) -> Trial | None:
        """The first completed trial with this reuse key — in ``experiment`` when given, in any
        experiment when None — or None. A full twin comes before a pruned one (``result.pruned``:
        a scheduler stopped it below full fidelity): the earliest twin that was not pruned, else
        the earliest pruned one. The caller decides whether a pruned twin may be reused; a result
        at low fidelity is never reused as a full one."""

    def find_cached_code(self, cache_key: str) -> str | None:
        """The code of a trial, in any experiment, whose ``codegen.cache_key`` is ``cache_key`` and
        whose code the named provider wrote and the pipeline accepted (not the fallback's), or None.
        Backends should answer from an index; this default scans every trial."""
        for experiment in self.list_experiments():
            for trial in self.list_trials(experiment.name):
                cg = trial.codegen
                if cg is not None and cg.cache_key == cache_key and not cg.fallback and trial.code:
                    return trial.code
        return None

    def list_history(self, experiment: str, after: int = 0) -> list[Trial]:
        """The trials of an experiment with an id above ``after`` (all of them by default), for a
        resume: number, status, vector and result; a backend may leave ``spec`` and ``code``
        unset (the orchestrator decodes again what it re-runs), so a large experiment resumes
        without reading every spec and code."""
        return [t for t in self.list_trials(experiment) if t.id is not None and t.id > after]

    def max_trial_number(self, experiment: str) -> int:
        """The highest trial number of the experiment, 0 when it has none."""
        return max((t.number for t in self.list_trials(experiment)), default=0)

    def save_snapshot(self, experiment: str, snapshot: StrategySnapshot) -> None:
        """Keep ``snapshot`` as the experiment's latest strategy snapshot (replacing the one
        before). The default keeps nothing: a backend without snapshots resumes by replaying."""

    def load_snapshot(self, experiment: str) -> StrategySnapshot | None:
        """The experiment's latest strategy snapshot, or None."""
        return None

    def get_best_architectures(self, experiment: str, k: int = 5, metric: str = "val_accuracy", maximize: bool = True) -> list[Trial]:
        """The ``k`` completed trials with the best ``metric`` (highest when ``maximize``), ties in
        creation order; the best is chosen among the trials that reached the highest fidelity.

        Every full result comes before every pruned one (``result.pruned``), whatever their
        metrics; the pruned ones follow by ``result.fidelity``, highest first (a pruned result
        without one last), then by ``metric``. A result that is not pruned is at full fidelity by
        contract (``training.epochs``, or None: not recorded), so fidelity orders only the pruned
        ones and an older full result and a newer one rank by their metric alone."""
        done = [t for t in self.list_trials(experiment, TrialStatus.COMPLETED) if t.result and metric in t.result.metrics]
        by_metric = sorted(done, key=lambda t: t.result.metrics[metric], reverse=maximize)  # type: ignore[union-attr]

        def fidelity_rank(t: Trial) -> tuple[bool, int]:
            result = t.result
            if result is None or not result.pruned:
                return False, 0
            return True, -(result.fidelity or 0)

        return sorted(by_metric, key=fidelity_rank)[:k]  # stable: the metric order stays within each rank

    def metric_names(self, experiment: str) -> list[str]:
        """The names of the numeric metrics the experiment's completed trials report, sorted."""
        names = {name for t in self.list_trials(experiment, TrialStatus.COMPLETED) if t.result
                 for name, value in t.result.metrics.items() if _number(value)}
        return sorted(names)

    def metric_points(self, experiment: str, metrics: Sequence[str]) -> list[tuple[int, tuple[float, ...]]]:
        """``(trial id, values)`` for every completed trial that reports each of ``metrics`` as a
        number other than NaN, in creation order: what a Pareto front or a scatter plot needs,
        without decoding whole trials. Backends should answer from their metric index."""
        points = []
        for t in self.list_trials(experiment, TrialStatus.COMPLETED):
            values = [t.result.metrics.get(m) for m in metrics] if t.result else [None]
            if t.id is not None and all(_number(v) for v in values):
                points.append((t.id, tuple(float(v) for v in values)))  # type: ignore[arg-type]
        return points

    def pareto_ids(self, experiment: str, x: str, y: str, *, minimize_x: bool = True, maximize_y: bool = True) -> list[int]:
        """The ids of the completed trials no other completed trial dominates on (``x``, ``y``)
        (at least as good on both and better on one, so equal points are all kept); trials
        lacking either metric as a finite number are left out. Ids ascending. This default sweeps
        :meth:`metric_points` sorted by ``x``; a backend may compute the front itself."""
        points = sorted(  # (x, y) as two costs to minimise
            (vx if minimize_x else -vx, -vy if maximize_y else vy, trial_id)
            for trial_id, (vx, vy) in self.metric_points(experiment, (x, y))
            if math.isfinite(vx) and math.isfinite(vy)
        )
        front: list[int] = []
        best_before = math.inf  # the lowest y-cost among points with a strictly lower x-cost
        for _, group in itertools.groupby(points, key=lambda p: p[0]):
            members = list(group)
            group_best = members[0][1]  # sorted by y-cost within the group
            if group_best < best_before:
                front.extend(p[2] for p in members if p[1] == group_best)
            best_before = min(best_before, group_best)
        return sorted(front)

    def get_trials(self, experiment: str, ids: Sequence[int]) -> list[Trial]:
        """The trials of ``experiment`` with these ids, whole (spec, code, result), in creation order."""
        wanted = set(ids)
        return [t for t in self.list_trials(experiment) if t.id in wanted]

    def find_trial(self, experiment: str, number: int) -> Trial | None:
        """Trial ``number`` of ``experiment``, whole; the latest row when a number was stored twice."""
        matches = [t for t in self.list_trials(experiment) if t.number == number]
        return matches[-1] if matches else None

    def count_trials(self, experiment: str) -> dict[TrialStatus, int]:
        """How many trials of ``experiment`` are in each status (statuses with none are left out)."""
        counts: dict[TrialStatus, int] = {}
        for t in self.list_trials(experiment):
            counts[TrialStatus(t.status)] = counts.get(TrialStatus(t.status), 0) + 1
        return counts

    def mark_interrupted(self, experiment: str) -> list[Trial]:
        """Mark trials left pending/running by a crash as interrupted and return them (to re-run)."""
        stale = [t for t in self.list_trials(experiment) if t.status in (TrialStatus.PENDING, TrialStatus.RUNNING)]
        for t in stale:
            t.status = TrialStatus.INTERRUPTED
            self.save_trial(t)
        return stale

    def backup(self, target: str) -> None:
        """Write a consistent copy of the whole database to ``target`` (a file path), optional.

        The copy must be safe to take while other processes write, and be openable on its own as
        a database of the same backend. Backends that cannot do this keep the default, which
        raises ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support backups")

    def close(self) -> None:
        """Release the connection."""


@attrs.frozen
class FinishedRun:
    """What :meth:`Visualizer.summarise` is given at the end of a run, beyond the trials.

    ``storage`` holds the run's results *as stored*: with encryption at rest, code and messages
    are still encrypted there, so nothing written from it to the run directory reveals them.
    ``plots`` are the files every selected visualizer's :meth:`~Visualizer.render` wrote for this
    run, in the order of ``visualizers``; ``top_k`` is ``search.top_k``; ``elapsed_seconds`` the
    run's wall time (None when unknown).
    """

    experiment: str
    run_dir: Path
    storage: ResultsDB
    plots: tuple[Path, ...]
    metric: str
    maximize: bool
    top_k: int
    elapsed_seconds: float | None = None


class Visualizer(abc.ABC):
    """IVisualizer: renders trials of one experiment to files in ``out_dir`` and returns their paths.

    The orchestrator (at the end of a run) and the report call :meth:`render`, which also passes
    what a visualizer cannot tell from the trials alone: the search space (to turn vectors into
    numbers, see :mod:`neuromosaic_core.features`) and whether the metric is maximised. A
    visualizer that needs neither implements only :meth:`plot_performance_landscape`, as in 0.1.
    Files a report can embed are PNG, SVG or self-contained HTML (no network resources).

    After every selected visualizer has rendered, the orchestrator calls :meth:`summarise` on
    each, whatever their order in ``visualizers``: a visualizer that sums up the run in one
    document from the others' files (the ``html`` report) writes it there.
    """

    @abc.abstractmethod
    def plot_performance_landscape(self, trials: Sequence[Trial], out_dir: Path, metric: str = "val_accuracy") -> list[Path]: ...

    def render(self, trials: Sequence[Trial], out_dir: Path, metric: str = "val_accuracy", *,
               space: SearchSpace | None = None, maximize: bool | None = None) -> list[Path]:
        """Like :meth:`plot_performance_landscape`, with the search ``space`` (None: unknown) and the
        direction (None: the visualizer's own setting). Override it to use them; by default they are
        ignored, so visualizers written against 0.1 keep working unchanged."""
        return self.plot_performance_landscape(trials, out_dir, metric)

    def summarise(self, run: FinishedRun) -> list[Path]:
        """Called once at the end of a run, after every selected visualizer's :meth:`render`, with
        what the run knows (:class:`FinishedRun`: its storage as stored, the files rendered, the run
        directory); returns the files written. By default nothing: plots are made by :meth:`render`.
        (Core 0.3.3.)"""
        return []


class Task(abc.ABC):
    """ITask: a data set with a fixed shape contract.

    ``prepare_data`` writes ``x_train``, ``y_train``, ``x_test``, ``y_test`` (float32 features,
    int64 labels; float32 targets for regression) to an ``.npz`` file in ``directory`` once per
    run; every trial reads that file (memory-mapped when stored uncompressed, as ``np.savez``
    writes it). The validation split is carved from the training data by the harness
    (``val_fraction``).

    ``kind`` says what the harness optimises (``classification`` or ``regression``, where
    ``num_classes`` counts the targets); ``metric`` and ``direction`` are what a search optimises
    unless ``search.metric`` / ``search.direction`` say otherwise. A task whose settings do not
    decide these alone (a kind inferred from the data) declares them through the registration
    metadata ``objective`` (see :func:`neuromosaic_core.config.resolve`).
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    kind: str = "classification"
    metric: str = "val_accuracy"
    direction: str = "maximize"
    metrics: tuple[str, ...] = ("val_accuracy", "test_accuracy", "test_loss")

    @abc.abstractmethod
    def prepare_data(self, directory: Path) -> Path: ...

    def identity(self) -> Any:
        """What, besides its name, makes two runs of this task interchangeable (JSON-able): part
        of the reuse key. None (the default) means its settings. A task reading the user's files
        returns a hash of their content, so an edited file is never answered with stale results
        and a renamed one is still reused."""
        return None

    def predictor_state(self) -> dict[str, Any] | None:
        """What turns raw inputs into the model's inputs and its outputs back into answers (fitted
        preprocessing, class names, a vocabulary), JSON-able, or None (the default: the model
        takes the task's arrays as they are). Saved beside the best model as
        ``preprocessing.json``; :func:`neuromosaic_core.loading.load_best_predictor` returns it
        with the model. The key ``predictor`` may name a ``module:Class`` of a ``neuromosaic``
        package built as ``Class(model, state)`` to predict on raw inputs."""
        return None


class MetaLearner(abc.ABC):
    """IMetaLearner: a surrogate model of the search, fitted on stored results, that predicts a
    candidate's metric from its vector with an uncertainty.

    What the orchestrator uses it for (``docs/meta-learning.md``): pre-screening (train only the
    candidates it ranks best, :meth:`prescreen`), warm start (fitted on earlier experiments), and
    the recommendations at the end of a run (:meth:`generate_recommendations`).

    Contract:
    - ``observe(results)`` accepts any mix of completed and failed results, in any order, for any
      vectors (a resume replays history this way); it refits as results arrive (every result, or
      every k).
    - ``predict(vectors)`` returns ``(means, stds)``, two lists as long as ``vectors``, in the
      metric's own units, every std >= 0; it may raise ``RuntimeError`` before :attr:`ready`.
    - ``ready`` is true once the model has seen enough results for its ranking to beat the
      strategy's own order; until then :meth:`screen` keeps that order.
    - The metric is ``self.metric``, maximised when ``self.maximize``.

    Implementations provide :meth:`observe`, :meth:`predict` and :attr:`ready`; ranking,
    screening and recommendations are built on them here, and may be refined (the ``surrogate``
    plugin ranks by expected improvement through :meth:`acquisition`).
    """

    def __init__(self, space: SearchSpace, seed: int = 0, metric: str = "val_accuracy", maximize: bool = True) -> None:
        self.space = space
        self.seed = seed
        self.metric = metric
        self.maximize = maximize

    @abc.abstractmethod
    def observe(self, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        """Add finished trials to what the model is fitted on."""

    @abc.abstractmethod
    def predict(self, vectors: Sequence[ArchitectureVector]) -> tuple[list[float], list[float]]:
        """The predicted metric of each vector, and its uncertainty (a standard deviation)."""

    @property
    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether the model has seen enough results to rank candidates."""

    def update_strategies_with_results(self, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        """The seed design's name for :meth:`observe`: the insights reach the search strategy
        through pre-screening, not by changing the strategy itself."""
        self.observe(results)

    def acquisition(self, vectors: Sequence[ArchitectureVector]) -> list[float]:
        """How much each candidate is worth training, higher first. The default is an optimistic
        estimate, the predicted value one standard deviation towards better (an upper confidence
        bound), so an uncertain candidate is not ranked below a surely mediocre one."""
        means, stds = self.predict(vectors)
        sign = 1.0 if self.maximize else -1.0
        return [sign * m + s for m, s in zip(means, stds, strict=True)]

    def screen(self, vectors: Sequence[ArchitectureVector], n: int) -> tuple[list[ArchitectureVector], list[ArchitectureVector]]:
        """``(kept, rejected)``: the ``n`` candidates worth training first, best first (before
        :attr:`ready`, the first ``n`` in the order given), and the others."""
        if not self.ready or len(vectors) <= n:
            return list(vectors[:n]), list(vectors[n:])
        scores = self.acquisition(vectors)
        order = sorted(range(len(vectors)), key=lambda i: -scores[i])  # stable: ties keep the given order
        return [vectors[i] for i in order[:n]], [vectors[i] for i in order[n:]]

    def prescreen(self, strategy: SearchStrategy, n: int, factor: int) -> list[ArchitectureVector]:
        """``n`` suggestions of ``strategy``, pre-screened: once :attr:`ready`, ask it for
        ``factor`` x ``n`` candidates, keep the ``n`` best by :meth:`screen` and withdraw the
        others (:meth:`SearchStrategy.forget`). Before that, or with ``factor`` 1,
        plain ``strategy.suggest_architectures(n)``: asking for more only to take the first would
        spend a strategy's random start (evolution's first population) on untrained candidates."""
        if factor <= 1 or not self.ready:
            return strategy.suggest_architectures(n)
        kept, rejected = self.screen(strategy.suggest_architectures(n * factor), n)
        if rejected:
            strategy.forget(rejected)
        return kept

    def generate_recommendations(self, n: int = 5, tried: Sequence[ArchitectureVector] = (),
                                 candidates: int = 2000) -> dict[str, Any] | None:
        """Regions of the space worth exploring next, from ``candidates`` random vectors of the
        space (seeded) and their predictions, as a JSON-ready dict, or None before :attr:`ready`:

        - ``dimensions``: per dimension, for a categorical one its choices ranked by the mean
          prediction over the candidates having that choice (a partial-dependence estimate), for a
          numeric one the range of its values among the best-predicted tenth of the candidates;
        - ``vectors``: the ``n`` best-predicted candidates not in ``tried``, each with its
          predicted mean and std.
        """
        if not self.ready:
            return None
        rng = random.Random(self.seed)  # noqa: S311  # nosec B311 - reproducible sampling, not cryptography
        done = {self.space.canonicalize(v).key() for v in tried}
        unique: dict[str, ArchitectureVector] = {}
        for _ in range(candidates):
            vector = self.space.sample(rng)
            unique.setdefault(vector.key(), vector)
        pool = list(unique.values())
        means, stds = self.predict(pool)
        better = 1.0 if self.maximize else -1.0
        order = sorted(range(len(pool)), key=lambda i: -better * means[i])
        top = [pool[i] for i in order[: max(1, len(pool) // 10)]]
        dimensions: dict[str, Any] = {}
        for dim in self.space:
            if isinstance(dim, CategoricalDimension):
                by_choice: dict[Any, list[float]] = {}
                for vector, mean in zip(pool, means, strict=True):
                    by_choice.setdefault(vector.values.get(dim.name), []).append(mean)
                averages = {c: sum(v) / len(v) for c, v in by_choice.items()}
                ranked = sorted(averages, key=lambda c: -better * averages[c])
                dimensions[dim.name] = {"choices": [{"value": c, "predicted": round(averages[c], 6)} for c in ranked]}
            else:
                values = [v.values[dim.name] for v in top if dim.name in v.values]
                dimensions[dim.name] = {"range": [min(values), max(values)]} if values else {}
        vectors = [{"vector": dict(pool[i].values), "predicted": round(means[i], 6), "std": round(stds[i], 6)}
                   for i in order if pool[i].key() not in done][:n]
        return {"metric": self.metric, "maximize": self.maximize, "dimensions": dimensions, "vectors": vectors}


@attrs.frozen
class Decision:
    """What a :class:`TrialScheduler` decides for a trial that reached a milestone.

    ``continue``: train on now, from the checkpoint, until ``budget`` epochs in all; ``pause``:
    keep the checkpoint, the trial counts as assessed at its fidelity and :meth:`TrialScheduler.promote`
    may resume it later; ``stop``: final at its fidelity (the checkpoint is dropped)."""

    action: str
    budget: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.action not in ("continue", "pause", "stop"):
            raise ValueError(f"action must be continue, pause or stop, got {self.action!r}")
        if self.action == "continue" and (self.budget is None or self.budget < 1):
            raise ValueError("a continue decision needs a budget of at least 1 epoch")


class TrialScheduler(abc.ABC):
    """Multi-fidelity: decides how far each trial trains, so poor trials stop early and the
    budget goes to promising ones (``scheduler=asha``; none by default).

    The orchestrator trains a trial in segments. A new trial trains to :meth:`first_budget`
    epochs. Each time a segment ends before the training's own end (``training.epochs`` or early
    stopping), the orchestrator calls :meth:`observe`, then :meth:`decide`. Before a new trial
    starts on a free worker, :meth:`promote` may hand that worker a paused trial instead, which
    continues from its checkpoint (same trial, more epochs).

    Results: ``result.curve[i]`` is the validation score (``metric``, higher is better when
    ``maximize``) after epoch ``i + 1``; ``result.fidelity`` the epochs the result reached
    (``max_epochs`` when its training ran to its end); ``result.metrics`` the other metrics
    (params, latency: for several objectives).

    State: a scheduler knows only what it observed, and every result carries its whole learning
    curve, so a resume rebuilds it by observing each stored result again in trial order (the
    orchestrator does). :meth:`observe` must therefore accept the same trial again at a higher
    fidelity and must not decide anything. Called on the event loop's thread: keep each call well
    under a millisecond.
    """

    def __init__(self, max_epochs: int, metric: str = "val_accuracy", maximize: bool = True) -> None:
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be at least 1, got {max_epochs}")
        self.max_epochs = max_epochs
        self.metric = metric
        self.maximize = maximize

    @abc.abstractmethod
    def first_budget(self, number: int) -> int:
        """Epochs trial ``number`` trains before its first decision (``max_epochs`` or fewer)."""

    @abc.abstractmethod
    def observe(self, number: int, result: TrialResult) -> None:
        """Record a trial's result (its learning curve up to ``result.fidelity``)."""

    @abc.abstractmethod
    def decide(self, number: int, result: TrialResult) -> Decision:
        """What trial ``number`` does next; it reached ``result.fidelity`` < ``max_epochs``."""

    def promote(self) -> tuple[int, int] | None:
        """A paused trial to continue now and the epochs to train it to, or None (start a new
        trial). Called once per free worker; the promotion is final (never offered twice)."""
        return None

    def describe(self) -> str:
        """One line for the log: the milestones."""
        return type(self).__name__

    def best_at(self, curve: Sequence[float], epochs: int) -> float:
        """The best validation score of the first ``epochs`` epochs of ``curve`` (what early
        stopping keeps): the value a trial is ranked by at that milestone."""
        head = [v for v in curve[:epochs] if v == v]
        if not head:
            return -math.inf if self.maximize else math.inf
        return max(head) if self.maximize else min(head)

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is strictly better than ``b``."""
        return a > b if self.maximize else a < b
