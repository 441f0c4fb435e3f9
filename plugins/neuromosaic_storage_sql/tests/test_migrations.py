"""Schema v1 -> v2 and back, on a database file laid out exactly as the v1 code wrote it."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from neuromosaic_storage_sql.repository import SCHEMA_VERSION, SqlResultsDB, migrate_database

from neuromosaic_core.errors import StorageError
from neuromosaic_core.interfaces import ResultsDB
from neuromosaic_core.model import Experiment, TrialResult, TrialStatus, converter
from neuromosaic_core.testing.storage import make_trial

# `.schema` of a database created by neuromosaic-storage-sql 0.1.0 (schema v1), verbatim.
V1_DDL = [
    'CREATE TABLE IF NOT EXISTS "experiments" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL, "task" VARCHAR(255) NOT NULL, "config" TEXT NOT NULL, "created_at" DATETIME NOT NULL)',
    'CREATE UNIQUE INDEX "experimentrow_name" ON "experiments" ("name")',
    'CREATE TABLE IF NOT EXISTS "schema_version" ("id" INTEGER NOT NULL PRIMARY KEY, "version" INTEGER NOT NULL)',
    'CREATE TABLE IF NOT EXISTS "trials" ("id" INTEGER NOT NULL PRIMARY KEY, "experiment_id" INTEGER NOT NULL, "number" INTEGER NOT NULL, "status" VARCHAR(32) NOT NULL, "vector" TEXT NOT NULL, "spec" TEXT, "spec_hash" VARCHAR(64), "reuse_key" VARCHAR(64), "code" TEXT, "metrics" TEXT, "error_class" VARCHAR(64), "error_message" TEXT, "weights_path" TEXT, "reused_from" INTEGER, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, FOREIGN KEY ("experiment_id") REFERENCES "experiments" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "trialrow_experiment_id" ON "trials" ("experiment_id")',
    'CREATE INDEX "trialrow_status" ON "trials" ("status")',
    'CREATE INDEX "trialrow_spec_hash" ON "trials" ("spec_hash")',
    'CREATE INDEX "trialrow_reuse_key" ON "trials" ("reuse_key")',
    'CREATE INDEX "trialrow_experiment_id_number" ON "trials" ("experiment_id", "number")',
]


def dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def make_v1_file(path: Path, n: int = 30) -> None:
    """A v1 database: the v1 DDL, two experiments, trials of every kind, version row 1."""
    conn = sqlite3.connect(path)
    with conn:
        for ddl in V1_DDL:
            conn.execute(ddl)
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        for name in ("old", "other"):
            conn.execute("INSERT INTO experiments (name, task, config, created_at) VALUES (?, ?, ?, ?)",
                         (name, "digits", dumps({"seed": 1}), "2026-01-02 03:04:05.678901"))
        for i in range(n):
            exp_id = 1 if i % 5 else 2
            status = [TrialStatus.COMPLETED, TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.RUNNING][i % 4]
            t = make_trial("x", i, status=status, reuse_key=f"k{i}")
            metrics = error = message = None
            if status is TrialStatus.COMPLETED:
                metrics = dumps({"val_accuracy": round((i * 37 % 101) / 100, 2), "params": float(1000 + i)})
            elif status is TrialStatus.FAILED:
                metrics, error, message = dumps({}), "nan_loss", f"nan at {i}"
            conn.execute(
                'INSERT INTO trials (experiment_id, number, status, vector, spec, spec_hash, reuse_key, code, metrics, '
                'error_class, error_message, weights_path, reused_from, created_at, updated_at) '
                'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                (exp_id, i, status.value, dumps(converter.unstructure(t.vector)), dumps(converter.unstructure(t.spec)),
                 t.spec_hash, t.reuse_key, t.code, metrics, error, message, None, None,
                 "2026-01-02 03:04:05.678901", "2026-01-02 03:04:06.000001"))
    conn.close()


def schema(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    conn.close()
    return {r[0].replace("CREATE TABLE IF NOT EXISTS", "CREATE TABLE") for r in rows}


def dump_rows(path: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()  # noqa: S608
                for t in ("schema_version", "experiments", "trials")}
    finally:
        conn.close()


def reference_best(db: ResultsDB, experiment: str, k: int, metric: str, maximize: bool) -> list:
    """The interface's own (load everything, sort in Python) answer."""
    return ResultsDB.get_best_architectures(db, experiment, k, metric, maximize)


