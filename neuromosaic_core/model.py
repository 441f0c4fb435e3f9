"""The data model: what a search talks about, as attrs classes that cattrs (de)serialises.

Everything here is plain data, cheap to import (no torch), and JSON-friendly through
:data:`converter`. The names follow the user's design document (ArchitectureSpec,
ArchitectureVector, SearchSpace, Trial, TrialResult, Experiment, ExperimentError).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Union

import attrs
import cattrs

Scalar = Union[int, float, str]

#: The one converter every part of Neuromosaic uses, so a spec stored by one plugin reads back
#: identically in another.
converter = cattrs.Converter(forbid_extra_keys=True)
converter.register_structure_hook(Scalar, lambda v, _: v)  # a vector value is taken as stored


def to_json(obj: Any) -> str:
    """Serialise an attrs object to canonical JSON (sorted keys, no whitespace)."""
    return json.dumps(converter.unstructure(obj), sort_keys=True, separators=(",", ":"))


def stable_hash(payload: Any) -> str:
    """A short, stable hash of any JSON-serialisable value (sorted keys, so dict order never matters)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------


#: The name by which a node refers to the network's input.
INPUT = "input"
#: Merge operations whose inputs may be swapped without changing the network (the canonical form
#: sorts their inputs); ``concat`` is order-sensitive.
COMMUTATIVE = frozenset({"add"})


class SpecError(ValueError):
    """A spec that is not a valid graph (unknown input, a cycle, a dead node, two outputs, ...)."""


@attrs.frozen
class Layer:
    """One node of an architecture: a typed layer or operation, e.g. ``Layer("linear", {"out_features": 128})``.

    ``inputs`` names the nodes it reads (``"input"`` for the network's input), in order (the
    order matters for ``concat``); empty means the node before it in the spec, or the network's
    input for the first node, so a plain list of layers is a sequential network. ``name`` is how
    other nodes refer to this one; it is a label only (neither the hash nor the code depend on it).

    The vocabulary (types and their parameters) is defined in :mod:`neuromosaic_core.layers`.
    """

    type: str
    params: Mapping[str, Scalar] = attrs.field(factory=dict, converter=lambda p: dict(sorted(p.items())))
    inputs: tuple[str, ...] = attrs.field(default=(), converter=lambda v: (v,) if isinstance(v, str) else tuple(v))
    name: str | None = None


#: In a graph a layer is a node: the same class under the name a graph reader looks for.
Node = Layer


def _unstructure_layer(layer: Layer) -> dict[str, Any]:
    # Sequential specs serialise exactly as before graphs existed (type and params only), so
    # stored specs, hashes and cache keys of today's databases stay what they were.
    data: dict[str, Any] = {"type": layer.type, "params": dict(layer.params)}
    if layer.inputs:
        data["inputs"] = list(layer.inputs)
    if layer.name is not None:
        data["name"] = layer.name
    return data


converter.register_unstructure_hook(Layer, _unstructure_layer)


@attrs.frozen
class Graph:
    """A spec's nodes with their inputs resolved to positions: ``inputs[i]`` lists the positions
    node ``i`` reads, ``-1`` standing for the network's input; node ``output`` (the last) is the
    body's output. Built by :meth:`ArchitectureSpec.graph`, which checks the structure."""

    nodes: tuple[Layer, ...]
    inputs: tuple[tuple[int, ...], ...]

    @property
    def output(self) -> int:
        return len(self.nodes) - 1

    def consumers(self) -> list[list[int]]:
        """For each node, the positions of the nodes that read it (in order)."""
        users: list[list[int]] = [[] for _ in self.nodes]
        for i, sources in enumerate(self.inputs):
            for j in sources:
                if j >= 0:
                    users[j].append(i)
        return users

    def is_chain(self) -> bool:
        """True when every node reads exactly the one before it: a sequential network."""
        return all(sources == (i - 1,) for i, sources in enumerate(self.inputs))


def _label(index: int, node: Layer) -> str:
    return f"node {index} ({node.name or node.type})"


