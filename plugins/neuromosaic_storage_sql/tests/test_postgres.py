"""The same suites against a real PostgreSQL server (a private cluster: see conftest.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from neuromosaic_storage_sql import repository
from neuromosaic_storage_sql.repository import SCHEMA_VERSION, SqlResultsDB, migrate_database

from neuromosaic_core.errors import StorageError
from neuromosaic_core.model import Experiment, TrialResult, TrialStatus
from neuromosaic_core.testing.storage import StorageContract, assert_same_trials, fill, make_trial

PgCluster = Any  # conftest.PgCluster (test modules are not a package under --import-mode=importlib)



class TestPostgresStorage(StorageContract):
    @pytest.fixture(autouse=True)
    def _cluster(self, pg_cluster: PgCluster) -> None:
        self.cluster = pg_cluster

    def make_storage(self, tmp_path: Path) -> SqlResultsDB:
        return SqlResultsDB(self.cluster.database_for(tmp_path))


@pytest.fixture
def pg_url(pg_cluster: PgCluster, tmp_path: Path) -> str:
    return pg_cluster.database_for(tmp_path)


def test_fresh_database_has_the_current_schema(pg_cluster: PgCluster, pg_url: str) -> None:
    SqlResultsDB(pg_url).close()
    dbname = pg_url.rsplit("/", 1)[1]
    assert pg_cluster.psql(dbname, "SELECT version FROM schema_version").split() == [str(SCHEMA_VERSION)]
    tables = set(pg_cluster.psql(dbname, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split())
    assert tables == {"schema_version", "experiments", "trials", "trial_metrics", "strategy_snapshots"}
    column = pg_cluster.psql(dbname, "SELECT data_type FROM information_schema.columns "
                                     "WHERE table_name = 'trial_metrics' AND column_name = 'value'").strip()
    assert column == "double precision"


def test_newer_schema_is_refused(pg_cluster: PgCluster, pg_url: str) -> None:
    SqlResultsDB(pg_url).close()
    pg_cluster.psql(pg_url.rsplit("/", 1)[1], f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="is newer than this neuromosaic-storage-sql"):
        SqlResultsDB(pg_url)


def test_check_connects_and_reads_the_schema_version(pg_cluster: PgCluster, pg_url: str) -> None:
    repository.check_database(pg_url)  # an empty database: the real open creates the tables
    SqlResultsDB(pg_url).close()
    repository.check_database(pg_url)
    pg_cluster.psql(pg_url.rsplit("/", 1)[1], f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="is newer than this neuromosaic-storage-sql"):
        repository.check_database(pg_url)
    dead = f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/no_such_database"
    with pytest.raises(StorageError, match=f"cannot open {dead}: .*no_such_database"):
        repository.check_database(dead)


def test_downgrade_and_upgrade_again(pg_cluster: PgCluster, pg_url: str) -> None:
    db = SqlResultsDB(pg_url)
    fill(db, "a", 9)
    best = db.get_best_architectures("a", k=3)
    db.close()
    assert migrate_database(pg_url, 1) == (SCHEMA_VERSION, 1)
    dbname = pg_url.rsplit("/", 1)[1]
    tables = set(pg_cluster.psql(dbname, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split())
    assert tables == {"schema_version", "experiments", "trials"}
    db = SqlResultsDB(pg_url)  # upgrades again, backfilling trial_metrics
    try:
        assert db.stored_schema_version() == SCHEMA_VERSION
        assert db.get_best_architectures("a", k=3) == best
    finally:
        db.close()


def test_save_trial_ids_and_metrics_after_updates(pg_url: str) -> None:
    db = SqlResultsDB(pg_url)
    try:
        db.create_experiment(Experiment("e", "digits"))
        trials = db.save_trials([make_trial("e", n) for n in range(5)])
        assert [t.id for t in trials] == sorted(t.id for t in trials)
        for n, t in enumerate(trials):
            t.status = TrialStatus.COMPLETED
            t.result = TrialResult(metrics={"val_accuracy": n / 10})
            db.save_trial(t)
        trials[4].status = TrialStatus.FAILED  # a completed trial that changes status leaves the index
        db.save_trial(trials[4])
        assert [t.number for t in db.get_best_architectures("e", k=2)] == [3, 2]
    finally:
        db.close()


def test_backup_with_real_pg_dump_restores(pg_cluster: PgCluster, pg_url: str, tmp_path: Path) -> None:
    db = SqlResultsDB(pg_url)
    try:
        fill(db, "a", 12)
        fill(db, "b", 4)
        dump = tmp_path / "dump.sql"
        db.backup(str(dump))
        assert "CREATE TABLE public.trials" in dump.read_text()
        restored_url = pg_cluster.create_database("restored_" + pg_url.rsplit("/", 1)[1])
        psql = repository.find_pg_tool("psql") or str(pg_cluster.bin_dir / "psql")
        subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", restored_url, "-f", str(dump)],
                       check=True, capture_output=True)
        restored = SqlResultsDB(restored_url)
        try:
            assert restored.stored_schema_version() == SCHEMA_VERSION
            assert_same_trials(db, restored)
            assert restored.find_reusable("a-4") == db.find_reusable("a-4")
            assert restored.get_best_architectures("a", k=4) == db.get_best_architectures("a", k=4)
            # sequences came back too: a new trial gets a fresh id
            new = restored.save_trial(make_trial("b", 99))
            assert new.id not in {t.id for t in db.list_trials("a") + db.list_trials("b")}
        finally:
            restored.close()
    finally:
        db.close()


def test_backup_error_from_real_pg_dump(pg_cluster: PgCluster, tmp_path: Path) -> None:
    db = SqlResultsDB(pg_cluster.database_for(tmp_path))
    db.close()
    ghost = SqlResultsDB.__new__(SqlResultsDB)
    ghost.url, ghost.db = pg_cluster.url("no_such_db"), db.db
    with pytest.raises(StorageError, match='database "no_such_db" does not exist'):
        ghost.backup(str(tmp_path / "x.sql"))
