"""The ``mlp_conv1d`` encoder: one conditional search space over MLPs and 1-D CNNs.

A categorical ``family`` dimension picks the family; each family's dimensions are active only
for it. Decoded specs use only the core layer vocabulary (:mod:`neuromosaic_core.layers`); the
classification head is implied and never part of a spec.

MLP layer ``i``::

    linear(out_features=mlp_width_i) [batchnorm|layernorm] activation(fn) [dropout(p)]

1-D CNN block ``i``, then the head::

    conv1d(out_channels, kernel_size, stride) [batchnorm] activation(fn) [maxpool1d(2)|avgpool1d(2)]
    flatten [linear(conv_head_width) activation(fn)] [dropout(p)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from neuromosaic_core.interfaces import ArchitectureEncoder
from neuromosaic_core.model import (
    ArchitectureSpec,
    ArchitectureVector,
    CategoricalDimension,
    Dimension,
    IntDimension,
    Layer,
    Scalar,
    SearchSpace,
)
from neuromosaic_encoder_mlp_conv1d.settings import MlpConv1dSettings

FAMILIES = ("mlp", "conv1d")
ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
DROPOUTS = (0.0, 0.1, 0.2, 0.3)
MLP_WIDTHS = (32, 64, 128, 256, 512)
MLP_NORMS = ("none", "batchnorm", "layernorm")
CONV_CHANNELS = (8, 16, 32, 64)
CONV_KERNELS = (3, 5, 7)
CONV_STRIDES = (1, 2)
CONV_POOLS = ("none", "max", "avg")
CONV_NORMS = ("none", "batchnorm")
CONV_HEAD_WIDTHS = (0, 64, 128)
POOL_KERNEL = 2

_POOL_LAYERS = {"max": "maxpool1d", "avg": "avgpool1d"}
_POOL_NAMES = {v: k for k, v in _POOL_LAYERS.items()}
#: the parameters each layer type must carry, exactly
_PARAMS = {
    "linear": {"out_features"},
    "conv1d": {"out_channels", "kernel_size", "stride"},
    "batchnorm": set(),
    "layernorm": set(),
    "activation": {"fn"},
    "dropout": {"p"},
    "maxpool1d": {"kernel_size"},
    "avgpool1d": {"kernel_size"},
    "flatten": set(),
}


def build_space(settings: MlpConv1dSettings) -> SearchSpace:
    """The search space for ``settings`` (parents always before their conditional children)."""
    mlp = {"family": ("mlp",)}
    conv = {"family": ("conv1d",)}
    dims: list[Dimension] = [
        CategoricalDimension("family", choices=FAMILIES),
        CategoricalDimension("activation", choices=ACTIVATIONS),
        CategoricalDimension("dropout", choices=DROPOUTS),
        IntDimension("mlp_depth", low=1, high=settings.max_mlp_depth, active_if=mlp),
    ]
    for i in range(settings.max_mlp_depth):
        deep_enough = tuple(range(i + 1, settings.max_mlp_depth + 1))
        dims.append(CategoricalDimension(f"mlp_width_{i}", choices=MLP_WIDTHS, active_if={**mlp, "mlp_depth": deep_enough}))
    dims.append(CategoricalDimension("mlp_norm", choices=MLP_NORMS, active_if=mlp))
    dims.append(IntDimension("conv_blocks", low=1, high=settings.max_conv_blocks, active_if=conv))
    for i in range(settings.max_conv_blocks):
        block = {**conv, "conv_blocks": tuple(range(i + 1, settings.max_conv_blocks + 1))}
        dims += [
            CategoricalDimension(f"conv_channels_{i}", choices=CONV_CHANNELS, active_if=block),
            CategoricalDimension(f"conv_kernel_{i}", choices=CONV_KERNELS, active_if=block),
            CategoricalDimension(f"conv_stride_{i}", choices=CONV_STRIDES, active_if=block),
            CategoricalDimension(f"conv_pool_{i}", choices=CONV_POOLS, active_if=block),
        ]
    dims.append(CategoricalDimension("conv_norm", choices=CONV_NORMS, active_if=conv))
    dims.append(CategoricalDimension("conv_head_width", choices=CONV_HEAD_WIDTHS, active_if=conv))
    return SearchSpace(dims)


def _show(layer: Layer) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in layer.params.items())
    return f"{layer.type}({args})"


class _Reader:
    """A cursor over a spec's layers that explains what it expected when a spec does not parse."""

    def __init__(self, spec: ArchitectureSpec) -> None:
        self.family = spec.family
        self.layers: Sequence[Layer] = spec.layers
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.layers)

    def fail(self, message: str) -> ValueError:
        return ValueError(f"mlp_conv1d cannot express this {self.family} spec: {message}")

    def take(self, *types: str) -> Layer | None:
        """The next layer when its type is one of ``types`` (consumed), else None."""
        if self.done() or self.layers[self.pos].type not in types:
            return None
        layer = self.layers[self.pos]
        if set(layer.params) != _PARAMS[layer.type]:
            expected = ", ".join(sorted(_PARAMS[layer.type])) or "no parameters"
            raise self.fail(f"layer {self.pos} {_show(layer)} must have {expected}")
        self.pos += 1
        return layer

    def expect(self, *types: str) -> Layer:
        layer = self.take(*types)
        if layer is None:
            found = "the end of the spec" if self.done() else _show(self.layers[self.pos])
            raise self.fail(f"expected {' or '.join(types)} at layer {self.pos}, found {found}")
        return layer

    def same(self, what: str, seen: dict[str, Scalar], value: Scalar) -> None:
        """Record a setting shared by all layers; fail when a later layer disagrees."""
        if what in seen and seen[what] != value:
            raise self.fail(f"all layers must share one {what}, found {seen[what]!r} and {value!r} (layer {self.pos - 1})")
        seen[what] = value


