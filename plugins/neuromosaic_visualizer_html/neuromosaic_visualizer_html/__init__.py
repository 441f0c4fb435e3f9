"""Neuromosaic plugin: the ``html`` visualizer, one self-contained HTML report per run, and the
``neuromosaic-report`` command that writes one for any stored experiment(s).

Cheap to import: the report itself (:mod:`neuromosaic_visualizer_html.report`, numpy through
:mod:`neuromosaic_core.analysis`) is loaded by the factory.
"""

from __future__ import annotations

from typing import Any

from neuromosaic_core import hookimpl

__version__ = "0.1.0"


def factory(settings: Any) -> Any:
    from neuromosaic_visualizer_html.report import HtmlVisualizer

    return HtmlVisualizer()


@hookimpl
def register_visualizers(register: Any) -> None:
    register("html", factory,
             description="report.html at the end of a run: summary, the other visualizers' plots, top code, failures")
