"""The mlflow tracker against real MLflow tracking stores: SQLite files, and one real
``mlflow server`` on 127.0.0.1; everything read back with MLflow's own client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from neuromosaic_tracker_mlflow import MlflowSettings
from neuromosaic_tracker_mlflow.tracker import MlflowTracker

from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing import TrackerContract
from neuromosaic_core.testing.tracker import CODE, SPEC, completed, experiment
from neuromosaic_core.trackers import TrackedSummary, TrackedTrial

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """A SQLite tracking store with MLflow's tables made, once: making them (Alembic's
    migrations) takes seconds, which each test would pay again."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def store(empty_store, tmp_path) -> Path:
    """Each test's own store, ``tmp_path/mlflow.db``, a copy of the empty one."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    return tmp_path / "mlflow.db"


def settings(tmp_path: Path, **changes) -> MlflowSettings:
    return MlflowSettings(**{"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                             "artifact_location": str(tmp_path / "artifacts"), **changes})


def runs_of(client: MlflowClient, name: str) -> tuple[object, dict[int, object]]:
    """The experiment's run and its trial runs by number."""
    exp = client.get_experiment_by_name("neuromosaic")
    parent, = client.search_runs([exp.experiment_id], f"tags.`neuromosaic.experiment` = '{name}' and tags.`neuromosaic.kind` = 'experiment'")
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return parent, {int(run.data.tags["neuromosaic.trial"]): run for run in children}


class TestMlflowTrackerMeetsTheContract(TrackerContract):
    def make_tracker(self, tmp_path):
        return MlflowTracker(settings(tmp_path))

    def read_back(self, tmp_path, experiment):
        _, trials = runs_of(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), experiment)
        return {number: dict(run.data.metrics) for number, run in trials.items()}


def test_importing_the_plugin_does_not_import_mlflow():
    code = "import sys, neuromosaic_tracker_mlflow; print('mlflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    info = PluginSystem.load().plugins["mlflow"]
    assert info.error is None and info.components == {"tracker": ["mlflow"]}


def test_a_trial_run_holds_the_vector_spec_metrics_curve_and_code_and_the_best_holds_its_weights(tmp_path):
    weights = tmp_path / "run" / "weights" / "trial-0002.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"\x00weights")
    tracker = MlflowTracker(settings(tmp_path))
    tracker.experiment_started(experiment(tmp_path / "run", "exp"))
    tracker.trial_finished(completed(1, 0.6, curve=(0.3, 0.5, 0.6)))
    tracker.trial_finished(completed(2, 0.8, curve=(0.5, 0.7, 0.8)))
    tracker.trial_finished(TrackedTrial(3, "failed", {"width": 64, "activation": "gelu"}, SPEC, error="timeout: over 600 s"))
    summary = {"stopped": "completed", "metric": "val_accuracy", "trials": {"completed": 2, "failed": 1, "invalid": 0},
               "best": {"trial_id": 2, "val_accuracy": 0.8, "weights": "weights/trial-0002.pt"}}
    tracker.experiment_finished(TrackedSummary(summary, 2, weights))
    tracker.close()

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent, trials = runs_of(client, "exp")
    assert parent.info.run_name == "exp" and parent.info.status == "FINISHED"
    assert parent.data.metrics == {"best_val_accuracy": 0.8, "trials_completed": 2, "trials_failed": 1, "trials_invalid": 0}
    assert parent.data.tags["neuromosaic.best_trial"] == "2"
    summary_file = client.download_artifacts(parent.info.run_id, "summary.json", str(tmp_path))
    assert json.loads(Path(summary_file).read_text())["best"]["trial_id"] == 2

    two = trials[2]
    assert two.info.run_name == "trial-0002" and two.info.status == "FINISHED"
    assert two.data.params == {"width": "32", "activation": "relu", "spec": "mlp: fc16 relu", "spec_family": "mlp"}
    assert two.data.metrics["val_accuracy"] == pytest.approx(0.8) and two.data.metrics["params"] == 1234
    history = client.get_metric_history(two.info.run_id, "learning_curve")
    assert [(m.step, round(m.value, 3)) for m in history] == [(1, 0.5), (2, 0.7), (3, 0.8)]
    code = client.download_artifacts(two.info.run_id, "code/trial-0002.py", str(tmp_path))
    assert Path(code).read_text() == CODE
    assert [f.path for f in client.list_artifacts(two.info.run_id, "weights")] == ["weights/trial-0002.pt"]
    assert client.list_artifacts(trials[1].info.run_id, "weights") == []  # only the best trial's weights

    failed = trials[3]
    assert failed.info.status == "FAILED" and failed.data.tags["neuromosaic.error"] == "timeout: over 600 s"
    assert failed.data.metrics == {}


