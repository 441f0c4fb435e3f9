"""Schema v1 -> v2 -> v3 -> v4 -> v5 and back, on database files laid out exactly as the v1 and v2 code
wrote them, and on a v4 file the v4 code wrote (``data/pre_graph_v4.sqlite``)."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from neuromosaic_storage_sql.repository import SCHEMA_VERSION, SqlResultsDB, migrate_database

from neuromosaic_core.errors import StorageError
from neuromosaic_core.interfaces import ResultsDB
from neuromosaic_core.model import Experiment, StrategySnapshot, TrialResult, TrialStatus, converter
from neuromosaic_core.testing.storage import make_codegen, make_trial

PgCluster = Any  # conftest.PgCluster (test modules are not a package under --import-mode=importlib)

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

# `.schema` of a database created by neuromosaic-storage-sql with schema v2 (the v1 tables, then
# what migration 1->2 adds), verbatim.
V2_DDL = [
    *V1_DDL,
    'CREATE TABLE "trial_metrics" ("trial_id" INTEGER NOT NULL REFERENCES "trials" ("id") ON DELETE CASCADE, "experiment_id" INTEGER NOT NULL REFERENCES "experiments" ("id") ON DELETE CASCADE, "name" VARCHAR(255) NOT NULL, "value" REAL NOT NULL, PRIMARY KEY ("trial_id", "name"))',
    'CREATE INDEX "trial_metrics_experiment_id_name_value" ON "trial_metrics" ("experiment_id", "name", "value")',
    'CREATE INDEX "trials_experiment_id_status" ON "trials" ("experiment_id", "status")',
]

#: What v3 adds to ``trials``: the columns, and the index on ``codegen_key``.
V3_COLUMNS = ("codegen", "codegen_key")
V3_INDEX = "trials_codegen_key"
#: What v5 adds to ``trials``: a result's learning curve, fidelity and pruned flag.
V5_COLUMNS = ("curve", "fidelity", "pruned")
#: Every column added to ``trials`` after v2, in order (appended last).
LATER_COLUMNS = (*V3_COLUMNS, *V5_COLUMNS)

#: A v4 database the v4 code wrote (see test_graph_spec_compat.py): 7 completed trials, a snapshot table.
V4_FILE = Path(__file__).parent / "data" / "pre_graph_v4.sqlite"


def dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def make_v1_file(path: Path, n: int = 30, *, version: int = 1) -> None:
    """A v1 database: the v1 DDL, two experiments, trials of every kind, version row 1. With
    ``version=2``, the v2 database the v2 code writes: the v2 DDL and ``trial_metrics`` rows."""
    conn = sqlite3.connect(path)
    with conn:
        for ddl in {1: V1_DDL, 2: V2_DDL}[version]:
            conn.execute(ddl)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
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
            cursor = conn.execute(
                'INSERT INTO trials (experiment_id, number, status, vector, spec, spec_hash, reuse_key, code, metrics, '
                'error_class, error_message, weights_path, reused_from, created_at, updated_at) '
                'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                (exp_id, i, status.value, dumps(converter.unstructure(t.vector)), dumps(converter.unstructure(t.spec)),
                 t.spec_hash, t.reuse_key, t.code, metrics, error, message, None, None,
                 "2026-01-02 03:04:05.678901", "2026-01-02 03:04:06.000001"))
            if version >= 2 and status is TrialStatus.COMPLETED:
                for name, value in sorted(json.loads(metrics).items()):
                    conn.execute("INSERT INTO trial_metrics (trial_id, experiment_id, name, value) VALUES (?, ?, ?, ?)",
                                 (cursor.lastrowid, exp_id, name, float(value)))
    conn.close()


def make_v2_file(path: Path, n: int = 30) -> None:
    """A v2 database, rows as the v2 code writes them (same trials as :func:`make_v1_file`)."""
    make_v1_file(path, n, version=2)


def schema(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    conn.close()
    return {r[0].replace("CREATE TABLE IF NOT EXISTS", "CREATE TABLE") for r in rows}


def dump_rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table (``trial_metrics`` too, once it exists)."""
    conn = sqlite3.connect(path)
    try:
        rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()  # noqa: S608
                for t in ("schema_version", "experiments", "trials")}
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'trial_metrics'").fetchone():
            rows["trial_metrics"] = conn.execute("SELECT * FROM trial_metrics ORDER BY trial_id, name").fetchall()
        return rows
    finally:
        conn.close()


