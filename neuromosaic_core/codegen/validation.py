"""Static validation of generated code: the first line of defence (the runner's isolation is the second).

Generated code is untrusted. Before anything imports it, it is parsed and walked:

- **imports**: only modules in :data:`ALLOWED_MODULES`;
- **builtins**: no ``exec``, ``eval``, ``compile``, ``open``, ``__import__``, ``getattr`` and friends;
- **dunders**: no double-underscore attribute or name except ``__init__`` / ``__name__``
  (``x.__class__.__subclasses__()`` is the classic escape);
- **attributes**: a dotted name rooted at an imported module must be on an allow-list. An allowed
  import is not an allowed attribute: ``torch.load``, ``torch.hub``, ``torch.utils``,
  ``torch.ops`` and friends reach files, the network or native code;
- **top level**: only imports, definitions, constant assignments and a docstring;
- **contract**: a ``class Net`` deriving from ``nn.Module`` with a ``forward`` method and an
  ``__init__`` that needs no arguments.

Each rejection names the rule that fired and the line, so an LLM can be told what to fix.
"""

from __future__ import annotations

import ast

import attrs

ALLOWED_MODULES = frozenset(
    {"torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "math", "typing", "collections",
     "functools", "itertools", "dataclasses", "numbers", "__future__"}
)

FORBIDDEN_BUILTINS = frozenset(
    {"exec", "eval", "compile", "open", "__import__", "globals", "locals", "vars", "getattr", "setattr",
     "delattr", "breakpoint", "exit", "quit", "help", "memoryview", "__builtins__"}
)
ALLOWED_DUNDERS = frozenset({"__init__", "__name__", "__future__"})

#: Top-level ``torch.<name>`` that generated code may use: tensor maths, nothing that touches
#: files, the network, processes or native extensions.
TORCH_ALLOWED = frozenset(
    """nn Tensor tensor as_tensor zeros zeros_like ones ones_like full full_like empty arange linspace
    randn rand randn_like rand_like cat concat stack split chunk flatten reshape transpose permute
    squeeze unsqueeze matmul bmm mm einsum add sub mul div pow exp log log1p sqrt rsqrt abs neg
    clamp clip where maximum minimum max min mean sum prod std var norm softmax log_softmax sigmoid
    tanh relu gelu erf sin cos argmax argmin topk sort cumsum float32 float16 bfloat16 float64 float
    int64 long int32 bool no_grad inference_mode enable_grad is_tensor numel size Size device dtype
    amax amin logsumexp roll gather scatter index_select masked_fill narrow repeat_interleave tile""".split()
)
NN_DENIED = frozenset({"utils", "modules", "parallel", "backends", "quantized", "qat", "intrinsic", "attention"})
#: Method names refused on any object: they read or write files or reach native code.
METHOD_DENIED = frozenset(
    {"load", "save", "from_file", "tofile", "fromfile", "system", "popen", "spawn", "format_map", "savez", "savez_compressed",
     "savetxt", "loadtxt", "genfromtxt", "fromregex", "memmap", "open_memmap", "load_library", "urlopen", "remove", "unlink",
     "rmtree", "read_text", "read_bytes", "write_text", "write_bytes", "mkdir"}
)
#: Attribute names that lead to a module object (``F.torch``, ``typing.sys``, ``x.utils``), refused
#: anywhere in an attribute chain so re-exports cannot reach what an import could not.
MODULE_ATTRIBUTES = frozenset(
    {"torch", "nn", "sys", "os", "builtins", "importlib", "subprocess", "socket", "shutil", "pathlib", "io", "ctypes",
     "pickle", "marshal", "types", "inspect", "gc", "hub", "utils", "ops", "jit", "multiprocessing", "distributed",
     "library", "classes", "package", "cpp_extension", "_C", "modules", "serialization", "storage", "np", "numpy",
     "ctypeslib", "f2py", "contextlib", "stdlib_re", "re", "copy", "warnings", "weakref", "threading", "signal", "tempfile",
     "glob", "json", "logging", "platform", "sysconfig", "site", "runpy", "pkgutil", "linecache", "traceback", "abc"}
)


@attrs.frozen
class CodeRejected(Exception):
    """Generated code broke a validation rule."""

    rule: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"[{self.rule}] {self.message}{where}"


