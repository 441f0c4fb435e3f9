"""Neuromosaic plugin: the ``matplotlib`` visualizer (history, Pareto front, landscape, parameter
importance, parallel coordinates and learning curves, as PNG).

Cheap to import: matplotlib (and scikit-learn, for the importance) are imported by
:mod:`neuromosaic_visualizer_matplotlib.plots`, which the factory loads.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.4.0"

DIRECTIONS = ("auto", "max", "min")
PROJECTIONS = ("pca", "random")


@attrs.frozen
class MatplotlibSettings:
    """``dpi``, ``width`` and ``height`` (inches) of each figure; ``direction``: whether the metric
    is maximised (``max``), minimised (``min``) or, with ``auto``, as the search optimised it (when
    the orchestrator or the report says) else minimised when its name contains ``loss`` or
    ``error``.

    ``pareto_x`` / ``pareto_y``: the two metrics of ``pareto.png`` (``pareto_y`` unset: the searched
    metric), each with a direction (``auto``: sizes, costs, losses and errors are minimised).
    ``projection``: how the landscape maps vectors to 2-D, ``pca`` or ``random`` (a seeded Gaussian
    projection). ``trees``: random-forest size for the parameter importance. ``seed``: for the forest
    and the random projection. ``dimensions``: the most search dimensions the parallel coordinates
    draw (and the importance chart lists), so a figure stays readable at page width."""

    dpi: int = attrs.field(default=120)
    width: float = 7.0
    height: float = 4.5
    direction: str = attrs.field(default="auto")
    pareto_x: str = "params"
    pareto_y: str | None = None
    pareto_x_direction: str = attrs.field(default="auto")
    pareto_y_direction: str = attrs.field(default="auto")
    projection: str = attrs.field(default="pca")
    trees: int = attrs.field(default=200)
    seed: int = 0
    dimensions: int = attrs.field(default=8)

    @dpi.validator
    def _check_dpi(self, _attribute: Any, value: int) -> None:
        if value < 10:
            raise ValueError(f"expected dpi >= 10, got {value}")

    @direction.validator
    @pareto_x_direction.validator
    @pareto_y_direction.validator
    def _check_direction(self, attribute: Any, value: str) -> None:
        if value not in DIRECTIONS:
            raise ValueError(f"expected {attribute.name} to be one of {', '.join(DIRECTIONS)}, got {value!r}")

    @projection.validator
    def _check_projection(self, _attribute: Any, value: str) -> None:
        if value not in PROJECTIONS:
            raise ValueError(f"expected projection to be one of {', '.join(PROJECTIONS)}, got {value!r}")

    @trees.validator
    @dimensions.validator
    def _check_at_least_one(self, attribute: Any, value: int) -> None:
        if value < 1:
            raise ValueError(f"expected {attribute.name} >= 1, got {value}")


def factory(settings: MatplotlibSettings | None) -> Any:
    from neuromosaic_visualizer_matplotlib.plots import MatplotlibVisualizer

    return MatplotlibVisualizer(settings if settings is not None else MatplotlibSettings())


@hookimpl
def register_visualizers(register: Any) -> None:
    register("matplotlib", factory, settings=MatplotlibSettings,
             description="history, Pareto, landscape, importance, parallel-coordinates and learning-curve PNGs")
