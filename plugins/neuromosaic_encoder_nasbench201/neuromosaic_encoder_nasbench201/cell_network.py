"""The NAS-Bench-201 cell as a trainable network: the ``nb201_cell`` encoder.

The same six-edge vectors as the ``nasbench201`` encoder (:data:`~.encoder.SPACE`), decoded into
the benchmark's whole network as a graph spec of the core vocabulary, so the code generators can
write it and any runner can train it. The network follows the benchmark's published definition
(Dong & Yang, ICLR 2020, and its reference code, ``xautodl``'s ``TinyNetwork`` / ``InferCell``):

- stem: ``conv3x3(C) + BN`` (no bias, padding 1);
- three stages of ``N`` cells with ``C``, ``2C`` and ``4C`` channels; between two stages a
  residual reduction block (``ResNetBasicblock``, stride 2): ``ReLU-conv3x3/2-BN``,
  ``ReLU-conv3x3-BN`` on the main path, ``avgpool2x2/2 + conv1x1`` (no BN) on the shortcut,
  added;
- each cell: node 0 is the cell's input, node ``i`` (1-3) the sum of one operation on each node
  ``j < i``; the cell's output is node 3. Operations: ``none`` (a ``zero`` node),
  ``skip_connect`` (``identity``), ``nor_conv_1x1`` / ``nor_conv_3x3`` (``ReLU-conv-BN``, no
  bias), ``avg_pool_3x3`` (stride 1, padding 1, ``count_include_pad=False``). Inside a cell the
  channels do not change, so no edge needs the benchmark's channel-adapting variants;
- head: ``BN-ReLU``, global average pooling, and the linear classifier the code generator adds
  to every spec.

Pure Python (no torch): decoding and the analytic checks are cheap.
"""

from __future__ import annotations

from collections.abc import Mapping

from neuromosaic_core.interfaces import ArchitectureEncoder
from neuromosaic_core.model import ArchitectureSpec, ArchitectureVector, Graph, GraphBuilder, Layer, SearchSpace, SpecError
from neuromosaic_encoder_nasbench201.encoder import DIMENSIONS, EDGES, OPS, SPACE, _edge_ops, parse_cell_string

FAMILY = "nb201_cell"
#: The benchmark's widths: ``C = 16`` channels in the first stage, ``N = 5`` cells per stage.
BENCHMARK_CHANNELS = 16
BENCHMARK_CELLS_PER_STAGE = 5

__all__ = ["BENCHMARK_CELLS_PER_STAGE", "BENCHMARK_CHANNELS", "FAMILY", "Nb201CellEncoder", "cell_network"]

_RELU = Layer("activation", {"fn": "relu"})


def _relu_conv_bn(channels: int, kernel: int, stride: int = 1) -> list[Layer]:
    """The benchmark's ``ReLUConvBN``."""
    return [_RELU, Layer("conv2d", {"out_channels": channels, "kernel_size": kernel, "stride": stride, "bias": False}),
            Layer("batchnorm2d")]


def _edge(g: GraphBuilder, op: str, source: str, channels: int) -> str:
    """One edge of a cell reading ``source``; returns the node that carries its result."""
    if op == "nor_conv_3x3":
        return g.chain(_relu_conv_bn(channels, 3), start=source)
    if op == "nor_conv_1x1":
        return g.chain(_relu_conv_bn(channels, 1), start=source)
    if op == "avg_pool_3x3":
        return g.add("avgpool2d", {"kernel_size": 3, "stride": 1, "padding": 1}, inputs=source)
    if op == "skip_connect":
        return g.add("identity", inputs=source)
    if op == "none":
        return g.add("zero", inputs=source)
    raise ValueError(f"unknown operation {op!r}; expected one of {', '.join(OPS)}")


