"""LLM-guided search: an LLM proposes architectures from the space and the best results so far.

After a short random warm-up, every call of ``suggest_architectures(k)`` sends one prompt to an
:class:`~neuromosaic_core.interfaces.LLMProvider` (the search space, the objective, the best
``history_size`` results, a few recent failures and the pending architectures) asking for exactly
``k`` new architectures as JSON (as in GENIUS and EvoPrompting). The answer is parsed robustly
(:mod:`neuromosaic_strategy_llm.parsing`); a proposal that is invalid even after repair, or that
repeats a pending or evaluated architecture, is replaced by a mutation of the best vector so far,
and so is the whole batch when the provider raises. :attr:`LLMGuidedSearch.stats` counts what
happened.

With a trial scheduler (multi-fidelity), a result stopped early (``result.pruned``) ranks below
every full result in the history (:meth:`SearchStrategy.fidelity_rank`), and the prompt says after
how many epochs it was stopped; a promoted trial's later result replaces its earlier one.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from typing import Any

import attrs
from loguru import logger

from neuromosaic_core.errors import ConfigError, NeuromosaicError
from neuromosaic_core.interfaces import LLMProvider, SearchStrategy
from neuromosaic_core.model import (
    AnyDimension,
    ArchitectureVector,
    CategoricalDimension,
    IntDimension,
    RealDimension,
    Scalar,
    SearchSpace,
    TrialResult,
    describe_dimension,
)
from neuromosaic_core.mutation import mutate
from neuromosaic_strategy_llm import LLMStrategySettings
from neuromosaic_strategy_llm.parsing import Invalid, extract_proposals, to_vector

SYSTEM_PROMPT = (
    "You are an expert in neural architecture search. You propose new architectures as points of a "
    "given search space, learning from the results so far. Answer with JSON only."
)
#: How many recent failures the prompt shows.
FAILURES_SHOWN = 5


@attrs.define
class LLMStats:
    """Counters of the LLM's work. For every call, ``asked`` (architectures requested) equals
    ``parsed_ok + repaired + replaced``: each requested slot is filled by a proposal valid as given,
    a repaired proposal, or a replacement (a mutation of the best vector, or a random sample before
    anything succeeded). ``provider_errors`` counts calls that raised (all their slots replaced)."""

    calls: int = 0
    asked: int = 0
    parsed_ok: int = 0
    repaired: int = 0
    replaced: int = 0
    provider_errors: int = 0

    def add(self, other: LLMStats) -> None:
        for field in attrs.fields(LLMStats):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def summary(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in attrs.fields(LLMStats))


class LLMGuidedSearch(SearchStrategy):
    """Ask an LLM for architectures; repair or replace what it gets wrong.

    - The first ``settings.warmup`` suggestions are random samples (results replayed from a resumed
      experiment count towards the warm-up). Afterwards each ``suggest_architectures(k)`` makes one
      provider call (:meth:`build_prompt`) asking for exactly ``k`` architectures.
    - Only the first ``k`` proposals of an answer are used. Each is coerced and repaired
      (:func:`~neuromosaic_strategy_llm.parsing.to_vector`); one still invalid, or equal to a
      pending or evaluated vector (or to an earlier proposal of the same answer), is replaced by a
      mutation of the best successful vector (one active dimension changed), or a random sample
      when nothing succeeded yet. Missing proposals and a raising provider are replaced likewise.
    - The history in the prompt is rebuilt from whatever ``update_with_results`` is told, so a
      resumed experiment (which replays its stored history) prompts exactly as the original did.
    - No suggestion repeats a pending vector (suggested or marked pending) unless the space is exhausted; all randomness
      comes from a ``random.Random(seed)`` of the strategy's own, so a seed, a deterministic
      provider and a history give the same suggestions every time.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        metric: str = "val_accuracy",
        maximize: bool = True,
        provider: LLMProvider | None = None,
        settings: LLMStrategySettings | None = None,
        system: Any = None,
    ) -> None:
        super().__init__(space, seed=seed, metric=metric, maximize=maximize)
        self.settings = settings if settings is not None else LLMStrategySettings()
        if provider is None:
            provider = resolve_provider(self.settings.provider, system)
        elif not isinstance(provider, LLMProvider):
            raise TypeError(f"provider must implement neuromosaic_core.interfaces.LLMProvider, got {type(provider).__name__}")
        self.provider = provider
        self._rng = random.Random(seed)  # noqa: S311 - reproducible sampling, not cryptography
        self._pending_vectors: dict[str, ArchitectureVector] = {}  # the pending vectors, for the prompt
        self._failed: set[str] = set()
        #: key -> (fidelity rank, score, vector), in order of first success
        self._scores: dict[str, tuple[tuple[int, int], float, ArchitectureVector]] = {}
        self._failures: dict[str, tuple[ArchitectureVector, str]] = {}  # most recent last
        self._seen = 0  # suggestions made plus results told for vectors that were not pending
        #: Cumulative counters over all provider calls, and those of the latest call.
        self.stats = LLMStats()
        self.last_stats = LLMStats()
        #: The latest prompt sent and answer received (None before the first call / on an error).
        self.last_prompt: str | None = None
        self.last_answer: str | None = None
        #: For each suggestion (by key) where it came from: "warmup", "llm", "repaired" or "replaced".
        self.origin: dict[str, str] = {}

    # -- inspection -------------------------------------------------------------------------

    @property
    def warming_up(self) -> bool:
        """Whether the next suggestion is still a random warm-up sample."""
        return self._seen < self.settings.warmup

    def history(self) -> list[tuple[ArchitectureVector, float]]:
        """The best ``history_size`` successful vectors, best first (full results before pruned
        ones; ties: older first), with scores."""
        return [(vector, score) for _, score, vector in self._ranked()]

    def _ranked(self) -> list[tuple[tuple[int, int], float, ArchitectureVector]]:
        sign = 1.0 if self.maximize else -1.0
        ranked = sorted(self._scores.values(), key=lambda item: (item[0], sign * item[1]), reverse=True)  # stable
        return ranked[: self.settings.history_size]

    def best(self) -> tuple[ArchitectureVector, float] | None:
        """The best successful vector so far and its score."""
        ranked = self.history()
        return ranked[0] if ranked else None

    # -- the prompt -------------------------------------------------------------------------

    def build_prompt(self, k: int) -> str:
        """The prompt asking for ``k`` architectures, from the space and what has been told so far."""
        direction = "maximize" if self.maximize else "minimize"
        better = "higher" if self.maximize else "lower"
        lines = [
            f"Propose {k} new neural network architecture{'s' if k != 1 else ''} for the search space below.",
            "",
            "Search space (dimensions in order; a conditional dimension exists only when its condition holds):",
        ]
        lines += [f"- {describe(dim)}" for dim in self.space.dimensions]
        lines += ["", f"Objective: {direction} {self.metric} ({better} is better).", ""]
        history = self._ranked()
        if history:
            lines.append(
                f"Best architectures so far ({len(history)} of {len(self._scores)} successful, {len(self._evaluated)} evaluated; best first):"
            )
            lines += [f"{i}. {self.metric}={score:.6g} {self._show(vector)}"
                      + (f" (stopped early, after {rank[1]} epochs)" if rank[0] == 0 else "")
                      for i, (rank, score, vector) in enumerate(history, 1)]
        else:
            lines.append(f"No architecture has succeeded yet ({len(self._evaluated)} evaluated).")
        failures = list(self._failures.values())[-FAILURES_SHOWN:][::-1]
        if failures:
            lines += ["", "Recent failures (these did not train; avoid what made them fail):"]
            lines += [f"- {self._show(vector)} -> {reason}" for vector, reason in failures]
        pending = list(self._pending_vectors.values())[-self.settings.history_size :]
        if pending:
            lines += ["", "Being evaluated now (do not repeat):"]
            lines += [f"- {self._show(vector)}" for vector in pending]
        lines.append("")
        if self.settings.temperature_hint:
            lines += [self.settings.temperature_hint.strip(), ""]
        example = self._show(self.space.canonicalize({d.name: d.default() for d in self.space.dimensions}))
        lines += [
            f"Answer with a JSON list of exactly {k} object{'s' if k != 1 else ''}, each mapping every dimension that "
            "exists for it to a value inside its domain, all different from the architectures above. "
            "Format only, not a suggestion:",
            f"[{example}]",
        ]
        return "\n".join(lines)

    def _show(self, vector: ArchitectureVector) -> str:
        """A vector as JSON, active dimensions only, in space order, reals to 4 significant digits."""
        shown: dict[str, Scalar] = {}
        for dim in self.space.active_dimensions(vector.values):
            value = vector.values[dim.name]
            shown[dim.name] = float(f"{value:.4g}") if isinstance(value, float) else value
        return json.dumps(shown)

    # -- ask --------------------------------------------------------------------------------

    def suggest_architectures(self, n: int) -> list[ArchitectureVector]:
        if n < 0:
            raise ValueError(f"expected n >= 0, got {n}")
        suggestions: list[ArchitectureVector] = []
        while len(suggestions) < n and self.warming_up:
            suggestions.append(self._add(self._replacement(mutate=False), "warmup"))
        if len(suggestions) < n:
            suggestions += self._ask(n - len(suggestions))
        return suggestions

    def _add(self, vector: ArchitectureVector, origin: str) -> ArchitectureVector:
        key = vector.key()
        self._pending[key] += 1
        self._pending_vectors[key] = vector
        self._seen += 1
        self.origin[key] = origin
        return vector

    def _ask(self, k: int) -> list[ArchitectureVector]:
        batch = LLMStats(calls=1, asked=k)
        prompt = self.build_prompt(k)
        self.last_prompt, self.last_answer = prompt, None
        proposals: list[Any] = []
        problem = ""
        try:
            answer = self.provider.complete(prompt, system=SYSTEM_PROMPT)
            if not isinstance(answer, str):
                raise TypeError(f"complete() returned {type(answer).__name__}, not str")
        except Exception as exc:  # transport errors, timeouts, a broken provider: fall back, never stall
            batch.provider_errors = 1
            problem = f"; provider error: {type(exc).__name__}: {_one_line(str(exc))}"
        else:
            self.last_answer = answer
            extracted = extract_proposals(answer, self.space.names)
            if extracted is None:
                problem = "; no JSON list of architectures in the answer"
            proposals = (extracted or [])[:k]
        suggestions: list[ArchitectureVector] = []
        for i, proposal in enumerate(proposals):
            try:
                parsed = to_vector(proposal, self.space, self._rng)
            except Invalid as exc:
                logger.debug(f"llm strategy: proposal {i + 1} rejected: {exc}")
                continue
            key = parsed.vector.key()
            if key in self._pending or key in self._evaluated:
                logger.debug(f"llm strategy: proposal {i + 1} repeats a pending or evaluated architecture")
                continue
            if parsed.repairs:
                batch.repaired += 1
                logger.debug(f"llm strategy: proposal {i + 1} repaired: {'; '.join(parsed.repairs)}")
            else:
                batch.parsed_ok += 1
            suggestions.append(self._add(parsed.vector, "repaired" if parsed.repairs else "llm"))
        while len(suggestions) < k:
            batch.replaced += 1
            suggestions.append(self._add(self._replacement(mutate=True), "replaced"))
        self.last_stats = batch
        self.stats.add(batch)
        logger.info(
            f"llm strategy: asked {k}: {batch.parsed_ok} ok, {batch.repaired} repaired, {batch.replaced} replaced"
            f"{problem} (totals: {self.stats.summary()})"
        )
        return suggestions

    def _replacement(self, mutate: bool) -> ArchitectureVector:
        """A fresh vector: a mutation of the best one (when ``mutate`` and one exists), else a sample.

        After ``max_retries`` rejected mutations it samples; after ``max_retries`` rejected samples
        it accepts a vector already evaluated and, if the space is exhausted, a pending one.
        """
        best = self.best() if mutate else None
        first: ArchitectureVector | None = None
        not_pending: ArchitectureVector | None = None
        for use_parent in (True, False) if best is not None else (False,):
            for _ in range(self.settings.max_retries):
                vector = self._mutate(best[0]) if use_parent and best is not None else None
                if vector is None:
                    vector = self.space.canonicalize(self.space.sample(self._rng))
                key = vector.key()
                if first is None:
                    first = vector
                if key in self._pending:
                    continue
                if key not in self._evaluated:
                    return vector
                if not_pending is None:
                    not_pending = vector
        chosen = not_pending if not_pending is not None else first
        assert chosen is not None  # max_retries >= 1
        return chosen

    def _mutate(self, parent: ArchitectureVector) -> ArchitectureVector | None:
        return mutate(self.space, parent, self._rng, self.settings.max_retries)

    def mark_pending(self, vectors: Sequence[ArchitectureVector]) -> None:
        """Pending like suggestions (the prompt lists them as being evaluated), and counted towards
        the warm-up like them."""
        for vector in vectors:
            canonical = self.space.member(vector)
            key = canonical.key() if canonical is not None else vector.key()
            self._pending[key] += 1
            if canonical is not None:
                self._pending_vectors[key] = canonical
            self._seen += 1

    def forget(self, vectors: Sequence[ArchitectureVector]) -> None:
        """No longer pending (nor in the prompt), and no longer counted towards the warm-up."""
        for vector in vectors:
            key = self.vector_key(vector)
            if self._resolve(key):
                self._seen = max(0, self._seen - 1)
                if key not in self._pending:
                    self._pending_vectors.pop(key, None)

    # -- tell -------------------------------------------------------------------------------

    def update_with_results(self, results: Sequence[tuple[ArchitectureVector, TrialResult]]) -> None:
        for vector, result in results:
            canonical = self.space.member(vector)
            key = canonical.key() if canonical is not None else vector.key()
            # A replayed or foreign result counts towards the warm-up; a re-tell does not.
            retell = self._tell(key, result)
            if key not in self._pending:
                self._pending_vectors.pop(key, None)
            if not result.ok:
                self._failed.add(key)
                self._scores.pop(key, None)
                if canonical is not None and result.error is not None:
                    self._failures.pop(key, None)  # re-inserted: most recent last
                    reason = f"{result.error.error_class.value}: {_one_line(result.error.message)}"
                    self._failures[key] = (canonical, reason)
                continue
            score = _score(result.metrics.get(self.metric))
            if canonical is None or score is None or key in self._failed:
                continue
            rank = self.fidelity_rank(result)
            previous = self._scores.get(key)
            # A re-tell supersedes the earlier result; a vector evaluated twice keeps its better
            # result, a full one before a pruned one.
            sign = 1.0 if self.maximize else -1.0
            if previous is None or retell or (rank, sign * score) > (previous[0], sign * previous[1]):
                self._scores[key] = (rank, score, canonical)


