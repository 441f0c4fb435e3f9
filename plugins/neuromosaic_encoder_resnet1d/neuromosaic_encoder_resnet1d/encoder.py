"""The ``resnet1d`` encoder: residual networks of dilated 1-D convolutions for sequences and signals.

A decoded spec is a graph (:class:`~neuromosaic_core.model.GraphBuilder`) of a stem, residual
stages and a global pooling head; the classification head to ``num_classes`` is implied::

    stem:   conv1d(stem_channels, stem_kernel, stride 1, no bias) batchnorm activation
    stage i (i < stages), block b (b < blocks_i), stride s = 2 for the first block of stages 1.., else 1:
      main:     conv1d(width_i, kernel_i, s, dilation_i, no bias) batchnorm activation
                conv1d(width_i, kernel_i, 1, dilation_i, no bias) batchnorm [se(se_reduction)]
      shortcut: identity, or conv1d(width_i, 1, s, no bias) batchnorm where the width or length changes
      add(main, shortcut) activation
    head:   globalavgpool1d [dropout(p)]

Kernels are odd and padding is ``dilation * (kernel_size // 2)``, so a block keeps the length at
stride 1 and halves it (rounding up) at stride 2, exactly as its 1x1 shortcut does: every vector
decodes to a graph whose shapes meet at every ``add``, for any input length.

Stages after the first always downsample, so the stage boundaries of a spec are where the stride
is 2 and :meth:`ResNet1dEncoder.encode` can read the vector back from the graph alone.
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
from neuromosaic_encoder_resnet1d.settings import ResNet1dSettings

FAMILY = "resnet1d"
ACTIVATIONS = ("relu", "gelu", "silu")
STEM_CHANNELS = (16, 32, 64)
STEM_KERNELS = (3, 5, 7)
WIDTHS = (16, 32, 64, 128)
KERNELS = (3, 5, 7)
DILATIONS = (1, 2, 4)
SE_REDUCTIONS = (0, 4, 8)  # 0: no squeeze-and-excitation
DROPOUTS = (0.0, 0.1, 0.2)


def build_space(settings: ResNet1dSettings) -> SearchSpace:
    """The search space for ``settings`` (parents always before their conditional children)."""
    dims: list[Dimension] = [
        CategoricalDimension("activation", choices=ACTIVATIONS),
        CategoricalDimension("stem_channels", choices=STEM_CHANNELS),
        CategoricalDimension("stem_kernel", choices=STEM_KERNELS),
        IntDimension("stages", low=1, high=settings.max_stages),
    ]
    for i in range(settings.max_stages):
        stage = {"stages": tuple(range(i + 1, settings.max_stages + 1))}
        dims += [
            CategoricalDimension(f"width_{i}", choices=WIDTHS, active_if=stage),
            IntDimension(f"blocks_{i}", low=1, high=settings.max_blocks, active_if=stage),
            CategoricalDimension(f"kernel_{i}", choices=KERNELS, active_if=stage),
            CategoricalDimension(f"dilation_{i}", choices=DILATIONS, active_if=stage),
        ]
    dims += [
        CategoricalDimension("se_reduction", choices=SE_REDUCTIONS),
        CategoricalDimension("dropout", choices=DROPOUTS),
    ]
    return SearchSpace(dims)


def _conv(channels: int, kernel: int, stride: int, dilation: int = 1) -> Layer:
    params: dict[str, Scalar] = {"out_channels": channels, "kernel_size": kernel, "stride": stride, "bias": False}
    if dilation != 1:  # the default is left out, as the canonical form does
        params["dilation"] = dilation
    return Layer("conv1d", params)


def _show(layer: Layer) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in layer.params.items())
    return f"{layer.type}({args})"


class _Walker:
    """Reads a resnet1d graph forward from its input, following each node's consumers; explains
    what it expected when the graph is not of this family's shape."""

    def __init__(self, spec: ArchitectureSpec) -> None:
        try:
            self.graph: Graph = spec.graph()
        except SpecError as exc:
            raise ValueError(f"resnet1d cannot express this spec: {exc}") from None
        self.nodes = self.graph.nodes
        self.users = self.graph.consumers()

    def fail(self, message: str) -> ValueError:
        return ValueError(f"resnet1d cannot express this spec: {message}")

    def where(self, i: int) -> str:
        return f"node {i} {_show(self.nodes[i])}"

    def expect(self, i: int, kind: str) -> Layer:
        if self.nodes[i].type != kind:
            raise self.fail(f"expected {kind} at {self.where(i)}")
        return self.nodes[i]

    def next(self, i: int) -> int:
        """The one node reading node ``i``."""
        if len(self.users[i]) != 1:
            found = "nothing (it is the output)" if not self.users[i] else f"{len(self.users[i])} nodes"
            raise self.fail(f"{self.where(i)} should feed exactly one node, it feeds {found}")
        return self.users[i][0]

    def branch(self, start: int) -> tuple[list[int], int]:
        """The chain of nodes from ``start`` up to the ``add`` that ends it, and that add."""
        chain = []
        i = start
        while self.nodes[i].type != "add":
            chain.append(i)
            i = self.next(i)
        return chain, i

    def stem(self) -> tuple[dict[str, Scalar], str, int]:
        readers = [i for i, sources in enumerate(self.graph.inputs) if -1 in sources]
        if len(readers) != 1:
            raise self.fail(f"the input should feed one node (the stem conv1d), it feeds {len(readers)}")
        conv = self.expect(readers[0], "conv1d")
        bn = self.next(readers[0])
        self.expect(bn, "batchnorm")
        act = self.next(bn)
        fn = self.expect(act, "activation").params.get("fn")
        return {"stem_channels": conv.params.get("out_channels"), "stem_kernel": conv.params.get("kernel_size")}, str(fn), act

    def block(self, x: int) -> tuple[dict[str, Any], int]:
        """The residual block reading node ``x``: its settings and the node it ends with."""
        starts = self.users[x]
        if len(starts) == 1:
            raise self.fail(f"after {self.where(x)} expected a residual block or globalavgpool1d, found {self.where(starts[0])}")
        if len(starts) != 2:
            raise self.fail(f"{self.where(x)} should start a residual block (a main branch and a shortcut), it feeds {len(starts)} nodes")
        branches = [([], s) if self.nodes[s].type == "add" else self.branch(s) for s in starts]
        if branches[0][1] != branches[1][1]:
            raise self.fail(f"the two branches from {self.where(x)} do not meet at one add")
        add = branches[0][1]
        if len(self.graph.inputs[add]) != 2:
            raise self.fail(f"the add at node {add} should join two branches, it joins {len(self.graph.inputs[add])}")
        main, shortcut = sorted((chain for chain, _ in branches), key=len, reverse=True)
        if len(main) not in (5, 6):
            raise self.fail(f"the main branch from {self.where(x)} should be conv1d batchnorm activation conv1d batchnorm [se], "
                            f"found {' '.join(self.nodes[i].type for i in main)}")
        types = [self.nodes[i].type for i in main]
        if types[:5] != ["conv1d", "batchnorm", "activation", "conv1d", "batchnorm"] or types[5:] not in ([], ["se"]):
            raise self.fail(f"the main branch from {self.where(x)} should be conv1d batchnorm activation conv1d batchnorm [se], "
                            f"found {' '.join(types)}")
        first = self.nodes[main[0]].params
        block = {
            "width": first.get("out_channels"),
            "kernel": first.get("kernel_size"),
            "stride": first.get("stride"),
            "dilation": first.get("dilation", 1),
            "fn": self.nodes[main[2]].params.get("fn"),
            "se": self.nodes[main[5]].params.get("reduction") if len(main) == 6 else 0,
        }
        if [self.nodes[i].type for i in shortcut] not in ([], ["conv1d", "batchnorm"]):
            raise self.fail(f"the shortcut from {self.where(x)} should be the identity or conv1d(kernel_size=1) batchnorm")
        after = self.next(add)
        block["after"] = self.expect(after, "activation").params.get("fn")
        return block, after


