"""Tests of the template code generator: the core contract plus rendering checks that run the code.

Specs are written by hand or drawn by a small local generator (no encoder plugin needed).
"""

from __future__ import annotations

import subprocess
import sys

import neuromosaic_codegen_template as plugin
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from neuromosaic_codegen_template.generator import TemplateCodeGen
from neuromosaic_codegen_template.settings import TemplateSettings

from neuromosaic_core.codegen import validate_code
from neuromosaic_core.interfaces import CodeGenRequest
from neuromosaic_core.layers import ACTIVATIONS, LayerError, analyse, infer_layer
from neuromosaic_core.model import ArchitectureSpec, GraphBuilder, Layer
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing.codegen import CodeGenContract

torch = pytest.importorskip("torch")


def lin(n: int) -> Layer:
    return Layer("linear", {"out_features": n})


def act(fn: str = "relu") -> Layer:
    return Layer("activation", {"fn": fn})


def conv(c: int, k: int = 3, s: int = 1) -> Layer:
    return Layer("conv1d", {"out_channels": c, "kernel_size": k, "stride": s})


DROP = Layer("dropout", {"p": 0.1})

SPECS = [
    ArchitectureSpec("mlp", [lin(64), act(), DROP, lin(32), act("gelu")]),
    ArchitectureSpec("mlp", [lin(32), Layer("batchnorm"), act("silu"), lin(16), Layer("layernorm"), act("tanh")]),
    ArchitectureSpec("mlp", []),
    ArchitectureSpec(
        "conv1d",
        [conv(16, 5), Layer("batchnorm"), act("gelu"), Layer("maxpool1d", {"kernel_size": 2}),
         conv(32, 3, 2), act("gelu"), Layer("avgpool1d", {"kernel_size": 2}), Layer("flatten"), lin(64), act(), DROP],
    ),
    ArchitectureSpec("conv1d", [conv(8, 7, 2), Layer("layernorm"), act()]),  # head flattens (8, 20) itself
    ArchitectureSpec("hybrid", [lin(24), act(), conv(4, 3), act(), Layer("flatten"), lin(16)]),  # conv on a vector mid-network
]  # fmt: skip


class TestTemplateContract(CodeGenContract):
    exact_params = True

    def make_provider(self) -> TemplateCodeGen:
        return TemplateCodeGen(TemplateSettings())

    def sample_specs(self) -> list[ArchitectureSpec]:
        return SPECS


class TestTemplateContractSequenceInput(CodeGenContract):
    """(channels, length) inputs: convolutions take them directly, linear layers need a flatten."""

    exact_params = True
    input_shape = (3, 24)
    num_classes = 4

    def make_provider(self) -> TemplateCodeGen:
        return TemplateCodeGen(TemplateSettings(shape_comments=False))

    def sample_specs(self) -> list[ArchitectureSpec]:
        return [
            ArchitectureSpec("conv1d", [conv(8), Layer("batchnorm"), act(), Layer("maxpool1d", {"kernel_size": 2})]),
            ArchitectureSpec("mlp", [Layer("flatten"), lin(32), Layer("layernorm"), act("tanh")]),
            ArchitectureSpec("mlp", [Layer("layernorm"), DROP]),
        ]


# -- a tiny local spec generator: any valid sequence of layers over the whole vocabulary -------


@st.composite
def requests(draw: st.DrawFn) -> CodeGenRequest:
    input_shape = draw(st.sampled_from([(40,), (7,), (1,), (3, 24), (2, 5)]))
    shape = input_shape
    layers = []
    for _ in range(draw(st.integers(0, 8))):
        options = ["conv1d", "batchnorm", "layernorm", "activation", "dropout", "flatten"]
        if len(shape) == 1:
            options.append("linear")
        elif shape[1] >= 2:
            options += ["maxpool1d", "avgpool1d"]
        kind = draw(st.sampled_from(options))
        params: dict = {}
        if kind == "linear":
            params = {"out_features": draw(st.integers(1, 24))}
        elif kind == "conv1d":
            params = {"out_channels": draw(st.integers(1, 8)), "kernel_size": draw(st.integers(1, 6)),
                      "stride": draw(st.integers(1, 3))}  # fmt: skip
        elif kind == "activation":
            params = {"fn": draw(st.sampled_from(ACTIVATIONS))}
        elif kind == "dropout":
            params = {"p": draw(st.sampled_from([0.0, 0.25, 0.5]))}
        elif kind in ("maxpool1d", "avgpool1d"):
            params = {"kernel_size": draw(st.integers(1, min(3, shape[1])))}
        layer = Layer(kind, params)
        shape = infer_layer(layer, shape).out_shape
        layers.append(layer)
    family = draw(st.sampled_from(["mlp", "conv1d", "x"]))
    return CodeGenRequest(ArchitectureSpec(family, layers), input_shape, draw(st.integers(1, 5)))


