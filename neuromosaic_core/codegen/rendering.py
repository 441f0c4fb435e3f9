"""How each node of the layer vocabulary is written in PyTorch: one place for the template code
generator and the LLM prompts, so the code and the prompt's layer table agree.

Pure text (no torch). A node is either an ``nn`` module built in ``__init__`` (:func:`module_expression`)
or, for ``add``, ``concat``, ``identity`` and ``zero``, an expression in ``forward``
(:func:`forward_expression`). ``se`` uses the small :data:`SE_CLASS` the generated module defines.
"""

from __future__ import annotations

from neuromosaic_core.layers import LayerInfo, conv_geometry, pool_geometry, se_hidden

ACTIVATION_MODULES = {"relu": "nn.ReLU()", "gelu": "nn.GELU()", "silu": "nn.SiLU()", "tanh": "nn.Tanh()", "sigmoid": "nn.Sigmoid()"}
#: Nodes computed in ``forward`` rather than by a module.
FORWARD_ONLY = ("add", "concat", "identity", "zero")

SE_CLASS = '''class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: scale each channel by a weight computed from its global average."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.flatten(2).mean(dim=2)
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(w))))
        return x * w.reshape(w.shape[0], w.shape[1], *([1] * (x.dim() - 2)))'''


def _conv_options(info: LayerInfo, padding: int) -> str:
    p = info.layer.params
    k, stride, dilation, _ = conv_geometry(info.layer)
    extra = f", stride={stride}, padding={padding}"
    if dilation != 1:
        extra += f", dilation={dilation}"
    groups = p.get("groups", 1)
    if groups == "depthwise":
        groups = info.in_shape[0] if len(info.in_shape) > 1 else 1
    if groups != 1:
        extra += f", groups={groups}"
    if not p.get("bias", True):
        extra += ", bias=False"
    return f"kernel_size={k}{extra}"


def _pool(info: LayerInfo, cls: str, legacy_kwarg: bool) -> str:
    k, stride, padding = pool_geometry(info.layer)
    if stride == k and padding == 0:
        return f"nn.{cls}(kernel_size={k})" if legacy_kwarg else f"nn.{cls}({k})"
    extra = ", count_include_pad=False" if cls.startswith("Avg") else ""
    return f"nn.{cls}({k}, stride={stride}, padding={padding}{extra})"


def module_expression(info: LayerInfo, pool_kwarg: bool = False) -> str | None:
    """The ``nn`` expression for an analysed node, or None for a node computed in ``forward``.

    ``pool_kwarg`` spells a plain pool ``nn.MaxPool1d(kernel_size=2)`` (the prompts' form) rather
    than ``nn.MaxPool1d(2)`` (the template's)."""
    layer, shape = info.layer, info.in_shape
    t, p = layer.type, layer.params
    if t == "linear":
        return f"nn.Linear({shape[0]}, {int(p['out_features'])})"
    if t == "conv1d":
        in_c = 1 if len(shape) == 1 else shape[0]
        return f"nn.Conv1d({in_c}, {int(p['out_channels'])}, {_conv_options(info, conv_geometry(layer)[3])})"
    if t == "conv2d":
        return f"nn.Conv2d({shape[0]}, {int(p['out_channels'])}, {_conv_options(info, conv_geometry(layer)[3])})"
    if t == "batchnorm":
        return f"nn.BatchNorm1d({shape[0]})"
    if t == "batchnorm2d":
        return f"nn.BatchNorm2d({shape[0]})"
    if t == "layernorm":
        return f"nn.LayerNorm({shape[-1]})"
    if t == "activation":
        return ACTIVATION_MODULES[str(p["fn"])]
    if t == "dropout":
        return f"nn.Dropout(p={float(p['p'])!r})"
    if t in ("maxpool1d", "avgpool1d", "maxpool2d", "avgpool2d"):
        return _pool(info, {"maxpool1d": "MaxPool1d", "avgpool1d": "AvgPool1d", "maxpool2d": "MaxPool2d", "avgpool2d": "AvgPool2d"}[t],
                     pool_kwarg)
    if t == "globalavgpool1d":
        return "nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten())"
    if t == "globalavgpool2d":
        return "nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())"
    if t == "se":
        return f"SqueezeExcite({shape[0]}, {se_hidden(layer, shape[0])})"
    if t == "flatten":
        return "nn.Flatten()"
    if t in FORWARD_ONLY:
        return None
    raise ValueError(f"no PyTorch rendering for layer type {t!r}")  # analyse() already refuses these


def forward_expression(kind: str, args: list[str]) -> str:
    """The ``forward`` expression of a node computed there, on the variables ``args``."""
    if kind == "add":
        return " + ".join(args)
    if kind == "concat":
        return f"torch.cat([{', '.join(args)}], dim=1)"
    if kind == "identity":
        return args[0]
    if kind == "zero":
        return f"torch.zeros_like({args[0]})"
    raise ValueError(f"{kind!r} is computed by a module, not in forward")
