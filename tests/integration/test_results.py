"""``neuromosaic_core.results`` and the ``neuromosaic-results`` command on a real SQLite database
written through the ``sql`` storage plugin."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from neuromosaic_core import results
from neuromosaic_core.errors import NeuromosaicError, StorageError
from neuromosaic_core.model import (
    ArchitectureSpec,
    ArchitectureVector,
    CodeGenAttempt,
    CodeGenRecord,
    ErrorClass,
    Experiment,
    Layer,
    Trial,
    TrialResult,
    TrialStatus,
)
from neuromosaic_core.testing.memory import InMemoryResultsDB

EXP = "alpha"

#: number -> (params, val_accuracy) of alpha's completed trials. The Pareto front (fewest params,
#: highest accuracy) is 4, 1, 2 and 7 (a tie with 2), 8; 3 is beaten by 2, 9 by 1 (same params).
COMPLETED = {1: (1000, 0.80), 2: (2000, 0.90), 3: (3000, 0.85), 4: (500, 0.60), 7: (2000, 0.90), 8: (4000, 0.95), 9: (1000, 0.70)}
FRONT = [4, 1, 2, 7, 8]


def spec(width: int) -> ArchitectureSpec:
    return ArchitectureSpec("mlp", (Layer("linear", {"out_features": width}), Layer("activation", {"fn": "gelu"})))


def vector(n: int) -> ArchitectureVector:
    return ArchitectureVector({"family": "mlp", "mlp_width_0": 16 * n, "dropout": 0.1 * (n % 3)})


def code(n: int) -> str:
    # Square brackets must come out verbatim (not taken as rich markup).
    return f"from torch import nn\n\n\nclass Net(nn.Module):  # trial {n}\n    sizes = [bold]\n"


def build_db(url: str) -> None:
    db = results.open_results(url, create=True)
    try:
        db.create_experiment(Experiment(EXP, "digits", {"search": {"metric": "val_accuracy", "direction": "maximize"}}))
        db.create_experiment(Experiment("beta", "mnist1d", {}))
        db.create_experiment(Experiment("gamma", "digits", {"search": {"metric": "val_loss", "direction": "minimize"}}))
        for n in range(1, 11):
            t = Trial(EXP, n, vector(n), spec=spec(16 * n), code=code(n))
            if n == 3:  # written by an LLM after one repair round
                t.codegen = CodeGenRecord("ollama", "qwen2.5-coder:7b", "default-v1+abcd1234", "key-3", attempts=(
                    CodeGenAttempt("ollama", "fidelity", "system: ...", "```python\n...```", "fidelity: missing ReLU", 4.2, 300, 90),
                    CodeGenAttempt("ollama", "accepted", "system: ...", "```python\n...```", None, 3.9, 420, 95)))
            if n in COMPLETED:
                params, acc = COMPLETED[n]
                metrics = {"params": float(params), "val_accuracy": acc, "test_accuracy": acc - 0.01}
                if n == 8:
                    metrics["flops"] = 12345.0  # a metric only one trial reports: still its own column
                t.status, t.result = TrialStatus.COMPLETED, TrialResult(metrics=metrics)
            elif n == 5:
                t.status = TrialStatus.FAILED
                t.result = TrialResult.failure(ErrorClass.SHAPE, "mat1 and mat2 shapes cannot be multiplied (64x10 and 12x3)")
            elif n == 6:
                t.status, t.code = TrialStatus.INVALID, None
                t.result = TrialResult.failure(ErrorClass.INVALID_CODE, "no class Net in the answer")
            # n == 10 stays pending: no result
            db.save_trial(t)
        twin = db.list_trials(EXP)[1]  # trial 2, reused by gamma's trial 1
        for n, loss in ((1, 0.30), (2, 0.10), (3, 0.20)):
            t = Trial("gamma", n, vector(n), spec=spec(8), status=TrialStatus.COMPLETED,
                      result=TrialResult(metrics={"val_loss": loss, "params": 10.0 * n}), code=code(n),
                      reused_from=twin.id if n == 1 else None)
            db.save_trial(t)
    finally:
        db.close()


@pytest.fixture(scope="module")
def db_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("results") / "results.db"
    build_db(f"sqlite:///{path}")
    return path


@pytest.fixture
def db(db_file: Path):
    handle = results.open_results(f"sqlite:///{db_file}")
    yield handle
    handle.close()


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    environ.update(env or {})
    code_ = ("import sys; from neuromosaic_core.cli import results_main; sys.argv[0] = 'neuromosaic-results'\n"
             "try:\n    results_main()\nfinally:\n    print('TORCH', 'torch' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code_, *args], cwd=cwd, capture_output=True, text=True, env=environ, timeout=120)
    assert proc.stderr.rstrip().endswith("TORCH False"), proc.stderr  # never imports torch
    proc.stderr = proc.stderr.rstrip().removesuffix("TORCH False")
    return proc


def assert_short_error(proc: subprocess.CompletedProcess, *expected: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("neuromosaic-results: error: ")
    for text in expected:
        assert text in lines[0]


# -- the Python API ----------------------------------------------------------------------------


def test_open_results_finds_the_backend_by_scheme(db) -> None:
    assert type(db).__name__ == "SqlResultsDB"
    assert [e.name for e in db.list_experiments()] == [EXP, "beta", "gamma"]


def test_open_results_refuses_a_missing_file_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(StorageError, match=r"no results database at .*nope\.db"):
        results.open_results(f"sqlite:///{missing}")
    assert not missing.exists()


def test_open_results_unknown_scheme_names_the_served_ones() -> None:
    with pytest.raises(StorageError, match=r"no installed storage backend serves 'mongodb'.*sqlite"):
        results.open_results("mongodb://localhost/x")


def test_sqlite_path() -> None:
    assert results.sqlite_path("sqlite:///rel.db") == Path("rel.db")
    assert results.sqlite_path("sqlite:////abs/dir/x.db") == Path("/abs/dir/x.db")
    assert results.sqlite_path("sqlite:///:memory:") is None
    assert results.sqlite_path("postgresql://u@h/db") is None


def test_list_experiments_counts_and_best(db) -> None:
    rows = {r["name"]: r for r in results.list_experiments(db)}
    assert rows[EXP] == {"name": EXP, "task": "digits", "trials": 10, "completed": 7, "pruned": 0, "failed": 1, "invalid": 1,
                         "metric": "val_accuracy", "direction": "maximize", "best": 0.95}
    assert rows["beta"]["trials"] == 0 and rows["beta"]["best"] is None
    # gamma was searched minimising val_loss: its best is the lowest
    assert rows["gamma"]["metric"] == "val_loss" and rows["gamma"]["direction"] == "minimize"
    assert rows["gamma"]["best"] == 0.10


def test_best_trials_order(db) -> None:
    assert [t.number for t in results.best_trials(db, EXP, k=3)] == [8, 2, 7]  # ties keep creation order
    assert [t.number for t in results.best_trials(db, EXP, k=100)] == [8, 2, 7, 3, 1, 9, 4]
    assert [t.number for t in results.best_trials(db, EXP, k=2, metric="params", maximize=False)] == [4, 1]
    assert results.best_trials(db, "beta") == []


def test_best_trials_bad_input(db) -> None:
    with pytest.raises(results.UnknownExperimentError, match=r"no experiment named 'nope'; experiments: alpha, beta, gamma"):
        results.best_trials(db, "nope")
    with pytest.raises(results.UnknownMetricError, match=r"metric 'acc'; metrics: flops, params, test_accuracy, val_accuracy"):
        results.best_trials(db, EXP, metric="acc")
    with pytest.raises(results.ResultsError, match="k must be at least 1"):
        results.best_trials(db, EXP, k=0)
    assert issubclass(results.ResultsError, NeuromosaicError)


def test_pareto_front_is_exactly_the_non_dominated_trials(db) -> None:
    front = results.pareto_front(db, EXP)
    assert [t.number for t in front] == FRONT
    # brute force: a trial is on the front iff no other trial is at least as good on both and better on one
    points = COMPLETED
    expected = {n for n, (p, a) in points.items()
                if not any(q <= p and b >= a and (q < p or b > a) for m, (q, b) in points.items() if m != n)}
    assert {t.number for t in front} == expected


def test_pareto_front_directions(db) -> None:
    # most params and highest accuracy: only trial 8 (4000, 0.95) survives
    assert [t.number for t in results.pareto_front(db, EXP, minimize_x=False)] == [8]
    # fewest params and lowest accuracy: trial 4 (500, 0.60)
    assert [t.number for t in results.pareto_front(db, EXP, maximize_y=False)] == [4]
    # gamma: params 10, 20, 30 against val_loss 0.3, 0.1, 0.2, minimising both: 1 and 2
    assert [t.number for t in results.pareto_front(db, "gamma", y="val_loss", maximize_y=False)] == [1, 2]
    with pytest.raises(results.UnknownMetricError, match="'latency'"):
        results.pareto_front(db, EXP, x="latency")


def test_trial_has_code_result_and_error(db) -> None:
    t = results.trial(db, EXP, 2)
    assert t.number == 2 and t.code == code(2) and t.result.metrics["val_accuracy"] == 0.90
    assert t.spec == spec(32)
    failed = results.trial(db, EXP, 5)
    assert failed.status == TrialStatus.FAILED and failed.result.error.error_class == ErrorClass.SHAPE
    with pytest.raises(results.UnknownTrialError, match=r"experiment 'alpha' has no trial 42; its trials are numbered 1-10"):
        results.trial(db, EXP, 42)
    with pytest.raises(results.UnknownTrialError, match="it has no trials"):
        results.trial(db, "beta", 1)


def test_export_csv(db, tmp_path: Path) -> None:
    out = tmp_path / "alpha.csv"
    assert results.export(db, EXP, out) == 10
    with out.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames
    assert columns == ["number", "status", "error_class", "error", "flops", "params", "test_accuracy", "val_accuracy",
                       "vector.dropout", "vector.family", "vector.mlp_width_0", "spec_hash", "architecture", "reused_from",
                       "fidelity", "pruned"]
    assert len(rows) == 10
    by_number = {int(r["number"]): r for r in rows}
    assert float(by_number[2]["val_accuracy"]) == 0.90 and float(by_number[2]["params"]) == 2000
    assert by_number[2]["status"] == "completed" and by_number[2]["error_class"] == "" and by_number[2]["flops"] == ""
    assert float(by_number[8]["flops"]) == 12345
    assert by_number[5]["status"] == "failed" and by_number[5]["error_class"] == "shape_mismatch"
    assert by_number[5]["error"].startswith("mat1 and mat2") and by_number[5]["val_accuracy"] == ""
    assert by_number[6]["status"] == "invalid" and by_number[6]["error_class"] == "invalid_code"
    assert by_number[10]["status"] == "pending"
    assert by_number[3]["vector.mlp_width_0"] == "48" and by_number[3]["vector.family"] == "mlp"
    assert by_number[3]["spec_hash"] == spec(48).canonical_hash()
    assert by_number[3]["architecture"] == "mlp: fc48 gelu"


def test_export_json_includes_spec_and_reuse(db, tmp_path: Path) -> None:
    out = tmp_path / "gamma.json"
    assert results.export(db, "gamma", out, fmt="json") == 3
    rows = json.loads(out.read_text())
    assert [r["number"] for r in rows] == [1, 2, 3]
    twin = results.trial(db, EXP, 2)
    assert rows[0]["reused_from"] == twin.id and rows[1]["reused_from"] is None
    assert rows[1]["val_loss"] == 0.10 and rows[1]["vector.mlp_width_0"] == 32 and rows[1]["vector.dropout"] == 0.2
    assert rows[0]["spec"] == {"family": "mlp", "layers": [{"type": "linear", "params": {"out_features": 8}},
                                                            {"type": "activation", "params": {"fn": "gelu"}}]}
    with pytest.raises(results.ResultsError, match="unknown export format 'xml'; choose one of: csv, json"):
        results.export(db, EXP, tmp_path / "x.xml", fmt="xml")
    with pytest.raises(results.ResultsError, match="does not exist"):
        results.export(db, EXP, tmp_path / "no" / "dir.csv")


def test_api_works_on_any_results_db(tmp_path: Path) -> None:
    mem = InMemoryResultsDB()
    mem.create_experiment(Experiment("m", "digits"))
    for n, (p, a) in COMPLETED.items():
        mem.save_trial(Trial("m", n, vector(n), spec=spec(8), status=TrialStatus.COMPLETED,
                             result=TrialResult(metrics={"params": float(p), "val_accuracy": a})))
    assert [t.number for t in results.pareto_front(mem, "m")] == FRONT
    assert [t.number for t in results.best_trials(mem, "m", k=1)] == [8]
    with pytest.raises(results.ResultsError, match="InMemoryResultsDB does not support backups"):
        results.backup(mem, tmp_path / "never-written.db")
    assert not (tmp_path / "never-written.db").exists()


def test_backup_api(db, db_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    assert results.backup(db, target) == target
    copy = results.open_results(f"sqlite:///{target}")
    try:
        assert [results.trial_record(t, code=True) for t in copy.list_trials(EXP)] == \
               [results.trial_record(t, code=True) for t in db.list_trials(EXP)]
    finally:
        copy.close()
    with pytest.raises(results.ResultsError, match="already exists"):
        results.backup(db, target)
    results.backup(db, target, overwrite=True)
    with pytest.raises(StorageError, match="onto itself"):
        results.backup(db, db_file, overwrite=True)


# -- the command -------------------------------------------------------------------------------


def test_cli_list_table_and_json(db_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{db_file}"
    proc = cli("--url", url, "list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "alpha" in proc.stdout and "gamma" in proc.stdout and "0.9500" in proc.stdout
    # the URL can come from the environment and the option can follow the command
    proc = cli("list", "--json", cwd=tmp_path, env={"NEUROMOSAIC_STORAGE_URL": url})
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == [EXP, "beta", "gamma"] and rows[0]["completed"] == 7
    assert json.loads(cli("list", "--url", url, "--json", cwd=tmp_path).stdout) == rows


def test_cli_default_url_is_the_working_directory_db(db_file: Path, tmp_path: Path) -> None:
    (tmp_path / "neuromosaic.db").write_bytes(db_file.read_bytes())
    proc = cli("list", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 3


def test_cli_best(db_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{db_file}"
    proc = cli("--url", url, "best", EXP, "-k", "3", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [r["number"] for r in json.loads(proc.stdout)] == [8, 2, 7]
    proc = cli("--url", url, "best", EXP, "-k", "2", "--metric", "params", "--minimize", "--json", cwd=tmp_path)
    records = json.loads(proc.stdout)
    assert [r["number"] for r in records] == [4, 1]
    assert records[0]["metrics"]["params"] == 500 and records[0]["spec"]["family"] == "mlp"
    proc = cli("--url", url, "best", EXP, "-k", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Best 2 of alpha by val_accuracy (highest first)" in proc.stdout
    table = proc.stdout.splitlines()
    first = next(i for i, line in enumerate(table) if "0.9500" in line)
    second = next(i for i, line in enumerate(table) if "0.9000" in line)
    assert first < second and "4,000" in table[first]


def test_cli_pareto(db_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{db_file}"
    proc = cli("--url", url, "pareto", EXP, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [r["number"] for r in json.loads(proc.stdout)] == FRONT
    proc = cli("--url", url, "pareto", "gamma", "--y", "val_loss", "--minimize-y", "--json", cwd=tmp_path)
    assert [r["number"] for r in json.loads(proc.stdout)] == [1, 2]
    proc = cli("--url", url, "pareto", EXP, cwd=tmp_path)
    assert proc.returncode == 0 and "Pareto front of alpha: min params, max val_accuracy (5 trials)" in proc.stdout


def test_cli_show_prints_the_code(db_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{db_file}"
    proc = cli("--url", url, "show", EXP, "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert code(3) in proc.stdout  # verbatim, brackets included
    assert "completed" in proc.stdout and "fc48 gelu" in proc.stdout and "0.8500" in proc.stdout
    assert spec(48).canonical_hash() in proc.stdout
    assert "code by" in proc.stdout and "ollama qwen2.5-coder:7b" in proc.stdout and "default-v1+abcd1234" in proc.stdout
    assert "accepted after 2 attempt(s)" in " ".join(proc.stdout.split())
    record = json.loads(cli("--url", url, "show", EXP, "3", "--json", cwd=tmp_path).stdout)["codegen"]
    assert [a["stage"] for a in record["attempts"]] == ["fidelity", "accepted"] and record["attempts"][0]["error"] == "fidelity: missing ReLU"
    proc = cli("--url", url, "show", EXP, "5", cwd=tmp_path)
    assert "shape_mismatch: mat1 and mat2 shapes cannot be multiplied" in proc.stdout
    proc = cli("--url", url, "show", EXP, "6", "--json", cwd=tmp_path)
    record = json.loads(proc.stdout)
    assert record["status"] == "invalid" and record["code"] is None and record["error_class"] == "invalid_code"


def test_cli_export(db_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{db_file}"
    proc = cli("--url", url, "export", EXP, "--format", "csv", "-o", "out.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 10 trials of alpha to out.csv (csv)" in proc.stdout
    with (tmp_path / "out.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 10
    proc = cli("--url", url, "export", "gamma", "-o", "out.json", cwd=tmp_path)  # format from the suffix
    assert proc.returncode == 0, proc.stderr
    assert [r["val_loss"] for r in json.loads((tmp_path / "out.json").read_text())] == [0.30, 0.10, 0.20]


def test_cli_backup(db_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{db_file}"
    proc = cli("--url", url, "backup", "copy.db", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(tmp_path / "copy.db") as con:
        assert con.execute("select count(*) from trials").fetchone()[0] == 13
    assert_short_error(cli("--url", url, "backup", "copy.db", cwd=tmp_path), "already exists")
    assert cli("--url", url, "backup", "copy.db", "--force", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["best", "nope"], ["no experiment named 'nope'; experiments: alpha, beta, gamma"]),
        (["pareto", "nope"], ["no experiment named 'nope'"]),
        (["show", EXP, "99"], ["has no trial 99; its trials are numbered 1-10"]),
        (["best", EXP, "--metric", "acc"], ["metric 'acc'; metrics: flops, params"]),
        (["pareto", EXP, "--x", "latency"], ["metric 'latency'"]),
        (["export", "nope", "-o", "x.csv"], ["no experiment named 'nope'"]),
        (["export", EXP, "-o", "no/such/dir/x.csv"], ["does not exist"]),
        (["best", EXP, "-k", "0"], ["k must be at least 1"]),
    ],
)
def test_cli_bad_input_is_one_line(db_file: Path, tmp_path: Path, args: list[str], expected: list[str]) -> None:
    assert_short_error(cli("--url", f"sqlite:///{db_file}", *args, cwd=tmp_path), *expected)


def test_cli_missing_database_is_reported_not_created(tmp_path: Path) -> None:
    proc = cli("list", cwd=tmp_path)
    assert_short_error(proc, "no results database at", "neuromosaic.db", "run a search first")
    assert not (tmp_path / "neuromosaic.db").exists()
    proc = cli("--url", "sqlite:///elsewhere.db", "backup", "b.db", cwd=tmp_path)
    assert_short_error(proc, "elsewhere.db")
    assert list(tmp_path.iterdir()) == []


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    proc = cli("best", cwd=tmp_path)  # argparse: missing EXPERIMENT
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "experiment" in proc.stderr
    proc = cli("frobnicate", cwd=tmp_path)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "neuromosaic-results"
    assert script.exists(), "reinstall the core (pip install -e .) to get the neuromosaic-results script"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "backup" in proc.stdout and "pareto" in proc.stdout


# -- multi-fidelity: pruned trials, fidelity and learning curves (in memory until the sql plugin stores them) --


def multi_fidelity_db() -> InMemoryResultsDB:
    """``mf``: trials 1 and 2 trained to their end (6 epochs), 3 pruned by a scheduler after 2
    epochs, 4 from before fidelity was recorded, 5 failed."""
    mem = InMemoryResultsDB()
    mem.create_experiment(Experiment("mf", "digits", {"search": {"metric": "val_accuracy", "direction": "maximize"}}))
    for n, curve, fidelity, pruned in ((1, (0.5, 0.6, 0.7, 0.75, 0.8, 0.8), 6, False),
                                       (2, (0.4, 0.55, 0.6, 0.65, 0.7, 0.72), 6, False),
                                       (3, (0.3, 0.35), 2, True), (4, (), None, False)):
        mem.save_trial(Trial("mf", n, vector(n), spec=spec(16 * n), status=TrialStatus.COMPLETED, code=code(n), result=TrialResult(
            metrics={"val_accuracy": max(curve, default=0.6), "params": 100.0 * n}, curve=curve, fidelity=fidelity, pruned=pruned)))
    mem.save_trial(Trial("mf", 5, vector(5), status=TrialStatus.FAILED, result=TrialResult.failure(ErrorClass.RUNTIME, "boom")))
    return mem


def run_in_process(db, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``neuromosaic-results ARGS`` against ``db`` (any ResultsDB), its standard output."""
    assert results._dispatch(db, "memory://", results.build_parser().parse_args(list(args))) == 0
    return capsys.readouterr().out