def test_v1_file_upgrades_in_place_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    url = f"sqlite:///{path}"
    make_v1_file(path)
    v1_schema, v1_rows = schema(path), dump_rows(path)
    assert v1_schema == {d.replace("CREATE TABLE IF NOT EXISTS", "CREATE TABLE") for d in V1_DDL}

    # 1. the new code opens it and upgrades in place; every row is intact
    db = SqlResultsDB(url)
    try:
        assert db.stored_schema_version() == SCHEMA_VERSION == 2
        before = {name: db.list_trials(name) for name in ("old", "other")}
        assert len(before["old"]) + len(before["other"]) == 30
        for name in ("old", "other"):
            for metric, maximize in (("val_accuracy", True), ("params", False), ("missing", True)):
                assert db.get_best_architectures(name, 5, metric, maximize) == reference_best(db, name, 5, metric, maximize)
        best3 = [t.number for t in reference_best(db, "old", 3, "val_accuracy", True)]
        assert len(best3) == 3
        assert [t.number for t in db.get_best_architectures("old", k=3)] == best3
    finally:
        db.close()
    upgraded = dump_rows(path)
    assert upgraded["experiments"] == v1_rows["experiments"] and upgraded["trials"] == v1_rows["trials"]
    conn = sqlite3.connect(path)
    n_metrics = conn.execute("SELECT count(*) FROM trial_metrics").fetchone()[0]
    conn.close()
    assert n_metrics == 2 * sum(1 for i in range(30) if i % 4 in (0, 1))  # two metrics per completed trial
    assert {"trial_metrics", "trial_metrics_experiment_id_name_value", "trials_experiment_id_status"} <= {
        n for n, in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}

    # 2. rollback: back to exactly the v1 schema, with the v1 data
    assert migrate_database(url, 1) == (2, 1)
    assert schema(path) == v1_schema
    assert dump_rows(path) == v1_rows

    # 3. and forward again, through the CLI this time
    done = subprocess.run([sys.executable, "-m", "neuromosaic_storage_sql.migrate", url],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{url}: schema v1 -> v2"
    db = SqlResultsDB(url)
    try:
        assert db.stored_schema_version() == 2
        assert {name: db.list_trials(name) for name in ("old", "other")} == before
        assert [t.number for t in db.get_best_architectures("old", k=3)] == best3
    finally:
        db.close()


def test_cli_downgrade_and_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    SqlResultsDB(url).close()
    run = lambda *args: subprocess.run([sys.executable, "-m", "neuromosaic_storage_sql.migrate", *args],  # noqa: E731
                                       capture_output=True, text=True, check=False)
    done = run("--to", "1", url)
    assert (done.returncode, done.stdout.strip()) == (0, f"{url}: schema v2 -> v1")
    done = run("--to", "1", url)
    assert (done.returncode, done.stdout.strip()) == (0, f"{url}: already at schema v1")
    done = run("--to", "3", url)
    assert done.returncode == 2 and "knows v1 to v2" in done.stderr and "\n" not in done.stderr.strip()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    done = run(f"sqlite:///{empty}")
    assert done.returncode == 2 and "no neuromosaic schema" in done.stderr


def test_migrate_refuses_a_newer_database(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SqlResultsDB(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 3")
    conn.close()
    with pytest.raises(StorageError, match="v3 is newer than this neuromosaic-storage-sql"):
        migrate_database(f"sqlite:///{path}", 1)
    with pytest.raises(StorageError, match="v3 is newer than this neuromosaic-storage-sql"):
        SqlResultsDB(f"sqlite:///{path}")


def test_fresh_database_equals_a_migrated_one(tmp_path: Path) -> None:
    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    SqlResultsDB(f"sqlite:///{fresh}").close()
    make_v1_file(old, n=0)
    SqlResultsDB(f"sqlite:///{old}").close()
    assert schema(fresh) == schema(old)


def test_sql_best_k_matches_the_python_reference(tmp_path: Path) -> None:
    rng = random.Random(7)
    db = SqlResultsDB(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        for name in ("a", "b"):
            db.create_experiment(Experiment(name, "digits"))
        trials = []
        for i in range(300):
            status = rng.choice([TrialStatus.COMPLETED] * 3 + [TrialStatus.FAILED, TrialStatus.PENDING])
            metrics = {"val_accuracy": rng.choice([0.1, 0.5, 0.9, rng.random()]), "loss": rng.random()}
            if rng.random() < 0.1:
                del metrics["loss"]
            result = TrialResult(metrics=metrics) if status is TrialStatus.COMPLETED else None
            trials.append(db.save_trial(make_trial(rng.choice("ab"), i, status=status, result=result)))
        # some completed trials are re-saved with other results or statuses
        for t in rng.sample(trials, 60):
            if t.status is TrialStatus.COMPLETED and rng.random() < 0.5:
                t.status = TrialStatus.INTERRUPTED
            else:
                t.status, t.result = TrialStatus.COMPLETED, TrialResult(metrics={"val_accuracy": rng.random()})
            db.save_trial(t)
        for name in ("a", "b", "nope"):
            for k in (0, 1, 10, 500):
                for metric, maximize in (("val_accuracy", True), ("val_accuracy", False), ("loss", False)):
                    got = db.get_best_architectures(name, k, metric, maximize)
                    assert got == reference_best(db, name, k, metric, maximize), (name, k, metric, maximize)
    finally:
        db.close()


def test_nan_metrics_are_left_out_of_best_k(tmp_path: Path) -> None:
    db = SqlResultsDB(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        db.create_experiment(Experiment("e", "digits"))
        for n, value in enumerate([0.5, float("nan"), 0.7, float("inf")]):
            db.save_trial(make_trial("e", n, status=TrialStatus.COMPLETED, result=TrialResult(metrics={"val_accuracy": value})))
        assert [t.number for t in db.get_best_architectures("e", k=10)] == [3, 2, 0]
        assert [t.number for t in db.get_best_architectures("e", k=10, maximize=False)] == [0, 2, 3]
    finally:
        db.close()
