"""``SqlResultsDB.backup``: SQLite's online backup (also while another process writes) and pg_dump."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import peewee as pw
import pytest
from neuromosaic_storage_sql import repository
from neuromosaic_storage_sql.repository import SCHEMA_VERSION, SqlResultsDB

from neuromosaic_core.errors import StorageError
from neuromosaic_core.model import TrialStatus
from neuromosaic_core.testing.storage import assert_same_trials, fill, make_trial


def file_url(path: Path) -> str:
    return f"sqlite:///{path}"



def test_sqlite_backup_restores_every_trial(tmp_path: Path) -> None:
    db = SqlResultsDB(file_url(tmp_path / "results.db"))
    try:
        fill(db, "a", 12)
        fill(db, "b", 4)
        target = tmp_path / "backup.db"
        db.backup(str(target))
        # the source keeps working after a backup
        db.save_trial(make_trial("b", 5, status=TrialStatus.PENDING))
        restored = SqlResultsDB(file_url(target))
        try:
            assert restored.stored_schema_version() == SCHEMA_VERSION
            assert len(restored.list_trials("a")) == 12 and len(restored.list_trials("b")) == 4
            original_b = db.list_trials("b")[:4]
            assert restored.list_trials("b") == original_b
            assert restored.list_trials("a") == db.list_trials("a")
            assert restored.find_reusable("a-4") == db.find_reusable("a-4")
        finally:
            restored.close()
    finally:
        db.close()


WRITER = textwrap.dedent("""
    import sys, time
    from neuromosaic_storage_sql.repository import SqlResultsDB
    from neuromosaic_core.model import Experiment, TrialResult, TrialStatus
    from neuromosaic_core.testing.storage import assert_same_trials, fill, make_trial

    db = SqlResultsDB(sys.argv[1])
    db.create_experiment(Experiment("live", "digits"))
    for i in range(1, int(sys.argv[2]) + 1):
        t = make_trial("live", i, status=TrialStatus.RUNNING)
        db.save_trial(t)  # insert, then update: both must be seen whole or not at all
        t.status, t.result = TrialStatus.COMPLETED, TrialResult(metrics={"val_accuracy": i / 1000})
        db.save_trial(t)
        time.sleep(0.002)
    db.close()
""")


def test_sqlite_backup_while_another_process_writes(tmp_path: Path) -> None:
    url = file_url(tmp_path / "results.db")
    SqlResultsDB(url).close()  # create the schema before the writer starts
    total = 400
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url, str(total)], stderr=subprocess.PIPE, text=True)
    db = SqlResultsDB(url)
    try:
        deadline = time.monotonic() + 60
        while db.get_experiment("live") is None or len(db.list_trials("live")) < 20:
            assert writer.poll() is None or writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.01)
        mid = tmp_path / "mid.db"
        db.backup(str(mid))
        writing = writer.poll() is None
        assert writer.wait(timeout=120) == 0, writer.stderr.read() if writer.stderr else ""
        assert writing, "the writer finished before the backup: raise `total`"

        final = tmp_path / "final.db"
        db.backup(str(final))
        restored = SqlResultsDB(file_url(final))
        try:
            assert len(restored.list_trials("live")) == total
            assert_same_trials(db, restored)
        finally:
            restored.close()

        # The copy taken mid-write is a consistent snapshot: a prefix of the trials, each one
        # either still running or equal to its final state.
        snapshot = SqlResultsDB(file_url(mid))
        try:
            seen = snapshot.list_trials("live")
            assert 20 <= len(seen) < total
            final_trials = db.list_trials("live")
            assert [t.number for t in seen] == list(range(1, len(seen) + 1))
            for t in seen:
                twin = final_trials[t.number - 1]
                if t.status == TrialStatus.COMPLETED:
                    assert t == twin
                else:
                    assert t.status == TrialStatus.RUNNING and t.result is None and t.vector == twin.vector
            assert sum(t.status == TrialStatus.RUNNING for t in seen) <= 1
        finally:
            snapshot.close()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        db.close()


def test_memory_database_can_be_backed_up_to_a_file(tmp_path: Path) -> None:
    db = SqlResultsDB("sqlite:///:memory:")
    try:
        fill(db, "m", 5)
        db.backup(str(tmp_path / "m.db"))
        restored = SqlResultsDB(file_url(tmp_path / "m.db"))
        try:
            assert_same_trials(db, restored)
        finally:
            restored.close()
    finally:
        db.close()


def test_backup_overwrites_an_existing_database_file(tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    old = SqlResultsDB(file_url(target))
    fill(old, "old", 2)
    old.close()
    db = SqlResultsDB(file_url(tmp_path / "results.db"))
    try:
        fill(db, "new", 3)
        db.backup(str(target))
        restored = SqlResultsDB(file_url(target))
        try:
            assert [e.name for e in restored.list_experiments()] == ["new"]
            assert_same_trials(db, restored)
        finally:
            restored.close()
    finally:
        db.close()


def test_backup_errors(tmp_path: Path) -> None:
    source = tmp_path / "results.db"
    db = SqlResultsDB(file_url(source))
    try:
        with pytest.raises(StorageError, match="does not exist"):
            db.backup(str(tmp_path / "missing" / "x.db"))
        with pytest.raises(StorageError, match="onto itself"):
            db.backup(str(source))
        junk = tmp_path / "junk.db"
        junk.write_text("not a database, and long enough to have a header " * 20)
        with pytest.raises(StorageError, match="failed"):
            db.backup(str(junk))
    finally:
        db.close()


# -- PostgreSQL: pg_dump -------------------------------------------------------------------------


def postgres_db(url: str) -> SqlResultsDB:
    """A SqlResultsDB for a PostgreSQL URL without a server: backup only needs the URL."""
    db = SqlResultsDB.__new__(SqlResultsDB)
    db.url = url
    db.db = pw.PostgresqlDatabase("nm")
    return db


FAKE_PG_DUMP = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    args = sys.argv[1:]
    if "fail" in " ".join(args):
        print("pg_dump: error: connection to server failed: FATAL:  database does not exist", file=sys.stderr)
        sys.exit(1)
    target = args[args.index("--file") + 1]
    with open(target, "w") as f:
        json.dump({{"args": args, "password": os.environ.get("PGPASSWORD")}}, f)
""")


