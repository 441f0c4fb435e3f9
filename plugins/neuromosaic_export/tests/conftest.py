"""What an isolated session (``nox -s plugin``) leaves out: ``test_cli.py``, which runs a real search
with the ``neuromosaic`` command before exporting, where the plugins it combines with are missing
(see :mod:`neuromosaic_core.testing.plugins`)."""

from __future__ import annotations

from neuromosaic_core.testing.plugins import leave_out_without

CLI_NEEDS = {"random": "strategy", "local": "runner", "sql": "storage", "digits": "task", "template": "codegen"}
collect_ignore, pytest_report_header = leave_out_without("neuromosaic-export", CLI_NEEDS, torch=True)