class ResNet1dEncoder(ArchitectureEncoder):
    """Residual networks of dilated 1-D convolutions (see the module docstring)."""

    def __init__(self, settings: ResNet1dSettings | None = None) -> None:
        self.settings = settings if settings is not None else ResNet1dSettings()
        self._space = build_space(self.settings)

    def search_space(self) -> SearchSpace:
        return self._space

    # -- decode ---------------------------------------------------------------------------

    def decode(self, vector: ArchitectureVector | Mapping[str, Scalar]) -> ArchitectureSpec:
        v = self._space.checked(vector, "resnet1d").values
        act = Layer("activation", {"fn": v["activation"]})
        bn = Layer("batchnorm")
        g = GraphBuilder(FAMILY)
        x = g.chain([_conv(v["stem_channels"], v["stem_kernel"], 1), bn, act])
        channels = v["stem_channels"]
        for i in range(v["stages"]):
            width, kernel, dilation = v[f"width_{i}"], v[f"kernel_{i}"], v[f"dilation_{i}"]
            for b in range(v[f"blocks_{i}"]):
                stride = 2 if i > 0 and b == 0 else 1
                main = [_conv(width, kernel, stride, dilation), bn, act, _conv(width, kernel, 1, dilation), bn]
                if v["se_reduction"]:
                    main.append(Layer("se", {"reduction": v["se_reduction"]}))
                y = g.chain(main, start=x)
                if stride != 1 or channels != width:
                    x = g.chain([_conv(width, 1, stride), bn], start=x)
                g.merge("add", [y, x])
                x = g.add(act.type, act.params)
                channels = width
        g.add("globalavgpool1d")
        if v["dropout"] > 0:
            g.add("dropout", {"p": v["dropout"]})
        return g.build()

    # -- encode ---------------------------------------------------------------------------

    def encode(self, spec: ArchitectureSpec) -> ArchitectureVector:
        if not isinstance(spec, ArchitectureSpec):
            raise ValueError(f"expected an ArchitectureSpec, got {type(spec).__name__}")
        if spec.family != FAMILY:
            raise ValueError(f"resnet1d cannot express family {spec.family!r}; it knows {FAMILY}")
        if not spec.layers:
            raise ValueError("resnet1d cannot express this spec: it has no nodes")
        w = _Walker(spec)
        values, fn, x = w.stem()
        values["activation"] = fn
        blocks = []
        while not (len(w.users[x]) == 1 and w.nodes[w.users[x][0]].type == "globalavgpool1d"):
            if not w.users[x]:
                raise w.fail(f"the spec ends at {w.where(x)}; it should end with globalavgpool1d [dropout]")
            block, x = w.block(x)
            blocks.append(block)
        pool = w.users[x][0]
        values["dropout"] = 0.0
        if w.users[pool]:
            values["dropout"] = w.expect(w.next(pool), "dropout").params.get("p")
            if w.users[w.next(pool)]:
                raise w.fail(f"{w.where(w.users[w.next(pool)][0])} follows the head; the spec should end with globalavgpool1d [dropout]")
        values.update(self._stages(w, blocks, fn))
        full = {d.name: values.get(d.name, d.default()) for d in self._space}
        problems = self._space.violations(ArchitectureVector(full))
        if problems:
            raise w.fail("; ".join(problems))
        vector = self._space.canonicalize(full)
        decoded = self.decode(vector)
        if decoded.canonical() != spec.canonical():  # e.g. a bias or a 1x1 shortcut where the identity fits: not this family's form
            raise w.fail(f"not exactly: the nearest point decodes to {decoded.describe()!r}, not {spec.describe()!r}")
        return vector

    def _stages(self, w: _Walker, blocks: list[dict[str, Any]], fn: str) -> dict[str, Scalar]:
        """Group blocks into stages (a stride-2 block starts a new one) and check what they share."""
        if not blocks:
            raise w.fail("no residual block after the stem")
        if blocks[0]["stride"] != 1:
            raise w.fail("the first stage's first block must keep the length (stride 1)")
        stages: list[list[dict[str, Any]]] = []
        for block in blocks:
            if block["stride"] == 2 or not stages:
                stages.append([])
            elif block["stride"] != 1:
                raise w.fail(f"a block's stride must be 1 or 2, found {block['stride']!r}")
            stages[-1].append(block)
        if len(stages) > self.settings.max_stages:
            raise w.fail(f"{len(stages)} stages, more than max_stages={self.settings.max_stages}")
        values: dict[str, Scalar] = {"stages": len(stages), "se_reduction": blocks[0]["se"]}
        for i, stage in enumerate(stages):
            if len(stage) > self.settings.max_blocks:
                raise w.fail(f"stage {i} has {len(stage)} blocks, more than max_blocks={self.settings.max_blocks}")
            values[f"blocks_{i}"] = len(stage)
            for key, dim in (("width", "width"), ("kernel", "kernel"), ("dilation", "dilation")):
                seen = {b[key] for b in stage}
                if len(seen) != 1:
                    raise w.fail(f"the blocks of stage {i} must share one {key}, found {sorted(seen, key=repr)}")
                values[f"{dim}_{i}"] = stage[0][key]
        for key, what in (("se", "se_reduction"), ("fn", "activation"), ("after", "activation")):
            seen = {b[key] for b in blocks} | ({fn} if what == "activation" else set())
            if len(seen) != 1:
                raise w.fail(f"all blocks must share one {what}, found {sorted(seen, key=repr)}")
        return values