def build(code: str) -> object:
    validate_code(code)
    namespace: dict = {}
    exec(compile(code, "<generated>", "exec"), namespace)  # validated above; tests only
    return namespace["Net"]()


@settings(max_examples=120, deadline=None)
@given(requests())
def test_generated_code_runs_and_counts_match(request: CodeGenRequest) -> None:
    code = TemplateCodeGen().generate_code(request)
    net = build(code)
    net.eval()
    x = torch.randn(2, *request.input_shape)
    with torch.no_grad():
        out = net(x)
    assert tuple(out.shape) == (2, request.num_classes)
    analysis = analyse(request.spec, request.input_shape, request.num_classes)
    assert sum(p.numel() for p in net.parameters()) == analysis.params, code
    # every body layer produces the shape analyse() predicts
    body = net.body
    modules = list(body) if isinstance(body, torch.nn.Sequential) else [] if isinstance(body, torch.nn.Identity) else [body]
    shapes = []
    h = x
    with torch.no_grad():
        for module in modules:
            h = module(h)
            if not isinstance(module, torch.nn.Unflatten):
                shapes.append(tuple(h.shape[1:]))
    assert shapes == [info.out_shape for info in analysis.layers]


def test_parameter_count_per_layer_type() -> None:
    """Cross-check the core's analytic count for each parameterised layer type separately."""
    cases = {
        "linear": ((40,), [lin(7)]),
        "conv1d": ((3, 20), [conv(5, 4, 2)]),
        "batchnorm (vector)": ((40,), [Layer("batchnorm")]),
        "batchnorm (sequence)": ((3, 20), [Layer("batchnorm")]),
        "layernorm (vector)": ((40,), [Layer("layernorm")]),
        "layernorm (sequence)": ((3, 20), [Layer("layernorm")]),
    }
    for name, (shape, layers) in cases.items():
        request = CodeGenRequest(ArchitectureSpec("x", layers), shape, 3)
        net = build(TemplateCodeGen().generate_code(request))
        expected = analyse(request.spec, shape, 3).params
        assert sum(p.numel() for p in net.parameters()) == expected, name


def test_rendering_details() -> None:
    spec = SPECS[3]
    code = TemplateCodeGen().generate_code(CodeGenRequest(spec, (40,), 10))
    assert code.startswith('"""') and "import torch\nfrom torch import nn\n" in code
    assert "class Net(nn.Module):" in code
    assert f"conv1d network, spec {spec.canonical_hash()}" in code
    assert "nn.Unflatten(1, (1, 40)),  # (40,) -> (1, 40)" in code
    assert "nn.Conv1d(1, 16, kernel_size=5, stride=1, padding=2)" in code
    assert "nn.BatchNorm1d(16)" in code and "nn.MaxPool1d(2)" in code and "nn.AvgPool1d(2)" in code
    assert "nn.Linear(160, 64)" in code  # 32 channels x 5: 40 -> pool 20 -> stride 2 10 -> pool 5
    assert "self.head = nn.Linear(64, 10)" in code
    assert "nn.Dropout(p=0.1)" in code
    plain = TemplateCodeGen(TemplateSettings(shape_comments=False)).generate_code(CodeGenRequest(spec, (40,), 10))
    assert "#" not in plain


def test_unflatten_only_for_vectors() -> None:
    code = TemplateCodeGen().generate_code(CodeGenRequest(ArchitectureSpec("conv1d", [conv(4)]), (3, 24), 2))
    assert "Unflatten" not in code
    assert "nn.Flatten(),  # (4, 24) -> (96,)" in code


