"""Sessions: lint, the core's tests, one isolated session per plugin, and everything together.

Every session installs with constraints.txt (torch==2.13.0, the local CPU build) and installs
packages as wheels, not editable, so a packaging mistake (missing package data, an undeclared
dependency) fails here rather than on a user's machine.

    nox -s lint
    nox -s core
    nox -s "plugin(plugin='neuromosaic_strategy_random')"
    nox -s plugin          # every plugin, each alone with the core
    nox -s everything
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

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


@nox.session
@nox.parametrize("plugin", PLUGINS)
def plugin(session: nox.Session, plugin: str) -> None:
    """One plugin with only the core beside it: proves it declares what it needs.

    Each venv holds its own torch (about 1 GB), and sessions never reuse one, so it is deleted
    when the session ends: thirty of them at once filled a CI machine's disk.
    """
    try:
        session.install(*CONSTRAINTS, ".", f"./plugins/{plugin}[test]")
        session.run("pytest", f"plugins/{plugin}", "-q", *session.posargs)
    finally:
        shutil.rmtree(session.virtualenv.location, ignore_errors=True)


@nox.session
def everything(session: nox.Session) -> None:
    """All plugins together, all tests (what the README's `pytest` runs)."""
    session.install(*CONSTRAINTS, ".[torch,test]", *[f"./plugins/{p}[test]" for p in PLUGINS])
    session.run("pytest", "-q", *session.posargs)
