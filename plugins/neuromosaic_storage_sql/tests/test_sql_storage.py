from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

import neuromosaic_storage_sql
import pytest
from neuromosaic_storage_sql import repository
from neuromosaic_storage_sql.repository import SCHEMA_VERSION, SqlResultsDB

from neuromosaic_core.errors import StorageError
from neuromosaic_core.model import Experiment, TrialResult, TrialStatus
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import structure_settings
from neuromosaic_core.testing.storage import StorageContract, make_trial


def file_url(path: Path) -> str:
    return f"sqlite:///{path}"  # path is absolute, so this is the four-slash form


class TestSqlStorage(StorageContract):
    def make_storage(self, tmp_path: Path) -> SqlResultsDB:
        return SqlResultsDB(file_url(tmp_path / "results.db"))


class TestSqlMemoryStorage(StorageContract):
    persistent = False

    def make_storage(self, tmp_path: Path) -> SqlResultsDB:
        return SqlResultsDB("sqlite:///:memory:")


# -- plugin registration ------------------------------------------------------------------


def test_registers_sql_backend() -> None:
    system = PluginSystem.load([("sql", neuromosaic_storage_sql)], entry_points=False)
    component = system.get("storage", "sql")
    assert component.metadata["url_schemes"] == ("sqlite", "postgresql", "postgres")
    settings = structure_settings({"url": "sqlite:///:memory:", "busy_timeout_ms": "500"}, component.settings, "storage")
    assert settings.busy_timeout_ms == 500
    db = component.factory(settings)
    try:
        assert isinstance(db, SqlResultsDB)
    finally:
        db.close()


def test_package_import_does_not_import_peewee() -> None:
    code = "import sys, neuromosaic_storage_sql; print('peewee' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- URLs and opening ---------------------------------------------------------------------


def test_relative_url_is_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    SqlResultsDB("sqlite:///rel.db").close()
    assert (tmp_path / "rel.db").is_file()


def test_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist") as info:
        SqlResultsDB(file_url(tmp_path / "no" / "such" / "dir.db"))
    assert "\n" not in str(info.value)


def test_file_that_is_not_sqlite_is_a_storage_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is certainly not a sqlite database file " * 100)
    with pytest.raises(StorageError, match="cannot open") as info:
        SqlResultsDB(file_url(bogus))
    assert "\n" not in str(info.value)


def test_unknown_scheme_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="unsupported scheme"):
        SqlResultsDB("mongodb://localhost/x")


