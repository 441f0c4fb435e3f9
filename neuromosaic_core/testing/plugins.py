"""Helpers for a plugin's own ``tests/conftest.py``: what an isolated session leaves out.

``nox -s plugin`` installs a plugin alone with the core, to prove it declares what it needs. Its
end-to-end test runs the ``neuromosaic`` command, which also needs a strategy, runner, storage,
task and code generator plugin; a skip would fail under CI's ``NEUROMOSAIC_STRICT_SKIPS=1``, so in
an isolated session that module is not collected, and the session header says why::

    from neuromosaic_core.testing.plugins import leave_out_without

    CLI_NEEDS = {"random": "strategy", "local": "runner", "sql": "storage", "mnist1d": "task", "template": "codegen"}
    collect_ignore, pytest_report_header = leave_out_without("neuromosaic-encoder-resnet1d", CLI_NEEDS)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess  # nosec B404 - the tests run the command line as a user does
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any


def missing_components(needs: Mapping[str, str], torch: bool = False) -> list[str]:
    """What of ``needs`` (entry-point name -> what it is, ``{"random": "strategy"}``) is not
    installed, in words (``strategy 'random'``); and ``torch`` when asked for and missing."""
    installed = {ep.name for ep in metadata.entry_points(group="neuromosaic")}
    missing = [f"{kind} {name!r}" for name, kind in needs.items() if name not in installed]
    return missing + (["torch"] if torch and importlib.util.find_spec("torch") is None else [])


def leave_out_without(plugin: str, needs: Mapping[str, str], modules: Sequence[str] = ("test_cli.py",),
                      torch: bool = False) -> tuple[list[str], Callable[[], list[str]]]:
    """``collect_ignore`` (``modules`` when anything of ``needs`` is missing, else nothing) and a
    ``pytest_report_header`` hook saying what was left out and why."""
    missing = missing_components(needs, torch)
    ignored = list(modules) if missing else []

    def pytest_report_header() -> list[str]:
        if not ignored:
            return []
        return [f"{plugin}: {', '.join(ignored)} not collected ({', '.join(missing)} not installed)"]

    return ignored, pytest_report_header


def run_neuromosaic(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``neuromosaic ARGS`` as a user runs it, in ``cwd``: a subprocess of this interpreter (the
    installed plugins), without the caller's ``NEUROMOSAIC_*`` environment; output captured."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,  # noqa: S603
                          env=environ, timeout=timeout, check=False)


#: A quick search's settings for an end-to-end test: 2 trials of 2 epochs, one worker, the
#: template's code, SQLite in the working directory, no plots.
QUICK_SEARCH = ("search.trials=2", "training.epochs=2", "training.patience=1", "visualizers=[]", "runner.workers=1",
                "storage.url=sqlite:///results.db", "codegen=template")


def search_summary(cwd: Path, run_name: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run ``neuromosaic ARGS`` in ``cwd`` (:func:`run_neuromosaic`), require it to succeed with
    one run directory ``runs/<run_name>*``, and return that run's ``summary.json``."""
    proc = run_neuromosaic(cwd, *args, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((cwd / "runs").glob(f"{run_name}*"))
    assert len(runs) == 1, list((cwd / "runs").iterdir())
    return json.loads((runs[0] / "summary.json").read_text())
