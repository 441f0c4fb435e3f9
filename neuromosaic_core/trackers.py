"""Experiment trackers: services a search is recorded in as it runs (MLflow, TensorBoard, ...).

A tracker comes from a plugin (hook ``register_trackers``, :mod:`neuromosaic_core.hookspecs`) and
runs only when the list ``trackers`` names it (``neuromosaic trackers=[mlflow]``); its settings
are the node ``tracker.<name>.*`` (``tracker.mlflow.tracking_uri=sqlite:///mlflow.db``).
Installing a tracker therefore changes nothing until a setting turns it on, and its heavy
imports happen only then, on its own thread.

The search never waits for a tracker: :class:`TrackerHub`, an observer plugin, turns each event
into an immutable record (:class:`TrackedExperiment`, :class:`TrackedTrial`,
:class:`TrackedSummary`) and queues it for each tracker's thread (a bounded queue,
``tracker.queue_size``; a record that finds it full is dropped and logged). When the search ends
the trackers get ``tracker.drain_seconds`` to record what is queued. The hub measures what it
costs per trial: the time the search loop spends in its hook, and each tracker's own time on its
thread (logged at the end; :meth:`TrackerHub.stats`).

With encryption at rest on (``encryption.enabled=true``) no tracker receives generated code or
weights: they would leave the run directory in clear.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from neuromosaic_core.delivery import QueueWorker, drain
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.hookspecs import hookimpl

#: Tracker names a plugin may not take: they are settings of ``tracker`` itself.
RESERVED = frozenset({"queue_size", "drain_seconds"})


@attrs.frozen
class TrackedExperiment:
    """The search being recorded: its name, task, run directory, the composed configuration
    (secrets redacted), the metric the search optimises and its direction."""

    name: str
    task: str
    run_dir: Path
    config: dict[str, Any] = attrs.field(factory=dict)
    metric: str | None = None
    direction: str | None = None
    #: Encryption at rest is on: trials come without code, the summary without weights.
    encrypted: bool = False


@attrs.frozen
class TrackedTrial:
    """One trial as it ended (or reached a milestone, under a scheduler: ``pruned`` true and
    ``fidelity`` the epochs trained so far; the same ``number`` then comes again later).

    ``status``: ``completed``, ``failed`` or ``invalid`` (refused by a constraint, never ran).
    ``vector``: the architecture vector's values; ``spec``: the decoded
    :class:`~neuromosaic_core.model.ArchitectureSpec` (None when decoding failed).
    ``curve``: the validation score after each epoch (``TrialResult.curve``)."""

    number: int
    status: str
    vector: dict[str, Any]
    spec: Any = None
    metrics: dict[str, float] = attrs.field(factory=dict)
    curve: tuple[float, ...] = ()
    fidelity: int | None = None
    pruned: bool = False
    error: str | None = None
    code: str | None = None
    weights_path: str | None = None
    reused_from: int | None = None

    @property
    def spec_summary(self) -> str:
        """The architecture in one line (:meth:`ArchitectureSpec.describe`), or ``""``."""
        return self.spec.describe() if self.spec is not None else ""

    @classmethod
    def of(cls, trial: Any, keep_code: bool = True) -> TrackedTrial:
        """A record of ``trial`` (a :class:`~neuromosaic_core.model.Trial`) as it is now: the
        orchestrator goes on changing the trial while the record waits in a queue."""
        result = trial.result
        error = None
        if result is not None and result.error is not None:
            error = f"{getattr(result.error.error_class, 'value', result.error.error_class)}: {result.error.message}"
        return cls(
            number=trial.number,
            status=str(getattr(trial.status, "value", trial.status)),
            vector=dict(trial.vector.values),
            spec=trial.spec,
            metrics=dict(result.metrics) if result is not None else {},
            curve=tuple(result.curve) if result is not None else (),
            fidelity=result.fidelity if result is not None else None,
            pruned=bool(result.pruned) if result is not None else False,
            error=error,
            code=trial.code if keep_code else None,
            weights_path=result.weights_path if result is not None and keep_code else None,
            reused_from=trial.reused_from,
        )


@attrs.frozen
class TrackedSummary:
    """The search's end: ``summary`` is what ``summary.json`` holds (``stopped``, ``trials``
    counts, ``best``, ``top``); ``best_trial`` the best trial's number and ``best_weights`` its
    weights file in the run directory (None when there is none, or encryption at rest is on)."""

    summary: dict[str, Any]
    best_trial: int | None = None
    best_weights: Path | None = None


class Tracker(abc.ABC):
    """Where a search is recorded. Every method runs on the tracker's own thread, one event at a
    time and in order: it may block (the search does not wait) and raises on failure (the error
    is logged, the event not retried; the search goes on). Import heavy libraries in
    :meth:`experiment_started`, not at module import time nor in the factory."""

    def experiment_started(self, experiment: TrackedExperiment) -> None:
        """The search starts or resumes (the same experiment name: record into the same place)."""

    @abc.abstractmethod
    def trial_finished(self, trial: TrackedTrial) -> None:
        """Record one trial."""

    def experiment_finished(self, end: TrackedSummary) -> None:
        """The search ended (not called when it was interrupted)."""

    def close(self) -> None:
        """Release what the tracker holds (called last, also after an interrupted search)."""


@attrs.frozen
class TrackerSettings:
    """``tracker.*`` (besides each tracker's own node): ``queue_size``, records waiting per
    tracker before new ones are dropped; ``drain_seconds``, how long trackers may take at the end
    to record what is queued."""

    queue_size: int = 1000
    drain_seconds: float = 30.0

    def __attrs_post_init__(self) -> None:
        from neuromosaic_core.settings import SettingValueError

        if self.queue_size < 1:
            raise SettingValueError("queue_size", f"must be at least 1, got {self.queue_size}")
        if not 0 <= self.drain_seconds < float("inf"):
            raise SettingValueError("drain_seconds", f"must be 0 or a positive number, got {self.drain_seconds}")


@attrs.frozen
class TrackerConfig:
    """The checked ``trackers`` list and ``tracker`` node: the selected trackers with their settings."""

    settings: TrackerSettings = attrs.field(factory=TrackerSettings)
    trackers: list[tuple[Any, Any]] = attrs.field(factory=list)  # (plugins.Component, settings)


def tracker_names(system: Any) -> list[str]:
    """The installed trackers (a name that is one of ``tracker``'s own keys cannot be one)."""
    return [name for name in system.names("tracker") if name not in RESERVED]


def tracker_nodes(system: Any) -> dict[str, dict[str, Any]]:
    """The config node of every installed tracker with settings: ``tracker.<name>.*``."""
    from neuromosaic_core.settings import settings_nodes

    return settings_nodes(system, "tracker", tracker_names(system))


def resolve_trackers(selected: Any, node: dict[str, Any] | None, system: Any) -> TrackerConfig:
    """Check the composed ``trackers`` list and ``tracker`` node. Raises :class:`ConfigError`
    with one line naming the key."""
    from neuromosaic_core.settings import structure_settings

    names = tracker_names(system)
    choices = ", ".join(names) or "none installed (pip install neuromosaic-tracker-mlflow, ...)"
    if selected is None:
        selected = []
    if not isinstance(selected, list) or not all(isinstance(name, str) for name in selected):
        raise ConfigError(f"trackers: expected a list of tracker names, e.g. 'trackers=[mlflow]', got {selected!r}; "
                          f"installed: {choices}")
    if len(set(selected)) != len(selected):
        raise ConfigError(f"trackers: lists a tracker twice: {selected}")
    for name in selected:
        if name not in names:
            raise ConfigError(f"trackers: {name!r} is not an installed tracker; valid choices: {choices}")
    node = dict(node or {})
    nodes = {name: node.pop(name) for name in names if name in node}
    settings = structure_settings(node, TrackerSettings, "tracker")
    from neuromosaic_core.settings import structure_settings_nodes

    chosen = []
    for component, tracker_settings in structure_settings_nodes(system, "tracker", names, nodes, "tracker"):
        name = component.name
        if name in selected:
            chosen.append((component, tracker_settings))
        elif tracker_settings != component.default_settings():
            raise ConfigError(f"tracker.{name}.* is set but trackers does not list {name}; "
                              f"add it: trackers=[{','.join([*selected, name])}]")
    chosen.sort(key=lambda entry: selected.index(entry[0].name))
    return TrackerConfig(settings, chosen)


def redact_secrets(node: dict[str, Any] | None, system: Any) -> dict[str, Any] | None:
    """A copy of the ``tracker`` node with each tracker's secret settings replaced by ``***``."""
    from neuromosaic_core.settings import redact_secret_settings

    return redact_secret_settings(node, system, "tracker", tracker_names(system))


class _Deliver:
    """Calls one tracker's method for each queued event and times its trials."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.trials = 0
        self.trial_seconds = 0.0
        #: Its ``experiment_started`` raised (a bad store address, a server down): it gets no
        #: more events, rather than one failure per trial.
        self.start_failed = False

    def __call__(self, event: tuple[str, Any]) -> None:
        kind, record = event
        if kind == "experiment_started":
            self.start_failed = True
            self.tracker.experiment_started(record)
            self.start_failed = False
            return
        if self.start_failed:
            return
        if kind != "trial":
            getattr(self.tracker, kind)(record)
            return
        started = time.perf_counter()
        try:
            self.tracker.trial_finished(record)
        finally:
            self.trials += 1
            self.trial_seconds += time.perf_counter() - started


def _describe(event: tuple[str, Any]) -> str:
    kind, record = event
    return f"trial {record.number}" if kind == "trial" else kind.replace("_", " ")


class TrackerHub:
    """The selected trackers, as one observer plugin (register it with the plugin manager):
    each hook makes an immutable record and queues it for every tracker's thread."""

    def __init__(self, settings: TrackerSettings, trackers: Sequence[tuple[str, Tracker]]) -> None:
        self.s = settings
        self.delivers = [(name, _Deliver(tracker)) for name, tracker in trackers]
        self.workers = [QueueWorker(f"tracker {name}", deliver, deliver.tracker.close, settings.queue_size,
                                    "tracker.queue_size", _describe, f"tracker-{name}") for name, deliver in self.delivers]
        self.experiment: TrackedExperiment | None = None
        #: Seconds the search loop spent in this hub's ``trial_finished``, one entry per call.
        self.hook_seconds: list[float] = []
        self._closed = False

    def _offer(self, event: tuple[str, Any]) -> None:
        for worker in self.workers:
            worker.offer(event)

    @hookimpl
    def experiment_started(self, experiment: Any, config: Any, run_dir: Any) -> None:
        config = dict(config) if isinstance(config, dict) else {}
        search = config.get("search") or {}
        encryption = config.get("encryption") or {}
        self.experiment = TrackedExperiment(
            experiment.name, experiment.task, Path(run_dir), config, search.get("metric"), search.get("direction"),
            bool(encryption.get("enabled")) if isinstance(encryption, dict) else False)
        self._offer(("experiment_started", self.experiment))

    @hookimpl
    def trial_finished(self, trial: Any) -> None:
        started = time.perf_counter()
        keep = self.experiment is None or not self.experiment.encrypted
        self._offer(("trial", TrackedTrial.of(trial, keep_code=keep)))
        self.hook_seconds.append(time.perf_counter() - started)

    @hookimpl
    def experiment_finished(self, experiment: Any, summary: Any) -> None:
        summary = dict(summary or {})
        best = summary.get("best") or {}
        weights = None
        if best.get("weights") and self.experiment is not None and not self.experiment.encrypted:
            weights = self.experiment.run_dir / best["weights"]
        self._offer(("experiment_finished", TrackedSummary(summary, best.get("trial_id"), weights)))

    def stats(self) -> dict[str, Any]:
        """What tracking cost per trial: ``hook_ms`` in the search loop, and per tracker its
        ``ms`` on its own thread, with the records ``delivered``, ``failed`` and ``dropped``."""
        calls = len(self.hook_seconds)
        trackers = {}
        for (name, deliver), worker in zip(self.delivers, self.workers, strict=True):
            trackers[name] = {"trials": deliver.trials,
                              "ms": 1000 * deliver.trial_seconds / deliver.trials if deliver.trials else None,
                              "delivered": worker.delivered, "failed": worker.failed, "dropped": worker.dropped}
        return {"trials": calls, "hook_ms": 1000 * sum(self.hook_seconds) / calls if calls else None, "trackers": trackers}

    def close(self) -> None:
        """Give the trackers ``tracker.drain_seconds`` to record what is queued, close them and
        log what tracking cost per trial."""
        if self._closed:
            return
        self._closed = True
        drain(self.workers, self.s.drain_seconds, "tracker.drain_seconds")
        stats = self.stats()
        if not stats["trials"]:
            return
        log = logger.bind(experiment=self.experiment.name) if self.experiment is not None else logger
        for (name, deliver), numbers in zip(self.delivers, stats["trackers"].values(), strict=True):
            if deliver.start_failed:
                log.warning(f"tracker {name}: recorded nothing, it could not start (see its warning above)")
                continue
            own = f"{numbers['ms']:.1f} ms per trial on its own thread" if numbers["ms"] is not None else "no trial recorded"
            log.info(f"tracker {name}: {numbers['trials']} trial record(s), {own}; the search loop spent "
                        f"{stats['hook_ms']:.3f} ms per trial handing them over")


def start_trackers(config: TrackerConfig | None, system: Any) -> TrackerHub | None:
    """Build the selected trackers and register their hub as an observer plugin (``None`` when
    ``trackers`` is empty). End it with :func:`stop_trackers`."""
    if config is None or not config.trackers:
        return None
    trackers = [(component.name, component.factory(settings=settings)) for component, settings in config.trackers]
    hub = TrackerHub(config.settings, trackers)
    system.pm.register(hub, name="neuromosaic-trackers")
    return hub


def stop_trackers(hub: TrackerHub | None, system: Any) -> None:
    """Drain and close the trackers (see :meth:`TrackerHub.close`) and unregister the hub."""
    if hub is None:
        return
    try:
        hub.close()
    finally:
        if system.pm.is_registered(hub):
            system.pm.unregister(hub)
