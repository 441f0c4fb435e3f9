"""The surrogate meta-learner in real searches on the tabular NAS-Bench-201 runner: pre-screening
with every installed strategy reaches the budget, warm start proposes the earlier experiments' best
first (reusing their results), and the recommendations land in summary.json. The configuration is
composed and checked the way the CLI does it (``preflight`` + ``build_components``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from neuromosaic_core.cli import build_components
from neuromosaic_core.config import preflight, register_config_nodes
from neuromosaic_core.errors import ConfigError, NeuromosaicError
from neuromosaic_core.interfaces import LLMProvider
from neuromosaic_core.orchestrator import Orchestrator
from neuromosaic_core.plugins import PluginSystem


@pytest.fixture(scope="module")
def system():
    system = PluginSystem.load()
    for needed in (("meta", "surrogate"), ("runner", "tabular"), ("encoder", "nasbench201")):
        if needed[1] not in system.names(needed[0]):
            pytest.skip(f"the {needed[1]} {needed[0]} plugin is not installed")
    register_config_nodes(system)
    return system


class SilentLLM(LLMProvider):
    """An LLM that proposes nothing: the llm strategy fills every slot with its own mutations."""

    def complete(self, prompt, system=None):
        return "[]"


def search(tmp_path: Path, system: PluginSystem, name: str, *overrides: str, strategy: str = "random", spy=None):
    """Run one experiment in the database ``tmp_path/results.db``; return its summary, components
    and stored trials (creation order)."""
    resolved = preflight(["runner=tabular", "encoder=nasbench201", "task=nasbench201",
                          f"storage.url=sqlite:///{tmp_path / 'results.db'}", "visualizers=[]",
                          f"experiment.name={name}", f"strategy={strategy}",
                          # the llm strategy needs an LLM codegen to build; the tabular runner never calls it
                          *(["codegen=ollama"] if strategy == "llm" else []), *overrides], system)
    components = build_components(resolved, system)
    if strategy == "llm":  # no LLM server here: a scripted one
        component, settings = resolved.components["strategy"]
        components.strategy = component.factory(space=components.encoder.search_space(), seed=0, settings=settings,
                                                metric="val_accuracy", maximize=True, provider=SilentLLM())
    if spy is not None:
        spy(components)
    orchestrator = Orchestrator(resolved.core, components, tmp_path / "runs" / name, config=resolved.raw, show_progress=False)
    try:
        summary = asyncio.run(orchestrator.run(resolved.settings("runner")))
        stored = components.storage.list_trials(name)
    finally:
        components.storage.close()
    return summary, components, stored


@pytest.mark.parametrize("strategy", ["random", "hillclimb", "evolution", "optuna", "llm"])
def test_a_prescreened_search_reaches_its_budget_with_every_strategy(tmp_path, system, strategy):
    if strategy not in system.names("strategy"):
        pytest.skip(f"strategy {strategy} is not installed")
    withdrawn = []

    def count_withdrawals(components):
        original = components.strategy.forget

        def forget(vectors):
            withdrawn.extend(vectors)
            original(vectors)

        components.strategy.forget = forget

    summary, components, stored = search(tmp_path, system, "screened", "search.trials=20", "meta=surrogate", "search.prescreen=5",
                                "meta.min_results=4", strategy=strategy, spy=count_withdrawals)
    assert summary["stopped"] == "completed"
    assert summary["trials"]["completed"] == 20 == len(stored)
    assert summary["trials"]["failed"] == summary["trials"]["invalid"] == 0  # screened-out candidates are not trials
    # The first 4 trials come straight from the strategy; each of the other 16 is the best of 5.
    assert len(withdrawn) == 16 * 4
    # Screened-out candidates are forgotten, not tried: one may be proposed and trained later, and
    # the strategy counts as tried exactly the 20 distinct architectures trained (before, each of
    # the 64 was told as a failure and never proposed again).
    assert len({t.vector.key() for t in stored}) == 20
    assert len(components.strategy._evaluated) == 20


def test_recommendations_are_stored_in_the_summary(tmp_path, system):
    summary, _, _ = search(tmp_path, system, "recommend", "search.trials=15", "meta=surrogate", "meta.recommendations=3")
    on_disk = json.loads((tmp_path / "runs" / "recommend" / "summary.json").read_text())
    recommendations = on_disk["recommendations"]
    assert recommendations == summary["recommendations"]
    assert sorted(recommendations["dimensions"]) == sorted(f"edge_{i}_{j}" for i in range(1, 4) for j in range(i))
    ops = {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"}
    assert all({c["value"] for c in d["choices"]} == ops for d in recommendations["dimensions"].values())
    assert len(recommendations["vectors"]) == 3
    assert all(0.0 < v["predicted"] < 1.0 and v["std"] >= 0 for v in recommendations["vectors"])


def test_without_a_meta_learner_the_summary_is_unchanged(tmp_path, system):
    summary, components, _ = search(tmp_path, system, "plain", "search.trials=5")
    assert components.meta is None
    assert "recommendations" not in summary


def test_warm_start_proposes_the_earlier_best_first_and_reuses_their_results(tmp_path, system):
    _, _, first = search(tmp_path, system, "first", "search.trials=15")
    best = sorted(first, key=lambda t: t.result.metrics["val_accuracy"], reverse=True)[:3]
    summary, components, second = search(tmp_path, system, "second", "search.trials=6", "meta=surrogate",
                                         "meta.warm_start=true", "meta.warm_start_top=3")
    assert [t.vector for t in second[:3]] == [t.vector for t in best]
    assert [t.reused_from for t in second[:3]] == [t.id for t in best]  # not trained again
    assert summary["trials"]["reused"] == 3 and summary["trials"]["completed"] == 6
    assert components.meta.n_results >= 15  # fitted on the first experiment too


def test_warm_start_from_an_unknown_experiment_is_one_clear_error(tmp_path, system):
    search(tmp_path, system, "first", "search.trials=3")
    with pytest.raises(NeuromosaicError, match=r"no experiment 'nope' on task 'nasbench201' .*there are: first"):
        search(tmp_path, system, "second", "search.trials=3", "meta=surrogate", "meta.warm_start_experiments=[nope]")


@pytest.mark.parametrize(("overrides", "message"), [
    (["search.prescreen=4"], "search.prescreen=4 needs a meta-learner to rank the candidates: add meta=<name> (installed: "),
    (["meta.warm_start=true"], "unknown key 'meta.warm_start': no meta is selected; choose one first"),
    (["meta=surrogate", "meta.acquisition=best"], "meta.acquisition: expected one of ei, ucb, mean, got 'best'"),
])
def test_meta_settings_errors_are_one_line(system, overrides, message):
    with pytest.raises(ConfigError) as caught:
        preflight(overrides, system)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