def trial_columns(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[1] for r in conn.execute("PRAGMA table_info(trials)")]
    finally:
        conn.close()


def without_columns(rows: dict[str, list[tuple]], columns: tuple[str, ...] = LATER_COLUMNS) -> dict[str, list[tuple]]:
    """The rows less ``columns``, the last ones of ``trials`` (by default all the v3 and v5 ones:
    the rows as v2 had them); all NULL, as a migration leaves them."""
    n = len(columns)
    assert all(r[-n:] == (None,) * n for r in rows["trials"])  # trials without a record or a v5 result here
    return {**rows, "trials": [r[:-n] for r in rows["trials"]]}


def migrate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "neuromosaic_storage_sql.migrate", *args],
                          capture_output=True, text=True, check=False)


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
        assert db.stored_schema_version() == SCHEMA_VERSION == 5
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
    upgraded = without_columns(dump_rows(path))
    assert upgraded["experiments"] == v1_rows["experiments"] and upgraded["trials"] == v1_rows["trials"]
    assert trial_columns(path)[-5:] == list(LATER_COLUMNS)
    conn = sqlite3.connect(path)
    n_metrics = conn.execute("SELECT count(*) FROM trial_metrics").fetchone()[0]
    conn.close()
    assert n_metrics == 2 * sum(1 for i in range(30) if i % 4 in (0, 1))  # two metrics per completed trial
    assert {"trial_metrics", "trial_metrics_experiment_id_name_value", "trials_experiment_id_status", V3_INDEX} <= {
        n for n, in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}

    # 2. rollback: back to exactly the v1 schema, with the v1 data (5 -> 4 -> 3 -> 2 -> 1 in one transaction)
    assert migrate_database(url, 1) == (5, 1)
    assert schema(path) == v1_schema
    assert dump_rows(path) == v1_rows

    # 3. and forward again, through the CLI this time
    done = migrate_cli(url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{url}: schema v1 -> v5"
    db = SqlResultsDB(url)
    try:
        assert db.stored_schema_version() == 5
        assert {name: db.list_trials(name) for name in ("old", "other")} == before
        assert [t.number for t in db.get_best_architectures("old", k=3)] == best3
    finally:
        db.close()


def test_cli_downgrade_and_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    SqlResultsDB(url).close()
    run = migrate_cli
    done = run("--to", "4", url)
    assert (done.returncode, done.stdout.strip()) == (0, f"{url}: schema v5 -> v4")
    done = run("--to", "3", url)
    assert (done.returncode, done.stdout.strip()) == (0, f"{url}: schema v4 -> v3")
    done = run("--to", "2", url)
    assert (done.returncode, done.stdout.strip()) == (0, f"{url}: schema v3 -> v2")
    done = run("--to", "1", url)
    assert (done.returncode, done.stdout.strip()) == (0, f"{url}: schema v2 -> v1")
    done = run("--to", "1", url)
    assert (done.returncode, done.stdout.strip()) == (0, f"{url}: already at schema v1")
    done = run("--to", "6", url)
    assert done.returncode == 2 and "knows v1 to v5" in done.stderr and "\n" not in done.stderr.strip()
    done = run("--to", "5", url)
    assert (done.returncode, done.stdout.strip()) == (0, f"{url}: schema v1 -> v5")
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    done = run(f"sqlite:///{empty}")
    assert done.returncode == 2 and "no neuromosaic schema" in done.stderr


def test_migrate_refuses_a_newer_database(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SqlResultsDB(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 6")
    conn.close()
    with pytest.raises(StorageError, match="v6 is newer than this neuromosaic-storage-sql"):
        migrate_database(f"sqlite:///{path}", 1)
    with pytest.raises(StorageError, match="v6 is newer than this neuromosaic-storage-sql"):
        SqlResultsDB(f"sqlite:///{path}")


@pytest.mark.parametrize("make_old", [make_v1_file, make_v2_file], ids=["from-v1", "from-v2"])
def test_fresh_database_equals_a_migrated_one(tmp_path: Path, make_old: Any) -> None:
    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    SqlResultsDB(f"sqlite:///{fresh}").close()
    make_old(old, n=0)
    SqlResultsDB(f"sqlite:///{old}").close()
    assert schema(fresh) == schema(old)
    assert trial_columns(fresh) == trial_columns(old)


def test_v2_file_upgrades_in_place_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    url = f"sqlite:///{path}"
    make_v2_file(path)
    v2_schema, v2_rows = schema(path), dump_rows(path)
    assert v2_schema == {d.replace("CREATE TABLE IF NOT EXISTS", "CREATE TABLE") for d in V2_DDL}
    assert len(v2_rows["trials"]) == 30 and len(v2_rows["trial_metrics"]) == 2 * 16

    # 1. the current code opens it and upgrades in place: every trial kept, none with a record yet
    db = SqlResultsDB(url)
    try:
        assert db.stored_schema_version() == 5
        before = {name: db.list_trials(name) for name in ("old", "other")}
        assert len(before["old"]) + len(before["other"]) == 30
        assert all(t.codegen is None and t.code for ts in before.values() for t in ts)
        assert db.find_cached_code("k0") is None  # reuse keys are not code-cache keys
        best3 = [t.number for t in db.get_best_architectures("old", k=3)]
        assert best3 == [t.number for t in reference_best(db, "old", 3, "val_accuracy", True)]
    finally:
        db.close()
    assert without_columns(dump_rows(path)) == {**v2_rows, "schema_version": [(1, 5)]}
    added = schema(path) - v2_schema  # the trials table (five more columns), one index, the snapshots (v4)
    assert {s.split(" (")[0] for s in added} == {'CREATE TABLE "trials"', f'CREATE INDEX "{V3_INDEX}" ON "trials"',
                                                 'CREATE TABLE "strategy_snapshots"'}
    assert trial_columns(path)[-5:] == list(LATER_COLUMNS)

    # 2. rollback 5 -> 2 (the documented procedure, through the CLI): exactly the v2 file again
    done = migrate_cli("--to", "2", url)
    assert (done.returncode, done.stdout.strip()) == (0, f"{url}: schema v5 -> v2"), done.stderr
    assert schema(path) == v2_schema
    assert dump_rows(path) == v2_rows

    # 3. forward again; now trials get records, and the code cache answers across experiments
    db = SqlResultsDB(url)
    try:
        assert {name: db.list_trials(name) for name in ("old", "other")} == before
        trial = make_trial("other", 100, status=TrialStatus.COMPLETED, result=TrialResult(metrics={"val_accuracy": 0.5}),
                           codegen=make_codegen("ck"))
        db.save_trial(trial)
        assert db.find_cached_code("ck") == trial.code
        assert db.list_trials("other")[-1].codegen == make_codegen("ck")
    finally:
        db.close()

    # 4. down to v2 with records stored: the trial stays, its record goes (documented loss)
    assert migrate_database(url, 2) == (5, 2)
    assert schema(path) == v2_schema
    assert len(dump_rows(path)["trials"]) == 31
    db = SqlResultsDB(url)  # back to v5
    try:
        [again] = [t for t in db.list_trials("other") if t.number == 100]
        assert again.code == trial.code and again.result == trial.result and again.codegen is None
        assert db.find_cached_code("ck") is None
    finally:
        db.close()


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


def test_postgres_v2_database_upgrades_and_downgrades(pg_cluster: PgCluster, tmp_path: Path) -> None:
    """The same round trip on PostgreSQL: 2 -> 5 keeps every trial, 5 -> 1 and up again."""
    url = pg_cluster.database_for(tmp_path)
    dbname = url.rsplit("/", 1)[1]
    columns = lambda: pg_cluster.psql(dbname, "SELECT column_name FROM information_schema.columns "  # noqa: E731
                                              "WHERE table_name = 'trials' ORDER BY ordinal_position").split()
    indexes = lambda: set(pg_cluster.psql(dbname, "SELECT indexname FROM pg_indexes WHERE tablename = 'trials'").split())  # noqa: E731
    db = SqlResultsDB(url)
    try:
        for name in ("e0", "e1"):
            db.create_experiment(Experiment(name, "digits"))
        for i in range(6):
            status = TrialStatus.COMPLETED if i % 2 else TrialStatus.FAILED
            db.save_trial(make_trial(f"e{i % 2}", i, status=status, result=TrialResult(metrics={"val_accuracy": i / 10})))
        before = {name: db.list_trials(name) for name in ("e0", "e1")}
    finally:
        db.close()
    v5_columns, v5_indexes = columns(), indexes()
    assert v5_columns[-5:] == list(LATER_COLUMNS) and V3_INDEX in v5_indexes

    assert migrate_database(url, 2) == (5, 2)  # a v2 database, as the v2 plugin left it
    assert columns() == v5_columns[:-5] and indexes() == v5_indexes - {V3_INDEX}
    db = SqlResultsDB(url)  # upgrades in place
    try:
        assert db.stored_schema_version() == 5
        assert {name: db.list_trials(name) for name in ("e0", "e1")} == before
        trial = db.save_trial(make_trial("e1", 99, status=TrialStatus.COMPLETED, codegen=make_codegen("ck"),
                                         result=TrialResult(metrics={"val_accuracy": 0.9})))
        assert db.list_trials("e1")[-1] == trial and db.find_cached_code("ck") == trial.code
    finally:
        db.close()
    assert (columns(), indexes()) == (v5_columns, v5_indexes)

    assert migrate_database(url, 1) == (5, 1)
    assert set(pg_cluster.psql(dbname, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split()) == {
        "schema_version", "experiments", "trials"}
    assert columns() == v5_columns[:-5]
    db = SqlResultsDB(url)  # and up again: the trial is there, its record was dropped on the way down
    try:
        assert db.stored_schema_version() == 5
        assert db.list_trials("e1")[-1].code == trial.code and db.list_trials("e1")[-1].codegen is None
        assert db.find_cached_code("ck") is None
        assert [t.number for t in db.get_best_architectures("e1", k=2)] == [99, 5]
    finally:
        db.close()


def test_v4_snapshots_roll_back_to_v3_and_the_experiment_resumes_without_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    db = SqlResultsDB(url)
    try:
        db.create_experiment(Experiment("e", "digits"))
        db.save_trial(make_trial("e", 1, status=TrialStatus.COMPLETED, result=TrialResult(metrics={"val_accuracy": 0.5})))
        db.save_snapshot("e", StrategySnapshot("random:abc", 1, (), {"evaluated": ["k"]}))
        assert db.load_snapshot("e") == StrategySnapshot("random:abc", 1, (), {"evaluated": ["k"]})
    finally:
        db.close()
    assert migrate_database(url, 3) == (5, 3)
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'strategy_snapshots'").fetchone()
    conn.close()
    db = SqlResultsDB(url)  # upgraded again on open: the trial is there, the snapshot is not
    try:
        assert db.stored_schema_version() == 5
        assert [t.number for t in db.list_trials("e")] == [1]
        assert db.load_snapshot("e") is None
    finally:
        db.close()


def test_v4_file_upgrades_to_v5_and_back(tmp_path: Path) -> None:
    """The v4 file the v4 code wrote: 4 -> 5 keeps every row (its results read as full ones
    without a curve), 5 -> 4 gives back exactly that file, and a multi-fidelity result saved in
    between loses only its curve, fidelity and pruned flag on the way down."""
    path = tmp_path / "v4.sqlite"
    shutil.copy(V4_FILE, path)
    url = f"sqlite:///{path}"
    v4_schema, v4_rows = schema(path), dump_rows(path)
    assert v4_rows["schema_version"] == [(1, 4)] and len(v4_rows["trials"]) == 7
    assert not set(V5_COLUMNS) & set(trial_columns(path))

    # 1. opened by the v5 code: upgraded in place, every v4 row as it was
    db = SqlResultsDB(url)
    try:
        assert db.stored_schema_version() == 5
        before = db.list_trials("old")
        assert len(before) == 7 and all(t.result is not None for t in before)
        assert {(t.result.curve, t.result.fidelity, t.result.pruned) for t in before} == {((), None, False)}
        assert [t.result for t in db.list_history("old")] == [t.result for t in before]
        assert db.find_reusable(before[0].reuse_key) == before[0]
        assert [t.number for t in db.get_best_architectures("old", k=3)] == [6, 5, 4]  # 0.9, 0.55, 0.54
    finally:
        db.close()
    assert trial_columns(path)[-3:] == list(V5_COLUMNS)
    assert without_columns(dump_rows(path), V5_COLUMNS) == {**v4_rows, "schema_version": [(1, 5)]}

    # 2. 5 -> 4: exactly the v4 file again, which the v4 code reads as before
    assert migrate_database(url, 4) == (5, 4)
    assert schema(path) == v4_schema
    assert dump_rows(path) == v4_rows

    # 3. up again; a pruned result with a better score and a full twin are saved
    db = SqlResultsDB(url)
    try:
        key = before[0].reuse_key
        pruned = db.save_trial(make_trial("old", 7, status=TrialStatus.COMPLETED, reuse_key=key, result=TrialResult(
            {"val_accuracy": 0.99}, curve=(0.9, 0.99), fidelity=2, pruned=True)))
        full = db.save_trial(make_trial("old", 8, status=TrialStatus.COMPLETED, reuse_key="k8", result=TrialResult(
            {"val_accuracy": 0.6}, curve=(0.3, 0.45, 0.6, 0.6), fidelity=4)))
        assert db.find_trial("old", 7) == pruned and db.find_trial("old", 8) == full
        assert [t.number for t in db.get_best_architectures("old", k=3)] == [6, 8, 5]  # the pruned 0.99 is not among them
        assert db.find_reusable(key) == before[0]  # the full v4 twin, not the later pruned one
    finally:
        db.close()

    # 4. down to v4 with them stored (the CLI): v4's schema; the trials and their metrics stay
    done = migrate_cli("--to", "4", url)
    assert (done.returncode, done.stdout.strip()) == (0, f"{url}: schema v5 -> v4"), done.stderr
    assert schema(path) == v4_schema
    rows = dump_rows(path)
    assert rows["trials"][:7] == v4_rows["trials"] and len(rows["trials"]) == 9
    assert rows["trial_metrics"][:7] == v4_rows["trial_metrics"] and len(rows["trial_metrics"]) == 9
    db = SqlResultsDB(url)  # and up: the results are there, without their curves (the documented loss)
    try:
        again = {t.number: t.result for t in db.list_trials("old")}
        assert again[7] == TrialResult({"val_accuracy": 0.99}) and again[8] == TrialResult({"val_accuracy": 0.6})
    finally:
        db.close()


def test_postgres_v5_rolls_back_to_v4_and_up_again(pg_cluster: PgCluster, tmp_path: Path) -> None:
    """4 -> 5 and 5 -> 4 on PostgreSQL, where ``pruned`` is a BOOLEAN column."""
    url = pg_cluster.database_for(tmp_path)
    dbname = url.rsplit("/", 1)[1]
    columns = lambda: pg_cluster.psql(dbname, "SELECT column_name || ':' || data_type FROM information_schema.columns "  # noqa: E731
                                              "WHERE table_name = 'trials' ORDER BY ordinal_position").split()
    result = TrialResult({"val_accuracy": 0.5}, curve=(0.25, 0.5), fidelity=2, pruned=True)
    db = SqlResultsDB(url)
    try:
        db.create_experiment(Experiment("e", "digits"))
        trial = db.save_trial(make_trial("e", 1, status=TrialStatus.COMPLETED, reuse_key="k", result=result))
    finally:
        db.close()
    v5_columns = columns()
    assert v5_columns[-3:] == ["curve:text", "fidelity:integer", "pruned:boolean"]
    assert migrate_database(url, 4) == (5, 4)
    assert columns() == v5_columns[:-3]
    db = SqlResultsDB(url)  # upgraded in place
    try:
        assert db.stored_schema_version() == 5 and columns() == v5_columns
        [back] = db.list_trials("e")
        assert back.id == trial.id and back.result == TrialResult({"val_accuracy": 0.5})
        back.result = result
        db.save_trial(back)
        assert db.find_reusable("k") == back and db.list_history("e")[0].result == result
    finally:
        db.close()