def table_rows(out: str) -> list[list[str]]:
    """The cells of each row of a rich table, header first."""
    return [[c.strip() for c in line.strip("│┃").split("│" if "│" in line else "┃")] for line in out.splitlines()
            if line.startswith(("│", "┃"))]


def test_pruned_counts_fidelity_and_curves_in_the_api(tmp_path: Path) -> None:
    mem = multi_fidelity_db()
    (row,) = results.list_experiments(mem)
    assert (row["completed"], row["pruned"], row["failed"]) == (4, 1, 1)
    assert results.list_experiments(mem, history=lambda name: [])[0]["pruned"] == 0, "a caller's own history is used"
    pruned = results.trial_record(results.trial(mem, "mf", 3))
    assert (pruned["fidelity"], pruned["pruned"], pruned["curve"]) == (2, True, [0.3, 0.35])
    assert results.curve_record(results.trial(mem, "mf", 1)) == {
        "metric": "val_accuracy", "epochs": [1, 2, 3, 4, 5, 6], "values": [0.5, 0.6, 0.7, 0.75, 0.8, 0.8],
        "fidelity": 6, "pruned": False}
    assert [results.fidelity_label(results.trial(mem, "mf", n)) for n in (1, 3, 4, 5)] == ["6", "2, pruned", "full", "-"]
    results.export(mem, "mf", tmp_path / "mf.csv")
    with (tmp_path / "mf.csv").open(newline="") as f:
        assert [(r["number"], r["fidelity"], r["pruned"]) for r in csv.DictReader(f)] == [
            ("1", "6", "False"), ("2", "6", "False"), ("3", "2", "True"), ("4", "", "False"), ("5", "", "False")]
    results.export(mem, "mf", tmp_path / "mf.json", fmt="json")
    assert [r["curve"] for r in json.loads((tmp_path / "mf.json").read_text())][2:] == [[0.3, 0.35], [], []]


