"""What an isolated session (``nox -s plugin``) leaves out: ``test_cli.py``, which runs the
``neuromosaic`` command, where the plugins it combines with are missing (see
:mod:`neuromosaic_core.testing.plugins`)."""

from __future__ import annotations

from neuromosaic_core.testing.plugins import leave_out_without

#: The plugins `neuromosaic task=digits trackers=[mlflow]` combines with this one.
CLI_NEEDS = {"random": "strategy", "local": "runner", "sql": "storage", "digits": "task", "template": "codegen",
             "mlp_conv1d": "encoder"}
collect_ignore, pytest_report_header = leave_out_without("neuromosaic-tracker-mlflow", CLI_NEEDS, torch=True)
