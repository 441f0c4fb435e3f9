"""What an isolated session (``nox -s plugin``) leaves out: ``test_report_chromium.py``, whose
report embeds the matplotlib visualizer's plots and whose search runs the ``neuromosaic`` command
on NAS-Bench-201 (see :mod:`neuromosaic_core.testing.plugins`)."""

from __future__ import annotations

from neuromosaic_core.testing.plugins import leave_out_without

#: The plugins `neuromosaic runner=tabular encoder=nasbench201 task=nasbench201 'visualizers=[html,matplotlib]'` combines with this one.
CHROMIUM_NEEDS = {"matplotlib": "visualizer", "random": "strategy", "nasbench201": "encoder", "tabular": "runner",
                  "sql": "storage", "template": "codegen"}
collect_ignore, pytest_report_header = leave_out_without("neuromosaic-visualizer-html", CHROMIUM_NEEDS,
                                                         modules=("test_report_chromium.py",))
