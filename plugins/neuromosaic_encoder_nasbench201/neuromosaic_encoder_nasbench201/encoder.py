"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

A cell has four nodes; node ``i`` sums one operation applied to each earlier node ``j < i``, so
there are six edges. Each edge carries one of five operations. The dimension ``edge_i_j`` is the
edge from node ``j`` to node ``i``, i.e. ``op~j`` in group ``i`` of the benchmark's cell string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

A decoded spec is ``ArchitectureSpec("nasbench201", layers)`` with one
``Layer("cell_edge", {"to": i, "from": j, "op": op})`` per edge, in the canonical order
``(1,0), (2,0), (2,1), (3,0), (3,1), (3,2)``. ``cell_edge`` is not part of the core layer
vocabulary: these specs are meant for a runner that looks cells up (``runner=tabular``), not for
code generation.
"""

from __future__ import annotations

from collections.abc import Mapping

from neuromosaic_core.interfaces import ArchitectureEncoder
from neuromosaic_core.model import ArchitectureSpec, ArchitectureVector, CategoricalDimension, Layer, Scalar, SearchSpace

FAMILY = "nasbench201"
LAYER_TYPE = "cell_edge"
#: The five operations, in the benchmark's spelling; ``none`` (the first) is the canonical default.
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: The six edges ``(to, from)`` in canonical order: group by target node, then by source node.
EDGES = tuple((i, j) for i in range(1, 4) for j in range(i))
DIMENSIONS = tuple(f"edge_{i}_{j}" for i, j in EDGES)

__all__ = ["DIMENSIONS", "EDGES", "FAMILY", "LAYER_TYPE", "OPS", "NasBench201Encoder", "cell_string", "parse_cell_string"]


def _space() -> SearchSpace:
    return SearchSpace([CategoricalDimension(name, choices=OPS) for name in DIMENSIONS])


SPACE = _space()


class NasBench201Encoder(ArchitectureEncoder):
    """Six categorical dimensions ``edge_1_0 … edge_3_2`` over :data:`OPS`; no conditional
    dimensions, so every vector of the space is already canonical."""

    def __init__(self, settings: object = None) -> None:
        self.settings = settings

    def search_space(self) -> SearchSpace:
        return SPACE

    def decode(self, vector: ArchitectureVector) -> ArchitectureSpec:
        problems = SPACE.violations(vector)
        if problems:
            raise ValueError(f"not a NAS-Bench-201 cell: {'; '.join(problems)}")
        return _spec({edge: str(vector[name]) for edge, name in zip(EDGES, DIMENSIONS, strict=True)})

    def encode(self, spec: ArchitectureSpec) -> ArchitectureVector:
        ops = _edge_ops(spec)
        return ArchitectureVector({name: ops[edge] for edge, name in zip(EDGES, DIMENSIONS, strict=True)})


def _spec(ops: Mapping[tuple[int, int], str]) -> ArchitectureSpec:
    return ArchitectureSpec(FAMILY, [Layer(LAYER_TYPE, {"to": i, "from": j, "op": ops[(i, j)]}) for i, j in EDGES])


def _edge_ops(spec: ArchitectureSpec) -> dict[tuple[int, int], str]:
    """The operation of each edge of ``spec``; ``ValueError`` unless it is exactly one NAS-Bench-201 cell.

    The edges may come in any order (the result does not depend on it), but each must appear once.
    """
    if spec.family != FAMILY:
        raise ValueError(f"not a NAS-Bench-201 spec: family {spec.family!r}, expected {FAMILY!r}")
    ops: dict[tuple[int, int], str] = {}
    for layer in spec.layers:
        if layer.type != LAYER_TYPE:
            raise ValueError(f"not a NAS-Bench-201 spec: layer type {layer.type!r}, expected {LAYER_TYPE!r}")
        if set(layer.params) != {"to", "from", "op"}:
            raise ValueError(f"a {LAYER_TYPE} layer has exactly the params to, from, op; got {sorted(layer.params)}")
        edge = (_node(layer.params["to"]), _node(layer.params["from"]))
        op = layer.params["op"]
        if edge not in EDGES:
            raise ValueError(f"no edge from node {edge[1]} to node {edge[0]} in a NAS-Bench-201 cell")
        if edge in ops:
            raise ValueError(f"edge from node {edge[1]} to node {edge[0]} appears twice")
        if not isinstance(op, str) or op not in OPS:
            raise ValueError(f"unknown operation {op!r}; expected one of {', '.join(OPS)}")
        ops[edge] = op
    missing = [f"{j}->{i}" for i, j in EDGES if (i, j) not in ops]
    if missing:
        raise ValueError(f"a NAS-Bench-201 cell has 6 edges; missing {', '.join(missing)}")
    return ops


def _node(value: Scalar) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"a node index is an integer 0-3, got {value!r}")
    return value


def cell_string(spec: ArchitectureSpec | ArchitectureVector) -> str:
    """The benchmark's key of a cell, ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, from a spec or a
    vector of the space. ``ValueError`` for anything that is not a NAS-Bench-201 cell."""
    if isinstance(spec, ArchitectureVector):
        spec = NasBench201Encoder().decode(spec)
    ops = _edge_ops(spec)
    return "+".join("|" + "|".join(f"{ops[(i, j)]}~{j}" for j in range(i)) + "|" for i in range(1, 4))


def parse_cell_string(text: str) -> ArchitectureSpec:
    """The spec of a benchmark key (the inverse of :func:`cell_string`)."""
    groups = text.split("+")
    if len(groups) != 3:
        raise ValueError(f"a NAS-Bench-201 cell string has 3 groups separated by '+', got {text!r}")
    ops: dict[tuple[int, int], str] = {}
    for i, group in enumerate(groups, start=1):
        if not (group.startswith("|") and group.endswith("|")):
            raise ValueError(f"group {i} of {text!r} is not enclosed in '|'")
        items = group[1:-1].split("|")
        if len(items) != i:
            raise ValueError(f"group {i} of {text!r} has {len(items)} edges, expected {i}")
        for j, item in enumerate(items):
            op, sep, source = item.rpartition("~")
            if not sep or source != str(j):
                raise ValueError(f"edge {item!r} in group {i} of {text!r} is not written op~{j}")
            if op not in OPS:
                raise ValueError(f"unknown operation {op!r} in {text!r}; expected one of {', '.join(OPS)}")
            ops[(i, j)] = op
    return _spec(ops)
