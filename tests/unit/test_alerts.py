"""Alert rules and delivery (neuromosaic_core.alerts) with an in-memory channel; the webhook
channel is tested against a real receiver in its plugin, the whole path end to end in tests/e2e."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from loguru import logger

from neuromosaic_core import hookimpl
from neuromosaic_core.alerts import Alert, AlertChannel, AlertEngine, AlertSettings, resolve_alerts, start_alerts, stop_alerts
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.llm import ChatModel, Completion, LLMCodeGen, LLMSettings, TransientLLMError
from neuromosaic_core.model import ArchitectureVector, ErrorClass, Experiment, Trial, TrialResult, TrialStatus
from neuromosaic_core.plugins import PluginSystem


class Inbox(AlertChannel):
    def __init__(self):
        self.alerts: list[Alert] = []
        self.closed = threading.Event()
        self.arrived = threading.Condition()

    def send(self, alert):
        with self.arrived:
            self.alerts.append(alert)
            self.arrived.notify_all()

    def wait_for(self, count):
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.alerts) >= count, timeout=30)

    def close(self):
        self.closed.set()

    def events(self):
        return [(a.rule, a.state) for a in self.alerts]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def settings(**changes) -> AlertSettings:
    base = dict(enabled=True, failure_rate=0, stall_minutes=0, min_free_mb=0, search_end=False, check_seconds=3600)
    return AlertSettings(**{**base, **changes})


def engine_with(inbox: Inbox, run_dir: Path, **changes) -> AlertEngine:
    engine = AlertEngine(settings(**changes), [("inbox", inbox)], clock=changes.pop("clock", Clock()))
    engine.experiment_started(experiment=Experiment("exp", "toy", {}), config={}, run_dir=run_dir)
    return engine


def trial(number: int, status: TrialStatus = TrialStatus.COMPLETED) -> Trial:
    t = Trial("exp", number, ArchitectureVector({"width": number}), status=status)
    t.result = (TrialResult({"val_accuracy": 0.5}) if status == TrialStatus.COMPLETED else
                TrialResult.failure(ErrorClass.CONSTRAINT if status == TrialStatus.INVALID else ErrorClass.TIMEOUT, "too slow"))
    return t


def test_a_stalled_search_fires_once_and_resolves_when_a_trial_finishes(tmp_path):
    inbox, clock = Inbox(), Clock()
    engine = AlertEngine(settings(stall_minutes=5), [("inbox", inbox)], clock=clock)
    engine.experiment_started(experiment=Experiment("exp", "toy", {}), config={}, run_dir=tmp_path)
    clock.now += 4 * 60
    engine.check()
    assert engine.open_episodes == []
    clock.now += 2 * 60
    engine.check()
    clock.now += 60
    engine.check()  # still stalled: the same episode, nothing new
    engine.trial_finished(trial=trial(1))
    clock.now += 6 * 60
    engine.check()  # a second episode
    engine.close()
    assert inbox.events() == [("stalled", "fired"), ("stalled", "resolved"), ("stalled", "fired"), ("stalled", "resolved")]
    assert "no trial finished for 6.0 min" in inbox.alerts[0].summary
    assert [a.episode for a in inbox.alerts] == [1, 1, 2, 2]
    assert inbox.alerts[-1].details["reason"] == "search ended"


def test_invalid_architectures_are_not_counted_and_a_window_not_yet_full_never_fires(tmp_path):
    inbox = Inbox()
    engine = engine_with(inbox, tmp_path, failure_rate=0.5, failure_window=4)
    for n in range(1, 9):
        engine.trial_finished(trial=trial(n, TrialStatus.INVALID))
    for n in range(9, 12):
        engine.trial_finished(trial=trial(n, TrialStatus.FAILED))
    assert engine.open_episodes == []  # 3 trials ran: the window of 4 is not full
    engine.trial_finished(trial=trial(12, TrialStatus.FAILED))
    assert [a.rule for a in engine.open_episodes] == ["failure_rate"]
    engine.close()
    assert "timeout: too slow" in inbox.alerts[0].summary


def test_a_rate_hovering_at_the_threshold_does_not_flap(tmp_path):
    inbox = Inbox()
    engine = engine_with(inbox, tmp_path, failure_rate=0.5, failure_window=4)
    pattern = [TrialStatus.FAILED, TrialStatus.FAILED, TrialStatus.COMPLETED, TrialStatus.COMPLETED] * 10
    for n, status in enumerate(pattern, start=1):
        engine.trial_finished(trial=trial(n, status))
    engine.close()
    assert inbox.events() == [("failure_rate", "fired"), ("failure_rate", "resolved")]  # the second at the end


def test_the_search_end_is_sent_as_finished_or_stopped(tmp_path):
    finished, stopped, interrupted = Inbox(), Inbox(), Inbox()
    summary = {"metric": "val_accuracy", "trials": {"completed": 4, "failed": 0, "invalid": 1},
               "best": {"trial_id": 3, "val_accuracy": 0.91234}}
    engine = engine_with(finished, tmp_path, search_end=True)
    engine.experiment_finished(experiment=None, summary={**summary, "stopped": "completed"})
    engine.close()
    engine = engine_with(stopped, tmp_path, search_end=True)
    engine.experiment_finished(experiment=None, summary={**summary, "stopped": "max_failures"})
    engine.close()
    engine = engine_with(interrupted, tmp_path, search_end=True)
    engine.close("interrupted")
    assert finished.alerts[0].summary == "search finished: 4 completed, 0 failed, 1 invalid; best val_accuracy=0.9123 (trial 3)"
    assert finished.alerts[0].severity == "info" and finished.alerts[0].state == "event"
    assert stopped.alerts[0].summary.startswith("search stopped (max_failures): 4 completed")
    assert stopped.alerts[0].severity == "warning"
    assert [a.summary for a in interrupted.alerts] == ["search stopped (interrupted)"]
    assert finished.closed.is_set() and interrupted.closed.is_set()


class ScriptedChat(ChatModel):
    provider = "scripted"

    def __init__(self, answers):
        super().__init__(LLMSettings(model="m", retries=0, breaker_failures=2, breaker_reset=0.05))
        self.answers = list(answers)

    def chat(self, messages, sampling):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return Completion(answer)


def test_an_open_llm_circuit_breaker_fires_and_resolves_when_it_closes(tmp_path):
    import time

    from neuromosaic_core.orchestrator import Components

    chat = ScriptedChat([TransientLLMError("connection refused")] * 2 + ["ok"])
    codegen = LLMCodeGen(chat)
    inbox = Inbox()
    engine = engine_with(inbox, tmp_path, breaker=True)
    engine.watch_components(Components(strategy=None, encoder=None, codegen=codegen, runner=None, storage=None, task=None))
    for _ in range(2):
        with pytest.raises(TransientLLMError):
            codegen.complete("hi")
    assert [(a.rule, a.key) for a in engine.open_episodes] == [("llm_breaker", "scripted")]
    time.sleep(0.1)  # past breaker_reset: the next call probes the provider, which answers
    assert codegen.complete("hi") == "ok"
    engine.close()
    assert inbox.events() == [("llm_breaker", "fired"), ("llm_breaker", "resolved")]
    assert "circuit breaker open after 2 failed calls" in inbox.alerts[0].summary


def test_a_hung_channel_blocks_nothing_and_its_queue_is_bounded(tmp_path):
    gate = threading.Event()

    class Stuck(AlertChannel):
        def __init__(self):
            self.sent = []
            self.entered = threading.Event()

        def send(self, alert):
            self.entered.set()
            gate.wait(30)
            self.sent.append(alert)

    stuck, inbox = Stuck(), Inbox()
    engine = AlertEngine(settings(queue_size=3, drain_seconds=0), [("stuck", stuck), ("inbox", inbox)])
    engine.experiment_started(experiment=Experiment("exp", "toy", {}), config={}, run_dir=tmp_path)
    for n in range(10):  # ten episodes, all while one channel hangs
        engine._fire("stalled", str(n), "warning", f"episode {n}", {})
        inbox.wait_for(n + 1)  # the other channel gets each one
        assert stuck.entered.wait(30)
    assert engine.workers[0].dropped == 10 - 1 - 3  # one in the hung send, three queued: the queue is bounded
    assert stuck.sent == [] and len(inbox.alerts) == 10
    gate.set()
    engine.close()


def test_the_log_channel_writes_one_line_per_alert(tmp_path):
    lines = []
    sink = logger.add(lambda m: lines.append(m.record), level="INFO", format="{message}")
    try:
        system = PluginSystem.load(entry_points=False)
        config = resolve_alerts({"enabled": True, "channels": ["log"], "failure_rate": 0, "stall_minutes": 0,
                                 "min_free_mb": 0, "search_end": True}, system)
        engine = start_alerts(config, system)
        assert system.pm.is_registered(engine)
        engine.experiment_started(experiment=Experiment("exp", "toy", {}), config={}, run_dir=tmp_path)
        stop_alerts(engine, system, KeyboardInterrupt())
        assert not system.pm.is_registered(engine)
    finally:
        logger.remove(sink)
    ours = [r for r in lines if r["message"].startswith("alert ")]
    assert [(r["level"].name, r["message"]) for r in ours] == [("WARNING", "alert [search_end]: search stopped (interrupted)")]
    assert ours[0]["extra"]["experiment"] == "exp"


def test_alerts_off_build_nothing():
    system = PluginSystem.load(entry_points=False)
    assert start_alerts(resolve_alerts(None, system), system) is None


class Pager:
    """A third-party channel plugin with settings."""

    @hookimpl
    def register_alert_channels(self, register):
        import attrs

        @attrs.frozen
        class PagerSettings:
            number: str = ""

        def check(s):
            if not s.number:
                raise ValueError("number: required")

        register("pager", lambda settings: Inbox(), settings=PagerSettings, check=check, secret=("number",))


@pytest.mark.parametrize(("node", "message"), [
    ({"channels": ["sms"]}, "alerts.channels: 'sms' is not an installed alert channel; valid choices: log, pager"),
    ({"enabled": True, "channels": ["log", "pager"]}, "alerts.pager.number: required"),
    ({"enabled": True, "pager": {"number": "123"}}, "alerts.pager.* is set but alerts.channels does not list pager; "
                                                     "add it: alerts.channels=[log,pager]"),
    ({"pager": {"numbr": "1"}}, "alerts.pager.numbr: unknown key 'numbr'"),
    ({"failure_window": 0}, "alerts.failure_window: must be at least 1, got 0"),
    ({"stall_minutes": "soon"}, "alerts.stall_minutes: expected a number, got 'soon'"),
])
def test_bad_alert_settings_are_one_line_naming_the_key(node, message):
    system = PluginSystem.load(extra_plugins=[("pager", Pager())], entry_points=False)
    with pytest.raises(ConfigError) as info:
        resolve_alerts(node, system)
    assert str(info.value).startswith(message)


def test_secret_channel_settings_are_masked_in_the_stored_config():
    from neuromosaic_core.alerts import redact_secrets

    system = PluginSystem.load(extra_plugins=[("pager", Pager())], entry_points=False)
    node = {"enabled": True, "channels": ["pager"], "pager": {"number": "+41 79 555 00 00"}}
    assert redact_secrets(node, system) == {"enabled": True, "channels": ["pager"], "pager": {"number": "***"}}
    assert node["pager"]["number"] == "+41 79 555 00 00"  # a copy: the search still uses the real one


def test_a_plugin_cannot_take_the_core_log_channel():
    from neuromosaic_core.errors import DuplicateComponentError

    class Impostor:
        @hookimpl
        def register_alert_channels(self, register):
            register("log", lambda settings: Inbox())

    with pytest.raises(DuplicateComponentError, match="'log' is registered twice: by plugin 'neuromosaic-core'"):
        PluginSystem.load(extra_plugins=[("impostor", Impostor())], entry_points=False)