def resolve_graph(nodes: tuple[Layer, ...]) -> Graph:
    """Resolve and check the wiring of ``nodes``: inputs refer to earlier nodes (the list is in a
    topological order) or to ``input``, names are unique, and every node feeds the last one."""
    positions: dict[str, int] = {}
    resolved: list[tuple[int, ...]] = []
    for i, node in enumerate(nodes):
        if node.inputs:
            sources = []
            for ref in node.inputs:
                if ref == INPUT:
                    sources.append(-1)
                elif ref in positions:
                    sources.append(positions[ref])
                else:
                    later = any(n.name == ref for n in nodes[i:])
                    raise SpecError(f"{_label(i, node)} reads {ref!r}, which " +
                                    ("comes after it: list nodes so that inputs come first" if later else "is no node's name"))
            resolved.append(tuple(sources))
        else:
            resolved.append((i - 1,))
        if node.name is not None:
            if node.name == INPUT or node.name in positions:
                raise SpecError(f"{_label(i, node)}: the name {node.name!r} is " + ("reserved" if node.name == INPUT else "used twice"))
            positions[node.name] = i
    graph = Graph(tuple(nodes), tuple(resolved))
    if nodes:
        users = graph.consumers()
        dead = [i for i in range(len(nodes) - 1) if not users[i]]
        if dead:
            raise SpecError(f"{_label(dead[0], nodes[dead[0]])} is not used by any node: every node must lead to the last one (the output)")
    return graph


_vocabulary: Any = None


def _canonical_params(node: Layer) -> Mapping[str, Scalar]:
    global _vocabulary
    if _vocabulary is None:
        from neuromosaic_core import layers  # the vocabulary knows its defaults; pure Python, imported once

        _vocabulary = layers
    if node.type not in _vocabulary.DEFAULTS:  # nothing optional to drop: the params as written
        return node.params
    return _vocabulary.canonical_params(node)


def canonical_nodes(graph: Graph) -> tuple[list[int], list[tuple[int, ...]]]:
    """The graph's canonical node order and inputs: a depth-first walk from the output that visits
    each node's inputs in order (the inputs of a commutative merge sorted by the structure above
    them) and numbers a node once all its inputs are numbered. The same graph written in any other
    topological order, or with other names, gets the same order."""
    n = len(graph.nodes)
    signature: list[str] = []
    ordered_inputs: list[tuple[int, ...]] = []
    for i, node in enumerate(graph.nodes):  # written order is topological: inputs are signed first
        sources = graph.inputs[i]
        if node.type in COMMUTATIVE:
            sources = tuple(sorted(sources, key=lambda j: signature[j] if j >= 0 else ""))
        ordered_inputs.append(sources)
        signature.append(stable_hash([node.type, _canonical_params(node), [signature[j] if j >= 0 else INPUT for j in sources]]))
    number: dict[int, int] = {}
    order: list[int] = []
    stack: list[tuple[int, int]] = [(n - 1, 0)] if n else []
    while stack:
        i, k = stack.pop()
        sources = ordered_inputs[i]
        while k < len(sources) and (sources[k] < 0 or sources[k] in number):
            k += 1
        if k < len(sources):
            stack.append((i, k + 1))
            stack.append((sources[k], 0))
        elif i not in number:
            number[i] = len(order)
            order.append(i)
    inputs = [tuple(number[j] if j >= 0 else -1 for j in ordered_inputs[i]) for i in order]
    return order, inputs


