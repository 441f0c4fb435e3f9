"""The CLI as a user runs it: a subprocess, real plugins, a real SQLite file, real training."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

FAST = ["task=digits", "training.epochs=3", "training.patience=2", "visualizers=[]"]


def neuromosaic(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    environ.update(env or {})
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True,
                          env=environ, timeout=timeout)


def assert_short_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0]


def test_help_lists_the_plugin_groups_without_importing_torch(tmp_path):
    code = ("import sys; from neuromosaic_core.cli import main; sys.argv = ['neuromosaic', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert re.search(r"strategy: .*random", proc.stdout) and re.search(r"task: digits, .*mnist1d", proc.stdout)
    assert "TORCH False" in proc.stdout


def test_cfg_job_shows_the_composed_config_with_plugin_nodes(tmp_path):
    proc = neuromosaic(tmp_path, "--cfg", "job", "--resolve", "strategy=random", "task=digits", "runner.workers=2")
    assert proc.returncode == 0, proc.stderr
    assert "name: digits-mlp_conv1d-random" in proc.stdout
    assert "workers: 2" in proc.stdout and "url: sqlite:///neuromosaic.db" in proc.stdout
    assert "matplotlib:\n    dpi: 120" in proc.stdout  # the installed visualizer's settings node


#: Every bad input the CLI refuses, and the one line it answers (``neuromosaic: error: <this>``).
#: Each case runs in a folder that holds only :data:`START`; it must exit 2 with that line alone
#: on stderr (no traceback) before any work, leaving the folder as it was: no run directory
#: (``runs/.../.hydra``, ``neuromosaic.log``), no database, no file changed.
BAD_INPUTS = [
    # (command line, the error line)
    (["strategy=nope"], "strategy='nope' is not an installed strategy; valid choices: "),
    (["search.trials=abc"], "search.trials: expected an integer, got 'abc'"),
    (["search.trails=3"], "unknown key 'search.trails' (valid keys under 'search': "),
    (["strategy.bogus=1"], "unknown key 'strategy.bogus'"),
    (["--multirun", "task=digits,nope"], "task='nope' is not an installed task; valid choices: digits, "),
    # the runner's settings, checked in the core for every runner
    (["runner.workers=many"], "runner.workers: expected an integer or 'auto', got 'many'"),
    (["runner.workers=0"], "runner.workers: must be at least 1 or 'auto', got 0"),
    (["runner.workers=-2"], "runner.workers: must be at least 1 or 'auto', got -2"),
    (["runner.timeout=-1"], "runner.timeout: must be above 0 seconds, got -1.0"),
    (["runner.timeout=inf"], "runner.timeout: must be a finite number of seconds, got inf"),
    (["runner=tabular", "runner.workers=0"], "runner.workers: must be at least 1 or 'auto', got 0"),  # redeclares workers
    # visualizers
    (["visualizer.matplotlib.dpi=high"], "visualizer.matplotlib.dpi: expected an integer, got 'high'"),
    (["visualizers=[nope]"], "visualizer='nope' is not an installed visualizer; valid choices: html, matplotlib"),
    (["visualizer=no_such_visualizer"], "visualizer='no_such_visualizer' is not an installed visualizer; valid choices: html, matplotlib"),
    (["visualizer=matplotlib"], "visualizer='matplotlib': choose the visualizers that run with visualizers=[matplotlib] (a list)"),
    # storage: opened (SQLite read without writing, PostgreSQL connected) before the run directory exists
    (["storage.url=redis://x"], "storage.url='redis://x': storage 'sql' serves sqlite"),
    (["storage.url=sqlite:////nonexistent_dir/sub/x.db"],
     "cannot open sqlite:////nonexistent_dir/sub/x.db: directory /nonexistent_dir/sub does not exist"),
    (["storage.url=postgresql://nobody@127.0.0.1:1/none"], "cannot open postgresql://nobody@127.0.0.1:1/none: "),
    (["storage.url=sqlite:///corrupt.db"], "cannot open sqlite:///corrupt.db: file is not a database"),
    (["storage.url=sqlite:///other.db"], "cannot open sqlite:///other.db: it holds tables of another program (notes)"),
]


@pytest.fixture
def start(tmp_path: Path) -> Path:
    """A working directory holding only START: a corrupt database and another program's database."""
    (tmp_path / "corrupt.db").write_bytes(b"not a database, whatever its name says " * 50)
    with sqlite3.connect(tmp_path / "other.db") as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    return tmp_path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.rglob("*"))}