class MlpConv1dEncoder(ArchitectureEncoder):
    """MLPs and 1-D CNNs in one conditional search space (see the module docstring)."""

    def __init__(self, settings: MlpConv1dSettings | None = None) -> None:
        self.settings = settings if settings is not None else MlpConv1dSettings()
        self._space = build_space(self.settings)

    def search_space(self) -> SearchSpace:
        return self._space

    # -- decode ---------------------------------------------------------------------------

    def decode(self, vector: ArchitectureVector | Mapping[str, Scalar]) -> ArchitectureSpec:
        v = self._space.checked(vector, "mlp_conv1d").values
        if v["family"] == "mlp":
            return ArchitectureSpec("mlp", self._decode_mlp(v))
        return ArchitectureSpec("conv1d", self._decode_conv(v))

    @staticmethod
    def _decode_mlp(v: Mapping[str, Any]) -> list[Layer]:
        layers = []
        for i in range(v["mlp_depth"]):
            layers.append(Layer("linear", {"out_features": v[f"mlp_width_{i}"]}))
            if v["mlp_norm"] != "none":
                layers.append(Layer(v["mlp_norm"]))
            layers.append(Layer("activation", {"fn": v["activation"]}))
            if v["dropout"] > 0:
                layers.append(Layer("dropout", {"p": v["dropout"]}))
        return layers

    @staticmethod
    def _decode_conv(v: Mapping[str, Any]) -> list[Layer]:
        layers = []
        for i in range(v["conv_blocks"]):
            layers.append(
                Layer(
                    "conv1d",
                    {"out_channels": v[f"conv_channels_{i}"], "kernel_size": v[f"conv_kernel_{i}"], "stride": v[f"conv_stride_{i}"]},
                )
            )
            if v["conv_norm"] == "batchnorm":
                layers.append(Layer("batchnorm"))
            layers.append(Layer("activation", {"fn": v["activation"]}))
            pool = v[f"conv_pool_{i}"]
            if pool != "none":
                layers.append(Layer(_POOL_LAYERS[pool], {"kernel_size": POOL_KERNEL}))
        layers.append(Layer("flatten"))
        if v["conv_head_width"] > 0:
            layers.append(Layer("linear", {"out_features": v["conv_head_width"]}))
            layers.append(Layer("activation", {"fn": v["activation"]}))
        if v["dropout"] > 0:
            layers.append(Layer("dropout", {"p": v["dropout"]}))
        return layers

    # -- encode ---------------------------------------------------------------------------

    def encode(self, spec: ArchitectureSpec) -> ArchitectureVector:
        if not isinstance(spec, ArchitectureSpec):
            raise ValueError(f"expected an ArchitectureSpec, got {type(spec).__name__}")
        if spec.family == "mlp":
            values = self._parse_mlp(_Reader(spec))
        elif spec.family == "conv1d":
            values = self._parse_conv(_Reader(spec))
        else:
            raise ValueError(f"mlp_conv1d cannot express family {spec.family!r}; it knows {', '.join(FAMILIES)}")
        full = {d.name: values.get(d.name, d.default()) for d in self._space}
        problems = self._space.violations(ArchitectureVector(full))
        if problems:
            raise ValueError(f"mlp_conv1d cannot express this {spec.family} spec: " + "; ".join(problems))
        vector = self._space.canonicalize(full)
        decoded = self.decode(vector)
        if decoded != spec:  # e.g. dropout(p=0.0) or a float width: parsed, but not the canonical form
            raise ValueError(
                f"mlp_conv1d cannot express this {spec.family} spec exactly: the nearest point decodes to "
                f"{decoded.describe()!r}, not {spec.describe()!r}"
            )
        return vector

    def _parse_mlp(self, r: _Reader) -> dict[str, Scalar]:
        shared: dict[str, Scalar] = {}
        values: dict[str, Scalar] = {"family": "mlp"}
        depth = 0
        while not r.done():
            if depth == self.settings.max_mlp_depth:
                raise r.fail(f"more than max_mlp_depth={self.settings.max_mlp_depth} linear layers")
            values[f"mlp_width_{depth}"] = r.expect("linear").params["out_features"]
            norm = r.take("batchnorm", "layernorm")
            r.same("mlp_norm", shared, norm.type if norm else "none")
            r.same("activation", shared, r.expect("activation").params["fn"])
            dropout = r.take("dropout")
            r.same("dropout", shared, dropout.params["p"] if dropout else 0.0)
            depth += 1
        if depth == 0:
            raise r.fail("an mlp needs at least one linear layer")
        return {**values, **shared, "mlp_depth": depth}

    def _parse_conv(self, r: _Reader) -> dict[str, Scalar]:
        shared: dict[str, Scalar] = {}
        values: dict[str, Scalar] = {"family": "conv1d"}
        blocks = 0
        while r.take("conv1d") is not None:
            if blocks == self.settings.max_conv_blocks:
                raise r.fail(f"more than max_conv_blocks={self.settings.max_conv_blocks} conv1d blocks")
            conv = r.layers[r.pos - 1]
            values[f"conv_channels_{blocks}"] = conv.params["out_channels"]
            values[f"conv_kernel_{blocks}"] = conv.params["kernel_size"]
            values[f"conv_stride_{blocks}"] = conv.params["stride"]
            norm = r.take("batchnorm")
            r.same("conv_norm", shared, "batchnorm" if norm else "none")
            r.same("activation", shared, r.expect("activation").params["fn"])
            pool = r.take("maxpool1d", "avgpool1d")
            if pool is not None and pool.params["kernel_size"] != POOL_KERNEL:
                raise r.fail(f"pooling must use kernel_size={POOL_KERNEL}, found {_show(pool)}")
            values[f"conv_pool_{blocks}"] = _POOL_NAMES[pool.type] if pool else "none"
            blocks += 1
        if blocks == 0:
            raise r.fail("a conv1d spec must start with a conv1d layer" + ("" if r.done() else f", found {_show(r.layers[0])}"))
        r.expect("flatten")
        head = r.take("linear")
        values["conv_head_width"] = head.params["out_features"] if head else 0
        if head is not None:
            r.same("activation", shared, r.expect("activation").params["fn"])
        dropout = r.take("dropout")
        values["dropout"] = dropout.params["p"] if dropout else 0.0
        if not r.done():
            raise r.fail(f"unexpected {_show(r.layers[r.pos])} at layer {r.pos} after the head")
        return {**values, **shared, "conv_blocks": blocks}
