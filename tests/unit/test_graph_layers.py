"""The analytic shapes, parameters and FLOPs of every node type, checked against torch's own modules.

Each case builds the node with torch directly (independent of any code generator), runs it on a
small batch and compares every node's output shape, the parameter count and the FLOPs that
``FlopCounterMode`` counts (linear and convolution layers) with :func:`neuromosaic_core.layers.analyse`.
"""

from __future__ import annotations

import pytest

from neuromosaic_core.constraints import Constraints, ConstraintValidator
from neuromosaic_core.layers import LayerError, analyse, conv_geometry, pool_geometry, se_hidden
from neuromosaic_core.model import INPUT, ArchitectureSpec, GraphBuilder, Layer

torch = pytest.importorskip("torch")
nn = torch.nn


class _SE(nn.Module):
    def __init__(self, c: int, h: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, h), nn.Linear(h, c)

    def forward(self, x):  # noqa: ANN001, ANN201
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.flatten(2).mean(2)))))
        return x * w.reshape(*w.shape, *[1] * (x.dim() - 2))


def reference(layer: Layer, in_shape: tuple[int, ...]):  # noqa: ANN201 - a torch callable
    """The torch module for a node, written from torch's documentation, not from the template."""
    t, p = layer.type, layer.params
    if t == "linear":
        return nn.Linear(in_shape[0], p["out_features"])
    if t in ("conv1d", "conv2d"):
        k, s, d, pad = conv_geometry(layer)
        in_c = in_shape[0] if len(in_shape) > 1 else 1
        groups = in_c if p.get("groups") == "depthwise" else p.get("groups", 1)
        cls = nn.Conv1d if t == "conv1d" else nn.Conv2d
        conv = cls(in_c, p["out_channels"], k, stride=s, padding=pad, dilation=d, groups=groups, bias=bool(p.get("bias", True)))
        return nn.Sequential(nn.Unflatten(1, (1, in_shape[0])), conv) if len(in_shape) == 1 else conv
    if t in ("maxpool1d", "avgpool1d", "maxpool2d", "avgpool2d"):
        k, s, pad = pool_geometry(layer)
        cls = {"maxpool1d": nn.MaxPool1d, "avgpool1d": nn.AvgPool1d, "maxpool2d": nn.MaxPool2d, "avgpool2d": nn.AvgPool2d}[t]
        return cls(k, s, pad) if t.startswith("max") else cls(k, s, pad, count_include_pad=False)
    simple = {"batchnorm": lambda: nn.BatchNorm1d(in_shape[0]), "batchnorm2d": lambda: nn.BatchNorm2d(in_shape[0]),
              "layernorm": lambda: nn.LayerNorm(in_shape[-1]), "flatten": nn.Flatten, "identity": nn.Identity,
              "dropout": lambda: nn.Dropout(p.get("p", 0.0)),
              "globalavgpool1d": lambda: nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten()),
              "globalavgpool2d": lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
              "se": lambda: _SE(in_shape[0], se_hidden(layer, in_shape[0])),
              "activation": lambda: {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[p["fn"]]()}
    return simple[t]()


def run_reference(spec: ArchitectureSpec, input_shape: tuple[int, ...], num_classes: int):  # noqa: ANN201
    """Build the spec with torch, run it, return (output shapes per node, params, counted FLOPs per sample)."""
    from torch.utils.flop_counter import FlopCounterMode

    analysis = analyse(spec, input_shape, num_classes)
    modules = nn.ModuleList()
    for info in analysis.layers:
        modules.append(reference(info.layer, info.in_shape) if info.layer.type not in ("add", "concat", "zero") else nn.Identity())
    head = nn.Linear(analysis.head_in_features, num_classes)
    batch = 3

    def forward(x):  # noqa: ANN001, ANN202
        values = []
        for i, info in enumerate(analysis.layers):
            args = [values[j] if j >= 0 else x for j in analysis.inputs[i]]
            t = info.layer.type
            values.append(sum(args[1:], args[0]) if t == "add" else torch.cat(args, 1) if t == "concat"
                          else torch.zeros_like(args[0]) if t == "zero" else modules[i](args[0]))
        return values, head((values[-1] if values else x).flatten(1))

    modules.eval()
    with torch.no_grad():
        values, out = forward(torch.randn(batch, *input_shape))
        with FlopCounterMode(display=False) as counter:
            forward(torch.randn(1, *input_shape))
    params = sum(p.numel() for p in [*modules.parameters(), *head.parameters()])
    assert tuple(out.shape) == (batch, num_classes)
    return [tuple(v.shape[1:]) for v in values], params, counter.get_total_flops()