def test_an_interrupted_search_is_killed_and_its_resume_goes_on_in_the_same_runs(tmp_path):
    tracker = MlflowTracker(settings(tmp_path))
    tracker.experiment_started(experiment(tmp_path / "run", "exp"))
    tracker.trial_finished(completed(1, 0.4, fidelity=1, pruned=True, curve=(0.4,)))  # paused at a milestone
    tracker.close()  # interrupted
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent, _ = runs_of(client, "exp")
    assert parent.info.status == "KILLED"

    resumed = MlflowTracker(settings(tmp_path))
    resumed.experiment_started(experiment(tmp_path / "run", "exp"))
    resumed.trial_finished(completed(1, 0.7, fidelity=3, curve=(0.4, 0.6, 0.7)))  # promoted and trained in full
    resumed.experiment_finished(TrackedSummary({"stopped": "completed", "metric": "val_accuracy", "best": {}}, None))
    resumed.close()
    again, trials = runs_of(client, "exp")
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    one = trials[1]
    assert [(m.step, round(m.value, 3)) for m in client.get_metric_history(one.info.run_id, "learning_curve")] == \
        [(1, 0.4), (2, 0.6), (3, 0.7)]  # the curve goes on, no epoch twice
    assert [(m.step, round(m.value, 3)) for m in client.get_metric_history(one.info.run_id, "val_accuracy")] == [(1, 0.4), (3, 0.7)]


def test_code_and_weights_stay_out_when_turned_off(tmp_path):
    tracker = MlflowTracker(settings(tmp_path, log_code=False))
    tracker.experiment_started(experiment(tmp_path / "run", "exp"))
    tracker.trial_finished(completed(1, 0.6))
    tracker.close()
    _, trials = runs_of(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), "exp")
    assert MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").list_artifacts(trials[1].info.run_id) == []


def test_an_empty_experiment_name_is_refused_naming_the_key():
    from neuromosaic_core.settings import structure_settings

    with pytest.raises(Exception, match=r"tracker.mlflow.experiment: must name an MLflow experiment"):
        structure_settings({"experiment": " "}, MlflowSettings, "tracker.mlflow")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path, store):
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, artifacts served over HTTP)."""
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{store}", "--artifacts-destination", str(tmp_path / "served")]
    # No background job runner (GenAI jobs): it is not what tracking needs, and it costs the start seconds.
    environ = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=environ, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:  # noqa: S310 - our own server
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (tmp_path / "server.log").read_text()[-1500:]
                reason = f"mlflow server did not start (exit {proc.poll()}): {tail}"
                print(reason)
                pytest.skip(reason)
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_a_search_is_recorded_on_a_real_mlflow_server(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "run" / "weights" / "trial-0001.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    tracker = MlflowTracker(MlflowSettings(tracking_uri=mlflow_server))
    tracker.experiment_started(experiment(tmp_path / "run", "served"))
    tracker.trial_finished(completed(1, 0.75))
    tracker.experiment_finished(TrackedSummary({"stopped": "completed", "metric": "val_accuracy",
                                                "best": {"trial_id": 1, "val_accuracy": 0.75}}, 1, weights))
    tracker.close()

    client = MlflowClient(mlflow_server)
    parent, trials = runs_of(client, "served")
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_val_accuracy"] == 0.75
    assert trials[1].data.metrics["val_accuracy"] == 0.75
    code = client.download_artifacts(trials[1].info.run_id, "code/trial-0001.py", str(tmp_path))
    assert Path(code).read_text() == CODE
    assert list((tmp_path / "served").rglob("trial-0001.pt"))  # uploaded through the server, stored where it keeps artifacts
