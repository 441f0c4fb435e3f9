"""Components as a plain library, without Hydra and without the orchestrator.

    from neuromosaic_core.library import create_encoder, create_strategy

    space = create_encoder("mlp_conv1d").search_space()
    strategy = create_strategy("random", space, seed=0)
    vectors = strategy.suggest_architectures(4)
    strategy.update_with_results([(v, TrialResult({"val_accuracy": score(v)})) for v in vectors])

    surrogate = create_meta_learner("surrogate", space, seed=0)     # pre-screening, docs/meta-learning.md
    surrogate.observe(results)
    vectors = surrogate.prescreen(strategy, n=1, factor=10)         # 10 candidates asked, the best kept

    codegen = create_codegen("ollama", model="qwen2.5-coder:7b")
    outcome = generate_validated_code(codegen, CodeGenRequest(spec, (40,), 10), provider_name="ollama")

Settings are passed as keyword arguments and checked exactly as on the command line.
"""

from __future__ import annotations

from typing import Any

from neuromosaic_core.interfaces import ArchitectureEncoder, CodeGenProvider, MetaLearner, SearchStrategy
from neuromosaic_core.model import SearchSpace
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import structure_settings


def _settings(kind: str, name: str, values: dict[str, Any], system: PluginSystem | None) -> tuple[Any, Any]:
    component = (system or PluginSystem.load()).get(kind, name)
    settings = structure_settings(values, component.settings, kind) if component.settings else None
    return component, settings


def create_strategy(name: str, space: SearchSpace, seed: int = 0, metric: str = "val_accuracy", maximize: bool = True,
                    system: PluginSystem | None = None, **settings: Any) -> SearchStrategy:
    """A registered search strategy by name, ready for ask/tell."""
    component, checked = _settings("strategy", name, settings, system)
    return component.factory(space=space, seed=seed, settings=checked, metric=metric, maximize=maximize)


def create_encoder(name: str, system: PluginSystem | None = None, **settings: Any) -> ArchitectureEncoder:
    """A registered architecture encoder by name."""
    component, checked = _settings("encoder", name, settings, system)
    return component.factory(settings=checked)


def create_codegen(name: str, system: PluginSystem | None = None, **settings: Any) -> CodeGenProvider:
    """A registered code generator by name (``template``, ``ollama``, ``openai``, ``llamacpp``, ...)."""
    component, checked = _settings("codegen", name, settings, system)
    return component.factory(settings=checked)


def create_meta_learner(name: str, space: SearchSpace, seed: int = 0, metric: str = "val_accuracy", maximize: bool = True,
                        system: PluginSystem | None = None, **settings: Any) -> MetaLearner:
    """A registered meta-learner (surrogate model) by name, e.g. ``surrogate``."""
    component, checked = _settings("meta", name, settings, system)
    return component.factory(space=space, seed=seed, settings=checked, metric=metric, maximize=maximize)
