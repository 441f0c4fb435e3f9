"""The layer vocabulary every encoder, code generator and constraint check agrees on.

Shapes, parameter counts and FLOPs are inferred analytically here (pure Python, no torch), for
sequential specs and graphs alike, so a constraint violation (a shape mismatch at a merge, too
many parameters or FLOPs) is found before any code is generated or run. Every rule below is
checked against torch's own modules in the tests.

Shapes exclude the batch dimension: ``(features,)`` for vectors, ``(channels, length)`` for
sequences, ``(channels, height, width)`` for images. A ``conv1d`` applied to a vector treats it
as one channel.

=================  ==========================================  ==========================================
type               params (defaults)                           meaning (the torch module)
=================  ==========================================  ==========================================
linear             out_features                                ``nn.Linear``
conv1d             out_channels, kernel_size, stride,          ``nn.Conv1d``, padding
                   dilation (1), groups (1), bias (true)       ``dilation * (kernel_size // 2)``
conv2d             out_channels, kernel_size, stride (1),      ``nn.Conv2d``, square kernel, padding
                   dilation (1), groups (1), bias (true)       ``dilation * (kernel_size // 2)``
batchnorm          (none)                                      ``nn.BatchNorm1d`` on features / channels
batchnorm2d        (none)                                      ``nn.BatchNorm2d``
layernorm          (none)                                      ``nn.LayerNorm`` over the last dimension
activation         fn: relu | gelu | silu | tanh | sigmoid     element-wise non-linearity
dropout            p                                           ``nn.Dropout``
maxpool1d          kernel_size, stride (= kernel), padding (0) ``nn.MaxPool1d``
avgpool1d          kernel_size, stride (= kernel), padding (0) ``nn.AvgPool1d``
maxpool2d          kernel_size, stride (= kernel), padding (0) ``nn.MaxPool2d``
avgpool2d          kernel_size, stride (= kernel), padding (0) ``nn.AvgPool2d(count_include_pad=False)``
globalavgpool1d    (none)                                      ``(C, L)`` to ``(C,)``: mean over length
globalavgpool2d    (none)                                      ``(C, H, W)`` to ``(C,)``: mean over H, W
se                 reduction                                   squeeze-and-excitation: mean over space,
                                                               ``Linear(C, h)``, ReLU, ``Linear(h, C)``,
                                                               sigmoid, scale; ``h = max(1, C // reduction)``
flatten            (none)                                      ``(C, ...)`` to ``(C*...,)``
identity           (none)                                      the input unchanged (a skip edge)
zero               (none)                                      zeros of the input's shape (a cut edge)
add                (none; two or more inputs)                  element-wise sum of equal shapes
concat             (none; two or more inputs)                  join along channels (features for vectors)
=================  ==========================================  ==========================================

``groups`` may be ``"depthwise"`` (one group per input channel). ``bias`` is a boolean.

FLOPs, per sample: a multiply-add is two FLOPs in ``linear``, ``conv1d``/``conv2d`` (biases not
counted) and the two linear layers of ``se``; this part, :attr:`Analysis.matmul_flops`, equals
what ``torch.utils.flop_counter.FlopCounterMode`` counts for the generated module. Other
operations, which FlopCounterMode ignores, count one FLOP per element they produce (activations,
``add`` per extra input, global pooling per input element, ``se``'s pooling and scaling), per
element read for window pooling (output elements times window), two per element for batch norm,
five for layer norm, none for dropout, flatten, identity, zero and concat.

Depth is the longest path of weight layers (``linear``, ``conv1d``, ``conv2d``) from the input to
the output, plus the head: a sequential network counts its weight layers, a ResNet-18 counts 18,
a skip connection adds nothing, and a path through a ``zero`` node carries no signal.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from neuromosaic_core.model import ArchitectureSpec, Layer, Scalar, SpecError

ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "sigmoid")
POOLS = ("maxpool1d", "avgpool1d", "maxpool2d", "avgpool2d")
MERGES = ("add", "concat")
WEIGHT_LAYERS = ("linear", "conv1d", "conv2d")
LAYER_TYPES = (
    "linear",
    "conv1d",
    "batchnorm",
    "layernorm",
    "activation",
    "dropout",
    "maxpool1d",
    "avgpool1d",
    "flatten",
    "conv2d",
    "batchnorm2d",
    "maxpool2d",
    "avgpool2d",
    "globalavgpool1d",
    "globalavgpool2d",
    "se",
    "identity",
    "zero",
    "add",
    "concat",
)

#: Optional parameters and their defaults (a value equal to its default is left out of the
#: canonical form, so ``conv1d(dilation=1)`` and ``conv1d`` are one architecture).
DEFAULTS: dict[str, dict[str, Scalar]] = {
    "conv1d": {"dilation": 1, "groups": 1, "bias": True},
    "conv2d": {"stride": 1, "dilation": 1, "groups": 1, "bias": True},
    **{pool: {"padding": 0} for pool in POOLS},
}

Shape = tuple[int, ...]


class LayerError(SpecError):
    """A layer that cannot be applied to its input (unknown type, bad parameter, shape collapse,
    shapes that do not meet at a merge) or a spec that is not a valid graph."""


@attrs.frozen
class LayerInfo:
    """One node with its inferred input/output shapes and cost; ``in_shapes`` lists every input's
    shape (several for a merge), ``in_shape`` is the first."""

    layer: Layer
    in_shape: Shape
    out_shape: Shape
    params: int
    flops: int
    in_shapes: tuple[Shape, ...] = ()
    matmul_flops: int = 0


@attrs.frozen
class Analysis:
    """The inferred shapes and cost of a whole network: body nodes (in the spec's order) plus the
    implied head. ``inputs[i]`` are the positions node ``i`` reads (``-1``: the network input)."""

    layers: tuple[LayerInfo, ...]
    head_in_features: int
    num_classes: int
    params: int
    flops: int
    depth: int
    inputs: tuple[tuple[int, ...], ...] = ()
    matmul_flops: int = 0

    @property
    def output_shape(self) -> Shape | None:
        """The body's output shape (None for an empty body)."""
        return self.layers[-1].out_shape if self.layers else None


def canonical_params(layer: Layer) -> dict[str, Scalar]:
    """``layer.params`` without the optional parameters that hold their default (``stride`` of a
    pool equal to its kernel too), ``bias`` as a boolean: the form hashes are computed on."""
    defaults = dict(DEFAULTS.get(layer.type, {}))
    if layer.type in POOLS and "kernel_size" in layer.params:
        defaults["stride"] = layer.params["kernel_size"]
    params = {}
    for key, value in layer.params.items():
        if key == "bias" and "bias" in defaults and isinstance(value, int):
            value = bool(value)
        if key in defaults and value == defaults[key] and type(value) is type(defaults[key]):
            continue
        params[key] = value
    return params


def _size(shape: Shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _param(layer: Layer, name: str) -> int | float | str:
    try:
        return layer.params[name]
    except KeyError:
        raise LayerError(f"layer {layer.type!r} needs parameter {name!r}") from None


def _positive_int(layer: Layer, name: str, default: int | None = None) -> int:
    value = layer.params.get(name, default) if default is not None else _param(layer, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LayerError(f"{layer.type} {name}={value!r} must be a positive integer")
    return value


def _bias(layer: Layer) -> bool:
    value = layer.params.get("bias", True)
    if not isinstance(value, int) or value not in (0, 1):
        raise LayerError(f"{layer.type} bias={value!r} must be true or false")
    return bool(value)


def _known_params(layer: Layer, allowed: Sequence[str]) -> None:
    unknown = sorted(set(layer.params) - set(allowed))
    if unknown:
        raise LayerError(f"{layer.type} has no parameter {unknown[0]!r}; its parameters: {', '.join(allowed) or 'none'}")


def _groups(layer: Layer, in_c: int, out_c: int) -> int:
    groups = layer.params.get("groups", 1)
    if groups == "depthwise":
        groups = in_c
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise LayerError(f"{layer.type} groups={groups!r} must be a positive integer or 'depthwise'")
    if in_c % groups or out_c % groups:
        raise LayerError(f"{layer.type} groups={groups} must divide both its {in_c} input and {out_c} output channels")
    return groups


def conv_geometry(layer: Layer) -> tuple[int, int, int, int]:
    """``(kernel_size, stride, dilation, padding)`` of a ``conv1d`` / ``conv2d`` node."""
    k = _positive_int(layer, "kernel_size")
    stride = _positive_int(layer, "stride", 1 if layer.type == "conv2d" else None)
    dilation = _positive_int(layer, "dilation", 1)
    return k, stride, dilation, dilation * (k // 2)


def pool_geometry(layer: Layer) -> tuple[int, int, int]:
    """``(kernel_size, stride, padding)`` of a pooling node."""
    k = _positive_int(layer, "kernel_size")
    stride = _positive_int(layer, "stride", k)
    padding = layer.params.get("padding", 0)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0 or 2 * padding > k:
        raise LayerError(f"{layer.type} padding={padding!r} must be an integer from 0 to half the kernel ({k // 2})")
    return k, stride, padding


def se_hidden(layer: Layer, channels: int) -> int:
    """The hidden width of a squeeze-and-excitation node on ``channels`` channels."""
    return max(1, channels // _positive_int(layer, "reduction"))


def _conv(layer: Layer, shape: Shape, dims: int) -> LayerInfo:
    t = layer.type
    _known_params(layer, ("out_channels", "kernel_size", "stride", "dilation", "groups", "bias"))
    out_c = _positive_int(layer, "out_channels")
    k, stride, dilation, padding = conv_geometry(layer)
    if dims == 1:
        in_c, *spatial = (1, shape[0]) if len(shape) == 1 else shape
        if len(shape) not in (1, 2):
            raise LayerError(f"conv1d expects a (channels, length) input, got {shape}; use conv2d for images")
    else:
        if len(shape) != 3:
            raise LayerError(f"conv2d expects a (channels, height, width) input, got {shape}")
        in_c, *spatial = shape
    groups = _groups(layer, in_c, out_c)
    out_spatial = tuple((s + 2 * padding - dilation * (k - 1) - 1) // stride + 1 for s in spatial)
    if min(out_spatial) < 1:
        raise LayerError(f"{t}(kernel {k}, stride {stride}, dilation {dilation}) leaves nothing of input {shape}")
    window = in_c // groups * k**dims
    params = out_c * window + (out_c if _bias(layer) else 0)
    out = (out_c, *out_spatial)
    matmul = 2 * window * _size(out)
    return LayerInfo(layer, shape, out, params, matmul, (shape,), matmul)


def _pool(layer: Layer, shape: Shape) -> LayerInfo:
    t = layer.type
    dims = 2 if t.endswith("2d") else 1
    _known_params(layer, ("kernel_size", "stride", "padding"))
    k, stride, padding = pool_geometry(layer)
    if len(shape) != dims + 1:
        raise LayerError(f"{t} expects a {'(channels, height, width)' if dims == 2 else '(channels, length)'} input, got {shape}")
    out_spatial = tuple((s + 2 * padding - k) // stride + 1 for s in shape[1:])
    if min(out_spatial) < 1:
        raise LayerError(f"{t}({k}) leaves no {'size' if dims == 2 else 'length'} from input {shape}")
    out = (shape[0], *out_spatial)
    return LayerInfo(layer, shape, out, 0, _size(out) * k**dims, (shape,))


def infer_layer(layer: Layer, shape: Shape) -> LayerInfo:
    """Apply one single-input node to an input shape; raise :class:`LayerError` when it cannot be applied."""
    t = layer.type
    if t == "linear":
        out = _positive_int(layer, "out_features")
        if len(shape) != 1:
            raise LayerError(f"linear expects a flat input, got shape {shape}; add a flatten layer")
        params = shape[0] * out + out
        return LayerInfo(layer, shape, (out,), params, 2 * shape[0] * out, (shape,), 2 * shape[0] * out)
    if t == "conv1d":
        return _conv(layer, shape, 1)
    if t == "conv2d":
        return _conv(layer, shape, 2)
    if t in POOLS:
        return _pool(layer, shape)
    if t == "batchnorm":
        if len(shape) > 2:
            raise LayerError(f"batchnorm (BatchNorm1d) expects a vector or (channels, length) input, got {shape}; use batchnorm2d")
        return LayerInfo(layer, shape, shape, 2 * shape[0], 2 * _size(shape), (shape,))
    if t == "batchnorm2d":
        if len(shape) != 3:
            raise LayerError(f"batchnorm2d expects a (channels, height, width) input, got {shape}")
        return LayerInfo(layer, shape, shape, 2 * shape[0], 2 * _size(shape), (shape,))
    if t == "layernorm":
        return LayerInfo(layer, shape, shape, 2 * shape[-1], 5 * _size(shape), (shape,))
    if t == "activation":
        fn = _param(layer, "fn")
        if fn not in ACTIVATIONS:
            raise LayerError(f"unknown activation {fn!r}; choose one of {', '.join(ACTIVATIONS)}")
        return LayerInfo(layer, shape, shape, 0, _size(shape), (shape,))
    if t == "dropout":
        p = _param(layer, "p")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise LayerError(f"dropout p={p} must be in [0, 1)")
        return LayerInfo(layer, shape, shape, 0, 0, (shape,))
    if t == "flatten":
        return LayerInfo(layer, shape, (_size(shape),), 0, 0, (shape,))
    if t in ("globalavgpool1d", "globalavgpool2d"):
        dims = 2 if t.endswith("2d") else 1
        if len(shape) != dims + 1:
            raise LayerError(f"{t} expects a {'(channels, height, width)' if dims == 2 else '(channels, length)'} input, got {shape}")
        return LayerInfo(layer, shape, (shape[0],), 0, _size(shape), (shape,))
    if t == "se":
        _known_params(layer, ("reduction",))
        if len(shape) < 2:
            raise LayerError(f"se expects a (channels, ...) input with a spatial dimension, got {shape}")
        c = shape[0]
        h = se_hidden(layer, c)
        matmul = 2 * c * h * 2
        return LayerInfo(layer, shape, shape, c * h + h + h * c + c, matmul + 2 * _size(shape) + h + c, (shape,), matmul)
    if t in ("identity", "zero"):
        _known_params(layer, ())
        return LayerInfo(layer, shape, shape, 0, 0, (shape,))
    if t in MERGES:
        return infer_merge(layer, [shape])
    raise LayerError(f"unknown layer type {t!r}; known types: {', '.join(LAYER_TYPES)}")


def infer_merge(layer: Layer, shapes: Sequence[Shape]) -> LayerInfo:
    """Apply a merge (``add`` or ``concat``) to its inputs' shapes."""
    t = layer.type
    _known_params(layer, ())
    if len(shapes) < 2:
        raise LayerError(f"{t} needs two or more inputs, got {len(shapes)}")
    first = shapes[0]
    if t == "add":
        for s in shapes[1:]:
            if s != first:
                raise LayerError(f"add of shapes {' and '.join(map(str, shapes))}: every input must have the same shape")
        return LayerInfo(layer, first, first, 0, (len(shapes) - 1) * _size(first), tuple(shapes))
    for s in shapes[1:]:
        if len(s) != len(first) or s[1:] != first[1:]:
            raise LayerError(f"concat of shapes {' and '.join(map(str, shapes))}: all but the first (channel) dimension must agree")
    return LayerInfo(layer, first, (sum(s[0] for s in shapes), *first[1:]), 0, 0, tuple(shapes))


def analyse(spec: ArchitectureSpec, input_shape: Sequence[int], num_classes: int) -> Analysis:
    """Infer every node's shapes and the network's parameters, FLOPs and depth (per sample).

    The implied head flattens the body's output and maps it to ``num_classes`` logits. Raises
    :class:`LayerError` for a node that cannot be applied, a merge whose shapes do not meet, or a
    spec that is not a valid graph; the message names the node.
    """
    try:
        graph = spec.graph()
    except SpecError as exc:
        raise LayerError(str(exc)) from None
    network_input: Shape = tuple(int(s) for s in input_shape)
    infos: list[LayerInfo] = []
    depths: list[int] = []
    for i, layer in enumerate(graph.nodes):
        sources = graph.inputs[i]
        shapes = [infos[j].out_shape if j >= 0 else network_input for j in sources]
        try:
            info = infer_merge(layer, shapes) if layer.type in MERGES else infer_layer(layer, shapes[0])
            if layer.type not in MERGES and len(shapes) != 1:
                raise LayerError(f"{layer.type} reads one input, got {len(shapes)}; merge them first with add or concat")
        except LayerError as exc:
            where = f"node {i} ({layer.name})" if layer.name else f"node {i}"
            raise LayerError(f"{exc} [{where}]" if not graph.is_chain() else str(exc)) from None
        infos.append(info)
        depth = max((depths[j] if j >= 0 else 0) for j in sources)
        depths.append(0 if layer.type == "zero" else depth + (layer.type in WEIGHT_LAYERS))
    shape = infos[-1].out_shape if infos else network_input
    head_in = _size(shape)
    head_params = head_in * num_classes + num_classes
    params = sum(i.params for i in infos) + head_params
    head_flops = 2 * head_in * num_classes
    flops = sum(i.flops for i in infos) + head_flops
    matmul = sum(i.matmul_flops for i in infos) + head_flops
    depth = (depths[-1] if depths else 0) + 1
    return Analysis(tuple(infos), head_in, num_classes, params, flops, depth, graph.inputs, matmul)