@attrs.frozen
class ArchitectureSpec:
    """The architecture only: a family and the nodes of the network's body, a directed acyclic graph.

    ``layers`` lists the nodes in a topological order (every node after the nodes it reads); the
    last one is the body's output. A node with no ``inputs`` reads the node before it, so a plain
    list of layers is a sequential network, as specs were before graphs. Merges (``add``,
    ``concat``) read several nodes; ``identity`` and ``zero`` nodes are the skip and the cut edge
    of cells. :class:`GraphBuilder` writes graphs without counting positions.

    The classification head (a linear layer to ``task.num_classes``) is implied and added by the
    code generator, so the same spec means the same thing for every task.
    """

    family: str
    layers: tuple[Layer, ...] = attrs.field(converter=tuple)

    @property
    def nodes(self) -> tuple[Layer, ...]:
        """The nodes (the same tuple as ``layers``, under the graph's word)."""
        return self.layers

    def graph(self) -> Graph:
        """The resolved wiring; raises :class:`SpecError` when the spec is not a valid graph."""
        return resolve_graph(self.layers)

    def is_sequential(self) -> bool:
        """True for a chain of layers (each reading the one before), however it is written."""
        return self.graph().is_chain()

    def canonical(self) -> ArchitectureSpec:
        """The same graph in its canonical order with canonical inputs and no names; a sequential
        spec comes back as a plain list of layers. Equal graphs have equal canonical specs."""
        graph = self.graph()
        if not graph.nodes:
            return ArchitectureSpec(self.family, ())
        order, inputs = canonical_nodes(graph)
        nodes = [graph.nodes[i] for i in order]
        if all(sources == (k - 1,) for k, sources in enumerate(inputs)):
            return ArchitectureSpec(self.family, tuple(Layer(n.type, _canonical_params(n)) for n in nodes))
        names = [f"n{k}" for k in range(len(nodes))]
        return ArchitectureSpec(self.family, tuple(
            Layer(n.type, _canonical_params(n), tuple(names[j] if j >= 0 else INPUT for j in inputs[k]), names[k])
            for k, n in enumerate(nodes)
        ))

    def canonical_hash(self) -> str:
        """A stable hash of the architecture alone (not of training settings or the task).

        A sequential spec hashes as it always did (family, then each layer's type and params), so
        reuse and code-cache keys of older databases still match. A graph hashes its canonical
        form (:func:`canonical_nodes`): node order and names do not matter, wiring does.
        """
        if any(layer.inputs or layer.name is not None for layer in self.layers):
            canonical = self.canonical()
        elif all(_canonical_params(layer) is layer.params for layer in self.layers):
            return stable_hash(converter.unstructure(self))  # a plain list with nothing to normalise: the JSON as stored
        else:  # the common case, as before graphs: today's specs carry no defaults, so this is verbatim
            canonical = ArchitectureSpec(self.family, tuple(Layer(layer.type, _canonical_params(layer)) for layer in self.layers))
        if not any(layer.inputs for layer in canonical.layers):
            return stable_hash(converter.unstructure(canonical))
        position = {layer.name: k for k, layer in enumerate(canonical.layers)}
        return stable_hash({"family": self.family, "graph": [
            {"type": n.type, "params": dict(n.params), "inputs": [position.get(ref, -1) for ref in n.inputs]} for n in canonical.layers
        ]})

    def describe(self) -> str:
        """A compact one-line summary, e.g. ``conv1d: conv32k5s1 bn gelu max2 flat fc64 gelu``.

        A graph reads as its sequence of stages: single nodes as above, each block between two
        nodes every path passes through in brackets (``(conv16k3s1 bn relu + id)`` for a residual
        block, ``{|relu conv16k3x3s1 bn2d~0|+|...|}`` NAS-Bench-201 style for a cell), and runs of
        identical blocks as ``[...]x3``.
        """
        if all(not layer.inputs and layer.name is None for layer in self.layers):
            return f"{self.family}: " + " ".join(_short(layer) for layer in self.layers)
        try:
            graph = self.canonical().graph()
        except SpecError as exc:
            return f"{self.family}: invalid graph ({exc})"
        return f"{self.family}: " + " ".join(_compress(_stages(graph)))