# -- resolving the provider ----------------------------------------------------------------------


def resolve_provider(name: str, system: Any = None) -> LLMProvider:
    """Build the registered code generator ``name`` with its default settings and check that it is
    an :class:`LLMProvider`; raise :class:`ConfigError` (one line, naming the installed LLM
    providers) if not.

    The fallback: the core hands the strategy the selected code generator itself (with the user's
    ``codegen.*`` settings) when it is an LLM and ``strategy.provider`` is empty or names it, so
    this runs only for another provider, or when no LLM is selected as the code generator.
    ``system`` is a :class:`~neuromosaic_core.plugins.PluginSystem` (default: ``PluginSystem.load()``).
    """
    if system is None:
        from neuromosaic_core.plugins import PluginSystem

        system = PluginSystem.load()
    if not name:
        raise ConfigError(
            "strategy=llm needs an LLM: select one as the code generator (codegen=ollama, codegen=openai, "
            "codegen=llamacpp — it shares their codegen.* settings) or name one with strategy.provider=<name>; "
            f"installed LLM providers: {_listing(llm_provider_names(system))}"
        )
    if name not in system.names("codegen"):
        raise ConfigError(
            f"strategy.provider={name!r} is not an installed codegen provider; installed LLM providers: "
            f"{_listing(llm_provider_names(system))} (codegen providers: {_listing(system.names('codegen'))})"
        )
    component = system.get("codegen", name)
    hint = f"; to use your codegen.* settings, select it as the code generator: codegen={name}"
    try:
        provider = component.factory(settings=component.default_settings())
    except ConfigError as exc:
        raise ConfigError(
            f"strategy.provider={name!r} could not be built with its default settings: {_one_line(str(exc), 400)}{hint}"
        ) from exc
    except NeuromosaicError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"strategy.provider={name!r} could not be built with its default settings: "
            f"{type(exc).__name__}: {_one_line(str(exc))}{hint}"
        ) from exc
    if not isinstance(provider, LLMProvider):
        others = [n for n in llm_provider_names(system) if n != name]
        raise ConfigError(f"strategy.provider={name!r} is not an LLM provider; installed LLM providers: {_listing(others)}")
    return provider


def llm_provider_names(system: Any) -> list[str]:
    """The registered code generators that declare themselves LLM providers (registered with the
    metadata ``llm=True``). Nothing is built: building one may load a model or need settings."""
    return [name for name in system.names("codegen") if system.get("codegen", name).metadata.get("llm")]


# -- helpers -------------------------------------------------------------------------------------


def describe(dim: AnyDimension) -> str:
    """One prompt line for a dimension: name, kind, domain, and its condition if any."""
    if isinstance(dim, CategoricalDimension):
        text = f"{dim.name}: one of {describe_dimension(dim)}"
    elif isinstance(dim, IntDimension):
        text = f"{dim.name}: integer in {describe_dimension(dim)}" + (", log scale" if dim.log else "")
    else:
        assert isinstance(dim, RealDimension)
        text = f"{dim.name}: real number in {describe_dimension(dim)}" + (", log scale" if dim.log else "")
    if dim.active_if:
        conditions = [
            f"{parent} is {allowed[0]}" if len(allowed) == 1 else f"{parent} is one of {{{', '.join(map(str, allowed))}}}"
            for parent, allowed in dim.active_if.items()
        ]
        text += "; only when " + " and ".join(conditions)
    return text


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _score(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
