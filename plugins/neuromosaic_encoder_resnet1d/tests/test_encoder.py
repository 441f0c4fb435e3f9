"""Tests of the resnet1d encoder: the core contract (property-based) plus concrete cases."""

from __future__ import annotations

import random

import attrs
import neuromosaic_encoder_resnet1d as plugin
import pytest
from neuromosaic_encoder_resnet1d.encoder import ResNet1dEncoder
from neuromosaic_encoder_resnet1d.settings import ResNet1dSettings

from neuromosaic_core.constraints import Constraints, ConstraintValidator
from neuromosaic_core.layers import analyse
from neuromosaic_core.model import ArchitectureSpec, ArchitectureVector, GraphBuilder, Layer
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing.encoder import EncoderContract

ENCODER = ResNet1dEncoder()
SPACE = ENCODER.search_space()


class TestResNet1dContract(EncoderContract):
    max_examples = 100

    def make_encoder(self) -> ResNet1dEncoder:
        return ResNet1dEncoder(ResNet1dSettings())


class TestSmallSpaceContract(EncoderContract):
    max_examples = 40

    def make_encoder(self) -> ResNet1dEncoder:
        return ResNet1dEncoder(ResNet1dSettings(max_stages=1, max_blocks=1))


def vec(**values: object) -> ArchitectureVector:
    return SPACE.canonicalize({d.name: values.get(d.name, d.default()) for d in SPACE})


def conv(c: int, k: int, s: int, d: int = 1) -> Layer:
    return Layer("conv1d", {"out_channels": c, "kernel_size": k, "stride": s, "bias": False, **({"dilation": d} if d != 1 else {})})


BN = Layer("batchnorm")
RELU = Layer("activation", {"fn": "relu"})

#: a stem of 16 channels, one stage of one 16-wide block (identity shortcut), the head
SMALLEST = vec()


# -- the space ----------------------------------------------------------------------------


def test_space_dimensions_in_order() -> None:
    assert SPACE.names[:4] == ["activation", "stem_channels", "stem_kernel", "stages"]
    assert SPACE.names[4:8] == ["width_0", "blocks_0", "kernel_0", "dilation_0"]
    assert SPACE.names[-2:] == ["se_reduction", "dropout"]
    assert len(SPACE) == 4 + 3 * 4 + 2


def test_stage_dimensions_are_active_only_for_existing_stages() -> None:
    active = {d.name for d in SPACE.active_dimensions(vec(stages=2).values)}
    assert {"width_1", "kernel_1"} <= active and not {"width_2", "blocks_2"} & active


def test_settings_shrink_the_space() -> None:
    small = ResNet1dEncoder(ResNet1dSettings(max_stages=2, max_blocks=3)).search_space()
    assert "width_2" not in small.names and small["stages"].high == 2 and small["blocks_0"].high == 3
    with pytest.raises((ValueError, TypeError)):
        ResNet1dSettings(max_stages=0)
    with pytest.raises((ValueError, TypeError)):
        ResNet1dSettings(max_blocks=5)


def test_default_space_is_mostly_valid_under_the_default_constraints() -> None:
    """A search with the default constraints must not stop on invalid trials (search.max_failures)."""
    validator = ConstraintValidator(Constraints(max_params=2_000_000, max_depth=64), (40,), 10)
    rng = random.Random(0)
    results = [validator.validate_constraints(ENCODER.decode(SPACE.sample(rng))) for _ in range(300)]
    assert sum(r.ok for r in results) / len(results) >= 0.9, [r.message() for r in results if not r.ok][:3]


# -- concrete decodes ---------------------------------------------------------------------


def test_decode_the_smallest_network() -> None:
    g = GraphBuilder("resnet1d")
    x = g.chain([conv(16, 3, 1), BN, RELU])
    y = g.chain([conv(16, 3, 1), BN, RELU, conv(16, 3, 1), BN], start=x)
    g.merge("add", [y, x])
    g.chain([RELU, Layer("globalavgpool1d")])
    assert ENCODER.decode(SMALLEST) == g.build()
    a = analyse(ENCODER.decode(SMALLEST), (40,), 10)
    assert a.head_in_features == 16 and a.depth == 4  # stem + two convs + head; the skip adds nothing


def test_decode_stages_downsample_with_projection_shortcuts() -> None:
    v = vec(activation="gelu", stem_channels=32, stem_kernel=7, stages=2, se_reduction=4, dropout=0.2,
            width_0=32, blocks_0=2, kernel_0=5, dilation_0=2, width_1=64, blocks_1=1, kernel_1=3, dilation_1=4)
    spec = ENCODER.decode(v)
    assert ENCODER.encode(spec) == v
    a = analyse(spec, (40,), 10)
    convs = [(i.layer.params, i.out_shape) for i in a.layers if i.layer.type == "conv1d"]
    assert convs[0] == (conv(32, 7, 1).params, (32, 40))
    assert [c for c in convs if c[0].get("dilation") == 2][0][1] == (32, 40)  # dilated, the length kept
    assert (conv(64, 1, 2).params, (64, 20)) in convs  # the only projection: stage 1 halves the length
    assert sum(1 for p, _ in convs if p["kernel_size"] == 1) == 1  # stage 0 keeps 32 channels: identity shortcuts
    types = [layer.type for layer in spec.layers]
    assert types.count("se") == 3 and types.count("add") == 3 and types[-2:] == ["globalavgpool1d", "dropout"]
    assert a.depth == 1 + 2 * 3 + 1
    assert spec.describe().startswith("resnet1d: conv32k7s1nb bn gelu [(")  # two identical blocks read as a repeat


