"""Hydra sweeper ``neuromosaic``: Neuromosaic's search strategies drive any Hydra app.

``hydra/sweeper=neuromosaic`` selects it (:mod:`.config` registers the node). Hydra imports every
module of ``hydra_plugins`` whose name does not start with ``_`` when any Hydra app starts, so
those modules import Hydra only; the sweep itself (:mod:`._impl`) and the grammar mapping
(:mod:`._space`) are imported when a sweep starts.
"""

__version__ = "0.1.0"
