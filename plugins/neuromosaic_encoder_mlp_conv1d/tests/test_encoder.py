"""Tests of the mlp_conv1d encoder: the core contract (property-based) plus concrete cases."""

from __future__ import annotations

import attrs
import neuromosaic_encoder_mlp_conv1d as plugin
import pytest
from hypothesis import given, settings
from neuromosaic_encoder_mlp_conv1d.encoder import MlpConv1dEncoder
from neuromosaic_encoder_mlp_conv1d.settings import MlpConv1dSettings

from neuromosaic_core.layers import LayerError, analyse
from neuromosaic_core.model import ArchitectureSpec, ArchitectureVector, Layer
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing.encoder import EncoderContract, vectors

ENCODER = MlpConv1dEncoder()
SPACE = ENCODER.search_space()


class TestMlpConv1dContract(EncoderContract):
    def make_encoder(self) -> MlpConv1dEncoder:
        return MlpConv1dEncoder(MlpConv1dSettings())


class TestSmallSpaceContract(EncoderContract):
    max_examples = 60

    def make_encoder(self) -> MlpConv1dEncoder:
        return MlpConv1dEncoder(MlpConv1dSettings(max_mlp_depth=2, max_conv_blocks=1))


def vec(**values: object) -> ArchitectureVector:
    return SPACE.canonicalize({d.name: values.get(d.name, d.default()) for d in SPACE})


def lin(n: int) -> Layer:
    return Layer("linear", {"out_features": n})


def act(fn: str) -> Layer:
    return Layer("activation", {"fn": fn})


def conv(c: int, k: int, s: int) -> Layer:
    return Layer("conv1d", {"out_channels": c, "kernel_size": k, "stride": s})


# -- the space ----------------------------------------------------------------------------


def test_space_dimensions_in_order() -> None:
    names = SPACE.names
    assert names[:4] == ["family", "activation", "dropout", "mlp_depth"]
    assert [n for n in names if n.startswith("mlp_width")] == [f"mlp_width_{i}" for i in range(4)]
    assert names.index("mlp_norm") > names.index("mlp_width_3")
    assert names[-2:] == ["conv_norm", "conv_head_width"]
    assert len(SPACE) == 3 + 1 + 4 + 1 + 1 + 4 * 4 + 2


def test_conditional_activity() -> None:
    active = {d.name for d in SPACE.active_dimensions(vec(family="mlp", mlp_depth=2).values)}
    assert active == {"family", "activation", "dropout", "mlp_depth", "mlp_width_0", "mlp_width_1", "mlp_norm"}
    active = {d.name for d in SPACE.active_dimensions(vec(family="conv1d", conv_blocks=1).values)}
    assert active == {"family", "activation", "dropout", "conv_blocks", "conv_norm", "conv_head_width"} | {
        f"conv_{p}_0" for p in ("channels", "kernel", "stride", "pool")
    }


def test_settings_shrink_the_space() -> None:
    small = MlpConv1dEncoder(MlpConv1dSettings(max_mlp_depth=2, max_conv_blocks=1)).search_space()
    assert "mlp_width_2" not in small.names and "conv_channels_1" not in small.names
    assert small["mlp_depth"].high == 2
    with pytest.raises((ValueError, TypeError)):
        MlpConv1dSettings(max_mlp_depth=0)
    with pytest.raises(TypeError):
        MlpConv1dSettings(max_conv_blocks="4")  # type: ignore[arg-type]


# -- concrete decodes ---------------------------------------------------------------------


def test_decode_mlp() -> None:
    v = vec(family="mlp", activation="gelu", dropout=0.1, mlp_depth=2, mlp_width_0=256, mlp_width_1=64, mlp_norm="layernorm")
    spec = ENCODER.decode(v)
    drop = Layer("dropout", {"p": 0.1})
    assert spec == ArchitectureSpec("mlp", [lin(256), Layer("layernorm"), act("gelu"), drop, lin(64), Layer("layernorm"), act("gelu"), drop])
    assert ENCODER.encode(spec) == v


