"""Root pytest configuration.

Tests that need a service skip with a printed reason where the machine lacks it; CI sets
``NEUROMOSAIC_STRICT_SKIPS=1`` so that such a skip fails the run instead of hiding a gap.

The README's ``pip install -r requirements.txt && pytest`` installs only the light plugins, while
``testpaths`` collects every plugin folder: the folder of a plugin that is not installed is
collected as one skipped test that says how to install it, instead of import errors.
"""

from __future__ import annotations

import os
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"


def _distribution_name(folder: Path) -> str | None:
    try:
        return tomllib.loads((folder / "pyproject.toml").read_text())["project"]["name"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


class NotInstalled(pytest.Item):
    """Stands in for the tests of a plugin that is not installed, and skips with how to install it."""

    def __init__(self, *, reason: str, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.reason = reason

    def runtest(self) -> None:
        # Reported at the plugin's folder, not at this line.
        raise pytest.skip.Exception(self.reason, _use_item_location=True)

    def reportinfo(self):  # noqa: ANN201
        return self.path, 0, f"{self.name} (not installed)"


class UninstalledPlugin(pytest.Directory):
    """A plugin folder whose distribution is not installed: one skipped item instead of its tests."""

    def __init__(self, *, distribution: str, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.distribution = distribution

    def collect(self):  # noqa: ANN201
        folder = self.path.relative_to(PLUGINS.parent).as_posix()
        reason = f"{self.distribution} is not installed: pip install -e {folder}[test]"
        yield NotInstalled.from_parent(self, name=self.distribution, reason=reason)


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if path.parent != PLUGINS:
        return None
    distribution = _distribution_name(path)
    if distribution is None or _installed(distribution):
        return None
    return UninstalledPlugin.from_parent(parent, path=path, distribution=distribution)


def _record_skip(nodeid: str) -> None:
    """Append a skipped test (or the folder of a plugin that is not installed) to
    ``$NEUROMOSAIC_SKIPPED_FILE``: ``.ci/run`` reruns exactly these once the full environment is in."""
    target = os.environ.get("NEUROMOSAIC_SKIPPED_FILE")
    if not target:
        return
    path = nodeid.split("::")[0]
    entry = path if Path(path).is_dir() else nodeid
    with open(target, "a", encoding="utf-8") as out:
        out.write(entry + "\n")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _record_skip(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _record_skip(report.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("NEUROMOSAIC_STRICT_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in strict mode (NEUROMOSAIC_STRICT_SKIPS=1): {reason}"
