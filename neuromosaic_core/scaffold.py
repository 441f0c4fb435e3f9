"""``neuromosaic-plugin new KIND NAME [-o DIR]``: a new plugin package, ready to test and publish.

The package it writes (``DIR/neuromosaic_<kind>_<name>/``) has the shape of the bundled plugins:
a ``pyproject.toml`` with the entry point in the group ``neuromosaic``, the PyPI metadata and a
``neuromosaic-core`` range from the running core's version; a module holding the settings class,
the factory and the hook implementation (cheap to import); a minimal working component in a
second module; tests that subclass the core's contract suite for the kind (where one exists); a
README, a CHANGELOG and a docs page. ``docs/writing-a-plugin.md`` starts from it.

The templates are plain ``string.Template`` files shipped inside the core
(``neuromosaic_core/plugin_templates``). Start-up is light: the standard library and the hook
names, no plugin discovery, no torch.
"""

from __future__ import annotations

import argparse
import keyword
import re
import string
from importlib import resources
from pathlib import Path

import attrs

from neuromosaic_core import __version__
from neuromosaic_core.errors import NeuromosaicError, run_console_script
from neuromosaic_core.hookspecs import REGISTRATION_HOOKS

#: Where a contributor to the Neuromosaic repository puts a plugin (plugins/<dir>); the default
#: ``--url``, so the generated project URLs point into that repository.
MONOREPO = "https://github.com/neuromosaic/neuromosaic"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,19}$")


@attrs.frozen
class Kind:
    """What differs between kinds: the implementation module's name, what the package is called
    (``neuromosaic-<word>-<name>``), the extra test dependencies and how a user selects it."""

    module: str
    word: str
    summary: str
    select: str
    settings_prefix: str
    test_requires: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {
    "strategy": Kind("search", "strategy", "search strategy", "strategy=$name", "strategy."),
    "encoder": Kind("encoder", "encoder", "architecture encoder", "encoder=$name", "encoder.", ("hypothesis>=6",)),
    "codegen": Kind("generator", "codegen", "code generator", "codegen=$name", "codegen.", ("torch>=2.3",)),
    "runner": Kind("runner", "runner", "runner", "runner=$name", "runner."),
    "storage": Kind("storage", "storage", "storage backend", "storage=$name", "storage."),
    "visualizer": Kind("visualizer", "visualizer", "visualizer", "'visualizers=[$name]'", "visualizer.$name."),
    "task": Kind("task", "task", "task", "task=$name", "task."),
    "scheduler": Kind("scheduler", "scheduler", "trial scheduler", "scheduler=$name", "scheduler."),
    "alert_channel": Kind("channel", "alerts", "alert channel", "alerts.enabled=true 'alerts.channels=[log,$name]'", "alerts.$name."),
    "tracker": Kind("tracker", "tracker", "experiment tracker", "'trackers=[$name]'", "tracker.$name."),
}
# ``meta`` (a meta-learner) is left out: its interface is a surrogate model (observe, predict with
# uncertainty, screening), and a stand-in that predicts nothing would teach nothing; copy
# plugins/neuromosaic_meta_surrogate instead.


class ScaffoldError(NeuromosaicError):
    """Bad input to ``neuromosaic-plugin`` (exit status 2)."""


