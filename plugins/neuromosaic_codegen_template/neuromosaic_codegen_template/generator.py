"""The ``template`` code generator: renders readable PyTorch code for a spec, without an LLM.

The layer shapes come from :func:`neuromosaic_core.layers.analyse`, so ``in_features`` and
``in_channels`` are always right and the module's parameter count equals the analytic one. The
output follows the generated-code contract: ``import torch``, ``from torch import nn`` and a
``class Net(nn.Module)`` built with no arguments whose ``forward`` maps ``(batch, *input_shape)``
to ``(batch, num_classes)`` logits.
"""

from __future__ import annotations

import re
import textwrap

from neuromosaic_codegen_template.settings import TemplateSettings
from neuromosaic_core.interfaces import CodeGenProvider, CodeGenRequest
from neuromosaic_core.layers import LayerInfo, Shape, analyse

_ACTIVATIONS = {"relu": "nn.ReLU()", "gelu": "nn.GELU()", "silu": "nn.SiLU()", "tanh": "nn.Tanh()"}
_SAFE = re.compile(r"[^A-Za-z0-9_.,:()=+\- ]")


def _safe(text: str) -> str:
    """Text safe inside a docstring or comment (spec strings are data, never code)."""
    return _SAFE.sub("?", text)


def _shape(shape: Shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def _module(info: LayerInfo) -> str:
    """The ``nn`` module for one analysed layer."""
    layer, shape = info.layer, info.in_shape
    t, p = layer.type, layer.params
    if t == "linear":
        return f"nn.Linear({shape[0]}, {int(p['out_features'])})"
    if t == "conv1d":
        in_c = 1 if len(shape) == 1 else shape[0]
        k = int(p["kernel_size"])
        return f"nn.Conv1d({in_c}, {int(p['out_channels'])}, kernel_size={k}, stride={int(p['stride'])}, padding={k // 2})"
    if t == "batchnorm":
        return f"nn.BatchNorm1d({shape[0]})"
    if t == "layernorm":
        return f"nn.LayerNorm({shape[-1]})"
    if t == "activation":
        return _ACTIVATIONS[str(p["fn"])]
    if t == "dropout":
        return f"nn.Dropout(p={float(p['p'])!r})"
    if t == "maxpool1d":
        return f"nn.MaxPool1d({int(p['kernel_size'])})"
    if t == "avgpool1d":
        return f"nn.AvgPool1d({int(p['kernel_size'])})"
    if t == "flatten":
        return "nn.Flatten()"
    raise ValueError(f"template codegen has no rendering for layer type {t!r}")  # analyse() already refuses these


class TemplateCodeGen(CodeGenProvider):
    """Deterministic code from the layer vocabulary. ``feedback`` is ignored: the code is right first time.

    ``trusted``: its code matches the spec by construction (tested), so the pipeline skips the
    sandboxed probe and fidelity check it runs on LLM code.
    """

    trusted = True

    def __init__(self, settings: TemplateSettings | None = None) -> None:
        self.settings = settings if settings is not None else TemplateSettings()

    def generate_code(self, request: CodeGenRequest) -> str:
        """Render the module; raises ``LayerError`` (a ``ValueError``) for a spec whose shapes do not infer."""
        spec = request.spec
        analysis = analyse(spec, request.input_shape, request.num_classes)
        body: list[tuple[str, str]] = []  # (module expression, shape comment)
        for info in analysis.layers:
            in_shape = info.in_shape
            if info.layer.type == "conv1d" and len(in_shape) == 1:  # a vector enters a conv as one channel
                in_shape = (1, in_shape[0])
                body.append((f"nn.Unflatten(1, {_shape(in_shape)})", f"{_shape(info.in_shape)} -> {_shape(in_shape)}"))
            body.append((_module(info), f"{_shape(in_shape)} -> {_shape(info.out_shape)}"))
        body_out = analysis.layers[-1].out_shape if analysis.layers else tuple(request.input_shape)
        head: list[tuple[str, str]] = []
        if len(body_out) != 1:
            head.append(("nn.Flatten()", f"{_shape(body_out)} -> {_shape((analysis.head_in_features,))}"))
        head.append(
            (f"nn.Linear({analysis.head_in_features}, {request.num_classes})",
             f"{_shape((analysis.head_in_features,))} -> {_shape((request.num_classes,))}")
        )  # fmt: skip

        family = _safe(spec.family)
        summary = _safe(spec.describe())
        lines = [
            f'"""PyTorch network of the {family} family, written by the neuromosaic template code generator."""',
            "",
            "import torch",
            "from torch import nn",
            "",
            "",
            "class Net(nn.Module):",
            f'    """{family} network, spec {spec.canonical_hash()}.',
            "",
            f"    Input {_shape(tuple(request.input_shape))}, {request.num_classes} classes, {analysis.params:,} parameters.",
            *textwrap.wrap(summary, width=96, initial_indent="    ", subsequent_indent="        ", break_on_hyphens=False),
            '    """',
            "",
            "    def __init__(self) -> None:",
            "        super().__init__()",
            *self._sequential("body", body),
            *self._sequential("head", head),
            "",
            "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
            "        return self.head(self.body(x))",
        ]
        return "\n".join(lines) + "\n"

    def _sequential(self, name: str, modules: list[tuple[str, str]]) -> list[str]:
        if not modules:
            return [f"        self.{name} = nn.Identity()"]
        if len(modules) == 1:
            expr, comment = modules[0]
            return [f"        self.{name} = {expr}" + (f"  # {comment}" if self.settings.shape_comments else "")]
        lines = [f"        self.{name} = nn.Sequential("]
        for expr, comment in modules:
            lines.append(f"            {expr},  # {comment}" if self.settings.shape_comments else f"            {expr},")
        lines.append("        )")
        return lines
