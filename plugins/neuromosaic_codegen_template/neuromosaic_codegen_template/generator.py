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
from neuromosaic_core.codegen.rendering import SE_CLASS, forward_expression, module_expression
from neuromosaic_core.interfaces import CodeGenProvider, CodeGenRequest
from neuromosaic_core.layers import Analysis, LayerInfo, Shape, analyse

_SAFE = re.compile(r"[^A-Za-z0-9_.,:()=+\-\[\]{}|~ ]")


def _safe(text: str) -> str:
    """Text safe inside a docstring or comment (spec strings are data, never code)."""
    return _SAFE.sub("?", text)


def _shape(shape: Shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def _module(info: LayerInfo) -> str:
    """The ``nn`` module for one analysed layer (a vector entering a conv1d is unflattened first)."""
    expr = module_expression(info)
    if expr is None:
        raise ValueError(f"{info.layer.type} is computed in forward, not by a module")
    return expr


class TemplateCodeGen(CodeGenProvider):
    """Deterministic code from the layer vocabulary. ``feedback`` is ignored: the code is right first time.

    ``trusted``: its code matches the spec by construction (tested), so the pipeline skips the
    sandboxed probe and fidelity check it runs on LLM code.
    """

    trusted = True

    def __init__(self, settings: TemplateSettings | None = None) -> None:
        self.settings = settings if settings is not None else TemplateSettings()

    def generate_code(self, request: CodeGenRequest) -> str:
        """Render the module; raises ``LayerError`` (a ``ValueError``) for a spec whose shapes do not infer.

        A sequential spec becomes ``self.body = nn.Sequential(...)`` as it always did; a graph gets
        one attribute per node in ``__init__`` and a ``forward`` that computes the nodes in the
        spec's (topological) order, merges and skips included.
        """
        spec = request.spec
        analysis = analyse(spec, request.input_shape, request.num_classes)
        sequential = all(sources == (i - 1,) for i, sources in enumerate(analysis.inputs)) and \
            not any(info.layer.type in ("zero",) for info in analysis.layers)
        head: list[tuple[str, str]] = []
        body_out = analysis.layers[-1].out_shape if analysis.layers else tuple(request.input_shape)
        if len(body_out) != 1:
            head.append(("nn.Flatten()", f"{_shape(body_out)} -> {_shape((analysis.head_in_features,))}"))
        head.append(
            (f"nn.Linear({analysis.head_in_features}, {request.num_classes})",
             f"{_shape((analysis.head_in_features,))} -> {_shape((request.num_classes,))}")
        )  # fmt: skip
        if sequential:
            init = [*self._sequential("body", self._chain(analysis)), *self._sequential("head", head)]
            forward = ["        return self.head(self.body(x))"]
        else:
            init, forward = self._graph(analysis)
            init += self._sequential("head", head)
            forward.append(f"        return self.head({self._var(len(analysis.layers) - 1)})")

        family = _safe(spec.family)
        summary = _safe(spec.describe())
        uses_se = any(info.layer.type == "se" for info in analysis.layers)
        lines = [
            f'"""PyTorch network of the {family} family, written by the neuromosaic template code generator."""',
            "",
            "import torch",
            "from torch import nn",
            "",
            "",
            *([SE_CLASS, "", ""] if uses_se else []),
            "class Net(nn.Module):",
            f'    """{family} network, spec {spec.canonical_hash()}.',
            "",
            f"    Input {_shape(tuple(request.input_shape))}, {request.num_classes} classes, {analysis.params:,} parameters.",
            *textwrap.wrap(summary, width=96, initial_indent="    ", subsequent_indent="        ", break_on_hyphens=False),
            '    """',
            "",
            "    def __init__(self) -> None:",
            "        super().__init__()",
            *init,
            "",
            "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
            *forward,
        ]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _var(index: int) -> str:
        return "x" if index < 0 else f"n{index}"

    def _chain(self, analysis: Analysis) -> list[tuple[str, str]]:
        body: list[tuple[str, str]] = []  # (module expression, shape comment)
        for info in analysis.layers:
            in_shape = info.in_shape
            if info.layer.type == "conv1d" and len(in_shape) == 1:  # a vector enters a conv as one channel
                in_shape = (1, in_shape[0])
                body.append((f"nn.Unflatten(1, {_shape(in_shape)})", f"{_shape(info.in_shape)} -> {_shape(in_shape)}"))
            if info.layer.type in ("globalavgpool1d", "globalavgpool2d"):
                pool = "nn.AdaptiveAvgPool1d(1)" if info.layer.type == "globalavgpool1d" else "nn.AdaptiveAvgPool2d(1)"
                body += [(pool, f"{_shape(in_shape)} -> {_shape((*in_shape[:1], *[1] * (len(in_shape) - 1)))}"),
                         ("nn.Flatten()", f"-> {_shape(info.out_shape)}")]
                continue
            body.append((_module(info) if info.layer.type != "identity" else "nn.Identity()", f"{_shape(in_shape)} -> {_shape(info.out_shape)}"))
        return body

    def _graph(self, analysis: Analysis) -> tuple[list[str], list[str]]:
        """``__init__`` and ``forward`` lines for a graph: node ``i`` is ``self.n{i}`` (when it is a
        module) and the variable ``n{i}`` in ``forward``."""
        init: list[str] = []
        forward: list[str] = []
        for i, info in enumerate(analysis.layers):
            layer = info.layer
            args = [self._var(j) for j in analysis.inputs[i]]
            shapes = " + ".join(_shape(s) for s in info.in_shapes)
            label = f"{layer.name}: " if layer.name and layer.name != f"n{i}" else ""
            comment = f"  # {_safe(label)}{layer.type} {shapes} -> {_shape(info.out_shape)}" if self.settings.shape_comments else ""
            expr = module_expression(info)
            if expr is None:
                forward.append(f"        n{i} = {forward_expression(layer.type, args)}{comment}")
                continue
            if layer.type == "conv1d" and len(info.in_shape) == 1:  # a vector enters a conv as one channel
                expr = f"nn.Sequential(nn.Unflatten(1, (1, {info.in_shape[0]})), {expr})"
            init.append(f"        self.n{i} = {expr}{comment}")
            forward.append(f"        n{i} = self.n{i}({args[0]})")
        return init, forward

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
