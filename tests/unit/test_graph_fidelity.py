"""The fidelity check on graphs: traced dataflow against the spec's nodes.

The template's code for a graph is faithful; code that reads the wrong branch, changes a node,
leaves a branch out or computes branches in another order is judged by what it computes, and the
complaint names the first node of the spec that differs. Most cases trace in-process (trusted
test code, fast); one goes through the sandboxed probe end to end.
"""

from __future__ import annotations

import pytest

from neuromosaic_core.codegen.fidelity import graph_fidelity, is_graph, trace_forward
from neuromosaic_core.codegen.probe import check_fidelity, probe_code
from neuromosaic_core.codegen.prompts import load_template
from neuromosaic_core.codegen.validation import validate_code
from neuromosaic_core.interfaces import CodeGenRequest
from neuromosaic_core.layers import analyse
from neuromosaic_core.model import GraphBuilder, Layer

torch = pytest.importorskip("torch")

RELU = Layer("activation", {"fn": "relu"})
SHAPE = (1, 8, 8)


def spec():  # noqa: ANN201
    """A stem, a residual block with SE, a two-branch cell with a zero edge, a concat and pooling."""
    g = GraphBuilder("mix")
    x = g.chain([Layer("conv2d", {"out_channels": 4, "kernel_size": 3, "bias": False}), Layer("batchnorm2d")])
    y = g.chain([RELU, Layer("conv2d", {"out_channels": 4, "kernel_size": 3}), Layer("batchnorm2d"), Layer("se", {"reduction": 2})], start=x)
    x = g.merge("add", [y, x])
    a = g.add("conv2d", {"out_channels": 4, "kernel_size": 1}, inputs=x)
    b = g.add("avgpool2d", {"kernel_size": 3, "stride": 1, "padding": 1}, inputs=x)
    c = g.merge("add", [a, b, g.add("zero", inputs=a)])
    g.merge("concat", [c, x])
    g.add("globalavgpool2d")
    return g.build()


CODE = '''import torch
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels, hidden):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x):
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * w.reshape(w.shape[0], w.shape[1], 1, 1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
        self.block = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), SqueezeExcite(4, 2))
        self.a = nn.Conv2d(4, 4, 1)
        self.b = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        s = self.stem(x)
        x = BLOCK
        PAIR
        c = a + b + a * 0.0
        out = torch.cat([c, x], dim=1)
        return self.head(self.pool(out).flatten(1))
'''

GOOD = {"BLOCK": "self.block(s) + s", "PAIR": "b = self.b(x)\n        a = self.a(x)"}  # branches in another order


def run(code: str) -> str | None:
    validate_code(code)
    namespace: dict = {}
    exec(compile(code, "<test>", "exec"), namespace)  # trusted test code, validated above
    model = namespace["Net"]()
    model.eval()
    with torch.no_grad():
        _, ops, flow, output = trace_forward(model, torch.zeros(2, *SHAPE))
    return graph_fidelity(ops, flow, output, sum(p.numel() for p in model.parameters()), spec(), SHAPE, 10)


def variant(**changes: str) -> str:
    code = CODE
    for key, value in {**GOOD, **changes}.items():
        code = code.replace(key, value)
    return code


def test_hand_written_code_computing_the_graph_in_another_order_is_faithful():
    assert is_graph(analyse(spec(), SHAPE, 10))
    assert run(variant()) is None