def cell_network(ops: Mapping[tuple[int, int], str] | str, channels: int = BENCHMARK_CHANNELS,
                 cells_per_stage: int = BENCHMARK_CELLS_PER_STAGE) -> ArchitectureSpec:
    """The benchmark's network around one cell, given as ``{(to, from): op}`` for the six
    edges or as the benchmark's cell string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
    if isinstance(ops, str):
        ops = _edge_ops(parse_cell_string(ops))
    if channels < 1 or cells_per_stage < 1:
        raise ValueError(f"channels and cells_per_stage are at least 1, got {channels} and {cells_per_stage}")
    g = GraphBuilder(FAMILY)
    x = g.chain([Layer("conv2d", {"out_channels": channels, "kernel_size": 3, "bias": False}), Layer("batchnorm2d")])
    c = channels
    for stage in range(3):
        if stage:
            c *= 2
            main = g.chain(_relu_conv_bn(c, 3, 2) + _relu_conv_bn(c, 3), start=x)
            shortcut = g.chain([Layer("avgpool2d", {"kernel_size": 2, "stride": 2}),
                                Layer("conv2d", {"out_channels": c, "kernel_size": 1, "bias": False})], start=x)
            x = g.merge("add", [shortcut, main])
        for _ in range(cells_per_stage):
            nodes = [x]
            for i in range(1, 4):
                edges = [_edge(g, ops[(i, j)], nodes[j], c) for j in range(i)]
                nodes.append(edges[0] if len(edges) == 1 else g.merge("add", edges))
            x = nodes[3]
    g.chain([Layer("batchnorm2d"), _RELU, Layer("globalavgpool2d")], start=x)
    return g.build()


class Nb201CellEncoder(ArchitectureEncoder):
    """The ``nasbench201`` space (six categorical edges over :data:`~.encoder.OPS`), decoded
    into the benchmark's trainable network at ``settings.channels`` and ``settings.cells_per_stage``."""

    def __init__(self, settings: object = None) -> None:
        self.settings = settings
        self.channels = int(getattr(settings, "channels", BENCHMARK_CHANNELS))
        self.cells_per_stage = int(getattr(settings, "cells_per_stage", BENCHMARK_CELLS_PER_STAGE))

    def search_space(self) -> SearchSpace:
        return SPACE

    def decode(self, vector: ArchitectureVector) -> ArchitectureSpec:
        problems = SPACE.violations(vector)
        if problems:
            raise ValueError(f"not a NAS-Bench-201 cell: {'; '.join(problems)}")
        ops = {edge: str(vector[name]) for edge, name in zip(EDGES, DIMENSIONS, strict=True)}
        return cell_network(ops, self.channels, self.cells_per_stage)

    def encode(self, spec: ArchitectureSpec) -> ArchitectureVector:
        """Reads the first cell off the graph, then checks that the whole spec is this encoder's
        network of that cell (same graph, whatever the node order and names)."""
        if spec.family != FAMILY:
            raise ValueError(f"not an {FAMILY} spec: family {spec.family!r}")
        try:
            ops = _first_cell(spec.graph())
        except SpecError as exc:
            raise ValueError(f"not an {FAMILY} network: {exc}") from None
        if ops is None or cell_network(ops, self.channels, self.cells_per_stage).canonical_hash() != spec.canonical_hash():
            raise ValueError(f"not an {FAMILY} network with channels={self.channels} and cells_per_stage={self.cells_per_stage}")
        return ArchitectureVector({name: ops[edge] for edge, name in zip(EDGES, DIMENSIONS, strict=True)})


def _first_cell(graph: Graph) -> dict[tuple[int, int], str] | None:
    """The operations of the first cell of ``graph``, read from its wiring, or ``None`` when the
    graph does not start like the benchmark's network. Only a guess to be confirmed by the caller."""
    nodes, users = graph.nodes, graph.consumers()
    stem = [i for i, sources in enumerate(graph.inputs) if sources == (-1,)]
    if len(stem) != 1 or len(users[stem[0]]) != 1:
        return None
    node0 = users[stem[0]][0]  # the stem's batch norm: node 0 of the first cell

    def follow(head: int) -> tuple[str, int] | None:
        """The operation of the edge starting at ``head`` and the node carrying its result."""
        kind = nodes[head].type
        simple = {"zero": "none", "identity": "skip_connect", "avgpool2d": "avg_pool_3x3"}
        if kind in simple:
            return simple[kind], head
        if kind == "activation" and len(users[head]) == 1:
            conv = users[head][0]
            if nodes[conv].type == "conv2d" and len(users[conv]) == 1:
                kernel = nodes[conv].params.get("kernel_size")
                if kernel in (1, 3):
                    return f"nor_conv_{kernel}x{kernel}", users[conv][0]
        return None

    def target(end: int) -> int:
        """Node 1 is an edge's own end; nodes 2 and 3 are sums of two and three edges."""
        merges = [u for u in users[end] if nodes[u].type == "add" and len(graph.inputs[u]) in (2, 3)]
        return len(graph.inputs[merges[0]]) if len(users[end]) == 1 and merges else 1

    ops: dict[tuple[int, int], str] = {}
    cell_nodes = {0: node0}
    for j in range(3):
        if j not in cell_nodes:
            return None
        for head in users[cell_nodes[j]]:
            edge = follow(head)
            if edge is None:
                return None
            op, end = edge
            i = target(end)
            if (i, j) not in EDGES or (i, j) in ops:
                return None
            ops[(i, j)] = op
            cell_nodes.setdefault(i, end if i == 1 else users[end][0])
    return ops if len(ops) == len(EDGES) else None
