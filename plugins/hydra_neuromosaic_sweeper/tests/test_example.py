"""End to end: the shipped example app swept with ``--multirun hydra/sweeper=neuromosaic``, as a
user runs it, then the same command again (it resumes: only a trial cut off by a crash runs again)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from neuromosaic_core import results
from neuromosaic_core.model import TrialStatus

APP = Path(__file__).resolve().parents[3] / "docs" / "examples" / "hydra_sweeper" / "sweep_app.py"
SWEEP = ["hydra/sweeper=neuromosaic", "hydra.sweeper.strategy=evolution", "hydra.sweeper.n_trials=6",
         "model.depth=range(1,8)", "optim.lr=tag(log,interval(1e-4,1e-1))", "model.act=choice(relu,gelu)"]


def _sweep(cwd: Path, sweep_dir: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEUROMOSAIC_", "HYDRA_"))}
    proc = subprocess.run([sys.executable, str(APP), "--multirun", f"hydra.sweep.dir={sweep_dir}", *SWEEP],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.e2e
def test_example_app_is_searched_stored_and_resumed(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("sweep_app", APP)
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)

    first = _sweep(tmp_path, "first")
    multirun = OmegaConf.load(tmp_path / "first" / "multirun.yaml")
    assert multirun.hydra.sweeper.strategy == "evolution" and multirun.hydra.sweeper.n_trials == 6
    assert sorted(p.name for p in (tmp_path / "first").iterdir() if p.is_dir()) == ["0", "1", "2", "3", "4", "5"]

    # The default database, in the directory the command ran in, holds every trial with what the app returned.
    db = results.open_results(f"sqlite:///{tmp_path / 'neuromosaic.db'}")
    (row,) = results.list_experiments(db)
    assert (row["name"], row["task"], row["metric"], row["direction"]) == ("sweep_app-evolution", "hydra:sweep_app", "objective", "minimize")
    trials = db.list_trials("sweep_app-evolution")
    assert [t.number for t in trials] == [1, 2, 3, 4, 5, 6] and {t.status for t in trials} == {TrialStatus.COMPLETED}
    for t in trials:
        v = t.vector.values
        assert 1 <= v["model.depth"] <= 7 and 1e-4 <= v["optim.lr"] <= 1e-1 and v["model.act"] in ("relu", "gelu")
        assert t.result.metrics["objective"] == pytest.approx(app.loss(v["model.depth"], v["optim.lr"], v["model.act"]), rel=1e-12)
    printed = [line for line in first.stdout.splitlines() if line.startswith("depth=")]
    assert len(printed) == 6  # each trial ran the app once

    best = min(trials, key=lambda t: t.result.metrics["objective"])
    found = OmegaConf.load(tmp_path / "first" / "optimization_results.yaml")
    assert found.best_trial == best.number and found.best_value == best.result.metrics["objective"]
    assert dict(found.best_params) == dict(best.vector.values)
    assert (found.completed, found.failed) == (6, 0)

    # The same command again resumes the experiment. Trial 6 is made to look cut off by a crash
    # (left running): only it runs again, in place; the finished trials are neither rerun nor stored twice.
    cut = db.find_trial("sweep_app-evolution", 6)
    cut.status, cut.result = TrialStatus.RUNNING, None
    db.save_trial(cut)
    again = _sweep(tmp_path, "again")
    assert "resuming: 5/6 trials already done, 1 cut off by a crash re-run" in again.stderr + again.stdout
    v = cut.vector.values
    assert [line for line in again.stdout.splitlines() if line.startswith("depth=")] == [
        f"depth={v['model.depth']} lr={v['optim.lr']:.3g} act={v['model.act']} -> loss={app.loss(v['model.depth'], v['optim.lr'], v['model.act']):.4f}"]
    after = db.list_trials("sweep_app-evolution")
    assert [(t.id, t.number, t.status, t.vector, t.result.metrics) for t in after] == [
        (t.id, t.number, TrialStatus.COMPLETED, t.vector, t.result.metrics) for t in trials]
    assert OmegaConf.load(tmp_path / "again" / "optimization_results.yaml").best_value == found.best_value
    db.close()