def test_decode_mlp_plain() -> None:
    spec = ENCODER.decode(vec(family="mlp", mlp_depth=1, mlp_width_0=32))
    assert spec == ArchitectureSpec("mlp", [lin(32), act("relu")])


def test_decode_conv_with_head() -> None:
    v = vec(
        family="conv1d", activation="silu", dropout=0.2, conv_blocks=2, conv_norm="batchnorm", conv_head_width=64,
        conv_channels_0=16, conv_kernel_0=5, conv_stride_0=1, conv_pool_0="max",
        conv_channels_1=32, conv_kernel_1=3, conv_stride_1=2, conv_pool_1="none",
    )  # fmt: skip
    spec = ENCODER.decode(v)
    assert spec == ArchitectureSpec(
        "conv1d",
        [
            conv(16, 5, 1), Layer("batchnorm"), act("silu"), Layer("maxpool1d", {"kernel_size": 2}),
            conv(32, 3, 2), Layer("batchnorm"), act("silu"),
            Layer("flatten"), lin(64), act("silu"), Layer("dropout", {"p": 0.2}),
        ],
    )  # fmt: skip
    assert ENCODER.encode(spec) == v
    a = analyse(spec, (40,), 10)
    assert [i.out_shape for i in a.layers][:5] == [(16, 40), (16, 40), (16, 40), (16, 20), (32, 10)]
    assert a.head_in_features == 64


def test_decode_conv_without_head() -> None:
    v = vec(family="conv1d", conv_blocks=1, conv_pool_0="avg", dropout=0.3)
    spec = ENCODER.decode(v)
    assert spec.layers == (conv(8, 3, 1), act("relu"), Layer("avgpool1d", {"kernel_size": 2}), Layer("flatten"),
                           Layer("dropout", {"p": 0.3}))  # fmt: skip
    assert ENCODER.encode(spec) == v


def test_inactive_dimensions_are_ignored() -> None:
    junk = dict(vec(family="mlp", mlp_depth=1).values)
    junk.update(conv_blocks=3, conv_channels_2=64, mlp_width_3=512)
    assert ENCODER.decode(ArchitectureVector(junk)) == ENCODER.decode(vec(family="mlp", mlp_depth=1))


# -- ValueError cases ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"family": "transformer"}, "family='transformer' is outside"),
        ({"mlp_depth": 5}, "mlp_depth=5 is outside"),
        ({"mlp_width_0": 100}, "mlp_width_0=100"),
        ({"dropout": 0}, "dropout=0 is outside"),  # an int is not the float 0.0
        ({"bogus": 1}, "unknown dimension 'bogus'"),
    ],
)
def test_decode_rejects(change: dict, message: str) -> None:
    values = {**vec(family="mlp", mlp_depth=1).values, **change}
    with pytest.raises(ValueError, match=message):
        ENCODER.decode(ArchitectureVector(values))


def test_decode_rejects_missing_active_dimension() -> None:
    values = dict(vec(family="conv1d").values)
    del values["conv_kernel_0"]
    with pytest.raises(ValueError, match="missing dimension 'conv_kernel_0'"):
        ENCODER.decode(ArchitectureVector(values))


