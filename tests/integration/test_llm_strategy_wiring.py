"""How ``build_components`` hands an LLM strategy its LLM: a strategy registered with
``uses_llm=True`` gets the selected code generator itself (built once, with the user's
``codegen.*`` settings) when that is an ``LLMProvider`` registered with ``llm=True``, and the plugin
system; any other strategy gets exactly the arguments it always got. The configuration is composed
and checked the way the CLI does it (``register_config_nodes`` + ``preflight``), from small
in-test plugins."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from neuromosaic_core import hookimpl
from neuromosaic_core.cli import build_components
from neuromosaic_core.config import preflight, register_config_nodes
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.interfaces import ArchitectureEncoder, CodeGenProvider, LLMProvider, SearchStrategy
from neuromosaic_core.model import ArchitectureSpec, ArchitectureVector, IntDimension, Layer, SearchSpace
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import RunnerSettings, StorageSettings

SPACE = SearchSpace([IntDimension("width", low=1, high=64)])
STRATEGY_ARGS = {"space", "seed", "settings", "metric", "maximize"}


# -- the selected code generators ------------------------------------------------------------------


@attrs.frozen
class FakeLLMSettings:
    model: str = "default-model"


class FakeLLM(CodeGenProvider, LLMProvider):
    """A code generator that is also an LLM, as ``LLMCodeGen`` is."""

    def __init__(self, settings: FakeLLMSettings) -> None:
        self.settings = settings

    def generate_code(self, request: Any) -> str:  # pragma: no cover - no code is generated here
        return "class Net: ..."

    def complete(self, prompt: str, system: str | None = None) -> str:  # pragma: no cover
        return "[]"


class PlainCodeGen(CodeGenProvider):
    def generate_code(self, request: Any) -> str:  # pragma: no cover
        return "class Net: ..."


class CodegenPlugin:
    """``fake`` (an LLM, counted), ``other`` (another LLM) and ``plain`` (no LLM)."""

    def __init__(self) -> None:
        self.built: list[FakeLLM] = []

    def build_fake(self, settings: FakeLLMSettings) -> FakeLLM:
        self.built.append(FakeLLM(settings))
        return self.built[-1]

    @hookimpl
    def register_codegen_providers(self, register: Any) -> None:
        register("fake", self.build_fake, settings=FakeLLMSettings, description="an LLM", llm=True)
        register("other", FakeLLM, settings=FakeLLMSettings, description="another LLM", llm=True)
        register("plain", lambda settings: PlainCodeGen(), description="not an LLM")


# -- strategies that record what they were given -----------------------------------------------------


@attrs.frozen
class WantsLLMSettings:
    provider: str = ""


class Recorded(SearchStrategy):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(kwargs["space"], seed=kwargs["seed"], metric=kwargs["metric"], maximize=kwargs["maximize"])
        self.kwargs = kwargs

    def suggest_architectures(self, n: int) -> list[ArchitectureVector]:  # pragma: no cover
        return []

    def update_with_results(self, results: Any) -> None:  # pragma: no cover
        pass


class StrategyPlugin:
    @hookimpl
    def register_search_strategies(self, register: Any) -> None:
        register("wants_llm", Recorded, settings=WantsLLMSettings, description="uses an LLM", uses_llm=True)
        register("plain_search", Recorded, settings=WantsLLMSettings, description="has a provider key, uses no LLM")


# -- the rest of a search -------------------------------------------------------------------------------


class Encoder(ArchitectureEncoder):
    def search_space(self) -> SearchSpace:
        return SPACE

    def decode(self, vector: ArchitectureVector) -> ArchitectureSpec:  # pragma: no cover
        return ArchitectureSpec("mlp", [Layer("linear", {"out_features": vector["width"]})])

    def encode(self, spec: ArchitectureSpec) -> ArchitectureVector:  # pragma: no cover
        return ArchitectureVector({"width": spec.layers[0].params["out_features"]})


class Stub:
    def __init__(self, settings: Any = None) -> None:
        self.settings = settings


class RestPlugin:
    @hookimpl
    def register_encoders(self, register: Any) -> None:
        register("wiring", lambda settings: Encoder())

    @hookimpl
    def register_runners(self, register: Any) -> None:
        register("wiring", Stub, settings=RunnerSettings)

    @hookimpl
    def register_storage_backends(self, register: Any) -> None:
        register("wiring", Stub, settings=StorageSettings, url_schemes=("memory",))

    @hookimpl
    def register_tasks(self, register: Any) -> None:
        register("wiring", Stub)


REST = ["encoder=wiring", "runner=wiring", "storage=wiring", "storage.url=memory://", "task=wiring", "visualizers=[]"]


@pytest.fixture
def codegens() -> CodegenPlugin:
    return CodegenPlugin()


@pytest.fixture
def system(codegens: CodegenPlugin) -> PluginSystem:
    system = PluginSystem.load(
        [("codegens", codegens), ("strategies", StrategyPlugin()), ("rest", RestPlugin())], entry_points=False
    )
    assert not system.errors()
    register_config_nodes(system)
    return system


def build(system: PluginSystem, *overrides: str) -> Any:
    return build_components(preflight([*overrides, *REST], system), system)


# -- the tests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("named", [[], ["strategy.provider=fake"]])
def test_an_llm_strategy_gets_the_selected_llm_codegen_itself_built_once(system, codegens, named):
    components = build(system, "strategy=wants_llm", "codegen=fake", "codegen.model=big-model", *named)
    assert len(codegens.built) == 1
    codegen = codegens.built[0]
    assert components.codegen is codegen and components.codegen_name == "fake"
    assert codegen.settings == FakeLLMSettings(model="big-model")  # the user's codegen.* settings
    kwargs = components.strategy.kwargs
    assert kwargs["provider"] is codegen
    assert kwargs["system"] is system
    assert set(kwargs) == STRATEGY_ARGS | {"provider", "system"}


def test_an_llm_strategy_naming_another_provider_gets_only_the_system(system, codegens):
    components = build(system, "strategy=wants_llm", "codegen=fake", "strategy.provider=other")
    assert len(codegens.built) == 1 and components.codegen is codegens.built[0]
    assert set(components.strategy.kwargs) == STRATEGY_ARGS | {"system"}  # it builds `other` itself
    assert components.strategy.kwargs["system"] is system


def test_an_llm_strategy_beside_a_codegen_that_is_no_llm_gets_only_the_system(system, codegens):
    components = build(system, "strategy=wants_llm", "codegen=plain")
    assert isinstance(components.codegen, PlainCodeGen) and codegens.built == []
    assert set(components.strategy.kwargs) == STRATEGY_ARGS | {"system"}


def test_a_strategy_without_uses_llm_gets_exactly_the_usual_arguments(system, codegens):
    components = build(system, "strategy=plain_search", "codegen=fake", "strategy.provider=fake")
    assert len(codegens.built) == 1
    kwargs = components.strategy.kwargs
    assert set(kwargs) == STRATEGY_ARGS
    assert (kwargs["space"], kwargs["seed"], kwargs["metric"], kwargs["maximize"]) == (SPACE, 0, "val_accuracy", True)
    assert kwargs["settings"] == WantsLLMSettings(provider="fake")


# -- with the real `llm` strategy (and the real `ollama` provider) -------------------------------------------


@pytest.fixture
def with_llm_strategy(codegens: CodegenPlugin) -> PluginSystem:
    strategy_llm = pytest.importorskip("neuromosaic_strategy_llm")
    system = PluginSystem.load([("codegens", codegens), ("llm", strategy_llm), ("rest", RestPlugin())], entry_points=False)
    register_config_nodes(system)
    return system


def test_the_llm_strategy_shares_the_selected_codegen(with_llm_strategy, codegens):
    components = build(with_llm_strategy, "strategy=llm", "codegen=fake", "codegen.model=big-model")
    assert len(codegens.built) == 1
    assert components.strategy.provider is components.codegen is codegens.built[0]


def test_the_llm_strategy_builds_a_named_other_provider_with_its_defaults(with_llm_strategy, codegens):
    components = build(with_llm_strategy, "strategy=llm", "codegen=fake", "codegen.model=big-model", "strategy.provider=other")
    assert len(codegens.built) == 1 and components.codegen is codegens.built[0]
    provider = components.strategy.provider
    assert isinstance(provider, FakeLLM) and provider is not components.codegen
    assert provider.settings == FakeLLMSettings()


def test_the_llm_strategy_without_an_llm_is_a_one_line_config_error(with_llm_strategy, codegens):
    with pytest.raises(ConfigError) as caught:
        build(with_llm_strategy, "strategy=llm", "codegen=plain")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("strategy=llm needs an LLM: select one as the code generator (codegen=ollama")
    assert message.endswith("installed LLM providers: fake, other")
    assert codegens.built == []  # listing the LLM providers built none


def test_the_llm_strategy_with_ollama_as_the_code_generator(codegens):
    strategy_llm = pytest.importorskip("neuromosaic_strategy_llm")
    ollama = pytest.importorskip("neuromosaic_codegen_ollama")
    system = PluginSystem.load([("ollama", ollama), ("llm", strategy_llm), ("rest", RestPlugin())], entry_points=False)
    register_config_nodes(system)
    # Building the provider contacts no server: nothing here needs Ollama running.
    components = build(system, "strategy=llm", "codegen=ollama", "codegen.model=qwen2.5-coder:7b", "codegen.host=http://127.0.0.1:9")
    assert system.get("codegen", "ollama").metadata.get("llm") is True
    assert components.strategy.provider is components.codegen
    assert components.codegen.model == "qwen2.5-coder:7b"
