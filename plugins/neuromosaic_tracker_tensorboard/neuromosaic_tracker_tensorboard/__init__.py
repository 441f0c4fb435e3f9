"""Neuromosaic tracker ``tensorboard``: a search as TensorBoard event files, hparams and scalars
per trial (see :mod:`neuromosaic_tracker_tensorboard.tracker`).

Hook implementation, settings and factory only: TensorBoard is imported on the tracker's own
thread when a search with ``trackers=[tensorboard]`` starts, never when plugins are discovered.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.1.0"
__all__ = ["TensorBoardSettings", "__version__", "register_trackers"]


@attrs.frozen
class TensorBoardSettings:
    """``tracker.tensorboard.*``: ``log_dir``, where the event files go (empty: the run
    directory's ``tensorboard/``; else ``<log_dir>/<experiment name>/``, so one
    ``tensorboard --logdir <log_dir>`` shows every experiment)."""

    log_dir: str = ""


def factory(settings: TensorBoardSettings | None) -> Any:
    from neuromosaic_tracker_tensorboard.tracker import TensorBoardTracker

    return TensorBoardTracker(settings if settings is not None else TensorBoardSettings())


@hookimpl
def register_trackers(register: Any) -> None:
    register("tensorboard", factory, settings=TensorBoardSettings,
             description="TensorBoard event files: hparams and scalars per trial, learning curves, the HParams dashboard")