def test_every_length_fits() -> None:
    """Stride-2 stages round the length up like their 1x1 shortcuts, so even a length of 1 analyses."""
    v = vec(stages=3, width_1=32, width_2=64, kernel_2=7, dilation_2=4)
    for length in (1, 2, 3, 40, 101):
        assert analyse(ENCODER.decode(v), (length,), 10).params > 0


def test_inactive_dimensions_are_ignored() -> None:
    junk = dict(SMALLEST.values)
    junk.update(width_2=128, blocks_1=2)
    assert ENCODER.decode(ArchitectureVector(junk)) == ENCODER.decode(SMALLEST)


def test_encode_accepts_the_same_graph_written_in_another_order() -> None:
    spec = ENCODER.decode(vec(stages=2, width_1=32))
    # the same nodes with the shortcut of stage 1 written before its main branch
    nodes = list(spec.layers)
    short = [i for i, n in enumerate(nodes) if n.type == "conv1d" and n.params["kernel_size"] == 1]
    start = [i for i, n in enumerate(nodes) if n.type == "conv1d" and n.params.get("stride") == 2 and i not in short][0]
    first = attrs.evolve(nodes[start], inputs=nodes[short[-1]].inputs)  # it read the node before it; now say which
    reordered = nodes[:start] + nodes[short[-1]:short[-1] + 2] + [first] + nodes[start + 1:short[-1]] + nodes[short[-1] + 2:]
    other = ArchitectureSpec("resnet1d", reordered)
    assert other != spec and other.canonical_hash() == spec.canonical_hash()
    assert ENCODER.encode(other) == vec(stages=2, width_1=32)


# -- ValueError cases ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"width_0": 24}, "width_0=24 is outside"),
        ({"stages": 4}, "stages=4 is outside"),
        ({"dropout": 0}, "dropout=0 is outside"),
        ({"bogus": 1}, "unknown dimension 'bogus'"),
    ],
)
def test_decode_rejects(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ENCODER.decode(ArchitectureVector({**SMALLEST.values, **change}))


def _mutated(**replace: Layer) -> ArchitectureSpec:
    """The smallest network with some nodes (by position) replaced."""
    nodes = list(ENCODER.decode(SMALLEST).layers)
    for key, layer in replace.items():
        i = int(key[1:])
        nodes[i] = Layer(layer.type, layer.params, nodes[i].inputs, nodes[i].name)
    return ArchitectureSpec("resnet1d", nodes)


def _sequential(*layers: Layer) -> ArchitectureSpec:
    return ArchitectureSpec("resnet1d", layers)


BAD_SPECS = [
    (ArchitectureSpec("conv1d", [conv(16, 3, 1)]), "family 'conv1d'"),
    (_sequential(), "no nodes"),
    (_sequential(Layer("linear", {"out_features": 16}), BN, RELU, Layer("globalavgpool1d")), "expected conv1d at node 0"),
    (_sequential(conv(16, 3, 1), BN, RELU, Layer("globalavgpool1d")), "no residual block"),
    (_sequential(conv(16, 3, 1), BN, RELU), "ends at node 2"),
    (_sequential(conv(16, 3, 1), BN, RELU, conv(16, 3, 1), Layer("globalavgpool1d")), "found node 3 conv1d"),
    (_mutated(n3=Layer("activation", {"fn": "relu"})), "main branch"),
    (_mutated(n5=Layer("activation", {"fn": "gelu"})), "share one activation"),
    (_mutated(n0=conv(24, 3, 1)), "stem_channels=24"),
    (_mutated(n3=conv(16, 3, 2)), "first stage's first block"),
    (_mutated(n3=conv(16, 3, 1, 3)), "share one dilation|dilation_0=3"),
    (_mutated(n3=Layer("conv1d", {"out_channels": 16, "kernel_size": 3, "stride": 1})), "not exactly"),
    (_mutated(n10=Layer("dropout", {"p": 0.5})), "expected a residual block or globalavgpool1d, found node 10 dropout"),
]  # fmt: skip


@pytest.mark.parametrize("spec, message", BAD_SPECS, ids=[s.describe() for s, _ in BAD_SPECS])
def test_encode_rejects(spec: ArchitectureSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ENCODER.encode(spec)


def test_encode_rejects_a_broken_graph_with_a_value_error() -> None:
    spec = ArchitectureSpec("resnet1d", [conv(16, 3, 1), Layer("add", inputs=("n9", "input"))])
    with pytest.raises(ValueError, match="resnet1d cannot express this spec: .*is no node's name"):
        ENCODER.encode(spec)


def test_encode_rejects_non_spec() -> None:
    with pytest.raises(ValueError, match="expected an ArchitectureSpec"):
        ENCODER.encode("resnet1d: conv16k3s1")  # type: ignore[arg-type]


# -- the plugin ---------------------------------------------------------------------------


def test_plugin_registers_the_encoder() -> None:
    system = PluginSystem.load(extra_plugins=[("resnet1d_test", plugin)], entry_points=False)
    component = system.get("encoder", "resnet1d")
    assert component.settings is ResNet1dSettings
    assert isinstance(component.factory(component.default_settings()), ResNet1dEncoder)
    encoder = component.factory(attrs.evolve(component.default_settings(), max_stages=1))
    assert encoder.search_space()["stages"].high == 1


def test_plugin_import_is_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, neuromosaic_encoder_resnet1d; print('torch' in sys.modules, 'hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
