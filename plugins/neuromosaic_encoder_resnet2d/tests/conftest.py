"""What an isolated session (``nox -s plugin``) leaves out.

``nox -s plugin`` installs this plugin alone with the core, to prove it declares what it needs.
``test_cli.py`` runs the ``neuromosaic`` command, which also needs a strategy, runner, storage,
task and code generator plugin and torch; a skip would fail there under CI's
``NEUROMOSAIC_STRICT_SKIPS=1``, so in an isolated session that module is not collected, and the
session header says why.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

#: The plugins `neuromosaic task=digits_images encoder=resnet2d` combines with this one (the
#: digits plugin registers digits_images under its entry point `digits`).
CLI_NEEDS = {"random": "strategy", "local": "runner", "sql": "storage", "digits": "task", "template": "codegen"}


def _missing_for_cli() -> list[str]:
    installed = {ep.name for ep in metadata.entry_points(group="neuromosaic")}
    missing = [f"{kind} {name!r}" for name, kind in CLI_NEEDS.items() if name not in installed]
    return missing + ([] if importlib.util.find_spec("torch") else ["torch"])


MISSING = _missing_for_cli()
collect_ignore: list[str] = ["test_cli.py"] if MISSING else []


def pytest_report_header() -> list[str]:
    if not collect_ignore:
        return []
    return [f"neuromosaic-encoder-resnet2d: test_cli.py not collected ({', '.join(MISSING)} not installed)"]