def core_range(version: str = __version__) -> str:
    """``>=0.3.3,<0.4`` for core 0.3.3 (hooks only gain arguments within a minor series before
    1.0, within a major one after)."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    major, minor = parts[0], parts[1] if len(parts) > 1 else 0
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f">={'.'.join(map(str, parts))},<{upper}"


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part)


def _variables(kind: str, name: str, url: str) -> dict[str, str]:
    spec = KINDS[kind]
    package = f"neuromosaic_{spec.word}_{name}"
    page = f"{spec.word}-{name.replace('_', '-')}"
    prefix = f"plugins/{package}/" if url.rstrip("/") == MONOREPO else ""
    tree = f"{url.rstrip('/')}/tree/main/{prefix}".rstrip("/")
    blob = f"{url.rstrip('/')}/blob/main/{prefix}"
    test_requires = ", ".join(f'"{r}"' for r in ("pytest>=8", *spec.test_requires))
    values = {
        "kind": kind,
        "name": name,
        "Name": _camel(name),
        "package": package,
        "dist": package.replace("_", "-"),
        "module": spec.module,
        "summary": spec.summary,
        "hook": REGISTRATION_HOOKS[kind],
        "core_version": __version__,
        "core_range": core_range(),
        "test_requires": test_requires,
        "page": page,
        "homepage": url.rstrip("/"),
        "source_url": tree,
        "docs_url": f"{blob}docs/{page}.md",
        "changelog_url": f"{blob}CHANGELOG.md",
        "url_scheme": name.replace("_", "-"),  # URL schemes have no underscores
    }
    values["select"] = string.Template(spec.select).substitute(values)
    values["settings_prefix"] = string.Template(spec.settings_prefix).substitute(values)
    return values


def _render(template: str, values: dict[str, str]) -> str:
    return string.Template(template).substitute(values)


def files_for(kind: str, name: str, url: str = MONOREPO) -> dict[str, str]:
    """The generated package as ``{relative path: text}`` (nothing written)."""
    check(kind, name)
    values = _variables(kind, name, url)
    root = resources.files("neuromosaic_core") / "plugin_templates"
    common, own = root / "common", root / kind
    package, test = values["package"], f"tests/test_{name}.py"
    layout = {
        "pyproject.toml": common / "pyproject.toml.tmpl",
        "README.md": common / "README.md.tmpl",
        "CHANGELOG.md": common / "CHANGELOG.md.tmpl",
        f"docs/{values['page']}.md": common / "docs.md.tmpl",
        f"{package}/__init__.py": own / "__init__.py.tmpl",
        f"{package}/{values['module']}.py": own / "module.py.tmpl",
        test: own / "test.py.tmpl",
    }
    values["usage"] = _render((own / "usage.md.tmpl").read_text(), values).strip()
    return {path: _render(template.read_text(), values) for path, template in layout.items()}


def check(kind: str, name: str) -> None:
    if kind not in KINDS:
        left_out = sorted(set(REGISTRATION_HOOKS) - set(KINDS))
        raise ScaffoldError(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}"
                            + (f" (no template for {', '.join(left_out)})" if left_out else ""))
    if not _NAME.match(name) or keyword.iskeyword(name) or name.endswith("_") or "__" in name:
        raise ScaffoldError(f"invalid name {name!r}: use lower-case letters, digits and single underscores, "
                            "starting with a letter (at most 20 characters), e.g. mystrategy")


def new(kind: str, name: str, out_dir: Path, url: str = MONOREPO) -> Path:
    """Write the package ``out_dir/neuromosaic_<kind>_<name>`` and return its path."""
    files = files_for(kind, name, url)
    target = Path(out_dir) / f"neuromosaic_{KINDS[kind].word}_{name}"
    if target.exists():
        raise ScaffoldError(f"{target} exists already; choose another name or output directory (-o DIR)")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ScaffoldError(f"{out_dir} is not a directory")
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return target


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuromosaic-plugin", description="Tools for Neuromosaic plugin authors.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("new", help="create a new plugin package from the template",
                                 description="Create DIR/neuromosaic_<kind>_<name>: a plugin package with its settings, "
                                             "a working component, contract tests, README, CHANGELOG and docs page.")
    create.add_argument("kind", help=f"what the plugin provides: {', '.join(KINDS)}")
    create.add_argument("name", help="the component's name, as users select it (kind=NAME), e.g. mystrategy")
    create.add_argument("-o", "--output", type=Path, default=Path("."), help="the directory to create the package in (default: .)")
    create.add_argument("--url", default=MONOREPO,
                        help="the plugin's repository, for its project URLs (default: the Neuromosaic repository, "
                             "with the package in plugins/)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)

    def command() -> int:
        target = new(args.kind, args.name, args.output, args.url)
        print(f"created {target} (plugin {args.name!r}, {KINDS[args.kind].summary}, neuromosaic-core{core_range()})")
        print(f"next: pip install -e '{target}[test]' && pytest {target}")
        return 0

    run_console_script("neuromosaic-plugin", command)