class GraphBuilder:
    """Writes a graph spec node by node; each call returns the new node's name for later inputs.

    A residual block::

        g = GraphBuilder("resnet1d")
        x = g.chain([Layer("conv1d", {"out_channels": 16, "kernel_size": 5, "stride": 1}), Layer("batchnorm"),
                     Layer("activation", {"fn": "relu"})])                 # the stem, reading the input
        y = g.chain([conv, bn, relu, conv, bn], start=x)                   # the main branch
        x = g.add("add", inputs=[y, x])                                    # the skip joins it
        x = g.add("activation", {"fn": "relu"})                            # reads the node before
        spec = g.build()
    """

    def __init__(self, family: str) -> None:
        self.family = family
        self._nodes: list[tuple[str, Layer, tuple[str, ...]]] = []

    @property
    def last(self) -> str:
        """The name of the node added last (``input`` before any)."""
        return self._nodes[-1][0] if self._nodes else INPUT

    def add(self, type: str, params: Mapping[str, Scalar] | None = None, *,  # noqa: A002 - the node's type
            inputs: str | Sequence[str] | None = None, name: str | None = None) -> str:
        """Add a node reading ``inputs`` (a name, or names in order; default: the last node added)."""
        sources = (self.last,) if inputs is None else (inputs,) if isinstance(inputs, str) else tuple(inputs)
        name = name if name is not None else f"n{len(self._nodes)}"
        if name == INPUT or any(name == other for other, _, _ in self._nodes):
            raise SpecError(f"node name {name!r} is {'reserved' if name == INPUT else 'used twice'}")
        self._nodes.append((name, Layer(type, dict(params or {})), sources))
        return name

    def chain(self, layers: Sequence[Layer], start: str | None = None) -> str:
        """Add ``layers`` one after the other, the first reading ``start`` (default: the last node);
        returns the last one's name (``start`` itself for no layers)."""
        current = start if start is not None else self.last
        for layer in layers:
            current = self.add(layer.type, layer.params, inputs=current)
        return current

    def merge(self, kind: str, inputs: Sequence[str]) -> str:
        """A merge (``add`` or ``concat``) of ``inputs``."""
        return self.add(kind, inputs=list(inputs))

    def build(self) -> ArchitectureSpec:
        """The spec; nodes keep a name only when another node reads them, and list inputs only
        when they are not simply the node before, so a chain builds a plain sequential spec."""
        referenced: set[str] = set()
        for k, (_, _, sources) in enumerate(self._nodes):
            previous = self._nodes[k - 1][0] if k else INPUT
            if sources != (previous,):
                referenced.update(s for s in sources if s != INPUT)
        layers = []
        for k, (name, layer, sources) in enumerate(self._nodes):
            previous = self._nodes[k - 1][0] if k else INPUT
            explicit = sources if sources != (previous,) else ()
            layers.append(Layer(layer.type, layer.params, explicit, name if name in referenced else None))
        spec = ArchitectureSpec(self.family, tuple(layers))
        spec.graph()  # refuse a broken graph here, where it was written
        return spec


_SHORT_NAMES = {"batchnorm": "bn", "layernorm": "ln", "flatten": "flat", "batchnorm2d": "bn2d", "identity": "id",
                "globalavgpool1d": "gap", "globalavgpool2d": "gap2d"}


def _short(layer: Layer) -> str:
    p = layer.params
    t = layer.type
    if t == "linear":
        return f"fc{p.get('out_features')}"
    if t in ("conv1d", "conv2d"):
        k = p.get("kernel_size")
        kernel = f"k{k}" if t == "conv1d" else f"k{k}x{k}"
        groups = p.get("groups", 1)
        extra = (f"d{p['dilation']}" if p.get("dilation", 1) != 1 else "") + \
            ("dw" if groups == "depthwise" else f"g{groups}" if groups != 1 else "") + ("" if p.get("bias", True) else "nb")
        return f"conv{p.get('out_channels')}{kernel}s{p.get('stride', 1)}{extra}"
    if t == "activation":
        return str(p.get("fn"))
    if t == "dropout":
        return f"drop{p.get('p')}"
    if t in ("maxpool1d", "avgpool1d", "maxpool2d", "avgpool2d") and set(p) <= {"kernel_size", "stride", "padding"}:
        k = p.get("kernel_size")
        dims = "2d" if t.endswith("2d") else ""
        stride = f"s{p['stride']}" if "stride" in p and p["stride"] != k else ""
        pad = f"p{p['padding']}" if p.get("padding", 0) else ""
        return f"{t[:3]}{dims}{k}{stride}{pad}"
    if t == "se" and set(p) == {"reduction"}:
        return f"se{p['reduction']}"
    if t in _SHORT_NAMES and not p:
        return _SHORT_NAMES[t]
    args = ",".join(f"{k}={v}" for k, v in p.items())
    return f"{t}({args})" if args else t