def _dotted(node: ast.AST) -> list[str] | None:
    """``torch.nn.functional.relu`` as a list of names, or None when not a plain dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def _module_attribute_allowed(module: str, attr: str) -> bool:
    if attr.startswith("_"):
        return False
    if module == "torch":
        return attr in TORCH_ALLOWED
    if module == "torch.nn":
        return attr not in NN_DENIED
    return True  # torch.nn.functional, torch.nn.init, math, typing, ...: whole public namespace


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}  # local name -> full module path (or module.attr)

    def fail(self, rule: str, message: str, node: ast.AST) -> None:
        raise CodeRejected(rule, message, getattr(node, "lineno", None))

    # imports -------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES:
                self.fail("import", f"import of {alias.name!r} is not allowed; allowed: {', '.join(sorted(ALLOWED_MODULES))}", node)
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                self.aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or module not in ALLOWED_MODULES:
            self.fail("import", f"import from {module or '.'!r} is not allowed", node)
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if alias.name == "*":
                self.fail("import", f"'from {module} import *' is not allowed", node)
            if full not in ALLOWED_MODULES and not _module_attribute_allowed(module, alias.name):
                self.fail("attribute", f"{full} is not allowed", node)
            self.aliases[alias.asname or alias.name] = full

    # names and attributes ------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load) and self.aliases.get(node.id) in ALLOWED_MODULES:
            # `t = torch; t.hub` would dodge the attribute rules: modules are used only as `module.attr`
            self.fail("attribute", f"module {node.id!r} may only be used as {node.id}.<attribute>", node)
        if node.id in FORBIDDEN_BUILTINS:
            self.fail("builtin", f"use of {node.id!r} is not allowed", node)
        if node.id.startswith("__") and node.id not in ALLOWED_DUNDERS:
            self.fail("dunder", f"name {node.id!r} is not allowed", node)

    def _check_attribute_name(self, attr: str, node: ast.AST) -> None:
        if attr.startswith("__") and attr not in ALLOWED_DUNDERS:
            self.fail("dunder", f"attribute {attr!r} is not allowed", node)
        if attr in METHOD_DENIED:
            self.fail("attribute", f"attribute {attr!r} is not allowed (files, processes or native code)", node)
        if attr in MODULE_ATTRIBUTES:
            self.fail("attribute", f"attribute {attr!r} reaches a module; import what you need from an allowed module", node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        parts = _dotted(node)
        if parts and parts[0] in self.aliases:
            # Walk the chain through allowed modules (torch -> torch.nn -> torch.nn.functional); the
            # first other attribute must be allowed for its module, and every later one is checked
            # like any attribute (no dunders, no module re-exports such as F.torch.hub).
            module = self.aliases[parts[0]]
            rest = parts[1:]
            while rest and f"{module}.{rest[0]}" in ALLOWED_MODULES:
                module = f"{module}.{rest.pop(0)}"
            if rest and module in ALLOWED_MODULES and not _module_attribute_allowed(module, rest[0]):
                self.fail("attribute", f"{module}.{rest[0]} is not allowed", node)
            for attr in rest:
                self._check_attribute_name(attr, node)
            return  # the chain is checked as a whole; its prefixes need no second visit
        self._check_attribute_name(node.attr, node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        # "{0.__class__}".format(x) reaches dunders through a format string
        if isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            target = node.func.value
            if isinstance(target, ast.Constant) and isinstance(target.value, str) and "__" in target.value:
                self.fail("dunder", "format strings may not reach double-underscore attributes", node)
        self.generic_visit(node)


def _is_module_base(base: ast.expr) -> bool:
    parts = _dotted(base)
    return bool(parts) and parts[-1] == "Module"


def _check_top_level(tree: ast.Module) -> None:
    for i, stmt in enumerate(tree.body):
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and i == 0:
            continue  # module docstring
        value = getattr(stmt, "value", None)
        if isinstance(stmt, ast.AnnAssign) and value is None:
            continue  # a bare annotation such as `x: int`
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and value is not None and all(
            isinstance(n, (ast.Constant, ast.Tuple, ast.List, ast.Load, ast.UnaryOp, ast.USub)) for n in ast.walk(value)
        ):
            continue  # constants such as HIDDEN = 128
        if isinstance(stmt, ast.If) and ast.unparse(stmt.test).replace("'", '"') == '__name__ == "__main__"':
            continue  # never runs on import
        raise CodeRejected("top_level", "only imports, definitions and constants are allowed at module level", stmt.lineno)


def _check_contract(tree: ast.Module) -> None:
    net = next((s for s in tree.body if isinstance(s, ast.ClassDef) and s.name == "Net"), None)
    if net is None:
        raise CodeRejected("missing_net", "the module must define 'class Net(nn.Module)'")
    if not any(_is_module_base(b) for b in net.bases):
        raise CodeRejected("missing_net", "class Net must derive from nn.Module", net.lineno)
    methods = {s.name: s for s in net.body if isinstance(s, ast.FunctionDef)}
    if "forward" not in methods:
        raise CodeRejected("missing_forward", "class Net must define forward(self, x)", net.lineno)
    init = methods.get("__init__")
    if init is not None:
        args = init.args
        required = len(args.args) - len(args.defaults) - 1  # minus self
        required_kw = sum(1 for d in args.kw_defaults if d is None)
        if required > 0 or required_kw > 0:
            raise CodeRejected("net_init_args", "Net() must be constructible with no arguments", init.lineno)


def validate_code(code: str) -> ast.Module:
    """Check generated code against every rule; return its AST or raise :class:`CodeRejected`."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise CodeRejected("syntax", f"invalid Python: {exc.msg}", exc.lineno) from None
    _Checker().visit(tree)
    _check_top_level(tree)
    _check_contract(tree)
    return tree