BAD_SPECS = [
    (ArchitectureSpec("resnet", [lin(32)]), "family 'resnet'"),
    (ArchitectureSpec("mlp", []), "at least one linear"),
    (ArchitectureSpec("mlp", [lin(100), act("relu")]), "mlp_width_0=100"),
    (ArchitectureSpec("mlp", [lin(32)]), "expected activation at layer 1, found the end"),
    (ArchitectureSpec("mlp", [lin(32), act("relu"), lin(32), act("gelu")]), "share one activation"),
    (ArchitectureSpec("mlp", [lin(32), Layer("batchnorm"), act("relu"), lin(32), act("relu")]), "share one mlp_norm"),
    (ArchitectureSpec("mlp", [lin(32), act("relu"), Layer("dropout", {"p": 0.1}), lin(32), act("relu")]), "share one dropout"),
    (ArchitectureSpec("mlp", [lin(32), act("relu"), Layer("dropout", {"p": 0.0})]), "exactly"),
    (ArchitectureSpec("mlp", [lin(32), act("relu"), Layer("dropout", {"p": 0.5})]), "dropout=0.5"),
    (ArchitectureSpec("mlp", [lin(32), act("mish")]), "activation='mish'"),
    (ArchitectureSpec("mlp", [lin(32), act("relu")] * 5), "max_mlp_depth=4"),
    (ArchitectureSpec("mlp", [Layer("linear", {"out_features": 32, "bias": 0}), act("relu")]), "must have out_features"),
    (ArchitectureSpec("mlp", [lin(32), act("relu"), Layer("flatten")]), "expected linear at layer 2"),
    (ArchitectureSpec("conv1d", [lin(32), act("relu")]), "must start with a conv1d"),
    (ArchitectureSpec("conv1d", [conv(8, 3, 1), act("relu")]), "expected flatten"),
    (ArchitectureSpec("conv1d", [conv(8, 4, 1), act("relu"), Layer("flatten")]), "conv_kernel_0=4"),
    (ArchitectureSpec("conv1d", [conv(8, 3, 1), act("relu"), Layer("maxpool1d", {"kernel_size": 3}), Layer("flatten")]),
     "kernel_size=2"),
    (ArchitectureSpec("conv1d", [conv(8, 3, 1), act("relu"), Layer("flatten"), lin(64), act("tanh")]), "share one activation"),
    (ArchitectureSpec("conv1d", [conv(8, 3, 1), act("relu"), Layer("flatten"), lin(32), act("relu")]), "conv_head_width=32"),
    (ArchitectureSpec("conv1d", [conv(8, 3, 1), act("relu"), Layer("flatten"), act("relu")]), "unexpected activation"),
    (ArchitectureSpec("conv1d", [conv(8, 3, 1), act("relu")] * 5 + [Layer("flatten")]), "max_conv_blocks=4"),
]  # fmt: skip


@pytest.mark.parametrize("spec, message", BAD_SPECS, ids=[s.describe() for s, _ in BAD_SPECS])
def test_encode_rejects(spec: ArchitectureSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ENCODER.encode(spec)


def test_encode_rejects_non_spec() -> None:
    with pytest.raises(ValueError, match="expected an ArchitectureSpec"):
        ENCODER.encode("mlp: linear(32)")  # type: ignore[arg-type]


# -- whole-space properties beyond the contract ---------------------------------------------


@settings(max_examples=200, deadline=None)
@given(vectors(SPACE))
def test_shapes_infer_or_collapse(vector: ArchitectureVector) -> None:
    """Every decoded spec is analysable on a (40,) input, except conv stacks that shrink the length to nothing."""
    spec = ENCODER.decode(vector)
    try:
        a = analyse(spec, (40,), 10)
    except LayerError as exc:
        assert spec.family == "conv1d", f"an mlp must always infer: {exc}"
        assert "leaves no length" in str(exc)
        return
    assert a.params > 0 and a.flops > 0
    assert a.depth == sum(1 for layer in spec.layers if layer.type in ("linear", "conv1d")) + 1


def test_mlps_never_collapse() -> None:
    # the widest, deepest MLP with every option is still analysable
    v = vec(family="mlp", mlp_depth=4, mlp_norm="batchnorm", dropout=0.3, **{f"mlp_width_{i}": 512 for i in range(4)})
    assert analyse(ENCODER.decode(v), (40,), 10).params > 0


# -- the plugin ---------------------------------------------------------------------------


def test_plugin_registers_the_encoder() -> None:
    system = PluginSystem.load(extra_plugins=[("mlp_conv1d_test", plugin)], entry_points=False)
    component = system.get("encoder", "mlp_conv1d")
    assert component.settings is MlpConv1dSettings
    encoder = component.factory(component.default_settings())
    assert isinstance(encoder, MlpConv1dEncoder)
    encoder = component.factory(attrs.evolve(component.default_settings(), max_mlp_depth=2))
    assert encoder.search_space()["mlp_depth"].high == 2


def test_plugin_import_is_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, neuromosaic_encoder_mlp_conv1d; print('torch' in sys.modules, 'hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
