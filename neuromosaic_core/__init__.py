"""Neuromosaic core: data model, hook specifications, plugin manager, orchestration and trial harness.

Cheap to import: nothing here imports torch (the harness does, in its own process).
"""

from neuromosaic_core.hookspecs import hookimpl

__version__ = "0.3.3"
__all__ = ["__version__", "hookimpl"]
