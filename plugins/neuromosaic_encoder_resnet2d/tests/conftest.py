"""What an isolated session (``nox -s plugin``) leaves out: ``test_cli.py``, which runs the
``neuromosaic`` command, where the plugins it combines with or torch are missing (see
:mod:`neuromosaic_core.testing.plugins`)."""

from __future__ import annotations

from neuromosaic_core.testing.plugins import leave_out_without

#: The plugins `neuromosaic task=digits_images encoder=resnet2d` combines with this one (the
#: digits plugin registers digits_images under its entry point `digits`).
CLI_NEEDS = {"random": "strategy", "local": "runner", "sql": "storage", "digits": "task", "template": "codegen"}
collect_ignore, pytest_report_header = leave_out_without("neuromosaic-encoder-resnet2d", CLI_NEEDS, torch=True)
