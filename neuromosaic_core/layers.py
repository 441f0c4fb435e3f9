"""The layer vocabulary every encoder, code generator and constraint check agrees on.

Shapes, parameter counts and FLOPs are inferred analytically here (no torch), so a
constraint violation is found before any code is generated or run.

Shapes exclude the batch dimension: ``(features,)`` for vectors, ``(channels, length)`` for
sequences. A ``conv1d`` applied to a vector treats it as one channel.

=============  ======================================  ========================================
type           params                                  meaning
=============  ======================================  ========================================
linear         out_features                            fully connected layer
conv1d         out_channels, kernel_size, stride       1-D convolution, padding ``kernel_size//2``
batchnorm      (none)                                  BatchNorm1d over features / channels
layernorm      (none)                                  LayerNorm over the last dimension
activation     fn: relu | gelu | silu | tanh           element-wise non-linearity
dropout        p                                       dropout with probability ``p``
maxpool1d      kernel_size                             max pooling, stride = kernel size
avgpool1d      kernel_size                             average pooling, stride = kernel size
flatten        (none)                                  ``(C, L)`` to ``(C*L,)``
=============  ======================================  ========================================
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from neuromosaic_core.model import ArchitectureSpec, Layer

ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
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
)

Shape = tuple[int, ...]


class LayerError(ValueError):
    """A layer that cannot be applied to its input (unknown type, bad parameter, shape collapse)."""


@attrs.frozen
class LayerInfo:
    """One layer with its inferred input/output shapes and cost."""

    layer: Layer
    in_shape: Shape
    out_shape: Shape
    params: int
    flops: int


@attrs.frozen
class Analysis:
    """The inferred shapes and cost of a whole network: body layers plus the implied head."""

    layers: tuple[LayerInfo, ...]
    head_in_features: int
    num_classes: int
    params: int
    flops: int
    depth: int


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


def _positive_int(layer: Layer, name: str) -> int:
    value = _param(layer, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LayerError(f"{layer.type} {name}={value!r} must be a positive integer")
    return value


def infer_layer(layer: Layer, shape: Shape) -> LayerInfo:
    """Apply one layer to an input shape; raise :class:`LayerError` when it cannot be applied."""
    t = layer.type
    if t == "linear":
        out = _positive_int(layer, "out_features")
        if len(shape) != 1:
            raise LayerError(f"linear expects a flat input, got shape {shape}; add a flatten layer")
        params = shape[0] * out + out
        return LayerInfo(layer, shape, (out,), params, 2 * shape[0] * out)
    if t == "conv1d":
        out_c = _positive_int(layer, "out_channels")
        k = _positive_int(layer, "kernel_size")
        stride = _positive_int(layer, "stride")
        in_c, length = (1, shape[0]) if len(shape) == 1 else shape
        out_len = (length + 2 * (k // 2) - k) // stride + 1
        if out_len < 1:
            raise LayerError(f"conv1d(kernel {k}, stride {stride}) leaves no length from input {shape}")
        params = in_c * out_c * k + out_c
        return LayerInfo(layer, shape, (out_c, out_len), params, 2 * in_c * out_c * k * out_len)
    if t in ("maxpool1d", "avgpool1d"):
        k = _positive_int(layer, "kernel_size")
        if len(shape) != 2:
            raise LayerError(f"{t} expects a (channels, length) input, got {shape}")
        out_len = shape[1] // k
        if out_len < 1:
            raise LayerError(f"{t}({k}) leaves no length from input {shape}")
        return LayerInfo(layer, shape, (shape[0], out_len), 0, _size(shape))
    if t == "batchnorm":
        return LayerInfo(layer, shape, shape, 2 * shape[0], 2 * _size(shape))
    if t == "layernorm":
        return LayerInfo(layer, shape, shape, 2 * shape[-1], 5 * _size(shape))
    if t == "activation":
        fn = _param(layer, "fn")
        if fn not in ACTIVATIONS:
            raise LayerError(f"unknown activation {fn!r}; choose one of {', '.join(ACTIVATIONS)}")
        return LayerInfo(layer, shape, shape, 0, _size(shape))
    if t == "dropout":
        p = _param(layer, "p")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise LayerError(f"dropout p={p} must be in [0, 1)")
        return LayerInfo(layer, shape, shape, 0, 0)
    if t == "flatten":
        return LayerInfo(layer, shape, (_size(shape),), 0, 0)
    raise LayerError(f"unknown layer type {t!r}; known types: {', '.join(LAYER_TYPES)}")


def analyse(spec: ArchitectureSpec, input_shape: Sequence[int], num_classes: int) -> Analysis:
    """Infer every layer's shapes and the network's parameters and FLOPs (per sample).

    The implied head flattens the body's output and maps it to ``num_classes`` logits.
    """
    shape: Shape = tuple(int(s) for s in input_shape)
    infos = []
    for layer in spec.layers:
        info = infer_layer(layer, shape)
        infos.append(info)
        shape = info.out_shape
    head_in = _size(shape)
    head_params = head_in * num_classes + num_classes
    params = sum(i.params for i in infos) + head_params
    flops = sum(i.flops for i in infos) + 2 * head_in * num_classes
    depth = sum(1 for i in infos if i.layer.type in ("linear", "conv1d")) + 1
    return Analysis(tuple(infos), head_in, num_classes, params, flops, depth)
