"""The data model: round trips through cattrs, canonical hashing, search-space behaviour."""

import json
import random

import pytest

from neuromosaic_core.model import (
    ArchitectureSpec,
    ArchitectureVector,
    CategoricalDimension,
    ErrorClass,
    IntDimension,
    Layer,
    RealDimension,
    SearchSpace,
    TrainingSettings,
    Trial,
    TrialResult,
    TrialStatus,
    converter,
    reuse_key,
    to_json,
)

SPEC = ArchitectureSpec("mlp", [Layer("linear", {"out_features": 64}), Layer("activation", {"fn": "relu"})])

SPACE = SearchSpace(
    [
        CategoricalDimension("family", choices=["a", "b"]),
        IntDimension("depth", low=1, high=3, active_if={"family": ["a"]}),
        CategoricalDimension("width_2", choices=[8, 16], active_if={"family": ["a"], "depth": [2, 3]}),
        RealDimension("lr", low=1e-4, high=1e-1, log=True),
    ]
)


def test_spec_round_trips_through_json():
    data = json.loads(to_json(SPEC))
    assert converter.structure(data, ArchitectureSpec) == SPEC


def test_trial_with_result_round_trips():
    trial = Trial("exp", 3, ArchitectureVector({"family": "a", "depth": 2}), SPEC, TrialStatus.FAILED,
                  result=TrialResult.failure(ErrorClass.NAN_LOSS, "loss became nan"))
    back = converter.structure(converter.unstructure(trial), Trial)
    assert back == trial
    assert back.result.error.error_class is ErrorClass.NAN_LOSS


def test_canonical_hash_ignores_param_order_and_changes_with_architecture():
    a = ArchitectureSpec("conv1d", [Layer("conv1d", {"out_channels": 8, "kernel_size": 3, "stride": 1})])
    b = ArchitectureSpec("conv1d", [Layer("conv1d", {"stride": 1, "kernel_size": 3, "out_channels": 8})])
    c = ArchitectureSpec("conv1d", [Layer("conv1d", {"stride": 2, "kernel_size": 3, "out_channels": 8})])
    assert a.canonical_hash() == b.canonical_hash()
    assert a.canonical_hash() != c.canonical_hash()
    assert len(a.canonical_hash()) == 16


def test_reuse_key_depends_on_task_and_training_but_not_on_anything_else():
    base = reuse_key(SPEC, "digits", TrainingSettings())
    assert base == reuse_key(SPEC, "digits", TrainingSettings())
    assert base != reuse_key(SPEC, "mnist1d", TrainingSettings())
    assert base != reuse_key(SPEC, "digits", TrainingSettings(epochs=3))


def test_conditional_dimensions_are_active_only_when_their_parents_allow():
    active = lambda v: [d.name for d in SPACE.active_dimensions(v)]  # noqa: E731
    assert active({"family": "b", "depth": 3, "width_2": 16, "lr": 0.01}) == ["family", "lr"]
    assert active({"family": "a", "depth": 1, "lr": 0.01}) == ["family", "depth", "lr"]
    assert active({"family": "a", "depth": 2, "width_2": 8, "lr": 0.01}) == ["family", "depth", "width_2", "lr"]


def test_canonicalize_resets_inactive_dimensions_so_equal_architectures_compare_equal():
    v1 = SPACE.canonicalize({"family": "b", "depth": 3, "width_2": 16, "lr": 0.01})
    v2 = SPACE.canonicalize({"family": "b", "depth": 1, "width_2": 8, "lr": 0.01})
    assert v1 == v2 and v1.key() == v2.key()


def test_samples_are_in_the_space_and_seeded():
    a = [SPACE.sample(random.Random(7)) for _ in range(3)]
    b = [SPACE.sample(random.Random(7)) for _ in range(3)]
    assert a == b
    rng = random.Random(0)
    for _ in range(200):
        v = SPACE.sample(rng)
        assert SPACE.contains(v), SPACE.violations(v)
        assert SPACE.canonicalize(v) == v


def test_violations_name_the_dimension_and_the_domain():
    problems = SPACE.violations(ArchitectureVector({"family": "c", "lr": 5.0, "extra": 1}))
    assert "unknown dimension 'extra'" in problems
    assert any("family='c' is outside {a, b}" in p for p in problems)
    assert any(p.startswith("lr=5.0 is outside") for p in problems)


def test_space_rejects_a_condition_on_a_later_dimension():
    with pytest.raises(ValueError, match="must come before"):
        SearchSpace([IntDimension("x", low=0, high=1, active_if={"y": [1]}), IntDimension("y", low=0, high=1)])


def test_categorical_contains_is_type_strict():
    dim = CategoricalDimension("w", choices=[8, 16])
    assert dim.contains(8) and not dim.contains("8") and not dim.contains(8.5)