def test_wal_mode_for_file_database(tmp_path: Path) -> None:
    db = SqlResultsDB(file_url(tmp_path / "wal.db"))
    try:
        assert db.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.db.execute_sql("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert db.db.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 10000
    finally:
        db.close()


# -- schema version -----------------------------------------------------------------------


def test_fresh_database_has_version_row(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    SqlResultsDB(file_url(path)).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "experiments", "trials"} <= tables


def _set_version(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE schema_version SET version = ?", (version,))
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SqlResultsDB(file_url(path)).close()
    _set_version(path, SCHEMA_VERSION + 1)
    with pytest.raises(StorageError) as info:
        SqlResultsDB(file_url(path))
    newer, current = SCHEMA_VERSION + 1, SCHEMA_VERSION
    expected = f"database schema v{newer} is newer than this neuromosaic-storage-sql (v{current}); upgrade the plugin"
    assert str(info.value) == expected


def test_older_schema_is_migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    SqlResultsDB(file_url(path)).close()
    _set_version(path, SCHEMA_VERSION - 1)
    calls = []
    step = repository.Migration(lambda db: calls.append(("up", db.database)), lambda db: calls.append(("down", db.database)))
    monkeypatch.setitem(repository.MIGRATIONS, SCHEMA_VERSION - 1, step)
    db = SqlResultsDB(file_url(path))
    try:
        assert calls == [("up", str(path))]
        assert db.stored_schema_version() == SCHEMA_VERSION
    finally:
        db.close()


def test_older_schema_without_migration_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    SqlResultsDB(file_url(path)).close()
    _set_version(path, SCHEMA_VERSION - 1)
    monkeypatch.delitem(repository.MIGRATIONS, SCHEMA_VERSION - 1)
    with pytest.raises(StorageError, match="no migration"):
        SqlResultsDB(file_url(path))


# -- the pre-flight check (what `neuromosaic` runs before it makes a run directory) ------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def refused_leaving_nothing(url: str, folder: Path) -> str:
    before = snapshot(folder)
    with pytest.raises(StorageError) as info:
        repository.check_database(url)
    assert snapshot(folder) == before  # no database, no -wal/-shm, nothing rewritten
    assert "\n" not in str(info.value)
    return str(info.value)


def test_check_accepts_a_new_file_in_an_existing_folder_without_creating_it(tmp_path: Path) -> None:
    repository.check_database(file_url(tmp_path / "new.db"))
    assert list(tmp_path.iterdir()) == []


def test_check_refuses_what_the_real_open_would_refuse_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir.db"
    assert refused_leaving_nothing(file_url(missing), tmp_path) == \
        f"cannot open {file_url(missing)}: directory {missing.parent} does not exist"
    (tmp_path / "bogus.db").write_bytes(b"this is certainly not a sqlite database file " * 100)
    assert refused_leaving_nothing(file_url(tmp_path / "bogus.db"), tmp_path).endswith(": file is not a database")
    assert refused_leaving_nothing(file_url(tmp_path), tmp_path) == f"cannot open {file_url(tmp_path)}: {tmp_path} is not a file"


def test_check_refuses_a_newer_schema_and_another_programs_tables(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    SqlResultsDB(file_url(newer)).close()
    _set_version(newer, SCHEMA_VERSION + 1)
    assert refused_leaving_nothing(file_url(newer), tmp_path).endswith(
        f"database schema v{SCHEMA_VERSION + 1} is newer than this neuromosaic-storage-sql (v{SCHEMA_VERSION}); upgrade the plugin")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()
    assert refused_leaving_nothing(file_url(other), tmp_path) == \
        f"cannot open {file_url(other)}: it holds tables of another program (invoices) and no neuromosaic schema; choose another file"


def test_check_reads_our_databases_closed_or_in_use_without_leaving_files(tmp_path: Path) -> None:
    path = tmp_path / "ours.db"
    SqlResultsDB(file_url(path)).close()
    empty = tmp_path / "empty.db"
    empty.touch()  # an empty file is an empty SQLite database: the real open fills it
    before = snapshot(tmp_path)
    repository.check_database(file_url(path))
    repository.check_database(file_url(empty))
    assert snapshot(tmp_path) == before  # a read-only connection would have left ours.db-wal and -shm
    db = SqlResultsDB(file_url(path))  # another search is using it: WAL files exist
    try:
        db.create_experiment(Experiment(name="busy", task="t"))
        repository.check_database(file_url(path))
    finally:
        db.close()


def test_the_plugin_registers_the_check_for_the_cli(tmp_path: Path) -> None:
    component = PluginSystem.load([("sql", neuromosaic_storage_sql)], entry_points=False).get("storage", "sql")
    url = file_url(tmp_path / "no" / "x.db")
    with pytest.raises(StorageError, match="does not exist"):
        component.metadata["check"](structure_settings({"url": url}, component.settings, "storage"))


# -- misc ----------------------------------------------------------------------------------


def test_save_trial_of_unknown_experiment_is_a_storage_error(tmp_path: Path) -> None:
    db = SqlResultsDB(file_url(tmp_path / "x.db"))
    try:
        with pytest.raises(StorageError, match="no experiment"):
            db.save_trial(make_trial("ghost", 0))
    finally:
        db.close()


def test_two_databases_in_one_process_are_independent(tmp_path: Path) -> None:
    a, b = SqlResultsDB(file_url(tmp_path / "a.db")), SqlResultsDB(file_url(tmp_path / "b.db"))
    try:
        a.create_experiment(Experiment("only-a", "t"))
        assert b.get_experiment("only-a") is None
        assert a.get_experiment("only-a") is not None
    finally:
        a.close()
        b.close()


# -- concurrency --------------------------------------------------------------------------

N_TRIALS = 200


def _writer(url: str, worker: int, errors: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    count = 0
    try:
        db = SqlResultsDB(url)
    except Exception as exc:
        errors.put(f"open: {exc!r}")
        return
    try:
        for n in range(N_TRIALS):
            try:
                trial = db.save_trial(make_trial("shared", worker * N_TRIALS + n, reuse_key=f"w{worker}-{n}"))
                # read-then-write: look for a reusable result, then update the trial
                db.find_reusable(f"w{1 - worker}-{n}")
                trial.status = TrialStatus.COMPLETED
                trial.result = TrialResult(metrics={"val_accuracy": n / N_TRIALS})
                db.save_trial(trial)
            except Exception as exc:
                count += 1
                errors.put(f"worker {worker} trial {n}: {exc!r}")
    finally:
        db.close()
    if count:
        sys.exit(1)


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    url = file_url(tmp_path / "shared.db")
    db = SqlResultsDB(url)
    db.create_experiment(Experiment("shared", "spirals"))
    db.close()

    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, w, errors)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    messages = []
    while not errors.empty():
        messages.append(errors.get())
    assert [p.exitcode for p in procs] == [0, 0]
    assert messages == []

    db = SqlResultsDB(url)
    try:
        trials = db.list_trials("shared")
        assert len(trials) == 2 * N_TRIALS
        assert all(t.status is TrialStatus.COMPLETED for t in trials)
        assert sorted(t.number for t in trials) == list(range(2 * N_TRIALS))
    finally:
        db.close()