def test_cli_shows_pruned_counts_and_a_fidelity_column(capsys: pytest.CaptureFixture[str]) -> None:
    mem = multi_fidelity_db()
    header, row = table_rows(run_in_process(mem, capsys, "list"))
    assert dict(zip(header, row, strict=True)).items() >= {"completed": "4", "pruned": "1", "failed": "1"}.items()
    assert header.index("pruned") == header.index("completed") + 1, "pruned next to completed"
    header, *rows = table_rows(run_in_process(mem, capsys, "best", "mf"))
    by_trial = {r[header.index("trial")]: r[header.index("fidelity")] for r in rows}
    assert by_trial == {"1": "6", "2": "6", "4": "full", "3": "2, pruned"}
    header, *rows = table_rows(run_in_process(mem, capsys, "pareto", "mf"))
    assert "fidelity" in header
    shown = " ".join(run_in_process(mem, capsys, "show", "mf", "3").split())
    assert "fidelity │ 2 epochs, pruned (a scheduler stopped it before its training's end)" in shown
    assert "learning curve │ 2 epochs of val_accuracy: 0.3000 -> 0.3500 (best 0.3500)" in shown
    assert json.loads(run_in_process(mem, capsys, "show", "mf", "1", "--json"))["curve"] == [0.5, 0.6, 0.7, 0.75, 0.8, 0.8]