def _stages(graph: Graph) -> list[str]:
    """One token per stage of a canonical graph: a node every path runs through is a token of its
    own; the nodes between two such nodes are one bracketed block."""
    n = len(graph.nodes)
    users = graph.consumers()
    # node k is on every path iff no edge jumps over it in the (topological) order
    jump_until = [-1] * (n + 1)
    for i, sources in enumerate(graph.inputs):
        for j in sources:
            for k in range(j + 1, i):
                jump_until[k] = max(jump_until[k], i)
    tokens: list[str] = []
    start = -1  # the cut node the current block starts from (-1: the input)
    for k in range(n):
        if jump_until[k] != -1:
            continue  # inside a block
        if k == start + 1 and graph.inputs[k] == (start,):
            tokens.append(_short(graph.nodes[k]))
        else:
            tokens.append(_block(graph, users, start, k))
        start = k
    return tokens


def _block(graph: Graph, users: list[list[int]], start: int, end: int) -> str:
    """The nodes after ``start`` up to ``end`` (a block with one entry and one exit) as one token."""
    inside = range(start + 1, end + 1)
    junctions = [start] + [k for k in inside if len(graph.inputs[k]) > 1 or len(users[k]) > 1 or k == end]
    number = {j: i for i, j in enumerate(junctions)}

    def chain_back(k: int) -> tuple[str, int]:
        """The plain nodes (one input, one reader) leading back from ``k`` to a junction, and that junction."""
        ops: list[str] = []
        while k not in number:
            ops.append(_short(graph.nodes[k]))
            k = graph.inputs[k][0]
        return " ".join(reversed(ops)) or "id", k

    exit_node = graph.nodes[end]
    if len(junctions) == 2 and exit_node.type in ("add", "concat"):  # parallel branches joined once
        branches = sorted((chain_back(s)[0] for s in graph.inputs[end]), key=lambda b: (b == "id", b))
        return f"({' + '.join(branches)})" if exit_node.type == "add" else f"cat({', '.join(branches)})"
    parts = []
    for j in junctions[1:]:
        node = graph.nodes[j]
        if len(graph.inputs[j]) > 1:
            edges = [chain_back(s) for s in graph.inputs[j]]
            if node.type in COMMUTATIVE:  # the order of a sum's inputs is not part of the graph
                edges.sort(key=lambda e: (number[e[1]], e[0]))
            suffix = "" if node.type == "add" else node.type
            parts.append("|" + "|".join(f"{b}~{number[s]}" for b, s in edges) + "|" + suffix)
        else:
            b, s = chain_back(graph.inputs[j][0])
            parts.append(f"|{_short(node) if b == 'id' else b + ' ' + _short(node)}~{number[s]}|")
    return "{" + "+".join(parts) + "}"


def _compress(tokens: list[str]) -> list[str]:
    """Runs of a repeated group of tokens as ``[group]xN`` (the longest cover first; a group
    starts at a bracketed block rather than just before it when both cover as much)."""

    def best(i: int) -> tuple[int, int]:
        best_len, best_count = 1, 1
        for size in range(1, (len(tokens) - i) // 2 + 1):
            count = 1
            while tokens[i + count * size:i + (count + 1) * size] == tokens[i:i + size]:
                count += 1
            if count > 1 and size * count > best_len * best_count:
                best_len, best_count = size, count
        return best_len, best_count

    out: list[str] = []
    i = 0
    while i < len(tokens):
        size, count = best(i)
        if count > 1 and i + 1 < len(tokens) and tokens[i + 1][:1] in "({" and tokens[i][:1] not in "({":
            later_size, later_count = best(i + 1)
            if later_count > 1 and later_size * later_count >= size * count:
                size, count = 1, 1
        group = " ".join(tokens[i:i + size])
        out.append(group if count == 1 else f"[{group}]x{count}")
        i += size * count
    return out


@attrs.frozen
class ArchitectureVector:
    """A point of a :class:`SearchSpace`: one value per dimension name.

    Inactive conditional dimensions hold their canonical default (see :meth:`SearchSpace.canonicalize`).
    """

    values: Mapping[str, Scalar] = attrs.field(converter=lambda v: dict(sorted(v.items())))

    @classmethod
    def from_sorted(cls, values: dict[str, Scalar]) -> ArchitectureVector:
        """A vector from a dict already in name order (as stored), skipping the sorting
        converter: a resume builds one per stored trial, 100,000 of them for a large study."""
        vector = object.__new__(cls)
        object.__setattr__(vector, "values", values)
        return vector

    def __getitem__(self, name: str) -> Scalar:
        return self.values[name]

    def key(self) -> str:
        """A stable identity for de-duplication."""
        return stable_hash(dict(self.values))


# --------------------------------------------------------------------------------------------
# Search spaces
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Dimension:
    """Base of all dimensions. ``active_if`` maps another dimension's name to the values for which
    this one is active (all entries must hold, and the parent must itself be active)."""

    name: str
    active_if: Mapping[str, tuple[Scalar, ...]] = attrs.field(
        factory=dict, kw_only=True, converter=lambda d: {k: tuple(v) for k, v in d.items()}
    )

    def default(self) -> Scalar:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, rng: random.Random) -> Scalar:  # pragma: no cover - abstract
        raise NotImplementedError

    def contains(self, value: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


@attrs.frozen
class IntDimension(Dimension):
    """Integers in ``[low, high]`` (both inclusive); ``log`` samples log-uniformly."""

    low: int = attrs.field(kw_only=True)
    high: int = attrs.field(kw_only=True)
    log: bool = attrs.field(default=False, kw_only=True)

    def default(self) -> int:
        return self.low

    def sample(self, rng: random.Random) -> int:
        if self.log:
            return int(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))))
        return rng.randint(self.low, self.high)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high