def main_in_process(folder: Path, args: list[str], monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> tuple[object, str]:
    """``neuromosaic ARGS`` in this process: (exit code, stderr). The Hydra app, which would make the
    run directory and start the search, is replaced by a stub that fails the test if reached."""
    from neuromosaic_core import cli

    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "argv", ["neuromosaic"])
    for var in [v for v in os.environ if v.startswith("NEUROMOSAIC_")]:
        monkeypatch.delenv(var)

    def reached() -> None:
        pytest.fail(f"{args} passed the checks and would have started a run")

    monkeypatch.setattr(cli, "_hydra_app", lambda: reached)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(("args", "expected"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_and_creates_nothing(start, monkeypatch, capsys, args, expected):
    before = snapshot(start)
    code, err = main_in_process(start, args, monkeypatch, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("neuromosaic: error: "), err
    assert expected in err
    assert snapshot(start) == before


def test_the_real_command_leaves_nothing_when_the_database_cannot_be_opened(start):
    # One case through the real entry point and Hydra, which makes the run directory of any run
    # that gets past the checks.
    before = snapshot(start)
    proc = neuromosaic(start, "storage.url=sqlite:///corrupt.db")
    assert_short_error(proc, "neuromosaic: error: cannot open sqlite:///corrupt.db: file is not a database")
    assert snapshot(start) == before


def test_an_encoder_that_cannot_take_the_tasks_input_is_refused_before_any_trial(tmp_path):
    # A flat family on images: every architecture would be invalid until search.max_failures.
    # The check needs the components, so it runs after Hydra made the run directory.
    proc = neuromosaic(tmp_path, "task=digits_images", "encoder=mlp_conv1d", *FAST[1:])
    assert_short_error(proc, "encoder=mlp_conv1d builds no network for task=digits_images's input of shape 1x8x8")
    assert "choose an encoder for this kind of input" in proc.stderr
    with sqlite3.connect(tmp_path / "neuromosaic.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM trials").fetchone() == (0,)
    conn.close()


def test_cfg_job_prints_the_config_without_opening_the_database(tmp_path, monkeypatch, capsys):
    from neuromosaic_core import cli

    monkeypatch.chdir(tmp_path)
    checked = []
    monkeypatch.setattr("neuromosaic_core.config.check_storage", checked.append)
    monkeypatch.setattr(cli, "_hydra_app", lambda: lambda: None)
    monkeypatch.setattr(sys, "argv", ["neuromosaic"])
    cli.main(["--cfg", "job", "storage.url=postgresql://nobody@127.0.0.1:1/none"])
    assert checked == []
    cli.main(["storage.url=sqlite:///fine.db"])
    assert len(checked) == 1 and list(tmp_path.iterdir()) == []


def test_environment_overrides_config_and_command_line_overrides_environment(tmp_path):
    env = {"NEUROMOSAIC_SEARCH_TRIALS": "7", "NEUROMOSAIC_STORAGE_URL": "sqlite:///env.db"}
    proc = neuromosaic(tmp_path, "--cfg", "job", env=env)
    assert "trials: 7" in proc.stdout and "url: sqlite:///env.db" in proc.stdout
    proc = neuromosaic(tmp_path, "--cfg", "job", "search.trials=9", env=env)
    assert "trials: 9" in proc.stdout


def test_disabled_plugin_options_disappear(tmp_path):
    proc = neuromosaic(tmp_path, "task=digits", env={"NEUROMOSAIC_DISABLE_PLUGINS": "digits"})
    assert_short_error(proc, "task='digits' is not an installed task; valid choices: ")
    assert "digits" not in proc.stderr.split("valid choices: ")[1] and "mnist1d" in proc.stderr


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_a_short_real_search_stores_trials_weights_and_summary_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    args = [*FAST, "search.trials=3", "runner.workers=2", f"hydra.run.dir={run_dir}", "visualizers=[matplotlib]"]
    proc = neuromosaic(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    assert "Best architectures of digits-mlp_conv1d-random" in proc.stdout

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["experiment"] == "digits-mlp_conv1d-random"
    assert summary["trials"]["completed"] == 3
    best = summary["best"]
    assert 0.5 < best["val_accuracy"] <= 1.0 and 0.5 < best["test_accuracy"] <= 1.0
    assert best["params"] > 0 and best["spec"]["family"] in ("mlp", "conv1d")
    assert (run_dir / best["code"]).is_file() and (run_dir / best["weights"]).is_file()
    assert (run_dir / "plots" / "history.png").is_file()

    db = tmp_path / "neuromosaic.db"
    assert rows(db, "select status, count(*) from trials group by status") == [("completed", 3)]
    assert all(code and "class Net" in code and spec_hash for code, spec_hash in rows(db, "select code, spec_hash from trials"))
    from neuromosaic_storage_sql.repository import SCHEMA_VERSION

    assert rows(db, "select version from schema_version") == [(SCHEMA_VERSION,)]
    # each trial records how its code was written: the template, accepted at once, never the fallback
    records = [json.loads(r[0]) for r in rows(db, "select codegen from trials")]
    assert all(r["provider"] == "template" and [a["stage"] for a in r["attempts"]] == ["accepted"] for r in records)

    # The best model loads without retraining and predicts what the summary says it scored.
    check = (
        "import numpy as np, torch, sys\n"
        "from neuromosaic_core.loading import load_best_model\n"
        f"model = load_best_model({str(run_dir)!r})\n"
        f"data = np.load(next(iter(__import__('pathlib').Path({str(run_dir / 'data')!r}).glob('*.npz'))))\n"
        "pred = model(torch.tensor(data['x_test'])).argmax(1).numpy()\n"
        "print((pred == data['y_test']).mean())\n"
    )
    acc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert acc.returncode == 0, acc.stderr
    assert float(acc.stdout) == pytest.approx(best["test_accuracy"], abs=1e-6)

    # Running the finished experiment again says so instead of starting over.
    again = neuromosaic(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert "3/3 trials done; raise search.trials or choose another experiment.name" in again.stderr
    assert rows(db, "select count(*) from trials") == [(3,)]

    # Raising the budget resumes the same experiment.
    more = neuromosaic(tmp_path, *[a for a in args if not a.startswith("search.trials")], "search.trials=4")
    assert more.returncode == 0, more.stderr
    assert "resuming: 3/4 trials already done" in more.stderr
    assert rows(db, "select count(*) from trials where status = 'completed'")[0][0] == 4


def test_a_search_that_only_fails_stops_records_the_reasons_and_exits_nonzero(tmp_path):
    proc = neuromosaic(tmp_path, *FAST, "constraints.max_params=10", "search.max_failures=3", "search.trials=5")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "consecutive failed trials" in proc.stderr
    got = rows(tmp_path / "neuromosaic.db", "select status, error_class from trials")
    assert got == [("invalid", "constraint_violation")] * 3


def test_multirun_runs_distinct_experiments(tmp_path):
    proc = neuromosaic(tmp_path, "--multirun", "task=digits,mnist1d", "search.trials=1", "training.epochs=1", "visualizers=[]")
    assert proc.returncode == 0, proc.stderr
    names = {r[0] for r in rows(tmp_path / "neuromosaic.db", "select name from experiments")}
    assert names == {"digits-mlp_conv1d-random", "mnist1d-mlp_conv1d-random"}
    assert (tmp_path / "runs" / "multirun" / "mnist1d-mlp_conv1d-random" / "summary.json").is_file()