def test_feedback_is_ignored() -> None:
    request = CodeGenRequest(SPECS[0], (40,), 10)
    repaired = CodeGenRequest(SPECS[0], (40,), 10, feedback="[syntax] invalid Python", previous_code="garbage")
    assert TemplateCodeGen().generate_code(request) == TemplateCodeGen().generate_code(repaired)


def test_hostile_family_cannot_break_out_of_the_docstring() -> None:
    spec = ArchitectureSpec('x"""\nimport os\n"""', [lin(8)])
    code = TemplateCodeGen().generate_code(CodeGenRequest(spec, (4,), 2))
    validate_code(code)
    assert "\nimport os" not in code and code.count('"""') == 4


@pytest.mark.parametrize(
    "spec, shape",
    [
        (ArchitectureSpec("mlp", [lin(8)]), (3, 24)),  # linear on a sequence
        (ArchitectureSpec("conv1d", [Layer("maxpool1d", {"kernel_size": 2})]), (40,)),  # pool on a vector
        (ArchitectureSpec("x", [Layer("attention")]), (40,)),  # unknown layer type
        (ArchitectureSpec("x", [act("mish")]), (40,)),
    ],
)
def test_unanalysable_specs_raise_layer_error(spec: ArchitectureSpec, shape: tuple) -> None:
    with pytest.raises(LayerError):
        TemplateCodeGen().generate_code(CodeGenRequest(spec, shape, 2))


def test_plugin_registers_the_provider() -> None:
    system = PluginSystem.load(extra_plugins=[("template_test", plugin)], entry_points=False)
    component = system.get("codegen", "template")
    assert component.settings is TemplateSettings
    assert isinstance(component.factory(component.default_settings()), TemplateCodeGen)


def test_plugin_import_is_cheap() -> None:
    code = "import sys, neuromosaic_codegen_template; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


# -- graphs -------------------------------------------------------------------------------------


def resnet1d(blocks: int = 2, se: bool = True) -> ArchitectureSpec:
    g = GraphBuilder("resnet1d")
    x = g.chain([conv(8, 5), Layer("batchnorm"), act()])
    for i in range(blocks):
        c = 8 * (i + 1)
        main = [Layer("conv1d", {"out_channels": c, "kernel_size": 3, "stride": 1, "dilation": 2, "bias": False}), Layer("batchnorm"), act(),
                conv(c), Layer("batchnorm")] + ([Layer("se", {"reduction": 4})] if se else [])
        y = g.chain(main, start=x)
        if c != 8 * max(i, 1):
            x = g.chain([Layer("conv1d", {"out_channels": c, "kernel_size": 1, "stride": 1, "bias": False}), Layer("batchnorm")], start=x)
        g.merge("add", [y, x])
        x = g.add("activation", {"fn": "relu"})
    g.add("globalavgpool1d")
    return g.build()


def cell2d() -> ArchitectureSpec:
    g = GraphBuilder("cell")
    x = g.chain([Layer("conv2d", {"out_channels": 4, "kernel_size": 3, "bias": False}), Layer("batchnorm2d")])
    n1 = g.chain([act(), Layer("conv2d", {"out_channels": 4, "kernel_size": 3, "bias": False}), Layer("batchnorm2d")], start=x)
    n2 = g.merge("add", [g.add("avgpool2d", {"kernel_size": 3, "stride": 1, "padding": 1}, inputs=x), g.add("identity", inputs=n1)])
    n3 = g.merge("add", [g.add("zero", inputs=x), n1, g.chain([act(), Layer("conv2d", {"out_channels": 4, "kernel_size": 1, "bias": False}),
                                                               Layer("batchnorm2d")], start=n2)])
    g.merge("concat", [n3, g.add("maxpool2d", {"kernel_size": 3, "stride": 1, "padding": 1}, inputs=n2)])
    g.add("globalavgpool2d")
    return g.build()


GRAPHS = [(resnet1d(), (40,)), (resnet1d(1, se=False), (3, 24)), (cell2d(), (1, 8, 8))]


