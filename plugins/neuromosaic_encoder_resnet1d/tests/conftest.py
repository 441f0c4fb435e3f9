"""What an isolated session (``nox -s plugin``) leaves out: ``test_cli.py``, which runs the
``neuromosaic`` command, where the plugins it combines with are missing (see
:mod:`neuromosaic_core.testing.plugins`)."""

from __future__ import annotations

from neuromosaic_core.testing.plugins import leave_out_without

#: The plugins `neuromosaic encoder=resnet1d` combines with this one.
CLI_NEEDS = {"random": "strategy", "local": "runner", "sql": "storage", "mnist1d": "task", "template": "codegen"}
collect_ignore, pytest_report_header = leave_out_without("neuromosaic-encoder-resnet1d", CLI_NEEDS)
