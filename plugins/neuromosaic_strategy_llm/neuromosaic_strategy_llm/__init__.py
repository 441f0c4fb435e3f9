"""Neuromosaic plugin: the ``llm`` search strategy (an LLM proposes architectures, GENIUS-style).

Cheap to import: the strategy itself lives in :mod:`neuromosaic_strategy_llm.search`. It registers
with ``uses_llm=True``, so the core passes it the selected code generator as ``provider`` when that
is an LLM (``codegen=ollama``: one model, the user's ``codegen.*`` settings) and ``strategy.provider``
is empty or names it; otherwise the provider named by ``strategy.provider`` is built with its
default settings when the strategy is built.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.3.0"


def _at_least(minimum: int) -> Any:
    def check(_instance: Any, attribute: Any, value: int) -> None:
        if value < minimum:
            raise ValueError(f"expected {attribute.name} >= {minimum}, got {value}")

    return check


@attrs.frozen
class LLMStrategySettings:
    """``provider``: empty to use the selected code generator (``codegen=ollama``), or the name of
    another registered LLM code generator (built with its default settings); ``warmup``: random
    suggestions before the LLM is asked; ``history_size``: how many of the best evaluated
    architectures the prompt shows; ``temperature_hint``: an optional line of guidance added to the
    prompt (e.g. "explore boldly");
    ``max_retries``: attempts per replacement (mutation, then random sample) before a vector that
    was already evaluated, or on an exhausted space a pending one, is accepted."""

    provider: str = ""
    warmup: int = attrs.field(default=4, validator=_at_least(0))
    history_size: int = attrs.field(default=20, validator=_at_least(1))
    temperature_hint: str = ""
    max_retries: int = attrs.field(default=50, validator=_at_least(1))


def factory(
    space: Any, seed: int, settings: LLMStrategySettings | None, metric: str, maximize: bool, system: Any = None, provider: Any = None
) -> Any:
    """Build :class:`~neuromosaic_strategy_llm.search.LLMGuidedSearch`. The core passes ``system``
    and, when the selected code generator is the LLM to use, that instance as ``provider``. Without
    ``provider`` the one named by ``settings.provider`` is built through ``system`` (default:
    ``PluginSystem.load()``)."""
    from neuromosaic_strategy_llm.search import LLMGuidedSearch

    return LLMGuidedSearch(
        space,
        seed=seed,
        metric=metric,
        maximize=maximize,
        provider=provider,
        settings=settings if settings is not None else LLMStrategySettings(),
        system=system,
    )


@hookimpl
def register_search_strategies(register: Any) -> None:
    register(
        "llm",
        factory,
        settings=LLMStrategySettings,
        description="LLM-guided search: an LLM provider proposes architectures from the space and the best results so far",
        uses_llm=True,  # the core passes provider= (the selected LLM codegen) and system=
    )