class TestTemplateContractOnGraphs(CodeGenContract):
    exact_params = True

    def make_provider(self) -> TemplateCodeGen:
        return TemplateCodeGen(TemplateSettings())

    def sample_requests(self) -> list[CodeGenRequest]:
        return [CodeGenRequest(spec, shape, 10) for spec, shape in GRAPHS]

    def sample_specs(self) -> list[ArchitectureSpec]:
        return [spec for spec, _ in GRAPHS]


@st.composite
def graph_requests(draw: st.DrawFn) -> CodeGenRequest:
    """A random valid 1-D graph: convs, norms, activations, SE, pools, skips, cuts, sums and concatenations."""
    g = GraphBuilder("random")
    first = draw(st.sampled_from([2, 4]))
    channels: dict[str, int] = {g.chain([conv(first, 3)]): first}  # channels per node; every length stays 40
    read: set[str] = set()
    for _ in range(draw(st.integers(1, 10))):
        names = list(channels)
        kind = draw(st.sampled_from(["conv", "bn", "act", "se", "pool", "identity", "zero", "add", "concat"]))
        sources = [draw(st.sampled_from(names))]
        if kind == "conv":
            c = draw(st.sampled_from([2, 4, 6]))
            groups = draw(st.sampled_from([1, 2])) if channels[sources[0]] % 2 == 0 and c % 2 == 0 else 1
            name = g.add("conv1d", {"out_channels": c, "kernel_size": draw(st.sampled_from([1, 3, 5])), "stride": 1,
                                    "dilation": draw(st.sampled_from([1, 2])), "groups": groups, "bias": draw(st.booleans())},
                         inputs=sources)
            channels[name] = c
        elif kind in ("add", "concat"):
            same = [n for n in names if channels[n] == channels[sources[0]]] if kind == "add" else names
            sources += draw(st.lists(st.sampled_from(same), min_size=1, max_size=2))
            name = g.merge(kind, sources)
            channels[name] = channels[sources[0]] if kind == "add" else sum(channels[n] for n in sources)
        else:
            layer = {"bn": Layer("batchnorm"), "act": act(draw(st.sampled_from(ACTIVATIONS))), "se": Layer("se", {"reduction": 2}),
                     "pool": Layer(draw(st.sampled_from(["maxpool1d", "avgpool1d"])), {"kernel_size": 3, "stride": 1, "padding": 1}),
                     "identity": Layer("identity"), "zero": Layer("zero")}[kind]
            name = g.add(layer.type, layer.params, inputs=sources)
            channels[name] = channels[sources[0]]
        read.update(sources)
    sinks = [n for n in channels if n not in read]
    if len(sinks) > 1:
        g.merge("concat", sinks)
    return CodeGenRequest(g.build(), (40,), draw(st.integers(2, 5)))


@settings(max_examples=40, deadline=None)
@given(graph_requests())
def test_any_valid_graph_renders_runs_and_counts_match(request: CodeGenRequest) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    code = TemplateCodeGen().generate_code(request)
    validate_code(code)
    net = build(code)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, *request.input_shape))
        with FlopCounterMode(display=False) as counter:
            net(torch.randn(1, *request.input_shape))
    analysis = analyse(request.spec, request.input_shape, request.num_classes)
    assert tuple(out.shape) == (2, request.num_classes)
    assert sum(p.numel() for p in net.parameters()) == analysis.params, code
    assert counter.get_total_flops() == analysis.matmul_flops, code


def test_a_graph_renders_modules_in_init_and_a_topological_forward() -> None:
    code = TemplateCodeGen().generate_code(CodeGenRequest(cell2d(), (1, 8, 8), 10))
    assert "self.n0 = nn.Conv2d(1, 4, kernel_size=3, stride=1, padding=1, bias=False)" in code
    assert "nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)" in code
    assert "torch.zeros_like(" in code and "torch.cat([" in code and " + " in code
    forward = code.split("def forward", 1)[1]
    assert forward.index("n0 = self.n0(x)") < forward.index("n1 = self.n1(n0)")
    assert forward.rstrip().endswith("return self.head(n" + str(len(cell2d().layers) - 1) + ")")
    se = TemplateCodeGen().generate_code(CodeGenRequest(resnet1d(), (40,), 10))
    assert "class SqueezeExcite(nn.Module):" in se and "SqueezeExcite(8, 2)" in se
