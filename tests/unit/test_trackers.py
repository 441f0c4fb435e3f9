"""Experiment trackers (neuromosaic_core.trackers): selection and settings, records handed off the
search loop, bounded queues and the drain at the end, with an in-memory tracker; the MLflow and
TensorBoard trackers are tested against the real libraries in their plugins."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import attrs
import pytest
from loguru import logger

from neuromosaic_core import hookimpl
from neuromosaic_core.config import preflight, register_config_nodes
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.model import ArchitectureVector, ErrorClass, Experiment, Trial, TrialResult, TrialStatus
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing import TrackerContract
from neuromosaic_core.trackers import Tracker, TrackerHub, TrackerSettings, start_trackers, stop_trackers


class Memo(Tracker):
    """Records every event; ``delay`` seconds per trial; ``gate`` (an Event) holds each trial until set."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None):
        self.events: list[tuple[str, object]] = []
        self.delay, self.gate = delay, gate
        self.closed = False

    def experiment_started(self, experiment):
        self.events.append(("started", experiment))

    def trial_finished(self, trial):
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.delay)
        self.events.append(("trial", trial))

    def experiment_finished(self, end):
        self.events.append(("finished", end))

    def close(self):
        self.closed = True


@attrs.frozen
class MemoSettings:
    label: str = "memo"
    token: str = ""


class MemoPlugin:
    @hookimpl
    def register_trackers(self, register):
        register("memo", lambda settings: Memo(), settings=MemoSettings, description="in memory", secret=("token",))


@pytest.fixture(scope="module")
def system():
    system = PluginSystem.load(extra_plugins=[("memo-tracker", MemoPlugin())])
    register_config_nodes(system)
    yield system
    register_config_nodes(PluginSystem.load())  # Hydra's config store is global: leave no `tracker.memo` behind


def trial(number: int, ok: bool = True, code: str | None = "print(1)") -> Trial:
    result = (TrialResult({"val_accuracy": 0.5 + number / 100, "params": 100.0}, curve=(0.3, 0.5), weights_path="w.pt")
              if ok else TrialResult.failure(ErrorClass.RUNTIME, "boom"))
    return Trial("exp", number, ArchitectureVector({"width": number}), status=TrialStatus.COMPLETED if ok else TrialStatus.FAILED,
                 code=code, result=result)


def run_events(hub: TrackerHub, run_dir: Path, trials: list[Trial], config: dict | None = None) -> None:
    hub.experiment_started(experiment=Experiment("exp", "digits"), config=config or {"search": {"metric": "val_accuracy"}},
                           run_dir=run_dir)
    for t in trials:
        hub.trial_finished(trial=t)
    hub.experiment_finished(experiment=Experiment("exp", "digits"),
                            summary={"best": {"trial_id": 2, "weights": "weights/trial-0002.pt"}, "trials": {"completed": 2}})


def test_no_tracker_is_selected_by_default_and_nothing_runs(system):
    resolved = preflight(["task=digits"], system)
    assert resolved.trackers.trackers == []
    assert start_trackers(resolved.trackers, system) is None


def test_selected_trackers_get_their_settings_and_secrets_stay_out_of_the_stored_config(system):
    resolved = preflight(["task=digits", "trackers=[memo]", "tracker.memo.label=x", "tracker.memo.token=s3cret",
                          "tracker.queue_size=5"], system)
    (component, settings), = resolved.trackers.trackers
    assert component.name == "memo" and settings == MemoSettings("x", "s3cret")
    assert resolved.trackers.settings.queue_size == 5
    assert resolved.raw["tracker"]["memo"] == {"label": "x", "token": "***"}
    assert resolved.raw["trackers"] == ["memo"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["trackers=[nope]"], "trackers: 'nope' is not an installed tracker; valid choices: "),
    (["trackers=memo"], "trackers: expected a list of tracker names, e.g. 'trackers=[mlflow]'"),
    (["trackers=[memo,memo]"], "trackers: lists a tracker twice"),
    (["tracker.memo.label=x"], "tracker.memo.* is set but trackers does not list memo; add it: trackers=[memo]"),
    (["trackers=[memo]", "tracker.memo.colour=red"], "tracker.memo.colour"),
    (["trackers=[memo]", "tracker.queue_size=0"], "tracker.queue_size: must be at least 1"),
])
def test_bad_tracker_settings_are_one_line_naming_the_key(system, overrides, message):
    with pytest.raises(ConfigError) as info:
        preflight(["task=digits", *overrides], system)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_records_arrive_in_order_on_the_trackers_thread_and_are_not_changed_later(tmp_path):
    memo = Memo()
    hub = TrackerHub(TrackerSettings(), [("memo", memo)])
    first = trial(1)
    run_events(hub, tmp_path, [first, trial(2, ok=False)])
    first.result = TrialResult({"val_accuracy": 0.99})  # the orchestrator goes on with its objects
    hub.close()
    kinds = [kind for kind, _ in memo.events]
    assert kinds == ["started", "trial", "trial", "finished"] and memo.closed
    started, one, two, end = (record for _, record in memo.events)
    assert started.name == "exp" and started.run_dir == tmp_path and started.metric == "val_accuracy"
    assert one.number == 1 and one.metrics["val_accuracy"] == pytest.approx(0.51) and one.curve == (0.3, 0.5)
    assert one.vector == {"width": 1} and one.code == "print(1)" and one.status == "completed"
    assert two.status == "failed" and two.error == "runtime_error: boom" and two.metrics == {}
    assert end.best_trial == 2 and end.best_weights == tmp_path / "weights" / "trial-0002.pt"
    stats = hub.stats()
    assert stats["trials"] == 2 and stats["trackers"]["memo"]["trials"] == 2 and stats["trackers"]["memo"]["delivered"] == 4


