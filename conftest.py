"""Root pytest configuration.

Tests that need a service skip with a printed reason where the machine lacks it; CI sets
``NEUROMOSAIC_STRICT_SKIPS=1`` so that such a skip fails the run instead of hiding a gap.
"""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("NEUROMOSAIC_STRICT_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in strict mode (NEUROMOSAIC_STRICT_SKIPS=1): {reason}"
