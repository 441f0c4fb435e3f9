"""Prompt templates for LLM code generators: versioned sets of step files.

A template set is a directory with a ``template.toml`` (``version``, ``description`` and
optionally ``extends = "<another set>"``) and one file per step:

==============  ==============================================================================
``system``      the system message
``task``        what to write: a ``Net`` classifier, input and output shapes
``spec``        the layers in order, with their sizes and shapes
``constraints`` the rules (exact layers, allowed imports, no-argument constructor)
``output``      the answer's form (one fenced python block)
``examples``    an optional worked example (empty to leave it out)
``repair``      the follow-up message after a rejection (``$feedback``)
==============  ==============================================================================

The user message is ``task``, ``spec``, ``constraints``, ``output`` and ``examples`` joined by
blank lines. For a graph spec (branches, merges), the optional steps ``graph_spec``,
``graph_constraints``, ``graph_output`` and ``graph_repair`` replace their sequential namesakes
(a set without them inherits the bundled default's); ``$layer_table`` then lists the nodes with
their inputs, ``n3 = n1 + n2``. A variant overrides only the steps it has files for and inherits the rest. Steps are
:class:`string.Template` text; the placeholders are listed in :func:`variables`.

The stored version, e.g. ``default-v1+3fa2c1d0``, is the set's name and declared version plus a
hash of the resolved step texts, so an edited file never passes for the original. A graph request
is recorded (and cached) under ``<version>/graph+<hash of the graph steps>``, so the sequential
version, and with it every code-cache key written before graphs, stays what it was.
"""

from __future__ import annotations

import hashlib
import string
import tomllib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from neuromosaic_core.codegen.fidelity import is_graph
from neuromosaic_core.codegen.rendering import SE_CLASS, forward_expression, module_expression
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.interfaces import CodeGenRequest
from neuromosaic_core.layers import Analysis, LayerInfo, analyse

if TYPE_CHECKING:
    from neuromosaic_core.llm import Message

STEPS = ("system", "task", "spec", "constraints", "output", "examples", "repair")
#: Steps used instead of ``spec``, ``constraints``, ``output`` and ``repair`` for a graph spec.
GRAPH_STEPS = ("graph_spec", "graph_constraints", "graph_output", "graph_repair")
USER_STEPS = ("task", "spec", "constraints", "output", "examples")
BUNDLED = ("default", "example")
#: What :func:`variables` provides (a template using anything else is refused when loaded).
PLACEHOLDERS = ("family", "input_shape", "input_dims", "num_classes", "layer_table", "params", "spec_summary",
                "feedback", "previous_code", "helpers")


def _bundled_dir(name: str) -> Path:
    return Path(str(resources.files("neuromosaic_core.codegen") / "templates" / name))


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in shape)


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + _dims(shape) + (",)" if len(shape) == 1 else ")")


def _module(info: LayerInfo) -> str:
    """The PyTorch module for one analysed layer, as the prompt's layer table spells it."""
    return module_expression(info, pool_kwarg=True) or info.layer.type


def _rows(request: CodeGenRequest, analysis: Analysis) -> list[tuple[str, str]]:
    """``(module, shape change)`` for every step of the forward pass, head included."""
    rows: list[tuple[str, str]] = []
    for info in analysis.layers:
        in_shape = info.in_shape
        if info.layer.type == "conv1d" and len(in_shape) == 1:  # a vector enters a conv as one channel
            rows.append((f"nn.Unflatten(1, (1, {in_shape[0]}))", f"{_shape(in_shape)} -> (1, {in_shape[0]})"))
            in_shape = (1, in_shape[0])
        rows.append((_module(info), f"{_shape(in_shape)} -> {_shape(info.out_shape)}"))
    body_out = analysis.layers[-1].out_shape if analysis.layers else tuple(request.input_shape)
    if len(body_out) != 1:
        rows.append(("nn.Flatten()", f"{_shape(body_out)} -> ({analysis.head_in_features},)"))
    rows.append((f"nn.Linear({analysis.head_in_features}, {request.num_classes})",
                 f"({analysis.head_in_features},) -> ({request.num_classes},), the classification head"))
    return rows