def test_the_search_loop_does_not_wait_for_a_tracker(tmp_path):
    gate = threading.Event()
    memo = Memo(delay=0.02, gate=gate)
    hub = TrackerHub(TrackerSettings(), [("memo", memo)])
    run_events(hub, tmp_path, [trial(n) for n in range(1, 6)])
    # All five handed over while the tracker is held at its first trial (a hub that waited for it
    # would be stuck here until the gate's 30 s timeout, and the trials would be recorded by now).
    assert [k for k, _ in memo.events if k == "trial"] == []
    gate.set()
    hub.close()
    assert len([k for k, _ in memo.events if k == "trial"]) == 5
    stats = hub.stats()
    assert stats["trackers"]["memo"]["ms"] >= 20 > stats["hook_ms"]  # its time on its thread, not the loop's


def test_a_hung_tracker_loses_records_beyond_its_queue_and_is_given_up_at_the_end(tmp_path):
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        gate = threading.Event()
        memo = Memo(gate=gate)
        hub = TrackerHub(TrackerSettings(queue_size=2, drain_seconds=0.2), [("memo", memo)])
        run_events(hub, tmp_path, [trial(n) for n in range(1, 8)])
        started = time.perf_counter()
        hub.close()
        assert time.perf_counter() - started < 5
        gate.set()
    finally:
        logger.remove(sink)
    assert hub.workers[0].dropped > 0
    assert any("queue full (tracker.queue_size=2)" in w for w in warnings)
    assert any("still delivering after tracker.drain_seconds=0.2" in w for w in warnings)


def test_a_failing_tracker_is_logged_and_the_others_still_record(tmp_path):
    class Broken(Memo):
        def trial_finished(self, trial):
            raise RuntimeError("store unreachable")

    broken, memo = Broken(), Memo()
    hub = TrackerHub(TrackerSettings(), [("broken", broken), ("memo", memo)])
    run_events(hub, tmp_path, [trial(1)])
    hub.close()
    assert [k for k, _ in memo.events] == ["started", "trial", "finished"]
    assert hub.stats()["trackers"]["broken"]["failed"] == 1


def test_a_tracker_that_cannot_start_gets_no_more_events_and_says_so_once(tmp_path):
    class Unreachable(Memo):
        def experiment_started(self, experiment):
            raise ConnectionError("no server at 127.0.0.1:5000")

    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        tracker = Unreachable()
        hub = TrackerHub(TrackerSettings(), [("down", tracker)])
        run_events(hub, tmp_path, [trial(1), trial(2)])
        hub.close()
    finally:
        logger.remove(sink)
    assert tracker.events == [] and tracker.closed
    assert warnings == ["tracker down: experiment started not delivered: ConnectionError: no server at 127.0.0.1:5000",
                        "tracker down: recorded nothing, it could not start (see its warning above)"]


def test_with_encryption_at_rest_trackers_get_no_code_nor_weights(tmp_path):
    memo = Memo()
    hub = TrackerHub(TrackerSettings(), [("memo", memo)])
    run_events(hub, tmp_path, [trial(1)], config={"encryption": {"enabled": True, "key_file": ""}})
    hub.close()
    _, record = memo.events[1]
    assert record.code is None and record.weights_path is None and record.metrics
    assert memo.events[-1][1].best_weights is None


def test_the_hub_is_an_observer_plugin_while_the_search_runs(system, tmp_path):
    resolved = preflight(["task=digits", "trackers=[memo]"], system)
    hub = start_trackers(resolved.trackers, system)
    try:
        assert system.pm.is_registered(hub)
        system.pm.hook.trial_finished(trial=trial(1))
    finally:
        stop_trackers(hub, system)
    assert not system.pm.is_registered(hub) and hub.stats()["trials"] == 1


STORES: dict[Path, dict[str, dict[int, dict[str, float]]]] = {}


class DictTracker(Tracker):
    """The smallest tracker meeting the contract: final metrics per trial, per experiment."""

    def __init__(self, root: Path):
        self.store = STORES.setdefault(root, {})
        self.runs: dict[int, dict[str, float]] | None = None

    def experiment_started(self, experiment):
        self.runs = self.store.setdefault(experiment.name, {})

    def trial_finished(self, trial):
        assert self.runs is not None
        self.runs[trial.number] = dict(trial.metrics)


class TestDictTrackerMeetsTheContract(TrackerContract):
    def make_tracker(self, tmp_path):
        return DictTracker(tmp_path)

    def read_back(self, tmp_path, experiment):
        return STORES[tmp_path][experiment]
