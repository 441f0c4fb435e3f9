"""Tests of the resnet2d encoder: the core contract (property-based), concrete decodes, validity on 8x8 images, and one search."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from neuromosaic_encoder_resnet2d.encoder import ResNet2dEncoder, stage_width
from neuromosaic_encoder_resnet2d.settings import ResNet2dSettings

from neuromosaic_core.constraints import Constraints, ConstraintValidator
from neuromosaic_core.layers import analyse
from neuromosaic_core.model import ArchitectureSpec, ArchitectureVector, Layer
from neuromosaic_core.testing.encoder import EncoderContract

ENCODER = ResNet2dEncoder()
SPACE = ENCODER.search_space()


class TestResNet2dContract(EncoderContract):
    max_examples = 60
    input_shape = (1, 8, 8)

    def make_encoder(self) -> ResNet2dEncoder:
        return ResNet2dEncoder(ResNet2dSettings())


class TestOneStageContract(EncoderContract):
    max_examples = 20
    input_shape = (3, 16, 16)

    def make_encoder(self) -> ResNet2dEncoder:
        return ResNet2dEncoder(ResNet2dSettings(max_stages=1, max_blocks=1))


def vec(**values: object) -> ArchitectureVector:
    return SPACE.canonicalize({d.name: values.get(d.name, d.default()) for d in SPACE})


def test_space_and_settings():
    assert SPACE.names == ["stem_width", "stages", "blocks_0", "blocks_1", "blocks_2", "block", "kernel", "se", "width_multiplier", "downsample"]
    small = ResNet2dEncoder(ResNet2dSettings(max_stages=1)).search_space()
    assert "blocks_1" not in small.names and "downsample" not in small.names
    active = {d.name for d in SPACE.active_dimensions(vec(stages=1).values)}
    assert active == {"stem_width", "stages", "blocks_0", "block", "kernel", "se"}
    with pytest.raises((ValueError, TypeError)):
        ResNet2dSettings(max_stages=5)
    with pytest.raises(TypeError):
        ResNet2dSettings(max_blocks="2")  # type: ignore[arg-type]
    assert [stage_width(16, m, 2) for m in (1.0, 1.5, 2.0)] == [16, 36, 64]


def test_basic_blocks_with_stride_downsampling_on_8x8():
    v = vec(stem_width=16, stages=2, blocks_0=1, blocks_1=2, block="basic", kernel=3, se="off", width_multiplier=2.0, downsample="stride")
    spec = ENCODER.decode(v)
    assert ENCODER.encode(spec) == v
    assert spec.describe().count("+ id") == 2 and spec.describe().count("(conv32k1x1s2nb bn2d + conv32k3x3s2nb") == 1  # strided projection
    a = analyse(spec, (1, 8, 8), 10)
    convs = [i for i in a.layers if i.layer.type == "conv2d"]
    # stem, block 1 (two convs), block 2: two convs + the strided projection, block 3: two convs
    assert [i.out_shape for i in convs] == [(16, 8, 8)] * 3 + [(32, 4, 4)] * 5
    assert a.head_in_features == 32 and a.depth == 1 + 2 + 2 + 2 + 1


def test_bottleneck_se_and_pool_downsampling_keep_a_1x1_map():
    enc = ResNet2dEncoder(ResNet2dSettings(max_stages=4, max_blocks=1))
    space = enc.search_space()
    v = space.canonicalize({d.name: d.default() for d in space} | {
        "stages": 4, "block": "bottleneck", "se": "on", "kernel": 5, "downsample": "pool", "width_multiplier": 1.5, "stem_width": 8})
    spec = enc.decode(v)
    assert enc.encode(spec) == v
    a = analyse(spec, (1, 8, 8), 10)
    pools = [i for i in a.layers if i.layer.type == "maxpool2d"]
    assert [i.out_shape[1:] for i in pools] == [(4, 4), (2, 2), (1, 1)]  # 8 -> 4 -> 2 -> 1, never to nothing
    assert sum(i.layer.type == "se" for i in a.layers) == 4
    assert [i.out_shape[0] for i in a.layers if i.layer.type == "add"] == [8, 12, 20, 28]


def test_encode_accepts_the_same_graph_in_another_order_and_rejects_others():
    spec = ENCODER.decode(vec(stages=2, blocks_1=2, se="on"))
    reordered = ArchitectureSpec(spec.family, spec.canonical().layers)
    assert reordered.layers != spec.layers
    assert ENCODER.encode(reordered) == ENCODER.encode(spec)
    broken = ArchitectureSpec("resnet2d", [*spec.layers[:-1], Layer("globalavgpool1d", inputs=spec.layers[-1].inputs)])
    with pytest.raises(ValueError, match="globalavgpool2d"):
        ENCODER.encode(broken)
    plain = ArchitectureSpec("resnet2d", [Layer("conv2d", {"out_channels": 8, "kernel_size": 3}), Layer("globalavgpool2d")])
    with pytest.raises(ValueError, match="resnet2d cannot express"):
        ENCODER.encode(plain)


def test_default_space_is_valid_under_the_default_constraints_on_8x8_images():
    validator = ConstraintValidator(Constraints(max_params=2_000_000, max_depth=64), (1, 8, 8), 10)
    rng = random.Random(0)
    results = [validator.validate_constraints(ENCODER.decode(SPACE.sample(rng))) for _ in range(300)]
    valid = sum(r.ok for r in results)
    assert valid >= 0.9 * len(results), [r.message() for r in results if not r.ok][:3]


def test_importing_the_plugin_is_cheap():
    code = "import sys, neuromosaic_encoder_resnet2d\nprint(','.join(m for m in ('torch', 'numpy', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
