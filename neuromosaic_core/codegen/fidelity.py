"""The fidelity check for graphs: does traced code compute the graph the spec describes?

The sandboxed probe (:mod:`neuromosaic_core.codegen.probe`) runs the generated ``forward`` once
under :func:`trace_forward`, which records, for every operation of interest (linear, convolutions,
norms, activations, dropout, pooling, global pooling, sums, concatenations, zeroing and the
scaling of squeeze-and-excitation), its arguments, the operations whose results it reads and its
output shape, following values through operations it does not record (views, reshapes,
flattening, adding a constant). That is the code's dataflow graph.

:func:`graph_fidelity` compares it with the spec's graph, expanded into the same operations
(:func:`expected_graph`): each operation gets a signature from what it is, its output shape and
the signatures of what it reads (a sum's inputs as a multiset, nested sums flattened), so the
comparison does not depend on the order the code computes independent branches in, or on how it
names things. The first node of the spec (in its order) whose operation the code never computes
from the same inputs is named, with what the code computes there instead.

Pure Python except :func:`trace_forward`, which runs in the probe's subprocess.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import attrs

from neuromosaic_core.layers import Analysis, analyse, conv_geometry, pool_geometry, se_hidden
from neuromosaic_core.model import ArchitectureSpec

Op = tuple[Any, ...]
#: Per recorded operation: the positions of the operations it reads (-1: the input) and its output shape.
Flow = tuple[tuple[int, ...], tuple[int, ...]]

_ACTIVATIONS = {"relu": "relu", "relu_": "relu", "gelu": "gelu", "silu": "silu", "tanh": "tanh",
                "sigmoid": "sigmoid", "softmax": "softmax", "log_softmax": "log_softmax"}
_ADDS = ("add", "__add__", "__iadd__", "__radd__", "add_")
_MULS = ("mul", "__mul__", "__rmul__", "mul_", "__imul__")


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (tuple, list)) else value


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any = None) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def record(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], produced: int) -> Op | None:
    """The operation a torch call stands for, or None for one the check does not look at.

    ``produced`` is how many of its tensor arguments are results of the forward pass (or its
    input), which tells a sum of two branches from adding a constant."""
    name = getattr(func, "__name__", "")
    if name in _ADDS:
        return ("add",) if produced >= 2 else None
    if name in _MULS:
        other = args[1] if len(args) > 1 else kwargs.get("other")
        if produced >= 2:
            return ("scale",)
        return ("zero",) if isinstance(other, (int, float)) and other == 0 else None
    if name == "zeros_like":
        return ("zero",)
    if name in ("cat", "concat", "concatenate"):
        return ("concat",)
    name = name.lstrip("_")
    if name == "linear":
        w = _arg(args, kwargs, 1, "weight")
        return ("linear", int(w.shape[1]), int(w.shape[0]))
    if name in ("conv1d", "conv2d"):
        w = _arg(args, kwargs, 1, "weight")
        stride = int(_first(_arg(args, kwargs, 3, "stride", 1)))
        dilation = int(_first(_arg(args, kwargs, 5, "dilation", 1)))
        groups = int(_arg(args, kwargs, 6, "groups", 1))
        op: Op = (name, int(w.shape[1]) * groups, int(w.shape[0]), int(w.shape[2]), stride)
        return op + (dilation, groups) if name == "conv2d" or dilation != 1 or groups != 1 else op
    if name == "batch_norm":
        x = args[0]
        return ("batchnorm2d" if x.dim() == 4 else "batchnorm", int(x.shape[1]))
    if name == "layer_norm":
        shape = _arg(args, kwargs, 1, "normalized_shape")
        return ("layernorm", int(shape[-1]))
    if name in _ACTIVATIONS:
        return ("activation", _ACTIVATIONS[name])
    if name in ("dropout", "dropout1d", "dropout2d"):
        return ("dropout", round(float(_arg(args, kwargs, 1, "p", 0.5)), 4))
    if name in ("max_pool1d", "max_pool1d_with_indices", "avg_pool1d", "max_pool2d", "max_pool2d_with_indices", "avg_pool2d"):
        kind = ("maxpool" if name.startswith("max") else "avgpool") + ("2d" if "2d" in name else "1d")
        k = int(_first(_arg(args, kwargs, 1, "kernel_size")))
        stride = _arg(args, kwargs, 2, "stride")
        stride = k if stride is None or stride == [] or stride == () else int(_first(stride))
        padding = int(_first(_arg(args, kwargs, 3, "padding", 0)))
        return (kind, k) if stride == k and padding == 0 else (kind, k, stride, padding)
    if name in ("adaptive_avg_pool1d", "adaptive_avg_pool2d"):
        return ("gap", int(args[0].shape[1]))
    return None


def trace_forward(model: Any, x: Any) -> tuple[Any, list[Op], list[Flow], int | None]:  # pragma: no cover - probe subprocess
    """Run ``model(x)`` recording its operations: ``(output, ops, flow, output op)``. On an
    exception, the operations recorded up to it (the failing one last) are in the lists passed
    back through the exception's ``ops`` / ``flow`` attributes."""
    import torch
    from torch.overrides import TorchFunctionMode

    ops: list[Op] = []
    flow: list[Flow] = []
    producer: dict[int, int] = {id(x): -1}
    keep: list[Any] = [x]  # ids stay unique while the values live

    def sources_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[int]:
        found: list[int] = []

        def visit(value: Any) -> None:
            if isinstance(value, torch.Tensor):
                p = producer.get(id(value))
                if p is not None:
                    found.append(p)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    visit(item)

        for value in (*args, *kwargs.values()):
            visit(value)
        return found

    class Trace(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            sources = sources_of(args, kwargs)
            op = record(func, args, kwargs, len(sources))
            if op is not None:
                ops.append(op)
                flow.append((tuple(sources), ()))
            out = func(*args, **kwargs)
            value = out[0] if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor) else out
            if not isinstance(value, torch.Tensor):
                return out
            if op is None and getattr(func, "__name__", "") == "mean" and sources and args and \
                    isinstance(args[0], torch.Tensor) and args[0].dim() >= 3 and value.dim() == 2:
                op = ("gap", int(args[0].shape[1]))  # a mean over every spatial dimension is global pooling
                ops.append(op)
                flow.append((tuple(sources), ()))
            if op is not None:  # global pooling counts as (C,), whether it keeps the 1x1 or not
                flow[-1] = (flow[-1][0], (op[1],) if op[0] == "gap" else tuple(int(s) for s in value.shape[1:]))
                producer[id(value)] = len(ops) - 1
                keep.append(value)
            elif len(set(sources)) == 1:  # a view, reshape, flatten, constant offset: the same value onwards
                producer[id(value)] = sources[0]
                keep.append(value)
            return out

    try:
        with Trace():
            out = model(x)
    except Exception as exc:
        try:
            exc.ops, exc.flow = ops, flow  # type: ignore[attr-defined]
        except AttributeError:  # an exception type that takes no attributes: report without the trace
            pass
        raise
    return out, ops, flow, producer.get(id(out)) if isinstance(out, torch.Tensor) else None


