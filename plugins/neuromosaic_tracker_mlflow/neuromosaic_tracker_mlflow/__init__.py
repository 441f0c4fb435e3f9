"""Neuromosaic tracker ``mlflow``: a search recorded in MLflow, one run per experiment and a
nested run per trial (see :mod:`neuromosaic_tracker_mlflow.tracker`).

Hook implementation, settings and factory only: MLflow itself is imported on the tracker's own
thread when a search with ``trackers=[mlflow]`` starts, never when plugins are discovered.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.1.0"
__all__ = ["MlflowSettings", "__version__", "register_trackers"]


@attrs.frozen
class MlflowSettings:
    """``tracker.mlflow.*``: ``tracking_uri``, the tracking store or server (empty: MLflow's own
    choice, ``$MLFLOW_TRACKING_URI`` or else ``sqlite:///mlflow.db`` in the working directory);
    ``experiment``, the MLflow experiment holding one run per Neuromosaic experiment;
    ``artifact_location``, where that MLflow experiment keeps artifacts when this tracker creates
    it (empty: MLflow's default, ``./mlruns`` beside a local store, the server's own for a
    server); ``log_code``, each trial's generated code as an artifact; ``log_weights``, the best trial's
    weights as an artifact."""

    tracking_uri: str = ""
    experiment: str = "neuromosaic"
    artifact_location: str = ""
    log_code: bool = True
    log_weights: bool = True

    def __attrs_post_init__(self) -> None:
        from neuromosaic_core.settings import SettingValueError

        if not self.experiment.strip():
            raise SettingValueError("experiment", "must name an MLflow experiment, e.g. tracker.mlflow.experiment=neuromosaic")


def factory(settings: MlflowSettings | None) -> Any:
    from neuromosaic_tracker_mlflow.tracker import MlflowTracker

    return MlflowTracker(settings if settings is not None else MlflowSettings())


@hookimpl
def register_trackers(register: Any) -> None:
    register("mlflow", factory, settings=MlflowSettings,
             description="MLflow: a run per experiment, a nested run per trial (vector, metrics, learning curve, code, best weights)")
