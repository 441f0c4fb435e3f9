"""Optuna behind the SearchStrategy interface: TPE, GP, NSGA-II or random sampling, one or more objectives.

The search space is mapped onto Optuna's define-by-run API inside ``ask``: dimensions are walked in
order and a dimension is suggested only when it is active given the values suggested before it
(the rule of :meth:`SearchSpace.active_dimensions`), so Optuna never sees an inactive dimension.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import warnings
from collections import deque
from collections.abc import Iterator, Mapping, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from neuromosaic_core.interfaces import SearchStrategy
from neuromosaic_core.model import (
    AnyDimension,
    ArchitectureVector,
    CategoricalDimension,
    IntDimension,
    RealDimension,
    Scalar,
    SearchSpace,
    TrialResult,
)
from neuromosaic_strategy_optuna import SAMPLERS, parse_objectives

#: Repeats Optuna may propose for one suggestion before a random sample is taken instead.
MODEL_RETRIES = 3

class OptunaSearch(SearchStrategy):
    """Bayesian optimisation (and friends) through an in-memory Optuna study.

    - ``sampler``: ``tpe`` (``TPESampler``; multi-objective TPE when several objectives are given),
      ``gp`` (``GPSampler``, needs torch and scipy), ``random`` (``RandomSampler``) or ``nsga2``
      (``NSGAIISampler``, population size ``max(2, n_startup_trials)``). Every sampler gets ``seed``.
    - ``objectives``: empty for one objective, ``result.metrics[metric]`` maximised when
      ``maximize``; or ``"metric:max,other:min"`` for a multi-objective search
      (:meth:`pareto_front` gives the best trade-offs).
    - ``suggest_architectures(n)`` asks Optuna ``n`` times. A proposal equal to a pending
      suggestion or an evaluated vector is told to Optuna as failed (failed trials do not enter its
      models) and Optuna is asked again, up to ``max_retries`` times; then up to ``max_retries``
      vectors are drawn from the space with a ``random.Random(seed)``; then a repeat is accepted (an
      evaluated vector first, a pending one only when the space is exhausted), so a tiny space never
      hangs. Vectors chosen this way are enqueued in the study, so Optuna knows them as running.
    - ``update_with_results``: a pending suggestion's trial is told ``COMPLETE`` with its objective
      values, or ``FAIL`` when the result failed or lacks a finite objective value. A vector never
      suggested (history replayed on resume, another worker's result) is added to the study as a
      finished trial with the distributions ``ask`` would have used, so a resumed search continues
      where it stopped. Vectors that are not points of the space are ignored.
    - Multi-fidelity, through Optuna's own pruning interface: a result a trial scheduler stopped or
      paused early (``result.pruned``) has its learning curve reported (``trial.report(value,
      epoch)``, epoch 1 first; the objective value at ``result.fidelity`` when it has no curve)
      and its trial told ``PRUNED``, which TPE ranks below every complete trial and by the last
      epoch reached. A vector told again at a higher fidelity (a promoted trial that trained on)
      already has a finished trial: its later result is added as a new finished trial
      (``COMPLETE``, or ``PRUNED`` again) with its curve as intermediate values. Optuna reports
      intermediate values for one objective only: with several, pruned trials carry none.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        metric: str = "val_accuracy",
        maximize: bool = True,
        sampler: str = "tpe",
        objectives: str = "",
        n_startup_trials: int = 10,
        multivariate: bool = True,
        max_retries: int = 50,
    ) -> None:
        super().__init__(space, seed=seed, metric=metric, maximize=maximize)
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
        if n_startup_trials < 0:
            raise ValueError(f"expected n_startup_trials >= 0, got {n_startup_trials}")
        if max_retries < 1:
            raise ValueError(f"expected max_retries >= 1, got {max_retries}")
        self.sampler_name = sampler
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate
        self.max_retries = max_retries
        #: ``(metric, maximize)`` per objective, in the order Optuna sees them.
        self.objectives: list[tuple[str, bool]] = parse_objectives(objectives) or [(metric, maximize)]
        optuna.logging.set_verbosity(logging.WARNING)
        with _quiet():
            #: The in-memory Optuna study (for inspection: ``strategy.study.trials``...).
            self.study = optuna.create_study(
                sampler=self._make_sampler(),
                directions=["maximize" if up else "minimize" for _, up in self.objectives],
            )
        self._rng = random.Random(seed)  # noqa: S311 - reproducible sampling, not cryptography
        self._running: dict[str, deque[optuna.Trial]] = {}  # pending vector key -> its running Optuna trials

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def _make_sampler(self) -> optuna.samplers.BaseSampler:
        seed = self.seed
        if self.sampler_name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if self.sampler_name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, self.n_startup_trials))
        if self.sampler_name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.n_startup_trials, warn_independent_sampling=False)
        # Group decomposition lets multivariate TPE model conditional dimensions jointly too.
        conditional = any(dim.active_if for dim in self.space.dimensions)
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=self.n_startup_trials,
            multivariate=self.multivariate,
            group=self.multivariate and conditional,
        )

    # -- inspection -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """How many suggestions have not been told yet."""
        return sum(len(trials) for trials in self._running.values())

    @property
    def evaluated(self) -> int:
        """How many distinct vectors have been told."""
        return len(self._evaluated)

    def complete_trials(self) -> list[FrozenTrial]:
        """The study's trials that finished with objective values."""
        return self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def pareto_front(self) -> list[tuple[ArchitectureVector, dict[str, float]]]:
        """The best trials (``study.best_trials``: the Pareto front, or the best one for a single
        objective) as ``(vector, {objective: value})``, in trial order."""
        return [
            (self.space.canonicalize(t.params), {name: float(v) for (name, _), v in zip(self.objectives, t.values, strict=True)})
            for t in self.study.best_trials
        ]

    def best(self) -> tuple[ArchitectureVector, float] | None:
        """The best vector so far and its score (the first objective), or None before any success."""
        complete = self.complete_trials()
        if not complete:
            return None
        _, up = self.objectives[0]
        chosen = (max if up else min)(complete, key=lambda t: t.values[0])  # first wins ties: oldest
        return self.space.canonicalize(chosen.params), float(chosen.values[0])

    # -- the mapping ----------------------------------------------------------------------

    def distributions(self, vector: ArchitectureVector | Mapping[str, Scalar]) -> dict[str, BaseDistribution]:
        """The Optuna distributions of ``vector``'s active dimensions: what ``ask`` suggests for it."""
        values = vector.values if isinstance(vector, ArchitectureVector) else vector
        return {dim.name: _distribution(dim) for dim in self.space.active_dimensions(values)}

    def _ask(self) -> tuple[optuna.Trial, ArchitectureVector]:
        """One Optuna trial, define-by-run: only active dimensions are suggested."""
        trial = self.study.ask()
        values: dict[str, Scalar] = {}
        for dim in self.space.dimensions:
            if all(parent in values and values[parent] in allowed for parent, allowed in dim.active_if.items()):
                values[dim.name] = _suggest(trial, dim)
        return trial, self.space.canonicalize(values)

    # -- ask --------------------------------------------------------------------------------

    def suggest_architectures(self, n: int) -> list[ArchitectureVector]:
        if n < 0:
            raise ValueError(f"expected n >= 0, got {n}")
        suggestions = []
        with _quiet():
            for _ in range(n):
                trial, vector = self._propose()
                self._running.setdefault(vector.key(), deque()).append(trial)
                suggestions.append(vector)
        return suggestions

    def _propose(self) -> tuple[optuna.Trial, ArchitectureVector]:
        first: ArchitectureVector | None = None
        not_pending: ArchitectureVector | None = None
        # Only a few repeats are handed back to Optuna: each becomes a FAIL trial in the study, and a
        # study full of them makes every later ask slower (TPE scans all trials). Past that, a
        # random sample keeps the batch new.
        for _ in range(min(self.max_retries, MODEL_RETRIES)):
            trial, vector = self._ask()
            key = vector.key()
            if key not in self._running and key not in self._evaluated:
                return trial, vector
            # A repeat: failed trials stay out of Optuna's models, so this one does not distort them.
            self.study.tell(trial, state=TrialState.FAIL)
            if first is None:
                first = vector
            if not_pending is None and key not in self._running:
                not_pending = vector
        for _ in range(self.max_retries):
            vector = self.space.canonicalize(self.space.sample(self._rng))
            key = vector.key()
            if key not in self._running and key not in self._evaluated:
                return self._enqueued(vector), vector
            if not_pending is None and key not in self._running:
                not_pending = vector
        chosen = not_pending if not_pending is not None else first
        assert chosen is not None  # max_retries >= 1
        return self._enqueued(chosen), chosen

    def _enqueued(self, vector: ArchitectureVector) -> optuna.Trial:
        """Make ``vector`` a running Optuna trial of its own, so the sampler knows it is pending."""
        active = {dim.name: vector.values[dim.name] for dim in self.space.active_dimensions(vector.values)}
        self.study.enqueue_trial(active)
        trial, asked = self._ask()
        assert asked == vector, (asked.values, vector.values)
        return trial

    def mark_pending(self, vectors: Sequence[ArchitectureVector]) -> None:
        """Each becomes a running Optuna trial of its own (as a suggestion does), told when its result
        comes. Vectors that are not points of the space are ignored (so are their results)."""
        with _quiet():
            for vector in vectors:
                canonical = self.space.member(vector)
                if canonical is not None:
                    self._running.setdefault(canonical.key(), deque()).append(self._enqueued(canonical))

    def forget(self, vectors: Sequence[ArchitectureVector]) -> None:
        """Each one's running Optuna trial is told ``FAIL``: failed trials stay out of the sampler's
        models, and the vector is not counted as evaluated, so it may be suggested again."""
        with _quiet():
            for vector in vectors:
                key = self.vector_key(vector)
                trials = self._running.get(key)
                if trials:
                    trial = trials.pop()
                    if not trials:
                        del self._running[key]
                    self.study.tell(trial, state=TrialState.FAIL)

    # -- tell -------------------------------------------------------------------------------

    def update_with_results(self, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        with _quiet():
            for vector, result in results:
                canonical = self.space.member(vector)
                if canonical is None:
                    continue  # not a point of this space (another space's history): nothing to learn
                key = canonical.key()
                values = self._objective_values(result)
                if values is None:
                    state = TrialState.FAIL
                else:
                    state = TrialState.PRUNED if result.pruned else TrialState.COMPLETE
                curve = self._intermediate_values(result, values)
                trials = self._running.get(key)
                if trials:
                    trial = trials.popleft()
                    if not trials:
                        del self._running[key]
                    for step, value in curve.items():
                        trial.report(value, step)
                    # Optuna takes no values with PRUNED: the last intermediate value becomes its value.
                    self.study.tell(trial, values if state == TrialState.COMPLETE else None, state=state)
                else:  # never suggested here (replayed history), or told again at a higher fidelity
                    self._add(canonical, values if state == TrialState.COMPLETE else None, state, curve)
                self._evaluated.add(key)

    def _add(self, vector: ArchitectureVector, values: list[float] | None, state: TrialState,
             intermediate_values: dict[int, float] | None = None) -> None:
        """Add a finished trial for a vector without a running trial here."""
        if state == TrialState.PRUNED and intermediate_values:  # as study.tell(PRUNED) records it
            values = [intermediate_values[max(intermediate_values)]]
        distributions = self.distributions(vector)
        params = {name: vector.values[name] for name in distributions}
        self.study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, values=values, state=state,
                                                       intermediate_values=intermediate_values or None))

    def _intermediate_values(self, result: TrialResult, values: list[float] | None) -> dict[int, float]:
        """What a trial reports to Optuna, by epoch (1 first): the finite points of the learning curve
        up to the result's fidelity; for a pruned result without a curve, its objective value at its
        fidelity. Empty for a failed result and for several objectives (Optuna takes none then)."""
        if values is None or self.multi_objective:
            return {}
        head = result.curve[: result.fidelity] if result.fidelity is not None else result.curve
        reported = {epoch: float(v) for epoch, v in enumerate(head, start=1) if _finite(v)}
        if not reported and result.pruned:
            reported = {result.fidelity or 1: values[0]}
        return reported

    def _objective_values(self, result: TrialResult) -> list[float] | None:
        """The objective values of a successful result, or None (failed, missing or not finite)."""
        if not result.ok:
            return None
        values = []
        for name, _ in self.objectives:
            value = result.metrics.get(name)
            if not _finite(value):
                return None
            values.append(float(value))  # type: ignore[arg-type]  # _finite: a real number
        return values


def _finite(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _distribution(dim: AnyDimension) -> BaseDistribution:
    """The distribution Optuna records for ``dim`` when :func:`_suggest` suggests it."""
    if isinstance(dim, IntDimension):
        return IntDistribution(dim.low, dim.high, log=dim.log)
    if isinstance(dim, RealDimension):
        return FloatDistribution(dim.low, dim.high, log=dim.log)
    assert isinstance(dim, CategoricalDimension)
    return CategoricalDistribution(dim.choices)


def _suggest(trial: optuna.Trial, dim: AnyDimension) -> Scalar:
    if isinstance(dim, IntDimension):
        return trial.suggest_int(dim.name, dim.low, dim.high, log=dim.log)
    if isinstance(dim, RealDimension):
        return trial.suggest_float(dim.name, dim.low, dim.high, log=dim.log)
    assert isinstance(dim, CategoricalDimension)
    return trial.suggest_categorical(dim.name, dim.choices)  # type: ignore[arg-type]  # ints, floats, strs


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide Optuna's ExperimentalWarnings (group-decomposed TPE, GP) from the plugin's users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
