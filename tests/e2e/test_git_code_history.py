"""The git observer in a real search through the CLI (a subprocess, real training). It needs the other
first-party plugins, so it lives with the core's end-to-end tests, not in the plugin's isolated session."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ARGS = ["task=digits", "training.epochs=1", "visualizers=[]", "runner.workers=2"]


def neuromosaic(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    environ.update(env or {})
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=environ, timeout=300)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def completed(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [n for (n,) in conn.execute("select number from trials where status = 'completed' order by number")]


def test_each_trial_is_committed_tagged_and_a_resume_adds_to_the_history(tmp_path):
    run_dir = tmp_path / "run"
    proc = neuromosaic(tmp_path, *ARGS, "search.trials=3", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    assert "git observer" not in proc.stderr  # no warning
    repo = run_dir / "code-history"
    numbers = completed(tmp_path / "neuromosaic.db")
    assert len(numbers) == 3

    assert int(git(repo, "rev-list", "--count", "HEAD")) == 3
    assert git(repo, "tag").split() == [f"trial-{n:04d}" for n in numbers]
    assert git(repo, "show", "trial-0002:trial-0002.py") == (run_dir / "code" / "trial-0002.py").read_text()
    assert git(repo, "show", "trial-0002:model.py") == (run_dir / "code" / "trial-0002.py").read_text()
    # Trials finish in any order (two workers), so either commit may come first.
    stat = git(repo, "diff", "--stat", "trial-0001", "trial-0002")
    assert "trial-0001" in stat or "trial-0002" in stat
    diff = git(repo, "diff", "trial-0001", "trial-0002", "--", "model.py")  # check=True: it works
    assert diff == "" or "class Net" in diff or "@@" in diff
    record = json.loads(git(repo, "show", "trial-0002:trial-0002.json"))
    assert record["status"] == "completed" and 0 <= record["metrics"]["val_accuracy"] <= 1 and record["spec_hash"]
    assert git(repo, "log", "-1", "--format=%s", "trial-0002").startswith("trial 0002: completed val_accuracy=")
    assert git(repo, "status", "--porcelain") == ""

    more = neuromosaic(tmp_path, *ARGS, "search.trials=4", f"hydra.run.dir={run_dir}")
    assert more.returncode == 0, more.stderr
    assert "resuming: 3/4 trials already done" in more.stderr
    numbers = completed(tmp_path / "neuromosaic.db")
    assert len(numbers) == 4
    assert int(git(repo, "rev-list", "--count", "HEAD")) == 4
    assert git(repo, "tag").split() == [f"trial-{n:04d}" for n in numbers]


def test_without_git_the_search_runs_and_warns_once(tmp_path):
    empty = tmp_path / "no-git"
    empty.mkdir()
    run_dir = tmp_path / "run"
    proc = neuromosaic(tmp_path, *ARGS, "search.trials=2", f"hydra.run.dir={run_dir}", env={"PATH": str(empty)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("no `git` executable on PATH") == 1
    assert len(completed(tmp_path / "neuromosaic.db")) == 2
    assert not (run_dir / "code-history").exists()