# -- the spec side ------------------------------------------------------------------------------


@attrs.frozen
class ExpectedOp:
    """One operation a faithful forward pass runs: what it is, what it reads (positions in the
    expected list, -1 the input), its output shape and the spec node it belongs to (-1: the head)."""

    op: Op
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    node: int


def _conv_op(kind: str, in_c: int, p: Any, layer: Any) -> Op:
    k, stride, dilation, _ = conv_geometry(layer)
    groups = p.get("groups", 1)
    groups = in_c if groups == "depthwise" else int(groups)
    op: Op = (kind, in_c, int(p["out_channels"]), k, stride)
    return op + (dilation, groups) if kind == "conv2d" or dilation != 1 or groups != 1 else op


def expected_graph(spec: ArchitectureSpec, input_shape: Sequence[int], num_classes: int) -> tuple[list[ExpectedOp], Analysis]:
    """The spec as the operations :func:`trace_forward` records, head included (the last)."""
    analysis = analyse(spec, input_shape, num_classes)
    ops: list[ExpectedOp] = []
    value: list[int] = []  # per node: the expected op whose result is the node's value

    def add(op: Op, inputs: Sequence[int], shape: tuple[int, ...], node: int) -> int:
        ops.append(ExpectedOp(op, tuple(inputs), tuple(shape), node))
        return len(ops) - 1

    for i, info in enumerate(analysis.layers):
        t, p, shape = info.layer.type, info.layer.params, info.in_shape
        sources = [value[j] if j >= 0 else -1 for j in analysis.inputs[i]]
        out = info.out_shape
        if t in ("identity", "flatten"):
            value.append(sources[0])
        elif t == "linear":
            value.append(add(("linear", shape[0], int(p["out_features"])), sources, out, i))
        elif t in ("conv1d", "conv2d"):
            value.append(add(_conv_op(t, 1 if len(shape) == 1 else shape[0], p, info.layer), sources, out, i))
        elif t in ("batchnorm", "batchnorm2d"):
            value.append(add((t, shape[0]), sources, out, i))
        elif t == "layernorm":
            value.append(add(("layernorm", shape[-1]), sources, out, i))
        elif t == "activation":
            value.append(add(("activation", str(p["fn"])), sources, out, i))
        elif t == "dropout":
            value.append(add(("dropout", round(float(p["p"]), 4)), sources, out, i))
        elif t in ("maxpool1d", "avgpool1d", "maxpool2d", "avgpool2d"):
            k, stride, padding = pool_geometry(info.layer)
            value.append(add((t, k) if stride == k and padding == 0 else (t, k, stride, padding), sources, out, i))
        elif t in ("globalavgpool1d", "globalavgpool2d"):
            value.append(add(("gap", shape[0]), sources, (shape[0],), i))
        elif t == "se":
            c, h = shape[0], se_hidden(info.layer, shape[0])
            w = add(("gap", c), sources, (c,), i)
            w = add(("linear", c, h), [w], (h,), i)
            w = add(("activation", "relu"), [w], (h,), i)
            w = add(("linear", h, c), [w], (c,), i)
            w = add(("activation", "sigmoid"), [w], (c,), i)
            value.append(add(("scale",), [sources[0], w], out, i))
        elif t in ("zero", "add", "concat"):
            value.append(add((t,), sources, out, i))
        else:  # pragma: no cover - analyse() refuses unknown types
            raise ValueError(f"no expected operation for layer type {t!r}")
    last = value[-1] if value else -1
    add(("linear", analysis.head_in_features, num_classes), [last], (num_classes,), -1)
    return ops, analysis


