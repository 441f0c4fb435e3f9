"""What an isolated session (``nox -s plugin``) leaves out: ``test_cli.py``, which runs the
``neuromosaic`` command, where the plugins it combines with or torch are missing (see
:mod:`neuromosaic_core.testing.plugins`)."""

from __future__ import annotations

from neuromosaic_core.testing.plugins import leave_out_without

#: The plugins `neuromosaic scheduler=asha` (the default search otherwise) combines with this one.
CLI_NEEDS = {"random": "strategy", "mlp_conv1d": "encoder", "local": "runner", "sql": "storage", "mnist1d": "task",
             "template": "codegen"}
collect_ignore, pytest_report_header = leave_out_without("neuromosaic-scheduler-asha", CLI_NEEDS, torch=True)