def _graph_rows(request: CodeGenRequest, analysis: Analysis) -> list[tuple[str, str]]:
    """``(statement, shape change)`` per node of a graph, in a topological order, then the head."""
    rows: list[tuple[str, str]] = []
    for i, info in enumerate(analysis.layers):
        args = [f"n{j}" if j >= 0 else "x" for j in analysis.inputs[i]]
        shapes = " + ".join(_shape(s) for s in info.in_shapes)
        expr = module_expression(info)
        if expr is None:
            statement = f"n{i} = {forward_expression(info.layer.type, args)}"
        else:
            if info.layer.type == "conv1d" and len(info.in_shape) == 1:
                expr = f"nn.Sequential(nn.Unflatten(1, (1, {info.in_shape[0]})), {expr})"
            statement = f"n{i} = self.n{i}({args[0]}) with self.n{i} = {expr}"
        rows.append((statement, f"{info.layer.type}: {shapes} -> {_shape(info.out_shape)}"))
    last = f"n{len(analysis.layers) - 1}" if analysis.layers else "x"
    body_out = analysis.layers[-1].out_shape if analysis.layers else tuple(request.input_shape)
    head = f"nn.Linear({analysis.head_in_features}, {request.num_classes})"
    if len(body_out) != 1:
        head = f"nn.Sequential(nn.Flatten(), {head})"
    rows.append((f"return self.head({last}) with self.head = {head}",
                 f"{_shape(body_out)} -> ({request.num_classes},), the classification head"))
    return rows


def variables(request: CodeGenRequest) -> dict[str, str]:
    """The placeholders a step may use, computed from the request.

    ``family``, ``input_shape`` (``(40,)``), ``input_dims`` (``40``), ``num_classes``,
    ``layer_table`` (numbered layers with sizes and shapes, ending with the head), ``params``
    (the expected parameter count), ``spec_summary`` (one line), ``feedback`` and
    ``previous_code`` (on a repair, else empty), ``helpers`` (the helper class a graph's
    squeeze-and-excitation rows use, as a code block, else empty). For a graph, ``layer_table``
    numbers the nodes ``n0 = self.n0(x) with self.n0 = nn.Conv2d(...)``, ``n5 = n2 + n4``, ...
    """
    analysis = analyse(request.spec, request.input_shape, request.num_classes)
    graph = is_graph(analysis)
    rows = _graph_rows(request, analysis) if graph else _rows(request, analysis)
    width = max(len(module) for module, _ in rows)
    if graph:
        width = min(width, 100)
    return {
        "family": request.spec.family,
        "input_shape": _shape(tuple(request.input_shape)),
        "input_dims": _dims(tuple(request.input_shape)),
        "num_classes": str(request.num_classes),
        "layer_table": "\n".join(f"{i:>2}. {module:<{width}}  # {change}" for i, (module, change) in enumerate(rows, 1)),
        "params": f"{analysis.params:,}",
        "spec_summary": request.spec.describe(),
        "feedback": request.feedback or "",
        "previous_code": request.previous_code or "",
        "helpers": f"```python\n{SE_CLASS}\n```" if any(info.layer.type == "se" for info in analysis.layers) else "",
    }


@attrs.frozen
class PromptTemplate:
    """A resolved template set: its name, version string and one text per step; ``graph_steps``
    hold the graph variants (``graph_spec``, ...) and ``graph_version`` their hash."""

    name: str
    version: str
    steps: dict[str, str]
    description: str = ""
    graph_steps: dict[str, str] = attrs.field(factory=dict)
    graph_version: str = ""

    def _text(self, step: str, graph: bool) -> str:
        return self.graph_steps.get(f"graph_{step}", self.steps[step]) if graph else self.steps[step]

    def render(self, step: str, request: CodeGenRequest, values: dict[str, str] | None = None, graph: bool | None = None) -> str:
        """One step's text (its graph variant for a graph spec); ``values`` are :func:`variables`
        of the request (computed if not given)."""
        if graph is None:
            graph = is_graph(analyse(request.spec, request.input_shape, request.num_classes))
        return string.Template(self._text(step, graph)).substitute(values if values is not None else variables(request)).strip()

    def version_for(self, request: CodeGenRequest) -> str:
        """The version a request's answer is recorded and cached under: :attr:`version` for a
        sequential spec (as before graphs), with the graph steps' hash appended for a graph."""
        try:
            graph = is_graph(analyse(request.spec, request.input_shape, request.num_classes))
        except ValueError:
            graph = False
        return f"{self.version}/graph+{self.graph_version}" if graph and self.graph_version else self.version

    def messages(self, request: CodeGenRequest) -> list[Message]:
        """The chat for a request: system and user messages, plus the previous answer and the
        repair step on a repair attempt."""
        from neuromosaic_core.llm import Message

        values = variables(request)  # one analysis of the spec for every step
        graph = is_graph(analyse(request.spec, request.input_shape, request.num_classes))
        user = "\n\n".join(text for step in USER_STEPS if (text := self.render(step, request, values, graph)))
        chat = [Message("system", self.render("system", request, values, graph)), Message("user", user)]
        if request.feedback is not None:
            previous = request.previous_code or ""
            chat += [Message("assistant", f"```python\n{previous.strip()}\n```"),
                     Message("user", self.render("repair", request, values, graph))]
        return chat


