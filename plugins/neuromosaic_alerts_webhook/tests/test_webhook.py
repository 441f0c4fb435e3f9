"""The webhook channel against a real HTTP receiver on 127.0.0.1 (``http.server`` in a thread),
driven by the core's alert engine exactly as a search drives it (its observer hooks)."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from neuromosaic_alerts_webhook import WebhookChannel, WebhookSettings
from neuromosaic_alerts_webhook.channel import TransientWebhookError, WebhookError

from neuromosaic_core.alerts import Alert, AlertEngine, AlertSettings
from neuromosaic_core.model import ArchitectureVector, ErrorClass, Experiment, Trial, TrialResult, TrialStatus


class Receiver:
    """A webhook receiver: records each POSTed JSON body; answers with the next scripted status
    (200 once the script is used up), or holds the request open (``"hang"``) until released."""

    def __init__(self, script=()):
        self.script = list(script)
        self.bodies: list[dict] = []
        self.release = threading.Event()
        self.hanging = threading.Event()  # set while a request is held open
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    receiver.bodies.append(body)
                    action = receiver.script.pop(0) if receiver.script else 200
                if action == "hang":
                    receiver.hanging.set()
                    receiver.release.wait(60)
                    action = 200
                self.send_response(action)
                self.end_headers()

            def log_message(self, *args):
                pass

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/neuromosaic"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self):
        return [(b["rule"], b["state"]) for b in self.bodies]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    made = []

    def make(script=()):
        made.append(Receiver(script))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def quiet(**changes) -> AlertSettings:
    """Alerts on, every rule off unless ``changes`` turns it on; the monitor thread never ticks."""
    base = dict(enabled=True, channels=["webhook"], failure_rate=0, stall_minutes=0, min_free_mb=0, search_end=False,
                check_seconds=3600, drain_seconds=30)
    return AlertSettings(**{**base, **changes})


def webhook(url, **changes) -> WebhookChannel:
    return WebhookChannel(WebhookSettings(url=url, **{"backoff": 0, "backoff_max": 0, **changes}))


def trial(number: int, failed: bool) -> Trial:
    t = Trial("exp", number, ArchitectureVector({"width": number}))
    if failed:
        t.status, t.result = TrialStatus.FAILED, TrialResult.failure(ErrorClass.CRASH, "trial process died")
    else:
        t.status, t.result = TrialStatus.COMPLETED, TrialResult({"val_accuracy": 0.5})
    return t


def started(engine: AlertEngine, run_dir: Path, config=None) -> None:
    engine.experiment_started(experiment=Experiment("exp", "toy", {}), config=config or {}, run_dir=run_dir)


def alert(summary="x") -> Alert:
    return Alert("failure_rate", "fired", "warning", summary, "exp", episode=1)


def test_a_failure_rate_episode_is_posted_once_when_it_fires_and_once_when_it_resolves(receiver_factory, tmp_path):
    receiver = receiver_factory()
    engine = AlertEngine(quiet(failure_rate=0.5, failure_window=4, search_end=True), [("webhook", webhook(receiver.url))])
    started(engine, tmp_path)
    outcomes = [False, True, True, False, True, True, True, True, True] + [False] * 8  # fires at trial 4, resolves at 14
    for number, failed in enumerate(outcomes, start=1):
        engine.trial_finished(trial=trial(number, failed))
    engine.experiment_finished(experiment=None, summary={"stopped": "completed", "trials": {"completed": 10, "failed": 7}})
    engine.close()

    assert receiver.events() == [("failure_rate", "fired"), ("failure_rate", "resolved"), ("search_end", "event")]
    fired, resolved, end = receiver.bodies
    assert fired["summary"].startswith("2 of the last 4 trials failed") and "trial 3: crash: trial process died" in fired["summary"]
    assert fired["experiment"] == "exp" and fired["severity"] == "warning" and fired["details"]["window"] == 4
    assert resolved["episode"] == fired["episode"] == 1 and resolved["details"]["fired_at"] == fired["time"]
    assert fired["id"] != resolved["id"]  # a receiver deduplicates retries by id
    assert end["summary"].startswith("search finished: 10 completed, 7 failed")


def test_a_500_is_retried_and_the_same_alert_then_delivered(receiver_factory):
    receiver = receiver_factory(script=[500, 503])
    channel = webhook(receiver.url, retries=3)
    channel.send(alert("disk almost full"))
    assert channel.attempts == 3
    assert [b["summary"] for b in receiver.bodies] == ["disk almost full"] * 3
    assert len({b["id"] for b in receiver.bodies}) == 1


def test_a_refusal_is_not_retried_and_retries_give_up(receiver_factory):
    refused = receiver_factory(script=[400])
    channel = webhook(refused.url, retries=3)
    with pytest.raises(WebhookError, match="HTTP 400"):
        channel.send(alert())
    assert channel.attempts == 1

    failing = receiver_factory(script=[500] * 5)
    channel = webhook(failing.url, retries=2)
    with pytest.raises(TransientWebhookError, match="HTTP 500"):
        channel.send(alert())
    assert len(failing.bodies) == 3


def test_a_hanging_receiver_times_out_and_the_next_alert_gets_through(receiver_factory):
    receiver = receiver_factory(script=["hang"])
    channel = webhook(receiver.url, timeout=1.0, retries=0)
    with pytest.raises(TransientWebhookError, match="timed out"):
        channel.send(alert("first"))
    assert receiver.hanging.is_set() and not receiver.release.is_set()  # still holding the first one
    channel.send(alert("second"))
    assert [b["summary"] for b in receiver.bodies] == ["first", "second"]


def test_a_hanging_receiver_does_not_hold_up_the_trials(receiver_factory, tmp_path):
    # The receiver holds the first alert open and the channel waits up to 60 s for it: if the
    # search waited for delivery, its trials could not finish before that first POST ended.
    receiver = receiver_factory(script=["hang"])
    channel = webhook(receiver.url, timeout=60, retries=1)
    engine = AlertEngine(quiet(failure_rate=0.5, failure_window=2, search_end=True, drain_seconds=0),
                         [("webhook", channel)])
    started(engine, tmp_path)
    for number in range(1, 41):  # flaps: fired, resolved, fired, ... one alert every few trials
        engine.trial_finished(trial=trial(number, failed=number % 4 in (1, 2)))
    engine.experiment_finished(experiment=None, summary={"stopped": "completed", "trials": {}})
    assert receiver.hanging.wait(30)
    assert channel.attempts == 1 and len(receiver.bodies) == 1  # every trial finished during the first POST
    engine.close()  # drain_seconds=0: does not wait for the stuck channel either
    assert channel.attempts == 1
    receiver.release.set()
    engine.workers[0].thread.join(30)  # let it finish against the live receiver


def test_the_disk_space_rule_fires_when_free_space_is_below_the_threshold(receiver_factory, tmp_path):
    receiver = receiver_factory()
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    engine = AlertEngine(quiet(min_free_mb=free_mb * 2 + 1), [("webhook", webhook(receiver.url))])
    # The run directory and the SQLite database share a filesystem: one episode names both.
    started(engine, tmp_path / "runs" / "exp", config={"storage": {"url": f"sqlite:///{tmp_path}/results.db"}})
    engine.check()  # the monitor thread's next look: still low, no second alert
    engine.close()
    assert receiver.events() == [("disk_space", "fired"), ("disk_space", "resolved")]
    fired, resolved = receiver.bodies
    assert fired["severity"] == "critical" and fired["details"]["free_mb"] < fired["details"]["threshold_mb"]
    assert set(fired["details"]["paths"]) == {"run directory", "database"}
    assert resolved["details"]["reason"] == "search ended"


def test_settings_refuse_what_the_channel_cannot_use():
    from neuromosaic_alerts_webhook.channel import check_settings

    with pytest.raises(ValueError, match="url: required"):
        check_settings(WebhookSettings())
    with pytest.raises(ValueError, match="must be an http:// or https:// URL"):
        check_settings(WebhookSettings(url="file:///etc/passwd"))
    with pytest.raises(ValueError, match="timeout"):
        WebhookSettings(url="http://x", timeout=0)