@pytest.mark.parametrize(("changes", "complaint"), [
    ({"BLOCK": "self.block(s)"},  # the skip connection left out
     "node 6 (add): a sum (+) -> (4, 8, 8), reading the result of a product of two branches (x * w), the result of nn.BatchNorm2d(4): "
     "the code never computes it from these inputs"),
    ({"PAIR": "b = self.b(s)\n        a = self.a(x)"},  # a branch reading the wrong variable
     "node 8 (avgpool2d): AvgPool2d(3, stride=1, padding=1) -> (4, 8, 8), reading the result of a sum (+): "
     "the code computes it, but from other inputs"),
    ({"BLOCK": "self.block[3](self.block[2](self.block[1](s))) + s"},  # a node skipped
     "node 2 (activation): ReLU -> (4, 8, 8), reading the result of nn.BatchNorm2d(4): "
     "the code computes nn.Conv2d(4, 4, kernel_size=3, stride=1) -> (4, 8, 8) there instead"),
    ({"c = a + b + a * 0.0": "c = a + b"},  # the zero edge dropped (numerically the same, structurally not)
     "node 9 (zero): torch.zeros_like -> (4, 8, 8)"),
])  # fmt: skip
def test_code_that_computes_something_else_is_refused_naming_the_first_node(changes: dict[str, str], complaint: str):
    code = variant(**{k: v for k, v in changes.items() if k in GOOD})
    for old, new in changes.items():
        code = code.replace(old, new) if old not in GOOD else code
    problem = run(code)
    assert problem is not None and problem.startswith("fidelity: ")
    assert complaint in problem, problem


def test_a_node_with_other_arguments_is_named_with_what_the_code_runs_instead():
    problem = run(variant().replace("self.a = nn.Conv2d(4, 4, 1)", "self.a = nn.Conv2d(4, 4, 3, padding=1)"))
    assert "node 7 (conv2d): nn.Conv2d(4, 4, kernel_size=1, stride=1) -> (4, 8, 8)" in problem
    assert "the code computes nn.Conv2d(4, 4, kernel_size=3, stride=1) -> (4, 8, 8) there instead" in problem


def test_parameters_far_from_the_spec_are_refused_even_when_the_operations_match():
    problem = run(variant().replace("nn.Conv2d(4, 4, 3, padding=1)", "nn.Conv2d(4, 4, 3, padding=1, bias=False)")
                  .replace("self.head = nn.Linear(8, 10)", "self.head = nn.Linear(8, 10)\n        self.spare = nn.Linear(64, 64)"))
    assert problem is not None and "parameters" in problem


def test_the_template_prompt_table_and_the_probe_agree_end_to_end(tmp_path):
    """The code a faithful model would write from the graph prompt passes the sandboxed probe."""
    request = CodeGenRequest(spec(), SHAPE, 10)
    prompt = "\n".join(m.content for m in load_template().messages(request))
    assert "n6 = n5 + n1" in prompt and "torch.cat([n10, n6], dim=1)" in prompt and "class SqueezeExcite" in prompt
    report = probe_code(variant(), SHAPE, 10)
    assert report.ok, report.error
    assert check_fidelity(report, spec(), SHAPE, 10) is None
    broken = probe_code(variant(BLOCK="self.block(s)"), SHAPE, 10)
    assert "node 6 (add)" in check_fidelity(broken, spec(), SHAPE, 10)


def test_a_sequential_image_network_is_checked_in_order_with_the_new_node_types():
    from neuromosaic_core.codegen.probe import ProbeReport
    from neuromosaic_core.model import ArchitectureSpec

    chain = ArchitectureSpec("cnn", [Layer("conv2d", {"out_channels": 4, "kernel_size": 3, "stride": 2}), Layer("batchnorm2d"), RELU,
                                     Layer("maxpool2d", {"kernel_size": 2}), Layer("globalavgpool2d")])

    def report(body: str) -> ProbeReport:
        code = f"import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n" \
               f"        self.body = nn.Sequential({body})\n        self.head = nn.Linear(4, 10)\n\n" \
               f"    def forward(self, x):\n        return self.head(self.body(x).flatten(1))\n"
        namespace: dict = {}
        exec(compile(code, "<test>", "exec"), namespace)  # trusted test code
        model = namespace["Net"]().eval()
        with torch.no_grad():
            out, ops, flow, output = trace_forward(model, torch.zeros(2, *SHAPE))
        return ProbeReport(None, sum(p.numel() for p in model.parameters()), tuple(out.shape), tuple(ops), tuple(flow), output)

    good = "nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1)"
    assert check_fidelity(report(good), chain, SHAPE, 10) is None
    problem = check_fidelity(report(good.replace("nn.MaxPool2d(2)", "nn.AvgPool2d(2)")), chain, SHAPE, 10)
    assert problem.startswith("fidelity: the spec has MaxPool2d(2) after ReLU, the code runs AvgPool2d(2)"), problem
