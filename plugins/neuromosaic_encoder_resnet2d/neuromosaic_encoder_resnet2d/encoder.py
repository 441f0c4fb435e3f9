"""The ``resnet2d`` encoder: residual networks for ``(channels, height, width)`` images.

The network, for a decoded vector::

    stem:   conv2d(stem_width, 3x3, no bias) batchnorm2d relu
    stage s (s = 0 .. stages-1), width w_s = stem_width * width_multiplier**s (rounded to a multiple of 4),
      block b (b = 0 .. blocks_s-1); the first block of every stage after the first halves H and W:
        downsample=stride: its first k x k convolution has stride 2, the shortcut is a strided 1x1 projection
        downsample=pool:   maxpool2d(3, stride 2, padding 1) before the block
      basic:      conv2d(w, k) bn2d relu conv2d(w, k) bn2d [se(4)]
      bottleneck: conv2d(w/4, 1) bn2d relu conv2d(w/4, k) bn2d relu conv2d(w, 1) bn2d [se(4)]
      shortcut:   identity, or conv2d(w, 1, stride) bn2d where the width or the size changes
      add relu
    head:   globalavgpool2d (the linear classifier is implied, as for every spec)

Every downsampling keeps a 1x1 map at 1x1 (padded stride-2 convolutions and the padded 3x3 pool
never leave nothing), so every decoded spec has valid shapes on any image of at least 1x1: the
space needs no knowledge of the input size. ``max_stages`` bounds how often it halves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neuromosaic_core.interfaces import ArchitectureEncoder
from neuromosaic_core.model import (
    ArchitectureSpec,
    ArchitectureVector,
    CategoricalDimension,
    Dimension,
    Graph,
    GraphBuilder,
    IntDimension,
    Layer,
    Scalar,
    SearchSpace,
    SpecError,
)
from neuromosaic_encoder_resnet2d.settings import ResNet2dSettings

FAMILY = "resnet2d"
STEM_WIDTHS = (8, 16, 24, 32)
WIDTH_MULTIPLIERS = (1.0, 1.5, 2.0)
BLOCKS = ("basic", "bottleneck")
KERNELS = (3, 5)
SE = ("off", "on")
DOWNSAMPLING = ("stride", "pool")
SE_REDUCTION = 4
BOTTLENECK_REDUCTION = 4
POOL = {"kernel_size": 3, "stride": 2, "padding": 1}
RELU = Layer("activation", {"fn": "relu"})
BN = Layer("batchnorm2d")


def stage_width(stem_width: int, multiplier: float, stage: int) -> int:
    """Channels of stage ``stage``: the stem width times ``multiplier**stage``, to a multiple of 4."""
    return max(4, int(stem_width * multiplier**stage / 4 + 0.5) * 4)


def build_space(settings: ResNet2dSettings) -> SearchSpace:
    """The search space for ``settings`` (parents before their conditional children)."""
    several = {"stages": tuple(range(2, settings.max_stages + 1))}
    dims: list[Dimension] = [
        CategoricalDimension("stem_width", choices=STEM_WIDTHS),
        IntDimension("stages", low=1, high=settings.max_stages),
    ]
    for s in range(settings.max_stages):
        active = {"stages": tuple(range(s + 1, settings.max_stages + 1))} if s else {}
        dims.append(IntDimension(f"blocks_{s}", low=1, high=settings.max_blocks, active_if=active))
    dims += [
        CategoricalDimension("block", choices=BLOCKS),
        CategoricalDimension("kernel", choices=KERNELS),
        CategoricalDimension("se", choices=SE),
    ]
    if settings.max_stages > 1:
        dims += [
            CategoricalDimension("width_multiplier", choices=WIDTH_MULTIPLIERS, active_if=several),
            CategoricalDimension("downsample", choices=DOWNSAMPLING, active_if=several),
        ]
    return SearchSpace(dims)


def _conv(width: int, kernel: int, stride: int = 1) -> Layer:
    params: dict[str, Scalar] = {"out_channels": width, "kernel_size": kernel, "bias": False}
    if stride != 1:
        params["stride"] = stride
    return Layer("conv2d", params)


class ResNet2dEncoder(ArchitectureEncoder):
    """2-D residual networks in one space (see the module docstring)."""

    def __init__(self, settings: ResNet2dSettings | None = None) -> None:
        self.settings = settings if settings is not None else ResNet2dSettings()
        self._space = build_space(self.settings)

    def search_space(self) -> SearchSpace:
        return self._space

    # -- decode ---------------------------------------------------------------------------

    def decode(self, vector: ArchitectureVector | Mapping[str, Scalar]) -> ArchitectureSpec:
        v: Mapping[str, Any] = self._space.checked(vector, "resnet2d").values
        k, block, se = v["kernel"], v["block"], v["se"] == "on"
        g = GraphBuilder(FAMILY)
        x = g.chain([_conv(v["stem_width"], 3), BN, RELU])
        c_in = v["stem_width"]
        for s in range(v["stages"]):
            width = stage_width(v["stem_width"], v.get("width_multiplier", 1.0), s)
            for b in range(v[f"blocks_{s}"]):
                stride = 1
                if s > 0 and b == 0:
                    if v["downsample"] == "pool":
                        x = g.add("maxpool2d", POOL, inputs=x)
                    else:
                        stride = 2
                if block == "basic":
                    branch = [_conv(width, k, stride), BN, RELU, _conv(width, k), BN]
                else:
                    mid = max(1, width // BOTTLENECK_REDUCTION)
                    branch = [_conv(mid, 1), BN, RELU, _conv(mid, k, stride), BN, RELU, _conv(width, 1), BN]
                if se:
                    branch.append(Layer("se", {"reduction": SE_REDUCTION}))
                y = g.chain(branch, start=x)
                if stride != 1 or c_in != width:
                    x = g.chain([_conv(width, 1, stride), BN], start=x)
                g.merge("add", [y, x])
                x = g.add("activation", {"fn": "relu"})
                c_in = width
        g.add("globalavgpool2d", inputs=x)
        return g.build()

    # -- encode ---------------------------------------------------------------------------

    def encode(self, spec: ArchitectureSpec) -> ArchitectureVector:
        if not isinstance(spec, ArchitectureSpec):
            raise ValueError(f"expected an ArchitectureSpec, got {type(spec).__name__}")
        if spec.family != FAMILY:
            raise ValueError(f"resnet2d cannot express family {spec.family!r}; it knows only {FAMILY!r}")
        try:
            graph = spec.graph()
        except SpecError as exc:
            raise ValueError(f"resnet2d cannot express this spec: {exc}") from None
        values = _Walk(graph).values()
        full = {d.name: values.get(d.name, d.default()) for d in self._space}
        problems = self._space.violations(ArchitectureVector(full))
        if problems:
            raise ValueError("resnet2d cannot express this spec: " + "; ".join(problems))
        vector = self._space.canonicalize(full)
        decoded = self.decode(vector)
        if decoded != spec and decoded.canonical_hash() != spec.canonical_hash():
            raise ValueError(
                f"resnet2d cannot express this spec exactly: the nearest point decodes to {decoded.describe()!r}, not {spec.describe()!r}"
            )
        return vector


class _Walk:
    """Reads a resnet2d graph backwards from its output, block by block, whatever the node order.

    It only extracts the settings; :meth:`ResNet2dEncoder.encode` then decodes them and compares
    the result with the spec, so anything this walk does not check is still caught there.
    """

    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.users = graph.consumers()

    def fail(self, message: str) -> ValueError:
        return ValueError(f"resnet2d cannot express this spec: {message}")

    def node(self, i: int) -> Layer:
        if i < 0:
            raise self.fail("reached the network input before the stem")
        return self.g.nodes[i]

    def source(self, i: int) -> int:
        sources = self.g.inputs[i]
        if len(sources) != 1:
            raise self.fail(f"node {i} ({self.g.nodes[i].type}) should read one input, reads {len(sources)}")
        return sources[0]

    def chain_back(self, i: int) -> tuple[list[Layer], int]:
        """The single-input nodes from ``i`` back to the first node read by more than one node
        (the block's input), in forward order, and that node."""
        chain: list[Layer] = []
        while i >= 0 and len(self.users[i]) < 2 and self.g.nodes[i].type != "add":
            chain.append(self.g.nodes[i])
            i = self.source(i)
        return chain[::-1], i

    def values(self) -> dict[str, Scalar]:
        g = self.g
        if not g.nodes or g.nodes[g.output].type != "globalavgpool2d":
            raise self.fail("the last node must be globalavgpool2d")
        cur = self.source(g.output)
        blocks: list[dict[str, Any]] = []  # last block first
        while self.node(cur).type == "activation" and g.inputs[cur] and self.node(self.source(cur)).type == "add":
            add = self.source(cur)
            if len(g.inputs[add]) != 2:
                raise self.fail(f"a residual add must read two nodes, node {add} reads {len(g.inputs[add])}")
            (a, start_a), (b, start_b) = (self.chain_back(j) for j in g.inputs[add])
            if start_a != start_b:
                raise self.fail(f"the two inputs of the add at node {add} do not start from one node")
            branch, shortcut = (a, b) if len(a) >= len(b) else (b, a)
            convs = [layer for layer in branch if layer.type == "conv2d"]
            if len(convs) not in (2, 3):
                raise self.fail(f"a residual branch has 2 (basic) or 3 (bottleneck) convolutions, found {len(convs)}")
            strided = any(layer.params.get("stride", 1) != 1 for layer in branch + shortcut)
            pooled = start_a >= 0 and self.node(start_a).type == "maxpool2d"
            blocks.append({
                "block": "basic" if len(convs) == 2 else "bottleneck",
                "kernel": convs[0 if len(convs) == 2 else 1].params.get("kernel_size"),
                "se": "on" if branch[-1].type == "se" else "off",
                "width": convs[-1].params.get("out_channels"),
                "down": "pool" if pooled else "stride" if strided else None,
            })
            cur = self.source(start_a) if pooled else start_a
        blocks.reverse()
        if not blocks:
            raise self.fail("no residual block (add, relu) before the pooling head")
        stem = [self.node(cur)]
        while len(stem) < 3 and cur >= 0 and self.g.inputs[cur] != (-1,):
            cur = self.source(cur)
            stem.append(self.node(cur))
        if self.g.inputs[cur] != (-1,) or stem[-1].type != "conv2d":
            raise self.fail("the stem must be conv2d batchnorm2d relu, reading the input")
        stem_width = stem[-1].params.get("out_channels")
        stages: list[list[dict[str, Any]]] = []
        for i, block in enumerate(blocks):
            if i == 0 or block["down"] is not None:
                stages.append([])
            stages[-1].append(block)
        first = blocks[0]
        values: dict[str, Scalar] = {"stem_width": stem_width, "stages": len(stages), "block": first["block"],
                                     "kernel": first["kernel"], "se": first["se"]}
        for s, stage in enumerate(stages):
            values[f"blocks_{s}"] = len(stage)
        if len(stages) > 1:
            values["downsample"] = stages[1][0]["down"]
            widths = [stage[0]["width"] for stage in stages]
            for m in WIDTH_MULTIPLIERS:
                if isinstance(stem_width, int) and all(stage_width(stem_width, m, s) == w for s, w in enumerate(widths)):
                    values["width_multiplier"] = m
                    break
            else:
                raise self.fail(f"stage widths {widths} do not follow the stem width {stem_width} times one of {WIDTH_MULTIPLIERS}")
        return values
