"""Specs as graphs: wiring checks, the canonical hash (order- and name-free, sequential specs as
before), the builder and the one-line description."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuromosaic_core.model import (
    INPUT,
    ArchitectureSpec,
    GraphBuilder,
    Layer,
    SpecError,
    converter,
    stable_hash,
    to_json,
)

RELU = Layer("activation", {"fn": "relu"})


def conv(c: int, k: int = 3, s: int = 1) -> Layer:
    return Layer("conv1d", {"out_channels": c, "kernel_size": k, "stride": s})


def residual(g: GraphBuilder, x: str, c: int) -> str:
    y = g.chain([conv(c), Layer("batchnorm"), RELU, conv(c), Layer("batchnorm")], start=x)
    g.merge("add", [y, x])
    return g.add("activation", {"fn": "relu"})


def resnet(blocks: int = 3) -> ArchitectureSpec:
    g = GraphBuilder("resnet1d")
    x = g.chain([conv(16, 5), Layer("batchnorm"), RELU])
    for _ in range(blocks):
        x = residual(g, x, 16)
    g.add("globalavgpool1d")
    return g.build()


def test_a_sequential_spec_hashes_as_it_always_did():
    """Before graphs the hash was the hash of the spec's JSON (family, layers' type and params)."""
    spec = ArchitectureSpec("conv1d", [conv(8, 5, 2), Layer("batchnorm"), RELU, Layer("flatten"), Layer("linear", {"out_features": 32})])
    legacy = stable_hash({"family": "conv1d", "layers": [{"type": layer.type, "params": dict(layer.params)} for layer in spec.layers]})
    assert spec.canonical_hash() == legacy
    assert json.loads(to_json(spec)) == {"family": "conv1d", "layers": [{"type": layer.type, "params": dict(layer.params)}
                                                                        for layer in spec.layers]}


def test_a_chain_written_with_names_and_inputs_is_the_same_sequential_spec():
    plain = ArchitectureSpec("mlp", [Layer("linear", {"out_features": 8}), RELU])
    named = ArchitectureSpec("mlp", [Layer("linear", {"out_features": 8}, inputs=(INPUT,), name="fc"),
                                     Layer("activation", {"fn": "relu"}, inputs=("fc",), name="act")])
    assert named.is_sequential()
    assert named.canonical_hash() == plain.canonical_hash()
    assert named.canonical() == plain
    assert named.describe() == plain.describe() == "mlp: fc8 relu"


def test_parameters_at_their_default_do_not_change_the_architecture():
    assert ArchitectureSpec("c", [Layer("conv1d", {"out_channels": 8, "kernel_size": 3, "stride": 1, "dilation": 1})]).canonical_hash() == \
        ArchitectureSpec("c", [conv(8)]).canonical_hash()
    assert ArchitectureSpec("c", [Layer("conv1d", {"out_channels": 8, "kernel_size": 3, "stride": 1, "dilation": 2})]).canonical_hash() != \
        ArchitectureSpec("c", [conv(8)]).canonical_hash()


def test_a_sum_is_the_same_whichever_order_its_inputs_come_in_a_concatenation_is_not():
    def two_branches(merge: str, swap: bool) -> ArchitectureSpec:
        a, b = Layer("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 1}, inputs=(INPUT,), name="a"), \
            Layer("conv1d", {"out_channels": 4, "kernel_size": 5, "stride": 1}, inputs=(INPUT,), name="b")
        return ArchitectureSpec("g", [a, b, Layer(merge, inputs=("b", "a") if swap else ("a", "b"))])

    assert two_branches("add", False).canonical_hash() == two_branches("add", True).canonical_hash()
    assert two_branches("concat", False).canonical_hash() != two_branches("concat", True).canonical_hash()


def test_sharing_a_node_differs_from_two_copies_of_it():
    shared = ArchitectureSpec("g", [conv(4), Layer("add", inputs=("input", "input"))])
    g = GraphBuilder("g")
    a = g.add("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 1}, inputs=INPUT)
    b = g.add("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 1}, inputs=INPUT)
    twice = g.merge("add", [a, b])
    g2 = GraphBuilder("g")
    one = g2.add("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 1}, inputs=INPUT)
    g2.merge("add", [one, one])
    assert twice and shared
    assert g.build().canonical_hash() != g2.build().canonical_hash()


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[tuple[str, dict, list[int]]], random.Random]:
    """A random DAG: (type, params, input positions) per node, -1 the input, all leading to the last node."""
    n = draw(st.integers(1, 9))
    nodes: list[tuple[str, dict, list[int]]] = []
    for i in range(n):
        kind = draw(st.sampled_from(["conv", "act", "add", "concat", "identity", "zero"]))
        if kind in ("add", "concat"):
            sources = draw(st.lists(st.integers(-1, i - 1), min_size=2, max_size=3))
        else:
            sources = [draw(st.integers(-1, i - 1))]
        params = {"out_channels": draw(st.sampled_from([4, 8])), "kernel_size": 3, "stride": 1} if kind == "conv" else \
            {"fn": draw(st.sampled_from(["relu", "gelu"]))} if kind == "act" else {}
        nodes.append(({"conv": "conv1d", "act": "activation"}.get(kind, kind), params, sources))
    used = {j for _, _, sources in nodes for j in sources}
    sinks = [i for i in range(n) if i not in used]
    if len(sinks) > 1:
        nodes.append(("concat", {}, sinks))
    return nodes, random.Random(draw(st.integers(0, 10**6)))


def _write(nodes: list[tuple[str, dict, list[int]]], order: list[int], names: list[str]) -> ArchitectureSpec:
    return ArchitectureSpec("g", [Layer(nodes[i][0], nodes[i][1], tuple(names[j] if j >= 0 else INPUT for j in nodes[i][2]), names[i])
                                  for i in order])


def _random_topological_order(nodes: list[tuple[str, dict, list[int]]], rng: random.Random) -> list[int]:
    remaining, order = set(range(len(nodes))), []
    while remaining:
        ready = sorted(i for i in remaining if all(j < 0 or j in order for j in nodes[i][2]))
        pick = rng.choice(ready if len(remaining) > 1 else ready)
        if pick == len(nodes) - 1 and len(ready) > 1:
            pick = next(i for i in ready if i != len(nodes) - 1)
        order.append(pick)
        remaining.remove(pick)
    return order


@settings(max_examples=150, deadline=None)
@given(dags())
def test_the_canonical_hash_ignores_node_order_and_names(case: tuple[list[tuple[str, dict, list[int]]], random.Random]):
    nodes, rng = case
    written = _write(nodes, list(range(len(nodes))), [f"n{i}" for i in range(len(nodes))])
    order = _random_topological_order(nodes, rng)
    names = [f"node_{rng.randrange(10**6)}_{i}" for i in range(len(nodes))]
    shuffled = _write(nodes, order, names)
    assert shuffled.canonical_hash() == written.canonical_hash()
    assert shuffled.describe() == written.describe()
    assert "\n" not in written.describe()
    canonical = written.canonical()
    assert canonical.canonical_hash() == written.canonical_hash() and canonical.canonical() == canonical
    assert converter.structure(json.loads(to_json(shuffled)), ArchitectureSpec) == shuffled


@pytest.mark.parametrize(("layers", "message"), [
    ([Layer("add", inputs=("a", "input")), Layer("identity", name="a")], "'a', which comes after it"),
    ([Layer("add", inputs=("nope", "input"))], "'nope', which is no node's name"),
    ([RELU, Layer("identity", name="input")], "reserved"),
    ([Layer("identity", name="a"), Layer("identity", name="a")], "used twice"),
    ([Layer("identity", name="a"), Layer("identity", inputs=("input",))], "node 0 (a) is not used by any node"),
])  # fmt: skip
def test_broken_wiring_is_refused_with_the_node_named(layers: list[Layer], message: str):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ArchitectureSpec("g", layers).graph()


def test_a_single_input_may_be_written_as_a_name():
    assert Layer("identity", inputs="a").inputs == ("a",) == Layer("identity", inputs=["a"]).inputs


def test_the_builder_writes_plain_specs_for_chains_and_names_only_what_is_read():
    g = GraphBuilder("mlp")
    g.chain([Layer("linear", {"out_features": 8}), RELU])
    assert g.build() == ArchitectureSpec("mlp", [Layer("linear", {"out_features": 8}), RELU])
    spec = resnet(1)
    named = [layer.name for layer in spec.layers if layer.name]
    assert named == ["n2", "n7"]  # the stem's output and the main branch's end, both read by the sum
    assert spec.layers[-3] == Layer("add", inputs=("n7", "n2"))
    assert spec.layers[-2] == RELU  # reads the node before it: no inputs written
    with pytest.raises(SpecError, match="used twice"):
        g.add("identity", name="n0")


def test_describe_shows_blocks_and_their_repeats_on_one_line():
    assert resnet(3).describe() == "resnet1d: conv16k5s1 bn relu [(conv16k3s1 bn relu conv16k3s1 bn + id) relu]x3 gap"
    two = GraphBuilder("g")
    a = two.add("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 1}, inputs=INPUT)
    b = two.add("maxpool1d", {"kernel_size": 3, "stride": 1, "padding": 1}, inputs=INPUT)
    two.merge("concat", [a, b])
    assert two.build().describe() == "g: cat(conv4k3s1, max3s1p1)"


def test_describe_writes_a_cell_as_nas_bench_201_does():
    def edge(g: GraphBuilder, op: str, src: str) -> str:
        if op == "conv":
            return g.chain([RELU, Layer("conv2d", {"out_channels": 8, "kernel_size": 3, "bias": False}), Layer("batchnorm2d")], start=src)
        return g.add({"skip": "identity", "none": "zero"}[op], inputs=src)

    g = GraphBuilder("nb201")
    x = g.chain([Layer("conv2d", {"out_channels": 8, "kernel_size": 3, "bias": False}), Layer("batchnorm2d")])
    for _ in range(2):
        n1 = edge(g, "conv", x)
        n2 = g.merge("add", [edge(g, "skip", n1), edge(g, "conv", x)])
        x = g.merge("add", [edge(g, "none", n1), edge(g, "conv", n2), edge(g, "skip", x)])
    cell = "{|relu conv8k3x3s1nb bn2d~0|+|relu conv8k3x3s1nb bn2d~0|id~1|+|id~0|zero~1|relu conv8k3x3s1nb bn2d~2|}"
    assert g.build().describe() == f"nb201: conv8k3x3s1nb bn2d [{cell}]x2"