def _read_set(directory: Path, seen: tuple[str, ...] = ()) -> tuple[dict[str, str], dict[str, Any]]:
    manifest_path = directory / "template.toml"
    if not manifest_path.is_file():
        raise ConfigError(f"prompt template {directory} has no template.toml")
    try:
        manifest = tomllib.loads(manifest_path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"prompt template {manifest_path}: {exc}") from None
    steps: dict[str, str] = {}
    parent = manifest.get("extends")
    if parent:
        if parent in seen:
            raise ConfigError(f"prompt template {directory}: 'extends' loops through {parent!r}")
        steps = _read_set(_resolve(str(parent), directory.parent), (*seen, str(parent)))[0]
    unknown = sorted(p.stem for p in directory.glob("*.md") if p.stem not in STEPS + GRAPH_STEPS)
    if unknown:
        raise ConfigError(f"prompt template {directory}: unknown step file(s) {', '.join(unknown)}; steps are {', '.join(STEPS)}")
    for step in STEPS + GRAPH_STEPS:
        path = directory / f"{step}.md"
        if path.is_file():
            steps[step] = path.read_text()
    return steps, manifest


def _resolve(name: str, relative_to: Path | None = None) -> Path:
    if name in BUNDLED:
        return _bundled_dir(name)
    for candidate in ([relative_to / name] if relative_to is not None else []) + [Path(name).expanduser()]:
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"prompt template {name!r} not found: use one of {', '.join(BUNDLED)} or the path of a template directory")


def load_template(name_or_path: str = "default") -> PromptTemplate:
    """Load a bundled set by name or a directory by path; every step must end up defined and
    render (an unknown placeholder is a :class:`ConfigError` here, not in the middle of a search)."""
    directory = _resolve(name_or_path)
    steps, manifest = _read_set(directory)
    missing = [s for s in STEPS if s not in steps]
    if missing:
        raise ConfigError(f"prompt template {name_or_path!r} lacks step(s) {', '.join(missing)} (add the files or 'extends')")
    if directory != _bundled_dir("default"):  # a set without graph steps inherits the default's
        defaults = _read_set(_bundled_dir("default"))[0]
        for step in GRAPH_STEPS:
            steps.setdefault(step, defaults[step])
    placeholders = dict.fromkeys(PLACEHOLDERS, "")
    for step, text in steps.items():
        try:
            string.Template(text).substitute(placeholders)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"prompt template {name_or_path!r}, step {step}: bad placeholder {exc}; "
                              f"known: {', '.join('$' + k for k in placeholders)}") from None
    digest = hashlib.sha256("\x00".join(f"{s}\x00{steps[s]}" for s in STEPS).encode()).hexdigest()[:8]
    graph_digest = hashlib.sha256("\x00".join(f"{s}\x00{steps[s]}" for s in GRAPH_STEPS).encode()).hexdigest()[:8]
    name = directory.name
    return PromptTemplate(name, f"{name}-v{manifest.get('version', '0')}+{digest}", {s: steps[s] for s in STEPS},
                          str(manifest.get("description", "")), {s: steps[s] for s in GRAPH_STEPS}, graph_digest)
