"""Sessions: lint, the core's tests, one isolated session per plugin, and everything together.

Every session installs with constraints.txt (torch==2.13.0, the local CPU build) and installs
packages as wheels, not editable, so a packaging mistake (missing package data, an undeclared
dependency) fails here rather than on a user's machine.

    nox -s lint
    nox -s core
    nox -s "plugin(plugin='neuromosaic_strategy_random')"
    nox -s plugin          # every plugin, each alone with the core
    nox -s everything
    nox -s dist            # every distribution built as PyPI gets it, checked with twine
    nox -s template        # neuromosaic-plugin new: each kind generated, installed alone and tested
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

import nox
from nox.command import CommandFailed

nox.options.sessions = ["lint", "core", "plugin"]
nox.options.reuse_existing_virtualenvs = False

ROOT = Path(__file__).parent
PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())
CONSTRAINTS = ("-c", "constraints.txt")


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def core(session: nox.Session) -> None:
    """The core's own tests against the installed distribution (light plugins beside it for the e2e)."""
    session.install(*CONSTRAINTS, ".[torch,test]", *[f"./plugins/{p}[test]" for p in PLUGINS])
    session.run("pytest", "tests", "-q", *session.posargs)


#: Wheels built beforehand (.ci/run: the core and every plugin another one depends on), installed
#: instead of building those source trees again: sessions that run side by side then never build
#: one tree at once (a setuptools build writes build/ and *.egg-info inside it).
WHEELS = Path(os.environ["NEUROMOSAIC_WHEELS"]) if os.environ.get("NEUROMOSAIC_WHEELS") else None


def _local(path: str) -> str:
    """What pip installs for ``path`` ("." or "./plugins/<name>"): its prebuilt wheel when
    ``NEUROMOSAIC_WHEELS`` has one, else the source tree."""
    name = "neuromosaic_core" if path == "." else Path(path).name
    wheels = sorted(WHEELS.glob(f"{name}-*.whl")) if WHEELS is not None else []
    return str(wheels[-1]) if wheels else path


def depended_on() -> list[str]:
    """The plugins of this repository that another plugin depends on, as paths (./plugins/<name>)."""
    return sorted({path for plugin in PLUGINS for path in _first_party_dependencies(plugin, built=False)})


def _first_party_dependencies(plugin: str, built: bool = True) -> list[str]:
    """The plugins of this repository that ``plugin`` declares as dependencies (the API needs
    neuromosaic-visualizer-html), as local paths: pip would look for them on PyPI otherwise."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "plugins" / plugin / "pyproject.toml").read_text())["project"]
    wanted = {re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0] for requirement in project.get("dependencies", [])}
    paths = [f"./plugins/{p}" for p in PLUGINS if p.replace("_", "-") in wanted]
    return [_local(path) for path in paths] if built else paths


@nox.session
@nox.parametrize("plugin", PLUGINS)
def plugin(session: nox.Session, plugin: str) -> None:
    """One plugin with only the core beside it: proves it declares what it needs.

    Each venv holds its own torch (about 1 GB), and sessions never reuse one, so it is deleted
    when the session ends: thirty of them at once filled a CI machine's disk.
    """
    try:
        session.install(*CONSTRAINTS, _local("."), f"./plugins/{plugin}[test]", *_first_party_dependencies(plugin))
        session.run("pytest", f"plugins/{plugin}", "-q", *session.posargs)
    finally:
        shutil.rmtree(session.virtualenv.location, ignore_errors=True)


PROJECT_URLS = ("Homepage", "Documentation", "Source", "Changelog")
#: A markdown link to a relative path: it works on GitHub, and is broken on the PyPI page.
RELATIVE_LINK = re.compile(r"\]\((?![a-z]+:|#)[^)\s]+\)")


def _source_files(directory: Path) -> list[Path]:
    """What a clean clone holds of ``directory`` (tracked files and new ones git does not ignore),
    relative to it; the core's leaves out plugins/."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "--", "."], cwd=directory,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    files = [Path(f) for f in listed if f and (directory / f).is_file()]
    return [f for f in files if not (directory == ROOT and f.parts[0] == "plugins")]


