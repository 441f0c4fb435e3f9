"""The ``mlflow`` tracker: one MLflow run per Neuromosaic experiment, a nested run per trial.

Layout in the tracking store (``tracker.mlflow.tracking_uri``), inside the MLflow experiment
``tracker.mlflow.experiment``:

- the experiment's run (name: the Neuromosaic experiment's; tags ``neuromosaic.experiment``,
  ``neuromosaic.kind=experiment``): params = the components and the training settings; at the
  end, metrics ``best_<metric>``, ``trials_completed`` / ``_failed`` / ``_invalid``, the artifact
  ``summary.json`` and the tag ``neuromosaic.best_trial``. A resumed experiment goes on in the
  same run.
- one nested run per trial (``trial-0001``; tags ``mlflow.parentRunId``, ``neuromosaic.trial``,
  ``neuromosaic.status``, ``neuromosaic.error``): params = the architecture vector, plus ``spec``
  (its one-line summary) and ``spec_family``; metrics = the trial's metrics, at step = the epochs
  it trained; ``learning_curve``, the validation score after each epoch, as a step series (step =
  epoch); artifacts ``code/trial-NNNN.py`` and, for the best trial, ``weights/trial-NNNN.pt``.
  A trial a scheduler paused and later promoted stays one run: its curve goes on.

Every call runs on the tracker's own thread (:mod:`neuromosaic_core.trackers`).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from neuromosaic_core.trackers import TrackedExperiment, TrackedSummary, TrackedTrial, Tracker

#: Components and settings recorded as the experiment run's params.
_CONFIG_PARAMS = (("strategy", "name"), ("encoder", "name"), ("codegen", "name"), ("runner", "name"),
                  ("task", "name"), ("scheduler", "name"), ("meta", "name"), ("search", "trials"), ("search", "metric"),
                  ("search", "direction"), ("experiment", "seed"), ("training", "optimizer"),
                  ("training", "learning_rate"), ("training", "epochs"), ("training", "batch_size"))
_BATCH = 100  # params and tags per log_batch call (MLflow's limit)
_METRICS_BATCH = 1000  # metrics per log_batch call
_PARAM_LENGTH = 6000  # MLflow's longest param value
_TAG_LENGTH = 5000


def _key(name: str) -> str:
    """A name MLflow accepts as a param or metric key (letters, digits, ``_-. /:``)."""
    return re.sub(r"[^\w\-. /:]", "_", str(name))[:250] or "_"


def _quote(value: str) -> str:
    return '"' + value.replace('"', "") + '"' if "'" in value else f"'{value}'"


class MlflowTracker(Tracker):
    """Records a search in MLflow through :class:`mlflow.MlflowClient` (no global active run, so
    it never touches a run the user's own code has open)."""

    def __init__(self, settings: Any) -> None:
        self.s = settings
        self.client: Any = None
        self.experiment_id = ""
        self.parent: str | None = None
        self.name = ""
        self.runs: dict[int, str] = {}  # trial number -> run id
        self.curve_logged: dict[int, int] = {}  # trial number -> epochs of its curve already logged
        self.finished = False

    # -- set-up -------------------------------------------------------------------------------

    def experiment_started(self, experiment: TrackedExperiment) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import LifecycleStage, ViewType

        self.client = client = MlflowClient(tracking_uri=self.s.tracking_uri or None)
        self.name = experiment.name
        found = client.get_experiment_by_name(self.s.experiment)
        if found is None:
            self.experiment_id = client.create_experiment(self.s.experiment, artifact_location=self.s.artifact_location or None)
        else:
            self.experiment_id = found.experiment_id
            if found.lifecycle_stage == LifecycleStage.DELETED:
                client.restore_experiment(self.experiment_id)
        mine = (f"tags.`neuromosaic.experiment` = {_quote(self.name)}")
        parents = client.search_runs([self.experiment_id], f"{mine} and tags.`neuromosaic.kind` = 'experiment'",
                                     ViewType.ACTIVE_ONLY, max_results=1, order_by=["attributes.start_time DESC"])
        params = self._config_params(experiment.config)
        if parents:  # a resumed experiment goes on in its run
            run = parents[0]
            self.parent = run.info.run_id
            client.update_run(self.parent, status="RUNNING")
            params = {k: v for k, v in params.items() if k not in run.data.params}  # params cannot change
            self._load_trials()
        else:
            self.parent = client.create_run(self.experiment_id, run_name=self.name, tags={
                "neuromosaic.experiment": self.name, "neuromosaic.kind": "experiment", "neuromosaic.task": experiment.task,
                "neuromosaic.run_dir": str(experiment.run_dir)}).info.run_id
        self._log(self.parent, params=params)

    def _config_params(self, config: dict[str, Any]) -> dict[str, str]:
        params = {}
        for group, key in _CONFIG_PARAMS:
            node = config.get(group)
            if isinstance(node, dict) and node.get(key) is not None:
                params[group if key == "name" else f"{group}.{key}"] = str(node[key])
        return params

    def _load_trials(self) -> None:
        from mlflow.entities import ViewType

        page = None
        while True:
            runs = self.client.search_runs([self.experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent}'",
                                           ViewType.ACTIVE_ONLY, max_results=1000, page_token=page)
            for run in runs:
                number = run.data.tags.get("neuromosaic.trial")
                if number is not None and number.isdigit():
                    self.runs[int(number)] = run.info.run_id
                    self.curve_logged[int(number)] = int(run.data.tags.get("neuromosaic.curve_epochs", "0") or 0)
            page = runs.token
            if not page:
                return

    # -- logging ------------------------------------------------------------------------------

    def _log(self, run_id: str, params: dict[str, str] | None = None, tags: dict[str, str] | None = None,
             metrics: list[tuple[str, float, int]] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        params_list = [Param(_key(k), str(v)[:_PARAM_LENGTH]) for k, v in (params or {}).items()]
        tags_list = [RunTag(k, str(v)[:_TAG_LENGTH]) for k, v in (tags or {}).items()]
        metric_list = [Metric(_key(k), float(v), now, int(step)) for k, v, step in metrics or ()]
        for start in range(0, max(len(params_list), len(tags_list)), _BATCH):
            self.client.log_batch(run_id, params=params_list[start:start + _BATCH], tags=tags_list[start:start + _BATCH])
        for start in range(0, len(metric_list), _METRICS_BATCH):
            self.client.log_batch(run_id, metrics=metric_list[start:start + _METRICS_BATCH])

    def trial_finished(self, trial: TrackedTrial) -> None:
        if self.client is None:
            return
        number = trial.number
        run_id = self.runs.get(number)
        tags = {"neuromosaic.status": trial.status, "neuromosaic.pruned": str(trial.pruned).lower()}
        params: dict[str, str] = {}
        if run_id is None:
            run_id = self.client.create_run(self.experiment_id, run_name=f"trial-{number:04d}", tags={
                "mlflow.parentRunId": self.parent, "neuromosaic.experiment": self.name,
                "neuromosaic.trial": str(number)}).info.run_id
            self.runs[number] = run_id
            params = {str(k): str(v) for k, v in trial.vector.items()}
            if trial.spec is not None:
                params.update(spec=trial.spec_summary, spec_family=trial.spec.family)
        else:
            self.client.update_run(run_id, status="RUNNING")
        if trial.error:
            tags["neuromosaic.error"] = trial.error
        if trial.fidelity is not None:
            tags["neuromosaic.fidelity"] = str(trial.fidelity)
        if trial.reused_from is not None:
            tags["neuromosaic.reused_from"] = str(trial.reused_from)
        step = trial.fidelity if trial.fidelity is not None else len(trial.curve)
        metrics = [(k, v, step) for k, v in trial.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        logged = self.curve_logged.get(number, 0)
        metrics += [("learning_curve", v, epoch) for epoch, v in enumerate(trial.curve, start=1)
                    if epoch > logged and not math.isnan(v)]
        if len(trial.curve) > logged:
            tags["neuromosaic.curve_epochs"] = str(len(trial.curve))
            self.curve_logged[number] = len(trial.curve)
        self._log(run_id, params=params, tags=tags, metrics=metrics)
        if trial.code and self.s.log_code:
            self.client.log_text(run_id, trial.code, f"code/trial-{number:04d}.py")
        self.client.set_terminated(run_id, "FAILED" if trial.status == "failed" else "FINISHED")

    def experiment_finished(self, end: TrackedSummary) -> None:
        if self.client is None or self.parent is None:
            return
        summary = end.summary
        metrics: list[tuple[str, float, int]] = []
        metric, best = summary.get("metric"), summary.get("best") or {}
        if metric and isinstance(best.get(metric), (int, float)):
            metrics.append((f"best_{metric}", best[metric], 0))
        for status, count in (summary.get("trials") or {}).items():
            if isinstance(count, int):
                metrics.append((f"trials_{status}", count, 0))
        tags = {"neuromosaic.stopped": str(summary.get("stopped", ""))}
        if end.best_trial is not None:
            tags["neuromosaic.best_trial"] = str(end.best_trial)
        self._log(self.parent, tags=tags, metrics=metrics)
        self.client.log_dict(self.parent, summary, "summary.json")
        best_run = self.runs.get(end.best_trial) if end.best_trial is not None else None
        if self.s.log_weights and best_run is not None and end.best_weights is not None and end.best_weights.exists():
            self.client.log_artifact(best_run, str(end.best_weights), "weights")
        self.client.set_terminated(self.parent, "FAILED" if summary.get("stopped") == "max_failures" else "FINISHED")
        self.finished = True

    def close(self) -> None:
        if self.client is not None and self.parent is not None and not self.finished:
            self.client.set_terminated(self.parent, "KILLED")  # interrupted: a resume sets it running again