@attrs.frozen
class RealDimension(Dimension):
    """Reals in ``[low, high]``; ``log`` samples log-uniformly."""

    low: float = attrs.field(kw_only=True)
    high: float = attrs.field(kw_only=True)
    log: bool = attrs.field(default=False, kw_only=True)

    def default(self) -> float:
        return float(self.low)

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high


@attrs.frozen
class CategoricalDimension(Dimension):
    """One of ``choices`` (ints, floats or strings); the first choice is the canonical default."""

    choices: tuple[Scalar, ...] = attrs.field(kw_only=True, converter=tuple)

    def default(self) -> Scalar:
        return self.choices[0]

    def sample(self, rng: random.Random) -> Scalar:
        return rng.choice(self.choices)

    def contains(self, value: Any) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices)


AnyDimension = Union[IntDimension, RealDimension, CategoricalDimension]


@attrs.frozen
class SearchSpace:
    """An ordered set of dimensions, some conditional on others.

    Order matters: a conditional dimension must come after the dimensions it depends on, so
    sampling and activity checks run in one pass.
    """

    dimensions: tuple[AnyDimension, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        seen: set[str] = set()
        for dim in self.dimensions:
            if dim.name in seen:
                raise ValueError(f"dimension {dim.name!r} is defined twice")
            for parent in dim.active_if:
                if parent not in seen:
                    raise ValueError(f"dimension {dim.name!r} depends on {parent!r}, which must come before it")
            seen.add(dim.name)

    def __iter__(self) -> Iterator[AnyDimension]:
        return iter(self.dimensions)

    def __len__(self) -> int:
        return len(self.dimensions)

    def __getitem__(self, name: str) -> AnyDimension:
        for dim in self.dimensions:
            if dim.name == name:
                return dim
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def active_dimensions(self, values: Mapping[str, Scalar]) -> list[AnyDimension]:
        """The dimensions that matter for ``values`` (conditions evaluated in order)."""
        active: dict[str, Scalar] = {}
        result = []
        for dim in self.dimensions:
            if all(p in active and active[p] in allowed for p, allowed in dim.active_if.items()):
                result.append(dim)
                if dim.name in values:
                    active[dim.name] = values[dim.name]
        return result

    def canonicalize(self, vector: ArchitectureVector | Mapping[str, Scalar]) -> ArchitectureVector:
        """Set every inactive dimension to its default, so equal architectures have equal vectors."""
        values = dict(vector.values if isinstance(vector, ArchitectureVector) else vector)
        active = {d.name for d in self.active_dimensions(values)}
        return ArchitectureVector({d.name: values[d.name] if d.name in active else d.default() for d in self.dimensions})

    def sample(self, rng: random.Random) -> ArchitectureVector:
        """Draw one vector uniformly per active dimension."""
        values: dict[str, Scalar] = {}
        active: set[str] = set()
        for dim in self.dimensions:
            if all(p in active and values[p] in allowed for p, allowed in dim.active_if.items()):
                values[dim.name] = dim.sample(rng)
                active.add(dim.name)
            else:
                values[dim.name] = dim.default()
        return ArchitectureVector(values)

    def violations(self, vector: ArchitectureVector) -> list[str]:
        """Why ``vector`` is not a point of this space (empty when it is)."""
        problems = [f"unknown dimension {k!r}" for k in vector.values if k not in self.names]
        for dim in self.active_dimensions(vector.values):
            if dim.name not in vector.values:
                problems.append(f"missing dimension {dim.name!r}")
            elif not dim.contains(vector.values[dim.name]):
                problems.append(f"{dim.name}={vector.values[dim.name]!r} is outside {describe_dimension(dim)}")
        return problems

    def contains(self, vector: ArchitectureVector) -> bool:
        return not self.violations(vector)

    def checked(self, vector: ArchitectureVector | Mapping[str, Scalar], family: str = "") -> ArchitectureVector:
        """``vector`` in canonical form; ``ValueError`` naming every problem when it is not a point
        of this space (the opening of an encoder's ``decode``). ``family`` names the space in the message."""
        if not isinstance(vector, ArchitectureVector):
            vector = ArchitectureVector(vector)
        problems = self.violations(vector)
        if problems:
            raise ValueError(f"vector is not a point of the {family + ' ' if family else ''}space: " + "; ".join(problems))
        return self.canonicalize(vector)

    def member(self, vector: ArchitectureVector | Mapping[str, Scalar]) -> ArchitectureVector | None:
        """``vector`` in canonical form, or None when it is not a point of this space (a vector of
        another space, say, replayed into a strategy)."""
        try:
            canonical = self.canonicalize(vector)
        except (KeyError, TypeError, ValueError):
            return None
        return canonical if self.contains(canonical) else None


def describe_dimension(dim: AnyDimension) -> str:
    """A short human description of a dimension's domain."""
    if isinstance(dim, CategoricalDimension):
        return "{" + ", ".join(map(str, dim.choices)) + "}"
    return f"[{dim.low}, {dim.high}]"


# --------------------------------------------------------------------------------------------
# Training, trials and experiments
# --------------------------------------------------------------------------------------------


@attrs.frozen
class TrainingSettings:
    """How every trial is trained. Part of the reuse key: a result trained differently is not reused."""

    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    learning_rate: float = 3e-3
    weight_decay: float = 1e-2
    epochs: int = 30
    batch_size: int = 64
    patience: int = 5
    val_fraction: float = 0.15
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        checks = [("learning_rate", self.learning_rate > 0, "must be positive"), ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
                  ("epochs", self.epochs >= 1, "must be at least 1"), ("batch_size", self.batch_size >= 2, "must be at least 2"),
                  ("patience", self.patience >= 1, "must be at least 1"), ("val_fraction", 0 < self.val_fraction < 1, "must be in (0, 1)")]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name} {rule}, got {getattr(self, name)}")

    def settings_hash(self) -> str:
        return stable_hash(converter.unstructure(self))