def _metadata_problems(wheel: Path, plugin: bool, entry_point: bool) -> list[str]:
    """What a PyPI page of ``wheel`` would lack: project URLs, classifiers, keywords, authors, the
    README as a markdown long description, and (for a plugin) a bounded ``neuromosaic-core``
    requirement; with ``entry_point``, what makes it a Neuromosaic plugin: an entry point in the
    group ``neuromosaic``."""
    from packaging.requirements import Requirement  # nox's own dependency

    with zipfile.ZipFile(wheel) as archive:
        info = next(n.split("/")[0] for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        names = set(archive.namelist())
        entry_points = archive.read(f"{info}/entry_points.txt").decode() if f"{info}/entry_points.txt" in names else ""
    problems = []
    urls = {value.split(",", 1)[0].strip() for value in meta.get_all("Project-URL", [])}
    problems += [f"no Project-URL {name}" for name in PROJECT_URLS if name not in urls]
    for field in ("Classifier", "Keywords", "Author"):
        if not meta.get_all(field):
            problems.append(f"no {field}")
    if meta.get("Description-Content-Type") != "text/markdown" or len(meta.get_payload().strip()) < 200:
        problems.append("no README as the long description (text/markdown)")
    if plugin:
        cores = [Requirement(r) for r in meta.get_all("Requires-Dist", []) if Requirement(r).name == "neuromosaic-core"]
        bounded = [r for r in cores if not r.marker and {s.operator for s in r.specifier} >= {">=", "<"}]
        if not bounded:
            problems.append(f"no Requires-Dist: neuromosaic-core>=X,<Y (found {[str(r) for r in cores]})")
        if entry_point and "[neuromosaic]" not in entry_points:
            problems.append("no entry point in the group 'neuromosaic'")
    return problems


@nox.session
def dist(session: nox.Session) -> None:
    """The core and every plugin built as PyPI would get them: an sdist from a copy of what a clean
    clone holds, the wheel from that sdist (so missing package data fails here), both through
    ``twine check --strict``, and each wheel's METADATA checked for what a PyPI page shows.

    Built without isolation (setuptools from this venv, pinned like the packages' build-system):
    the same backend, without a fresh build venv for each of ~35 distributions. Everything it
    builds, and the venv, is deleted when it ends.
    """
    packages = [ROOT] + [ROOT / "plugins" / p for p in PLUGINS]
    if session.posargs:
        packages = [p for p in packages if p.name in session.posargs or (p == ROOT and "core" in session.posargs)]
    try:
        session.install("build>=1.2", "twine>=6.1", "setuptools>=77")
        failures: dict[str, list[str]] = {}
        with tempfile.TemporaryDirectory(prefix="neuromosaic-dist-") as tmp:
            for package in packages:
                name = "neuromosaic_core" if package == ROOT else package.name
                source, out = Path(tmp) / "src" / name, Path(tmp) / "dist" / name
                for file in _source_files(package):
                    (source / file).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(package / file, source / file)
                try:
                    session.run("python", "-m", "build", "--no-isolation", "--outdir", str(out), str(source), silent=True)
                    session.run("twine", "check", "--strict", *map(str, sorted(out.iterdir())), silent=True)
                except CommandFailed as failed:
                    failures[name] = [f"build or twine check failed: {failed.reason}"]
                    continue
                # plugins/neuromosaic_*: Neuromosaic plugins; others plug into another framework
                # (hydra_neuromosaic_sweeper is found by Hydra, under hydra_plugins).
                problems = _metadata_problems(next(out.glob("*.whl")), plugin=package != ROOT,
                                              entry_point=package.name.startswith("neuromosaic_"))
                if problems:
                    failures[name] = problems
                session.log(f"{name}: {', '.join(sorted(f.name for f in out.iterdir()))} {'FAILED' if problems else 'ok'}")
        relative = {p.name if p != ROOT else "neuromosaic_core": len(RELATIVE_LINK.findall((p / "README.md").read_text()))
                    for p in packages if (p / "README.md").exists()}
        if any(relative.values()):  # reported, not failed: the READMEs link across the repository on purpose
            session.warn(f"relative links in READMEs (broken on PyPI): {sum(relative.values())} in "
                         f"{sum(1 for n in relative.values() if n)} of {len(relative)} distributions")
        if failures:
            session.error("; ".join(f"{name}: {', '.join(problems)}" for name, problems in failures.items()))
        session.log(f"{len(packages)} distributions built and checked")
    finally:
        shutil.rmtree(session.virtualenv.location, ignore_errors=True)


@nox.session
def template(session: nox.Session) -> None:
    """``neuromosaic-plugin new``: one plugin of every kind generated and installed as a wheel (with
    its test extra) beside the core, each listed by ``neuromosaic-plugins`` through its entry
    point, and each one's tests run on their own. One venv and one install for all of them (the
    core and torch once); the plugins build without isolation (setuptools from this venv), since
    a fresh build venv for each took most of the session's time. Deleted at the end with what was
    generated."""
    try:
        session.install(*CONSTRAINTS, _local("."), "setuptools>=77")
        kinds = session.run("python", "-c", "from neuromosaic_core.scaffold import KINDS; print(*KINDS)", silent=True).split()
        with tempfile.TemporaryDirectory(prefix="neuromosaic-template-") as tmp:
            generated = {}
            for kind in kinds:
                name = f"my{kind.replace('_', '')}"
                created = session.run("neuromosaic-plugin", "new", kind, name, "-o", tmp, silent=True)
                generated[kind, name] = Path(created.split()[1])
            session.install(*CONSTRAINTS, "--no-build-isolation", *[f"{package}[test]" for package in generated.values()])
            listing = {p["name"]: p for p in json.loads(session.run("neuromosaic-plugins", "--json", silent=True))}
            for (kind, name), package in generated.items():
                plugin = listing.get(name)
                if plugin is None or plugin["error"] or name not in plugin["components"].get(kind, []):
                    session.error(f"{package.name}: neuromosaic-plugins does not list {kind} {name!r}: {plugin}")
                session.run("pytest", str(package), "-q", "-p", "no:cacheprovider")
        session.log(f"{len(kinds)} generated plugins installed and tested: {', '.join(kinds)}")
    finally:
        shutil.rmtree(session.virtualenv.location, ignore_errors=True)


@nox.session
def everything(session: nox.Session) -> None:
    """All plugins together, all tests (what the README's `pytest` runs)."""
    session.install(*CONSTRAINTS, ".[torch,test]", *[f"./plugins/{p}[test]" for p in PLUGINS])
    session.run("pytest", "-q", *session.posargs)
