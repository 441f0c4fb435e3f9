from __future__ import annotations

import json
import random
import re

import neuromosaic_strategy_llm
import pytest
from loguru import logger
from neuromosaic_strategy_llm import LLMStrategySettings, factory
from neuromosaic_strategy_llm.parsing import Invalid, coerce, extract_proposals, to_vector
from neuromosaic_strategy_llm.search import (
    SYSTEM_PROMPT,
    LLMGuidedSearch,
    LLMStats,
    describe,
    llm_provider_names,
    resolve_provider,
)

from neuromosaic_core import hookimpl
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.interfaces import CodeGenProvider, LLMProvider
from neuromosaic_core.model import (
    ArchitectureVector,
    CategoricalDimension,
    ErrorClass,
    ExperimentError,
    IntDimension,
    RealDimension,
    SearchSpace,
    TrialResult,
)
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import structure_settings
from neuromosaic_core.testing.strategy import StrategyContract, mixed_space, synthetic_score

# -- scripted providers ----------------------------------------------------------------------------


class ScriptedProvider(LLMProvider):
    """Answers from a script, in order; an exception in the script is raised instead."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.prompts: list[str] = []
        self.systems: list[str | None] = []

    def complete(self, prompt, system=None):
        self.prompts.append(prompt)
        self.systems.append(system)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class SensibleProvider(LLMProvider):
    """A stand-in LLM that reads the prompt like one would: it parses k and the history lines, and
    answers k copies of history entries (among the best three) with one dimension resampled, or
    random valid vectors while there is no history. Deterministic for a seed; answers in prose with
    a fenced block, as chat models do."""

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space = space
        self.rng = random.Random(seed)
        self.calls = 0

    def complete(self, prompt, system=None):
        self.calls += 1
        k = int(re.search(r"JSON list of exactly (\d+) object", prompt).group(1))
        history = [json.loads(m) for m in re.findall(r"^\d+\. \S+=\S+ (\{.*\})$", prompt, re.MULTILINE)]
        proposals = []
        for _ in range(k):
            if history:
                values = dict(self.rng.choice(history[:3]))
                dim = self.rng.choice(self.space.active_dimensions(values))
                values[dim.name] = dim.sample(self.rng)
                vector = self.space.canonicalize({**self.space.sample(self.rng).values, **values})
            else:
                vector = self.space.sample(self.rng)
            proposals.append({d.name: vector[d.name] for d in self.space.active_dimensions(vector.values)})
        return f"Here are {k} ideas:\n```json\n{json.dumps(proposals, indent=1)}\n```\nGood luck!"


class FailingProvider(LLMProvider):
    def complete(self, prompt, system=None):
        raise TimeoutError("the model did not answer in 30 s")


# -- the contract, three ways ---------------------------------------------------------------------


class TestLLMContract(StrategyContract):
    def make_strategy(self, space, seed):
        return LLMGuidedSearch(space, seed=seed, provider=SensibleProvider(space, seed))


class TestLLMNoWarmupContract(StrategyContract):
    """Straight to the LLM, through the factory."""

    def make_strategy(self, space, seed):
        return factory(
            space=space,
            seed=seed,
            settings=LLMStrategySettings(warmup=0, history_size=5),
            metric="val_accuracy",
            maximize=True,
            provider=SensibleProvider(space, seed),
        )


class TestLLMProviderDownContract(StrategyContract):
    """A provider that always times out: the fallback alone must satisfy the contract."""

    def make_strategy(self, space, seed):
        return LLMGuidedSearch(space, seed=seed, provider=FailingProvider(), settings=LLMStrategySettings(warmup=1))


# -- helpers ----------------------------------------------------------------------------------------


def small_space() -> SearchSpace:
    return SearchSpace(
        [
            CategoricalDimension("family", choices=("mlp", "conv1d")),
            IntDimension("depth", low=1, high=6),
            RealDimension("dropout", low=0.0, high=0.5),
            CategoricalDimension("act", choices=("relu", "gelu")),
            IntDimension("kernel", low=3, high=9, active_if={"family": ("conv1d",)}),
        ]
    )


def ok(score: float, metric: str = "val_accuracy") -> TrialResult:
    return TrialResult(metrics={metric: score})


def vec(**values) -> ArchitectureVector:
    return small_space().canonicalize(values)


MLP = {"family": "mlp", "depth": 2, "dropout": 0.1, "act": "relu"}
CONV = {"family": "conv1d", "depth": 3, "dropout": 0.2, "act": "gelu", "kernel": 5}


def scripted(*answers, **settings) -> tuple[LLMGuidedSearch, ScriptedProvider]:
    provider = ScriptedProvider(*answers)
    settings.setdefault("warmup", 0)
    return LLMGuidedSearch(small_space(), seed=0, provider=provider, settings=LLMStrategySettings(**settings)), provider


def counts(strategy: LLMGuidedSearch) -> tuple[int, int, int, int, int]:
    s = strategy.last_stats
    return s.asked, s.parsed_ok, s.repaired, s.replaced, s.provider_errors


# -- scripted answers: exact counters -----------------------------------------------------------------


def test_valid_json_list():
    strategy, provider = scripted(json.dumps([MLP, CONV]))
    vectors = strategy.suggest_architectures(2)
    assert vectors == [vec(**MLP), vec(**CONV)]
    assert counts(strategy) == (2, 2, 0, 0, 0)
    assert provider.systems == [SYSTEM_PROMPT]
    assert [strategy.origin[v.key()] for v in vectors] == ["llm", "llm"]


def test_json_in_prose_with_fences():
    answer = f"Sure! Based on the history I suggest:\n\n```json\n{json.dumps([CONV, MLP], indent=2)}\n```\n\nThe first adds a conv [kernel 5]."
    strategy, _ = scripted(answer)
    assert strategy.suggest_architectures(2) == [vec(**CONV), vec(**MLP)]
    assert counts(strategy) == (2, 2, 0, 0, 0)


def test_bare_list_in_prose_and_single_object_and_wrapper():
    strategy, _ = scripted(
        f"Proposals (see [1]): {json.dumps([MLP])} -- that's all.",
        f"Here you go: {json.dumps(CONV)}",
        json.dumps({"architectures": [dict(MLP, depth=5)]}),
    )
    assert strategy.suggest_architectures(1) == [vec(**MLP)]
    assert counts(strategy) == (1, 1, 0, 0, 0)
    assert strategy.suggest_architectures(1) == [vec(**CONV)]
    assert counts(strategy) == (1, 1, 0, 0, 0)
    assert strategy.suggest_architectures(1) == [vec(**dict(MLP, depth=5))]
    assert counts(strategy) == (1, 1, 0, 0, 0)


def test_out_of_range_values_are_clipped():
    strategy, _ = scripted(json.dumps([dict(MLP, depth=12, dropout=-0.3), dict(CONV, kernel=1), dict(MLP, depth=4)]))
    vectors = strategy.suggest_architectures(3)
    assert vectors == [vec(**dict(MLP, depth=6, dropout=0.0)), vec(**dict(CONV, kernel=3)), vec(**dict(MLP, depth=4))]
    assert counts(strategy) == (3, 1, 2, 0, 0)
    assert [strategy.origin[v.key()] for v in vectors] == ["repaired", "repaired", "llm"]


def test_unknown_keys_are_dropped_and_near_miss_keys_renamed():
    strategy, _ = scripted(json.dumps([dict(MLP, optimizer="adam", lr=0.1), {"Family": "mlp", "depth": 3, "dropout": 0.1, "act": "relu"}]))
    vectors = strategy.suggest_architectures(2)
    assert vectors == [vec(**MLP), vec(**dict(MLP, depth=3))]
    assert counts(strategy) == (2, 0, 2, 0, 0)


def test_missing_active_dimension_is_sampled_and_inactive_ones_ignored():
    no_kernel = {k: v for k, v in CONV.items() if k != "kernel"}
    strategy, _ = scripted(json.dumps([no_kernel, dict(MLP, kernel=7)]))
    first, second = strategy.suggest_architectures(2)
    assert {k: first[k] for k in no_kernel} == no_kernel and 3 <= first["kernel"] <= 9
    assert second == vec(**MLP) and second["kernel"] == 3  # an inactive dimension: canonical default, not a repair
    assert counts(strategy) == (2, 1, 1, 0, 0)


def test_categorical_near_miss_is_mapped_and_unknown_value_replaced():
    strategy, _ = scripted(json.dumps([dict(MLP, act="ReLU "), dict(MLP, act="swish", depth=3)]))
    first, second = strategy.suggest_architectures(2)
    assert first == vec(**MLP)
    assert counts(strategy) == (2, 0, 1, 1, 0)
    assert strategy.origin[second.key()] == "replaced"


def test_numeric_strings_are_coerced_without_counting_a_repair():
    strategy, _ = scripted(json.dumps([dict(MLP, depth="3", dropout="0.25"), dict(MLP, depth=4.0, dropout=0), dict(MLP, depth=3.5)]))
    vectors = strategy.suggest_architectures(3)
    assert vectors[:2] == [vec(**dict(MLP, depth=3, dropout=0.25)), vec(**dict(MLP, depth=4, dropout=0.0))]
    assert isinstance(vectors[1]["dropout"], float)
    assert counts(strategy) == (3, 2, 0, 1, 0)  # 3.5 is not an unambiguous integer


def test_garbage_replaces_every_slot():
    strategy, _ = scripted("I'm sorry, I cannot help with neural networks today. {not json} [nor this")
    vectors = strategy.suggest_architectures(3)
    assert len({v.key() for v in vectors}) == 3 and all(small_space().contains(v) for v in vectors)
    assert counts(strategy) == (3, 0, 0, 3, 0)
    assert strategy.last_answer.startswith("I'm sorry")


def test_non_objects_and_bools_are_replaced():
    strategy, _ = scripted(json.dumps([42, "mlp", dict(MLP, depth=True), None]))
    strategy.suggest_architectures(4)
    assert counts(strategy) == (4, 0, 0, 4, 0)


@pytest.mark.parametrize("error", [RuntimeError("HTTP 503"), TimeoutError("timed out")])
def test_provider_exception_replaces_the_batch_and_the_search_goes_on(error):
    strategy, _ = scripted(error, json.dumps([MLP]))
    vectors = strategy.suggest_architectures(3)
    assert len({v.key() for v in vectors}) == 3
    assert counts(strategy) == (3, 0, 0, 3, 1)
    assert strategy.last_answer is None
    assert strategy.suggest_architectures(1) == [vec(**MLP)]
    assert (strategy.stats.calls, strategy.stats.provider_errors, strategy.stats.replaced, strategy.stats.parsed_ok) == (2, 1, 3, 1)


def test_a_non_string_answer_is_a_provider_error():
    strategy, _ = scripted(None)
    strategy.suggest_architectures(2)
    assert counts(strategy) == (2, 0, 0, 2, 1)


def test_duplicates_of_pending_evaluated_and_each_other_are_replaced():
    evaluated = dict(MLP, depth=5)
    strategy, _ = scripted(json.dumps([MLP]), json.dumps([MLP, evaluated, CONV, CONV]))
    strategy.update_with_results([(vec(**evaluated), ok(0.5))])
    (pending,) = strategy.suggest_architectures(1)
    assert pending == vec(**MLP)
    vectors = strategy.suggest_architectures(4)
    assert counts(strategy) == (4, 1, 0, 3, 0)
    keys = [v.key() for v in vectors] + [pending.key()]
    assert len(set(keys)) == 5 and vec(**evaluated).key() not in keys


def test_too_few_proposals_are_topped_up_and_extra_ones_ignored():
    strategy, _ = scripted(json.dumps([MLP]), json.dumps([CONV, dict(MLP, depth=3), dict(MLP, depth=4)]))
    strategy.suggest_architectures(3)
    assert counts(strategy) == (3, 1, 0, 2, 0)
    vectors = strategy.suggest_architectures(2)
    assert vectors == [vec(**CONV), vec(**dict(MLP, depth=3))]
    assert counts(strategy) == (2, 2, 0, 0, 0)


def test_replacements_mutate_one_dimension_of_the_best():
    space = SearchSpace(
        [IntDimension("x", low=0, high=100), CategoricalDimension("c", choices=("a", "b", "c")), RealDimension("r", low=0.0, high=1.0)]
    )
    provider = ScriptedProvider("no idea", RuntimeError("down"))
    strategy = LLMGuidedSearch(space, seed=3, provider=provider, settings=LLMStrategySettings(warmup=0))
    best, other = ArchitectureVector({"x": 50, "c": "a", "r": 0.5}), ArchitectureVector({"x": 10, "c": "b", "r": 0.1})
    strategy.update_with_results([(other, ok(0.2)), (best, ok(0.9))])
    for _ in range(2):
        for v in strategy.suggest_architectures(5):
            assert strategy.origin[v.key()] == "replaced"
            changed = [k for k in best.values if best[k] != v[k]]
            assert len(changed) == 1, (best.values, v.values)


def test_counters_add_up_over_a_long_mixed_run():
    answers = ["garbage", RuntimeError("x"), json.dumps([dict(MLP, depth=9)]), json.dumps([CONV, CONV, {"family": "rnn"}])] * 10
    strategy, _ = scripted(*answers, warmup=2)
    for _ in range(40):
        vectors = strategy.suggest_architectures(3)
        strategy.update_with_results([(v, ok(synthetic_score(v))) for v in vectors])
    s = strategy.stats
    assert s.calls == 40 and s.asked == 40 * 3 - 2  # two warm-up samples in the first batch
    assert s.asked == s.parsed_ok + s.repaired + s.replaced
    assert s.provider_errors == 10


def test_one_log_line_per_batch():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    try:
        strategy, _ = scripted(json.dumps([MLP, dict(CONV, kernel=99)]), RuntimeError("HTTP 500"))
        strategy.suggest_architectures(3)
        strategy.suggest_architectures(2)
    finally:
        logger.remove(sink)
    assert len(lines) == 2
    assert lines[0].startswith("llm strategy: asked 3: 1 ok, 1 repaired, 1 replaced (totals: calls=1, asked=3")
    assert "provider error: RuntimeError: HTTP 500" in lines[1] and "provider_errors=1" in lines[1]


# -- warm-up, determinism, edge cases -------------------------------------------------------------------


def test_warmup_samples_without_asking():
    strategy, provider = scripted(json.dumps([MLP, CONV]), warmup=3)
    vectors = strategy.suggest_architectures(2)
    assert provider.prompts == [] and [strategy.origin[v.key()] for v in vectors] == ["warmup", "warmup"]
    vectors = strategy.suggest_architectures(3)  # one warm-up sample, then the LLM asked for 2
    assert [strategy.origin[v.key()] for v in vectors] == ["warmup", "llm", "llm"]
    assert "exactly 2 objects" in provider.prompts[0]
    assert strategy.stats.asked == 2


def test_warmup_samples_come_from_a_seeded_rng():
    space = small_space()
    strategy = LLMGuidedSearch(space, seed=11, provider=ScriptedProvider(), settings=LLMStrategySettings(warmup=3))
    rng = random.Random(11)
    assert strategy.suggest_architectures(3) == [space.sample(rng) for _ in range(3)]


def test_deterministic_over_a_whole_run():
    def keys(seed: int) -> list[str]:
        space = mixed_space()
        strategy = LLMGuidedSearch(space, seed=seed, provider=SensibleProvider(space, seed=5))
        out = []
        for _ in range(10):
            vectors = strategy.suggest_architectures(3)
            out += [v.key() for v in vectors]
            strategy.update_with_results([(v, ok(synthetic_score(v))) for v in vectors])
        return out

    assert keys(11) == keys(11)
    assert keys(11) != keys(12)


def test_suggest_zero_and_negative():
    strategy, provider = scripted(warmup=0)
    assert strategy.suggest_architectures(0) == [] and provider.prompts == []
    with pytest.raises(ValueError):
        strategy.suggest_architectures(-1)


def test_does_not_touch_global_random_state():
    random.seed(99)
    expected = random.random()
    random.seed(99)
    space = mixed_space()
    strategy = LLMGuidedSearch(space, seed=0, provider=ScriptedProvider(*["junk", RuntimeError("x")] * 5))
    for _ in range(10):
        vectors = strategy.suggest_architectures(2)
        strategy.update_with_results([(v, ok(synthetic_score(v))) for v in vectors])
    assert random.random() == expected


def test_an_explicit_provider_must_be_an_llm_provider():
    class NotAProvider:
        def complete(self, prompt, system=None):
            return "[]"

    with pytest.raises(TypeError, match="LLMProvider"):
        LLMGuidedSearch(small_space(), provider=NotAProvider())


# -- the prompt -----------------------------------------------------------------------------------------


def test_prompt_describes_the_space_and_the_objective():
    space = mixed_space()
    strategy = LLMGuidedSearch(space, provider=ScriptedProvider(), metric="test_loss", maximize=False)
    prompt = strategy.build_prompt(3)
    assert "Propose 3 new neural network architectures" in prompt
    for dim in space.dimensions:
        assert f"- {describe(dim)}" in prompt
    assert "- width: integer in [8, 512], log scale" in prompt
    assert "- dropout: real number in [0.0, 0.5]" in prompt
    assert "- family: one of {mlp, conv1d}" in prompt
    assert "- kernel_size: integer in [3, 9]; only when family is conv1d" in prompt
    assert "Objective: minimize test_loss (lower is better)." in prompt
    assert "No architecture has succeeded yet (0 evaluated)." in prompt
    assert "JSON list of exactly 3 objects" in prompt
    assert strategy.build_prompt(1).startswith("Propose 1 new neural network architecture for")


def test_describe_several_conditions():
    dim = IntDimension("k", low=1, high=2, active_if={"a": ("x", "y"), "b": (3,)})
    assert describe(dim) == "k: integer in [1, 2]; only when a is one of {x, y} and b is 3"


def test_prompt_history_is_the_best_sorted_by_score():
    strategy, provider = scripted(json.dumps([MLP]), history_size=3)
    told = [(vec(**dict(MLP, depth=d)), ok(s)) for d, s in [(1, 0.3), (2, 0.9), (3, 0.1), (4, 0.7), (5, 0.5)]]
    strategy.update_with_results(told)
    strategy.suggest_architectures(1)
    prompt = provider.prompts[0]
    assert "Best architectures so far (3 of 5 successful, 5 evaluated; best first):" in prompt
    lines = [line for line in prompt.splitlines() if re.match(r"^\d+\. ", line)]
    assert lines == [
        '1. val_accuracy=0.9 {"family": "mlp", "depth": 2, "dropout": 0.1, "act": "relu"}',
        '2. val_accuracy=0.7 {"family": "mlp", "depth": 4, "dropout": 0.1, "act": "relu"}',
        '3. val_accuracy=0.5 {"family": "mlp", "depth": 5, "dropout": 0.1, "act": "relu"}',
    ]


def test_prompt_history_when_minimising():
    strategy = LLMGuidedSearch(
        small_space(), provider=ScriptedProvider(), metric="loss", maximize=False, settings=LLMStrategySettings(history_size=2)
    )
    strategy.update_with_results([(vec(**dict(MLP, depth=d)), ok(s, "loss")) for d, s in [(1, 0.3), (2, 0.9), (3, 0.1)]])
    lines = [line for line in strategy.build_prompt(1).splitlines() if re.match(r"^\d+\. ", line)]
    assert [line.split(" ")[1] for line in lines] == ["loss=0.1", "loss=0.3"]


def test_prompt_shows_recent_failures_pending_and_hint():
    strategy, provider = scripted(json.dumps([CONV]), json.dumps([MLP]), temperature_hint="Explore boldly: try deep networks.")
    failures = [(vec(**dict(MLP, depth=d)), TrialResult.failure(ErrorClass.SHAPE, f"shape\nmismatch {d}")) for d in range(1, 7)]
    strategy.update_with_results(failures)
    # a failed trial that reported metrics is a failure, never history
    crashed = TrialResult(metrics={"val_accuracy": 0.99}, error=ExperimentError(ErrorClass.NAN_LOSS, "nan loss"))
    strategy.update_with_results([(vec(**CONV), crashed)])
    strategy.suggest_architectures(1)  # CONV was evaluated: replaced; stays pending
    strategy.suggest_architectures(1)
    prompt = provider.prompts[1]
    assert "No architecture has succeeded yet (7 evaluated)." in prompt
    failure_lines = prompt.split("Recent failures (these did not train; avoid what made them fail):\n")[1].split("\n\n")[0].splitlines()
    assert failure_lines[0] == f"- {json.dumps(CONV)} -> nan_loss: nan loss"
    assert failure_lines[1].endswith("-> shape_mismatch: shape mismatch 6")
    assert len(failure_lines) == 5  # the five most recent, most recent first
    assert "Being evaluated now (do not repeat):\n- {" in prompt
    assert "Explore boldly: try deep networks." in prompt
    assert "0.99" not in prompt


def test_prompt_format_example_is_valid_json_of_the_space():
    strategy = LLMGuidedSearch(mixed_space(), provider=ScriptedProvider())
    example = strategy.build_prompt(2).splitlines()[-1]
    (values,) = json.loads(example)
    assert mixed_space().contains(mixed_space().canonicalize(values))


def test_resume_rebuilds_the_prompt_history_from_replayed_results():
    space = mixed_space()
    original = LLMGuidedSearch(space, seed=4, provider=SensibleProvider(space, seed=1), settings=LLMStrategySettings(warmup=2))
    told = []
    for round_no in range(6):
        vectors = original.suggest_architectures(3)
        results = [
            (v, TrialResult.failure(ErrorClass.RUNTIME, "boom") if (round_no + i) % 4 == 3 else ok(synthetic_score(v)))
            for i, v in enumerate(vectors)
        ]
        original.update_with_results(results)
        told += results
    # The orchestrator replays the stored history into a fresh strategy before asking for anything.
    resumed_provider = ScriptedProvider(json.dumps([MLP]))
    resumed = LLMGuidedSearch(space, seed=4, provider=resumed_provider, settings=LLMStrategySettings(warmup=2))
    resumed.update_with_results(told)
    assert resumed.build_prompt(3) == original.build_prompt(3)
    assert resumed.history() == original.history()
    resumed.suggest_architectures(1)  # the replay counts towards the warm-up: straight to the LLM
    assert len(resumed_provider.prompts) == 1
    best_lines = [line for line in resumed_provider.prompts[0].splitlines() if re.match(r"^\d+\. ", line)]
    scores = [float(line.split(" ")[1].split("=")[1]) for line in best_lines]
    assert scores == sorted(scores, reverse=True) and len(scores) == len({v.key() for v, r in told if r.ok})


def test_foreign_and_unscored_results_are_tolerated_and_not_history():
    strategy, _ = scripted(json.dumps([MLP]))
    strategy.update_with_results(
        [
            (ArchitectureVector({"something": "else"}), ok(1.0)),
            (ArchitectureVector(dict(MLP, depth=99)), ok(1.0)),
            (vec(**CONV), TrialResult(metrics={"other": 1.0})),
            (vec(**dict(CONV, kernel=7)), ok(float("nan"))),
        ]
    )
    assert strategy.history() == []
    assert strategy.suggest_architectures(1) == [vec(**MLP)]


# -- parsing units ------------------------------------------------------------------------------------


def test_extract_proposals():
    names = small_space().names
    assert extract_proposals("```\n[1, 2]\n```", names) == [1, 2]
    assert extract_proposals('{"a": {"b": 1}} then [{"depth": 2}]', names) == [{"depth": 2}]
    assert extract_proposals("nothing here", names) is None
    assert extract_proposals('{"note": "no list"}', names) is None


def test_coerce():
    space = small_space()
    assert coerce(space["depth"], " 4 ") == (4, None)
    assert coerce(space["dropout"], "1e-1") == (0.1, None)
    assert coerce(space["dropout"], 2)[0] == 0.5
    numeric = CategoricalDimension("w", choices=(16, 32, 0.5))
    assert coerce(numeric, "32") == (32, None)
    assert coerce(numeric, 32.0) == (32, None)
    for dim, value in [
        (space["depth"], "NaN"),
        (space["dropout"], float("inf")),
        (space["act"], True),
        (space["act"], ["relu"]),
        (numeric, "64"),
        (space["depth"], None),
    ]:
        with pytest.raises(Invalid):
            coerce(dim, value)


def test_to_vector_conditional_parent_missing_is_sampled_before_children():
    space = small_space()
    parsed = to_vector({"depth": 2, "dropout": 0.0, "act": "gelu", "kernel": 4}, space, random.Random(0))
    assert space.contains(parsed.vector) and parsed.repairs[0] == "sampled missing 'family'"


# -- factory, settings and provider resolution ----------------------------------------------------------


class FakeLLM(LLMProvider, CodeGenProvider):
    def complete(self, prompt, system=None):
        return json.dumps([MLP])

    def generate_code(self, request):  # pragma: no cover - not used here
        return "class Net: ..."


class PlainCodeGen(CodeGenProvider):
    def generate_code(self, request):  # pragma: no cover - not used here
        return "class Net: ..."


def raising(exc):
    def factory(settings):
        raise exc

    return factory


class FakeProvidersPlugin:
    @hookimpl
    def register_codegen_providers(self, register):
        register("fakellm", lambda settings: FakeLLM(), description="scripted LLM", llm=True)
        register("plaincode", lambda settings: PlainCodeGen(), description="not an LLM")
        register("needskey", raising(RuntimeError("OPENAI_API_KEY is not set")), llm=True)
        register("needsfile", raising(ConfigError("codegen.model_path is not set: point it at a GGUF file")), llm=True)


class PlainOnlyPlugin:
    @hookimpl
    def register_codegen_providers(self, register):
        register("template", lambda settings: PlainCodeGen())


def system_with(*plugins) -> PluginSystem:
    return PluginSystem.load([("llm", neuromosaic_strategy_llm), *plugins], entry_points=False)


def test_registered_and_built_through_the_plugin_system():
    system = system_with(("fake", FakeProvidersPlugin()))
    component = system.get("strategy", "llm")
    assert component.settings is LLMStrategySettings and component.description
    assert component.metadata == {"uses_llm": True}  # the core passes it the selected LLM codegen
    settings = structure_settings({"provider": "fakellm", "warmup": 0}, LLMStrategySettings, "strategy")
    strategy = component.factory(space=small_space(), seed=3, settings=settings, metric="loss", maximize=False, system=system)
    assert isinstance(strategy, LLMGuidedSearch) and isinstance(strategy.provider, FakeLLM)
    assert (strategy.seed, strategy.metric, strategy.maximize) == (3, "loss", False)
    assert strategy.suggest_architectures(1) == [vec(**MLP)]


def test_factory_defaults_to_loading_the_plugin_system(monkeypatch):
    system = system_with(("fake", FakeProvidersPlugin()))
    monkeypatch.setattr(PluginSystem, "load", classmethod(lambda cls, *a, **k: system))
    strategy = factory(space=small_space(), seed=0, settings=LLMStrategySettings(provider="fakellm"), metric="val_accuracy", maximize=True)
    assert isinstance(strategy.provider, FakeLLM)


def test_empty_provider_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        factory(
            space=small_space(), seed=0, settings=None, metric="val_accuracy", maximize=True, system=system_with(("fake", FakeProvidersPlugin()))
        )
    assert str(caught.value) == (
        "strategy=llm needs an LLM: select one as the code generator (codegen=ollama, codegen=openai, codegen=llamacpp "
        "— it shares their codegen.* settings) or name one with strategy.provider=<name>; "
        "installed LLM providers: fakellm, needsfile, needskey"
    )
    with pytest.raises(ConfigError, match="installed LLM providers: none$"):
        resolve_provider("", system_with(("plain", PlainOnlyPlugin())))


class ListedOnlyPlugin:
    """Codegen providers whose factories must never run while listing."""

    @hookimpl
    def register_codegen_providers(self, register):
        register("heavy", raising(AssertionError("listing must not build a provider")), llm=True)
        register("plain", raising(AssertionError("listing must not build a provider")))
        register("unmarked", lambda settings: FakeLLM())  # an LLMProvider, but not declared one
        register("declined", raising(AssertionError("listing must not build a provider")), llm=False)


def test_llm_provider_names_lists_by_metadata_without_building_anything():
    system = system_with(("listed", ListedOnlyPlugin()), ("fake", FakeProvidersPlugin()))
    assert llm_provider_names(system) == ["fakellm", "heavy", "needsfile", "needskey"]
    assert llm_provider_names(system_with(("plain", PlainOnlyPlugin()))) == []
    # The error path lists them too, still without building one.
    with pytest.raises(ConfigError, match="installed LLM providers: fakellm, heavy, needsfile, needskey$"):
        resolve_provider("", system)


def test_a_named_provider_is_built_once_with_its_defaults_even_if_not_declared_an_llm():
    built = []

    class CountingPlugin:
        @hookimpl
        def register_codegen_providers(self, register):
            register("counted", lambda settings: built.append(settings) or FakeLLM())

    assert isinstance(resolve_provider("counted", system_with(("counting", CountingPlugin()))), FakeLLM)
    assert built == [None]


def test_a_provider_that_is_not_an_llm_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^strategy.provider='template' is not an LLM provider; installed LLM providers: none$"):
        resolve_provider("template", system_with(("plain", PlainOnlyPlugin())))
    with pytest.raises(ConfigError, match=r"^strategy.provider='plaincode' is not an LLM provider; installed LLM providers: fakellm, needsfile, needskey$"):
        resolve_provider("plaincode", system_with(("fake", FakeProvidersPlugin())))


def test_an_unknown_or_unbuildable_provider_is_a_config_error():
    system = system_with(("fake", FakeProvidersPlugin()))
    with pytest.raises(
        ConfigError,
        match=r"'gpt' is not an installed codegen provider; installed LLM providers: fakellm, needsfile, needskey "
        r"\(codegen providers: fakellm, needsfile, needskey, plaincode\)",
    ):
        resolve_provider("gpt", system)
    hint = "; to use your codegen.* settings, select it as the code generator: codegen="
    with pytest.raises(ConfigError) as caught:
        resolve_provider("needskey", system)
    assert str(caught.value) == (
        f"strategy.provider='needskey' could not be built with its default settings: RuntimeError: OPENAI_API_KEY is not set{hint}needskey"
    )
    with pytest.raises(ConfigError) as caught:
        resolve_provider("needsfile", system)
    assert str(caught.value) == (
        "strategy.provider='needsfile' could not be built with its default settings: "
        f"codegen.model_path is not set: point it at a GGUF file{hint}needsfile"
    )


@pytest.mark.parametrize("kwargs", [{"warmup": -1}, {"history_size": 0}, {"max_retries": 0}])
def test_settings_reject_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LLMStrategySettings(**kwargs)
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        structure_settings(kwargs, LLMStrategySettings, "strategy")


def test_stats_is_an_attrs_object():
    stats = LLMStats(asked=3, replaced=3, provider_errors=1)
    assert stats.summary() == "calls=0, asked=3, parsed_ok=0, repaired=0, replaced=3, provider_errors=1"


def test_marked_pending_vectors_are_in_the_prompt_until_forgotten():
    strategy, provider = scripted(json.dumps([MLP]), json.dumps([MLP]))
    strategy.mark_pending([vec(**CONV)])  # a trial a resume re-runs
    strategy.suggest_architectures(1)
    assert f"Being evaluated now (do not repeat):\n- {json.dumps(CONV)}" in provider.prompts[0]
    strategy.forget([vec(**CONV), vec(**MLP)])  # neither will get a result
    assert strategy.suggest_architectures(1) == [vec(**MLP)]  # forgotten, so not a repeat: the LLM's proposal is used
    assert "Being evaluated now" not in provider.prompts[1] and "0 evaluated" in provider.prompts[1]


def test_the_prompt_ranks_full_results_first_and_says_which_stopped_early():
    strategy, _ = scripted(json.dumps([MLP]))
    early, finished = vec(**dict(MLP, depth=4)), vec(**dict(MLP, depth=5))
    strategy.update_with_results([
        (early, TrialResult(metrics={"val_accuracy": 0.9}, curve=(0.7, 0.9), fidelity=2, pruned=True)),
        (finished, TrialResult(metrics={"val_accuracy": 0.5}, curve=(0.5,) * 8, fidelity=8)),
    ])
    assert strategy.best() == (finished, 0.5), "a value after 2 epochs outranked a full result"
    lines = [line for line in strategy.build_prompt(1).splitlines() if re.match(r"^\d+\. ", line)]
    assert lines[0].startswith("1. val_accuracy=0.5 ") and not lines[0].endswith(")")
    assert lines[1].startswith("2. val_accuracy=0.9 ") and lines[1].endswith("(stopped early, after 2 epochs)")
    # promoted and told again at full fidelity: one entry, the later result
    strategy.update_with_results([(early, TrialResult(metrics={"val_accuracy": 0.8}, curve=(0.8,) * 8, fidelity=8))])
    assert strategy.history() == [(early, 0.8), (finished, 0.5)]
    assert "stopped early" not in strategy.build_prompt(1)