def conv2d(c: int, k: int = 3, s: int = 1, **extra) -> Layer:  # noqa: ANN003
    return Layer("conv2d", {"out_channels": c, "kernel_size": k, "stride": s, **extra})


RELU = Layer("activation", {"fn": "relu"})

SINGLE_NODES = [
    ((40,), Layer("linear", {"out_features": 7})),
    ((40,), Layer("conv1d", {"out_channels": 4, "kernel_size": 5, "stride": 2})),
    ((3, 17), Layer("conv1d", {"out_channels": 6, "kernel_size": 3, "stride": 1, "dilation": 4})),
    ((4, 16), Layer("conv1d", {"out_channels": 8, "kernel_size": 4, "stride": 3, "dilation": 2, "groups": 2, "bias": False})),
    ((4, 16), Layer("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 1, "groups": "depthwise"})),
    ((3, 9, 7), conv2d(5, 3, 2)),
    ((3, 9, 7), conv2d(6, 5, 1, dilation=2, groups=3, bias=False)),
    ((4, 8, 8), conv2d(8, 3, 1, groups="depthwise")),
    ((4, 8, 8), conv2d(2, 1, 2)),
    ((4, 8, 8), conv2d(4, 4, 2)),
    ((4, 9, 9), Layer("batchnorm2d")),
    ((4, 9), Layer("batchnorm")),
    ((4, 9, 9), Layer("maxpool2d", {"kernel_size": 3, "stride": 2, "padding": 1})),
    ((4, 9, 9), Layer("avgpool2d", {"kernel_size": 3, "stride": 1, "padding": 1})),
    ((4, 9, 9), Layer("avgpool2d", {"kernel_size": 2})),
    ((4, 11), Layer("maxpool1d", {"kernel_size": 3, "stride": 2, "padding": 1})),
    ((4, 11), Layer("avgpool1d", {"kernel_size": 2})),
    ((4, 11), Layer("globalavgpool1d")),
    ((4, 5, 6), Layer("globalavgpool2d")),
    ((16, 5, 6), Layer("se", {"reduction": 4})),
    ((6, 10), Layer("se", {"reduction": 16})),
    ((6, 10), Layer("identity")),
    ((6, 10), Layer("layernorm")),
    ((6, 10), Layer("activation", {"fn": "sigmoid"})),
    ((3, 4, 5), Layer("flatten")),
]


@pytest.mark.parametrize(("input_shape", "layer"), SINGLE_NODES, ids=lambda v: v.type if isinstance(v, Layer) else str(v))
def test_every_node_type_matches_torch(input_shape: tuple[int, ...], layer: Layer):
    spec = ArchitectureSpec("t", [layer])
    analysis = analyse(spec, input_shape, 3)
    shapes, params, flops = run_reference(spec, input_shape, 3)
    assert [i.out_shape for i in analysis.layers] == shapes
    assert analysis.params == params
    assert analysis.matmul_flops == flops


def residual_2d(g: GraphBuilder, x: str, c_in: int, c: int, stride: int) -> str:
    y = g.chain([conv2d(c, 3, stride, bias=False), Layer("batchnorm2d"), RELU, conv2d(c, 3, 1, bias=False), Layer("batchnorm2d"),
                 Layer("se", {"reduction": 4})], start=x)
    if stride != 1 or c_in != c:
        x = g.chain([conv2d(c, 1, stride, bias=False), Layer("batchnorm2d")], start=x)
    g.merge("add", [y, x])
    return g.add("activation", {"fn": "relu"})


def small_resnet() -> ArchitectureSpec:
    g = GraphBuilder("resnet2d")
    x = g.chain([conv2d(8), Layer("batchnorm2d"), RELU, Layer("maxpool2d", {"kernel_size": 3, "stride": 2, "padding": 1})])
    x = residual_2d(g, x, 8, 8, 1)
    x = residual_2d(g, x, 8, 16, 2)
    g.add("globalavgpool2d", inputs=x)
    return g.build()


def cells() -> ArchitectureSpec:
    """Two NAS-Bench-201-style cells (every edge op) joined by concat, dilated 1-D convs, a zero edge."""
    g = GraphBuilder("cells")
    x = g.chain([Layer("conv1d", {"out_channels": 6, "kernel_size": 3, "stride": 1}), Layer("batchnorm")])
    for _ in range(2):
        n1 = g.chain([RELU, Layer("conv1d", {"out_channels": 6, "kernel_size": 3, "stride": 1, "dilation": 2, "bias": False}),
                      Layer("batchnorm")], start=x)
        skip = g.add("identity", inputs=x)
        pool = g.add("avgpool1d", {"kernel_size": 3, "stride": 1, "padding": 1}, inputs=n1)
        n2 = g.merge("add", [skip, pool])
        cut = g.add("zero", inputs=n1)
        x = g.merge("add", [cut, n2, g.chain([RELU, Layer("conv1d", {"out_channels": 6, "kernel_size": 1, "stride": 1})], start=n2)])
    wide = g.merge("concat", [x, g.add("conv1d", {"out_channels": 2, "kernel_size": 5, "stride": 1}, inputs=x)])
    g.add("globalavgpool1d", inputs=wide)
    return g.build()


@pytest.mark.parametrize(("spec", "input_shape"), [(small_resnet(), (3, 16, 16)), (cells(), (40,))], ids=["resnet2d", "cells"])
def test_graphs_match_torch_node_by_node(spec: ArchitectureSpec, input_shape: tuple[int, ...]):
    analysis = analyse(spec, input_shape, 10)
    shapes, params, flops = run_reference(spec, input_shape, 10)
    assert [i.out_shape for i in analysis.layers] == shapes
    assert analysis.params == params
    assert analysis.matmul_flops == flops
    assert analysis.flops > analysis.matmul_flops  # the documented extra for element-wise work


def test_depth_is_the_longest_path_of_weight_layers():
    assert analyse(small_resnet(), (3, 16, 16), 10).depth == 1 + 2 + 2 + 1  # stem, two blocks of two convs, head
    # cells: stem, then per cell the longest path is relu-conv(dilated) -> ... -> relu-conv1x1 (the zero edge carries nothing)
    assert analyse(cells(), (40,), 10).depth == 1 + 2 + 2 + 1 + 1


@pytest.mark.parametrize(("layers", "input_shape", "message"), [
    ([Layer("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 1}, name="a"),
      Layer("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 2}, name="b"), Layer("add", inputs=("a", "b"))], (40,),
     r"add of shapes \(4, 40\) and \(4, 20\)"),  # stride 2 halves one branch: the sum cannot be taken
    ([Layer("conv2d", {"out_channels": 4, "kernel_size": 3}, name="a"),
      Layer("conv2d", {"out_channels": 8, "kernel_size": 3}, name="b"), Layer("add", inputs=("a", "b"))], (1, 8, 8),
     r"add of shapes \(4, 8, 8\) and \(8, 8, 8\): every input must have the same shape \[node 2\]"),
    ([Layer("conv2d", {"out_channels": 4, "kernel_size": 3, "stride": 2}, name="a"), Layer("identity", inputs=("input",), name="b"),
      Layer("concat", inputs=("a", "b"))], (1, 8, 8), r"concat of shapes \(4, 4, 4\) and \(1, 8, 8\)"),
    ([Layer("conv2d", {"out_channels": 4, "kernel_size": 3})], (40,), r"conv2d expects a \(channels, height, width\) input"),
    ([Layer("conv2d", {"out_channels": 6, "kernel_size": 3, "groups": 4})], (4, 8, 8), "groups=4 must divide"),
    ([Layer("maxpool2d", {"kernel_size": 2, "padding": 2})], (4, 8, 8), "padding=2 must be"),
    ([Layer("add", inputs=(INPUT,))], (4, 8, 8), "add needs two or more inputs"),
    ([Layer("identity", name="a"), Layer("relu", inputs=("a", "input"))], (4,), "unknown layer type 'relu'"),
    ([Layer("se", {"reduction": 2})], (8,), "se expects a"),
])  # fmt: skip
def test_a_graph_that_cannot_work_is_refused_before_code(layers: list[Layer], input_shape: tuple[int, ...], message: str):
    spec = ArchitectureSpec("g", layers)
    with pytest.raises(LayerError, match=message):
        analyse(spec, input_shape, 10)
    result = ConstraintValidator(Constraints(), input_shape, 10).validate_constraints(spec)
    assert not result.ok and result.violations[0].constraint == "shape"


def test_budgets_apply_to_graphs():
    spec = small_resnet()
    a = analyse(spec, (3, 16, 16), 10)
    over = ConstraintValidator(Constraints(max_params=a.params - 1, max_flops=a.flops - 1, max_depth=a.depth - 1), (3, 16, 16), 10)
    assert [v.constraint for v in over.validate_constraints(spec).violations] == ["max_params", "max_flops", "max_depth"]
    assert ConstraintValidator(Constraints(a.params, a.flops, a.depth), (3, 16, 16), 10).validate_constraints(spec).ok


def nas_bench_201(cell: str, channels: int = 16, cells_per_stage: int = 5) -> ArchitectureSpec:
    """NAS-Bench-201's macro skeleton (Dong & Yang 2020) around one cell string: stem conv3x3+BN,
    three stages of cells with a residual reduction block (ReLU-conv3x3/2-BN, ReLU-conv3x3-BN,
    shortcut avgpool2 + conv1x1) between them, then BN, ReLU and global pooling."""

    def rcb(c: int, k: int, s: int = 1) -> list[Layer]:
        return [RELU, Layer("conv2d", {"out_channels": c, "kernel_size": k, "stride": s, "bias": False}), Layer("batchnorm2d")]

    ops = {}
    for j, part in enumerate(cell.split("+"), 1):
        for token in part.strip("|").split("|"):
            op, source = token.split("~")
            ops[(j, int(source))] = op

    def edge(g: GraphBuilder, op: str, src: str, c: int) -> str:
        if op.startswith("nor_conv"):
            return g.chain(rcb(c, 3 if op.endswith("3x3") else 1), start=src)
        if op == "avg_pool_3x3":
            return g.add("avgpool2d", {"kernel_size": 3, "stride": 1, "padding": 1}, inputs=src)
        return g.add("identity" if op == "skip_connect" else "zero", inputs=src)

    g = GraphBuilder("nb201_cell")
    x = g.chain([Layer("conv2d", {"out_channels": channels, "kernel_size": 3, "bias": False}), Layer("batchnorm2d")])
    c = channels
    for stage in range(3):
        if stage:
            c *= 2
            main = g.chain(rcb(c, 3, 2) + rcb(c, 3), start=x)
            short = g.chain([Layer("avgpool2d", {"kernel_size": 2}), Layer("conv2d", {"out_channels": c, "kernel_size": 1, "bias": False})], start=x)
            x = g.merge("add", [short, main])
        for _ in range(cells_per_stage):
            nodes = [x]
            for j in range(1, 4):
                edges = [edge(g, ops[(j, i)], nodes[i], c) for i in range(j)]
                nodes.append(edges[0] if len(edges) == 1 else g.merge("add", edges))
            x = nodes[3]
    g.chain([Layer("batchnorm2d"), RELU, Layer("globalavgpool2d")], start=x)
    return g.build()


LARGEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_nas_bench_201_networks_match_torch_and_fit_the_default_budget():
    """The largest cell (every edge a 3x3 conv) at the benchmark's widths (C=16, N=5, CIFAR's
    3x32x32, 10 classes): torch agrees with the analysis, and the default constraints (conf/config.yaml)
    admit it, so every cell of the space passes (any other cell swaps convolutions for cheaper ops)."""
    from pathlib import Path

    import yaml

    spec = nas_bench_201(LARGEST, channels=4, cells_per_stage=1)  # small enough for torch here; same wiring
    analysis = analyse(spec, (3, 16, 16), 10)
    shapes, params, flops = run_reference(spec, (3, 16, 16), 10)
    assert ([i.out_shape for i in analysis.layers], analysis.params, analysis.matmul_flops) == (shapes, params, flops)

    full = analyse(nas_bench_201(LARGEST), (3, 32, 32), 10)
    defaults = yaml.safe_load((Path(__file__).parents[2] / "conf" / "config.yaml").read_text())["constraints"]
    result = ConstraintValidator(Constraints(**defaults), (3, 32, 32), 10).validate_constraints(nas_bench_201(LARGEST))
    assert result.ok, result.message()
    assert full.depth == 1 + 3 * 5 * 3 + 2 * 2 + 1  # stem, 15 cells of 3 chained convs, two reduction blocks, head
    assert nas_bench_201(LARGEST).describe().count("]x5") == 3
