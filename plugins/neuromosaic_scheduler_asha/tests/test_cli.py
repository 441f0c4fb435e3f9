"""`neuromosaic scheduler=asha` end to end: the default search (MNIST-1D, the default family, the
local runner's warm pool, SQLite) with ASHA at its default rungs, through the command line
(collected only where the plugins it combines with are installed; see conftest.py)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from neuromosaic_core.testing.plugins import run_neuromosaic

EPOCHS = 30  # training.epochs' default: ASHA's default rungs are 1, 3, 10 and 30


def test_a_12_trial_asha_search_stops_poor_trials_early_and_trains_the_best_in_full(tmp_path: Path):
    proc = run_neuromosaic(tmp_path, "scheduler=asha", "search.trials=12", "experiment.name=asha",
                           "storage.url=sqlite:///results.db")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "asha"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["trials"]["completed"] == 12  # architectures assessed, the pruned ones included
    assert 1 <= summary["trials"]["pruned"] < 12  # some stopped early, not all
    assert summary["best"]["fidelity"] == EPOCHS and summary["best"]["pruned"] is False
    assert summary["best"]["test_accuracy"] > 0.8  # a real network trained in full

    with sqlite3.connect(tmp_path / "results.db") as conn:
        rows = conn.execute("SELECT number, curve, fidelity, pruned, metrics FROM trials WHERE status = 'completed'").fetchall()
    conn.close()
    assert len(rows) == 12
    for number, curve, fidelity, pruned, metrics in rows:
        curve = json.loads(curve)
        assert bool(pruned) == (fidelity < EPOCHS), number
        if pruned:  # stopped at a rung: its curve is exactly that long, and it trained no further
            assert fidelity in (1, 3, 10) and len(curve) == fidelity == json.loads(metrics)["epochs"], number
            assert (run / "trials" / f"trial-{number:04d}" / "checkpoint.pt").is_file()  # kept for a promotion
        else:
            assert len(curve) <= EPOCHS and not (run / "trials" / f"trial-{number:04d}" / "checkpoint.pt").exists()
    promoted = {int(n) for n in re.findall(r"trial (\d+) promoted: trains on from its checkpoint", proc.stderr)}
    assert promoted, proc.stderr[-3000:]  # a paused trial went on from where it stopped
    assert "paused at 1/30 epochs" in proc.stderr
    assert "12 completed of which" in proc.stdout and "pruned" in proc.stdout  # the final table says it
    assert "pruned" in (run / "report.html").read_text()
