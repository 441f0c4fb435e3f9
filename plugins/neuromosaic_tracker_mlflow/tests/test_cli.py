"""``neuromosaic trackers=[mlflow]`` as a user runs it: a subprocess, the installed plugins, real
training of two architectures on the digits, the search recorded in a SQLite tracking store and
read back with MLflow's own client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuromosaic_core.testing.plugins import run_neuromosaic

mlflow = pytest.importorskip("mlflow")


@pytest.mark.e2e
def test_a_search_with_trackers_mlflow_is_in_the_tracking_store(tmp_path: Path) -> None:
    proc = run_neuromosaic(
        tmp_path, "task=digits", "search.trials=2", "training.epochs=1", "training.patience=1", "runner.workers=1",
        "visualizers=[]", f"storage.url=sqlite:///{tmp_path}/nm.db", f"hydra.run.dir={tmp_path}/run",
        "trackers=[mlflow]", f"tracker.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"tracker.mlflow.artifact_location={tmp_path}/mlartifacts",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "tracker mlflow: 2 trial record(s)" in proc.stderr + proc.stdout

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("neuromosaic")
    parent, = client.search_runs([exp.experiment_id], "tags.`neuromosaic.kind` = 'experiment'")
    assert parent.info.run_name == summary["experiment"] and parent.info.status == "FINISHED"
    assert parent.data.params["task"] == "digits" and parent.data.params["training.epochs"] == "1"
    trials = {int(r.data.tags["neuromosaic.trial"]): r for r in
              client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")}
    assert sorted(trials) == [1, 2]
    best = trials[summary["best"]["trial_id"]]
    assert best.data.metrics["val_accuracy"] == pytest.approx(summary["best"]["val_accuracy"])
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(summary["best"]["val_accuracy"])
    assert best.data.params["spec"].startswith("conv1d:") or best.data.params["spec"].startswith("mlp:")
    assert [m.step for m in client.get_metric_history(best.info.run_id, "learning_curve")] == [1]
    artifacts = [f.path for f in client.list_artifacts(best.info.run_id, "code")]
    assert artifacts == [f"code/trial-{summary['best']['trial_id']:04d}.py"]
    assert client.list_artifacts(best.info.run_id, "weights")  # the best trial's weights
    assert not (tmp_path / "mlruns").exists()  # artifacts went where the setting said


def test_installed_but_not_selected_it_imports_nothing_and_writes_nothing(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys; from neuromosaic_core.config import preflight, register_config_nodes; "
            "from neuromosaic_core.plugins import PluginSystem; from neuromosaic_core.trackers import start_trackers; "
            "s = PluginSystem.load(); register_config_nodes(s); r = preflight(['task=digits'], s); "
            "print(start_trackers(r.trackers, s), 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["None", "False"]
    assert list(tmp_path.iterdir()) == []  # no mlruns/, no mlflow.db
