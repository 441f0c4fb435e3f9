"""Neuromosaic plugin: the ``matplotlib`` visualizer (``history.png`` and ``pareto.png``).

Cheap to import: matplotlib is imported by :mod:`neuromosaic_visualizer_matplotlib.plots`, which
the factory loads.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.1.0"

DIRECTIONS = ("auto", "max", "min")


@attrs.frozen
class MatplotlibSettings:
    """``dpi``, ``width`` and ``height`` (inches) of each figure; ``direction``: whether the metric
    is maximised (``max``), minimised (``min``) or, with ``auto``, minimised when its name contains
    ``loss`` or ``error`` and maximised otherwise."""

    dpi: int = attrs.field(default=120)
    width: float = 7.0
    height: float = 4.5
    direction: str = attrs.field(default="auto")

    @dpi.validator
    def _check_dpi(self, _attribute: Any, value: int) -> None:
        if value < 10:
            raise ValueError(f"expected dpi >= 10, got {value}")

    @direction.validator
    def _check_direction(self, _attribute: Any, value: str) -> None:
        if value not in DIRECTIONS:
            raise ValueError(f"expected direction to be one of {', '.join(DIRECTIONS)}, got {value!r}")


def factory(settings: MatplotlibSettings | None) -> Any:
    from neuromosaic_visualizer_matplotlib.plots import MatplotlibVisualizer

    return MatplotlibVisualizer(settings if settings is not None else MatplotlibSettings())


@hookimpl
def register_visualizers(register: Any) -> None:
    register("matplotlib", factory, settings=MatplotlibSettings, description="history and Pareto (metric vs parameters) PNGs")