@pytest.fixture
def fake_pg_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pg_dump"
    script.write_text(FAKE_PG_DUMP.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    return script


def test_postgres_backup_runs_pg_dump_with_the_password_in_the_environment(fake_pg_dump: Path, tmp_path: Path) -> None:
    db = postgres_db("postgres://neuro:s3cret@db.example:5433/nm")
    target = tmp_path / "dump.sql"
    db.backup(str(target))
    call = json.loads(target.read_text())
    assert call["password"] == "s3cret"
    assert "s3cret" not in " ".join(call["args"])
    assert call["args"] == ["--dbname", "postgresql://neuro@db.example:5433/nm", "--file", str(target), "--no-password"]


def test_postgres_backup_reports_pg_dump_failure(fake_pg_dump: Path, tmp_path: Path) -> None:
    db = postgres_db("postgresql://neuro:s3cret@localhost/fail")
    with pytest.raises(StorageError) as info:
        db.backup(str(tmp_path / "dump.sql"))
    message = str(info.value)
    assert "pg_dump of postgresql://neuro@localhost/fail" in message and "database does not exist" in message
    assert "s3cret" not in message and "\n" not in message


def test_postgres_backup_without_pg_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no pg_dump
    monkeypatch.setattr(repository, "PG_BIN_GLOBS", (str(tmp_path / "pg-*" / "bin"),))
    db = postgres_db("postgresql://neuro@localhost/nm")
    with pytest.raises(StorageError, match=r"pg_dump was not found on PATH or in .*pg-\*/bin; install the PostgreSQL client tools"):
        db.backup(str(tmp_path / "dump.sql"))
    assert not (tmp_path / "dump.sql").exists()


def test_pg_dump_is_found_in_the_server_directory_when_not_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for version in ("9.6", "13", "15"):
        bin_dir = tmp_path / "pg" / version / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "pg_dump").write_text("#!/bin/sh\n")
        (bin_dir / "pg_dump").chmod(0o755)
    monkeypatch.setattr(repository, "PG_BIN_GLOBS", (str(tmp_path / "pg" / "*" / "bin"),))
    assert repository.find_pg_tool("pg_dump") == str(tmp_path / "pg" / "15" / "bin" / "pg_dump")
    assert repository.find_pg_tool("no_such_tool") is None
