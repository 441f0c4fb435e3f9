"""Constraints are checked analytically on the spec; every violation is listed."""

from neuromosaic_core.constraints import Constraints, ConstraintValidator
from neuromosaic_core.layers import analyse
from neuromosaic_core.model import ArchitectureSpec, Layer

MLP = ArchitectureSpec("mlp", [Layer("linear", {"out_features": 100}), Layer("activation", {"fn": "relu"})])
CONV = ArchitectureSpec(
    "conv1d",
    [
        Layer("conv1d", {"out_channels": 8, "kernel_size": 5, "stride": 2}),
        Layer("batchnorm"),
        Layer("maxpool1d", {"kernel_size": 2}),
        Layer("flatten"),
    ],
)


def test_mlp_parameters_and_flops_are_counted_with_the_implied_head():
    a = analyse(MLP, (40,), 10)
    assert a.params == (40 * 100 + 100) + (100 * 10 + 10)
    assert a.flops == 2 * 40 * 100 + 100 + 2 * 100 * 10
    assert a.depth == 2


def test_conv_shapes_follow_stride_padding_and_pooling():
    a = analyse(CONV, (40,), 10)
    assert [i.out_shape for i in a.layers] == [(8, 20), (8, 20), (8, 10), (80,)]
    assert a.params == (1 * 8 * 5 + 8) + 16 + (80 * 10 + 10)


def test_every_violation_is_listed():
    v = ConstraintValidator(Constraints(max_params=100, max_flops=100, max_depth=1), (40,), 10)
    result = v.validate_constraints(MLP)
    assert not result.ok
    assert [x.constraint for x in result.violations] == ["max_params", "max_flops", "max_depth"]
    assert "max_params: 5,110 > 100" in result.message()


def test_within_budget_passes_and_reports_the_cost():
    result = ConstraintValidator(Constraints(max_params=10_000), (40,), 10).validate_constraints(MLP)
    assert result.ok and result.params == 5110


def test_a_shape_collapse_is_a_violation_not_a_crash():
    tiny = ArchitectureSpec("conv1d", [Layer("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 2}),
                                       Layer("maxpool1d", {"kernel_size": 2})] * 4)
    result = ConstraintValidator(Constraints(), (8,), 10).validate_constraints(tiny)
    assert not result.ok and result.violations[0].constraint == "shape"
    assert "leaves no length" in result.message()


def test_linear_on_a_sequence_names_the_fix():
    bad = ArchitectureSpec("conv1d", [Layer("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 1}),
                                      Layer("linear", {"out_features": 3})])
    result = ConstraintValidator(Constraints(), (8,), 10).validate_constraints(bad)
    assert "add a flatten layer" in result.message()