class TrialStatus(str, enum.Enum):
    """Life cycle of a trial. ``running`` rows left by a crash become ``interrupted`` on resume."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INVALID = "invalid"
    INTERRUPTED = "interrupted"


class ErrorClass(str, enum.Enum):
    """Why a trial did not complete; stored with the trial so failures can be counted by cause."""

    CONSTRAINT = "constraint_violation"
    INVALID_CODE = "invalid_code"
    IMPORT = "import_error"
    SHAPE = "shape_mismatch"
    NAN_LOSS = "nan_loss"
    RUNTIME = "runtime_error"
    TIMEOUT = "timeout"
    CRASH = "crash"


@attrs.frozen
class ExperimentError:
    """A failure with a class (for counting) and a message (for people)."""

    error_class: ErrorClass
    message: str


@attrs.frozen
class TrialResult:
    """What a runner reports for one trial. ``error`` is set exactly when the trial failed."""

    metrics: Mapping[str, float] = attrs.field(factory=dict)
    error: ExperimentError | None = None
    weights_path: str | None = None
    #: The learning curve: the validation score (``val_accuracy``, or ``val_rmse`` for regression)
    #: after each epoch trained so far, epoch 1 first. Empty for results that did not train (a
    #: lookup table) or came from an older version.
    curve: tuple[float, ...] = ()
    #: The epochs this result was allowed to train: ``training.epochs`` when its training ran to its
    #: end (early stopping included), fewer when a scheduler stopped or paused it at a milestone.
    #: None: not recorded (no scheduler, an older result): full fidelity.
    fidelity: int | None = None
    #: True when a scheduler stopped or paused the trial before its training's end: a result at
    #: low fidelity, never reused as a full one nor chosen as best over a full one.
    pruned: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(cls, error_class: ErrorClass, message: str) -> TrialResult:
        return cls(error=ExperimentError(error_class, message))


@attrs.frozen
class CodeGenAttempt:
    """One call to a code generator, kept with the trial for audit.

    ``stage`` is where the attempt ended: ``accepted``, ``provider`` (the call itself failed:
    connection, timeout, circuit open), ``extract`` (no code in the answer), ``validate`` (the
    static allow-list), ``probe`` (instantiate/forward in a sandboxed subprocess) or ``fidelity``
    (the module does not match the spec). ``prompt`` is the chat sent, one ``role: content`` block
    per message.
    """

    provider: str
    stage: str
    prompt: str = ""
    response: str = ""
    error: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@attrs.frozen
class CodeGenRecord:
    """How a trial's code was written: by whom, with which model and prompt template version,
    whether it came from the cache, and every attempt on the way. ``cache_key`` identifies
    (spec, input shape, classes, provider, model, template version)."""

    provider: str
    model: str = ""
    template_version: str = ""
    cache_key: str | None = None
    cached: bool = False
    fallback: bool = False
    attempts: tuple[CodeGenAttempt, ...] = ()


@attrs.define
class Trial:
    """One architecture evaluated within an experiment (mutable: it moves through its life cycle)."""

    experiment: str
    number: int
    vector: ArchitectureVector
    spec: ArchitectureSpec | None = None
    status: TrialStatus = TrialStatus.PENDING
    code: str | None = None
    result: TrialResult | None = None
    reused_from: int | None = None
    reuse_key: str | None = None
    codegen: CodeGenRecord | None = None
    id: int | None = None

    @property
    def spec_hash(self) -> str | None:
        return self.spec.canonical_hash() if self.spec is not None else None


@attrs.define
class Experiment:
    """A named search. ``config`` is the composed configuration it was started with."""

    name: str
    task: str
    config: Mapping[str, Any] = attrs.field(factory=dict)
    id: int | None = None


def reuse_key(spec: ArchitectureSpec, task: str, training: TrainingSettings) -> str:
    """The identity under which a finished result may be reused: architecture, task, training."""
    return stable_hash([spec.canonical_hash(), task, training.settings_hash()])



@attrs.frozen
class StrategySnapshot:
    """A search strategy's learnt state at one moment of an experiment, so a resume restores it
    and tells the strategy only the trials finished after it instead of replaying the whole
    history (at 100,000 trials the replay, not the search, was the resume's start-up time).

    ``strategy`` identifies the strategy and everything that shapes it (class, settings, seed,
    metric, direction): a resume with other ones ignores the snapshot and replays. Every trial
    of the experiment with an id up to ``told_through`` had been told to the strategy; ``told``
    holds the ids above it that had been told too (trials that finished while an older one was
    still running), as sorted inclusive ``(first, last)`` ranges. ``state`` is the strategy's own
    :meth:`~neuromosaic_core.interfaces.SearchStrategy.state_dict`, JSON-able.
    """

    strategy: str
    told_through: int
    told: tuple[tuple[int, int], ...]
    state: Mapping[str, Any]


def id_ranges(ids: Iterator[int] | set[int] | list[int]) -> tuple[tuple[int, int], ...]:
    """Sorted inclusive ``(first, last)`` ranges covering exactly ``ids``: 100,000 ids of one
    experiment are a handful of ranges, since trials are told roughly in id order."""
    ranges: list[list[int]] = []
    for i in sorted(ids):
        if ranges and i <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], i)
        else:
            ranges.append([i, i])
    return tuple((a, b) for a, b in ranges)


def expand_ranges(ranges: tuple[tuple[int, int], ...] | list[list[int]]) -> set[int]:
    """The ids :func:`id_ranges` compressed."""
    return {i for first, last in ranges for i in range(first, last + 1)}