# -- the comparison -----------------------------------------------------------------------------


def signatures(ops: Sequence[Op], flow: Sequence[Flow]) -> list[str]:
    """A signature per operation: what it is, its shape and, recursively, what it reads. A sum
    reads a multiset (nested sums flattened), a scaling too; a concatenation an ordered list."""
    sigs: list[str] = []
    leaves: list[list[str]] = []  # per op: for a sum, the signatures of the terms it adds up
    for op, (sources, shape) in zip(ops, flow, strict=True):
        inputs = [sigs[j] if 0 <= j < len(sigs) else "input" for j in sources]
        terms: list[str] = []
        if op[0] == "add":
            for j, s in zip(sources, inputs, strict=True):
                terms += leaves[j] if 0 <= j < len(leaves) and leaves[j] else [s]
            inputs = sorted(terms)
        elif op[0] == "scale":
            inputs = sorted(inputs)
        blob = json.dumps([list(op), list(shape), inputs], default=str)
        sigs.append(hashlib.sha256(blob.encode()).hexdigest()[:16])
        leaves.append(terms)
    return sigs


def describe_op(op: Op) -> str:
    """An operation as PyTorch code spells it (what the LLM is told)."""
    kind, *a = op
    if kind == "linear":
        return f"nn.Linear({a[0]}, {a[1]})"
    if kind in ("conv1d", "conv2d"):
        extra = ""
        if len(a) > 4:
            extra = (f", dilation={a[4]}" if a[4] != 1 else "") + (f", groups={a[5]}" if a[5] != 1 else "")
        return f"nn.Conv{kind[4]}d({a[0]}, {a[1]}, kernel_size={a[2]}, stride={a[3]}{extra})"
    if kind in ("batchnorm", "batchnorm2d"):
        return f"nn.BatchNorm{'2d' if kind.endswith('2d') else '1d'}({a[0]})"
    if kind == "layernorm":
        return f"nn.LayerNorm({a[0]})"
    if kind == "activation":
        return {"relu": "ReLU", "gelu": "GELU", "silu": "SiLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}.get(a[0], str(a[0]))
    if kind == "dropout":
        return f"Dropout(p={a[0]})"
    if kind in ("maxpool1d", "avgpool1d", "maxpool2d", "avgpool2d"):
        cls = ("MaxPool" if kind.startswith("max") else "AvgPool") + kind[-2:]
        return f"{cls}({a[0]})" if len(a) == 1 else f"{cls}({a[0]}, stride={a[1]}, padding={a[2]})"
    if kind == "gap":
        return f"global average pooling of {a[0]} channels"
    if kind == "add":
        return "a sum (+)"
    if kind == "concat":
        return "torch.cat(..., dim=1)"
    if kind == "zero":
        return "torch.zeros_like"
    if kind == "scale":
        return "a product of two branches (x * w)"
    return str(kind)


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + (",)" if len(shape) == 1 else ")")


def is_graph(analysis: Analysis) -> bool:
    """True when a spec is checked as a graph: it branches, merges, cuts or uses squeeze-and-excitation."""
    return any(sources != (i - 1,) for i, sources in enumerate(analysis.inputs)) or \
        any(info.layer.type in ("zero", "se") for info in analysis.layers)


def graph_fidelity(ops: Sequence[Op], flow: Sequence[Flow], output: int | None, params: int, spec: ArchitectureSpec,
                   input_shape: Sequence[int], num_classes: int, tolerance: float = 0.05) -> str | None:
    """None when the traced dataflow computes the spec's graph, else what differs, naming the
    first node of the spec that the code does not compute as written."""
    want, analysis = expected_graph(spec, input_shape, num_classes)
    want_sigs = signatures([w.op for w in want], [(w.inputs, w.shape) for w in want])
    got_sigs = signatures(ops, flow)
    if output is not None and 0 <= output < len(got_sigs) and got_sigs[output] == want_sigs[-1]:
        if analysis.params and abs(params - analysis.params) > tolerance * analysis.params:
            return f"fidelity: the module has {params:,} parameters, the spec {analysis.params:,} (tolerance {tolerance:.0%})"
        return None
    have = set(got_sigs)
    inputs_of = {}
    for k, (sources, _) in enumerate(flow):
        key = tuple(sorted(got_sigs[j] if 0 <= j < len(got_sigs) else "input" for j in sources))
        inputs_of.setdefault(key, []).append(k)
    for k, w in enumerate(want):
        if want_sigs[k] in have:
            continue
        if w.node < 0:
            name = f"the head {describe_op(w.op)}"
        else:
            layer = analysis.layers[w.node].layer
            label = layer.type if layer.name in (None, f"n{w.node}") else f"{layer.type} {layer.name!r}"
            name = f"node {w.node} ({label}): {describe_op(w.op)} -> {_shape(w.shape)}"
        reads = ", ".join("the input" if j < 0 else f"the result of {describe_op(want[j].op)}" for j in w.inputs)
        key = tuple(sorted(want_sigs[j] if j >= 0 else "input" for j in w.inputs))
        instead = [i for i in inputs_of.get(key, []) if got_sigs[i] not in want_sigs]
        same_kind = w.op[0] not in ("add", "concat", "zero", "scale") and \
            any(op == w.op and flow[i][1] == w.shape and got_sigs[i] not in want_sigs for i, op in enumerate(ops))
        if instead:
            detail = f"the code computes {describe_op(ops[instead[0]])} -> {_shape(flow[instead[0]][1])} there instead"
        elif same_kind:
            detail = "the code computes it, but from other inputs (check which variables each row reads)"
        else:
            detail = "the code never computes it from these inputs"
        return f"fidelity: {name}, reading {reads}: {detail}. Compute every node of the table in order from exactly the variables it names"
    return "fidelity: the module's output is not computed from the spec's last node through the head"
