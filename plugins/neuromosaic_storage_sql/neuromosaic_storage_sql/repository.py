"""``SqlResultsDB``: the :class:`~neuromosaic_core.interfaces.ResultsDB` on peewee.

Every read-then-write runs in one transaction; on SQLite that transaction is ``BEGIN IMMEDIATE``
(the write lock is taken up front), because a deferred transaction that upgrades a read lock to a
write lock fails with "database is locked" whatever the busy timeout when two processes write.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import peewee as pw
from playhouse import db_url

from neuromosaic_core.errors import StorageError
from neuromosaic_core.interfaces import ResultsDB
from neuromosaic_core.model import (
    ArchitectureSpec,
    ArchitectureVector,
    Experiment,
    Trial,
    TrialResult,
    TrialStatus,
    converter,
)

#: The schema this code writes. Bump it and add a migration to :data:`MIGRATIONS` together.
SCHEMA_VERSION = 1

Migration = Callable[[pw.Database], None]

#: ``{from_version: function}``: each function takes a database at ``from_version`` to
#: ``from_version + 1`` (inside the opening transaction). None exist yet.
MIGRATIONS: dict[int, Migration] = {}

SQLITE_SCHEMES = ("sqlite",)
POSTGRES_SCHEMES = ("postgresql", "postgres")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _make_models(db: pw.Database) -> tuple[type[pw.Model], type[pw.Model], type[pw.Model]]:
    """The three tables, as model classes bound to ``db`` (one set per open database, so two
    ``SqlResultsDB`` in one process never share a binding)."""

    class Base(pw.Model):
        class Meta:
            database = db

    class SchemaVersion(Base):
        version = pw.IntegerField()

        class Meta:
            table_name = "schema_version"

    class ExperimentRow(Base):
        name = pw.CharField(max_length=255, unique=True)
        task = pw.CharField(max_length=255)
        config = pw.TextField(default="{}")
        created_at = pw.DateTimeField(default=_now)

        class Meta:
            table_name = "experiments"

    class TrialRow(Base):
        experiment = pw.ForeignKeyField(ExperimentRow, backref="trials", on_delete="CASCADE")
        number = pw.IntegerField()
        status = pw.CharField(max_length=32, index=True)
        vector = pw.TextField()
        spec = pw.TextField(null=True)
        spec_hash = pw.CharField(max_length=64, null=True, index=True)
        reuse_key = pw.CharField(max_length=64, null=True, index=True)
        code = pw.TextField(null=True)
        metrics = pw.TextField(null=True)  # NULL exactly when the trial has no result
        error_class = pw.CharField(max_length=64, null=True)
        error_message = pw.TextField(null=True)
        weights_path = pw.TextField(null=True)
        reused_from = pw.IntegerField(null=True)
        created_at = pw.DateTimeField(default=_now)
        updated_at = pw.DateTimeField(default=_now)

        class Meta:
            table_name = "trials"
            indexes = ((("experiment", "number"), False),)

    return SchemaVersion, ExperimentRow, TrialRow


def _open_database(url: str, busy_timeout_ms: int) -> pw.Database:
    """A peewee database for ``url`` (not yet connected); StorageError for a URL we cannot serve."""
    scheme = urlparse(url).scheme
    if scheme in SQLITE_SCHEMES:
        path = db_url.parse(url)["database"]
        if path != ":memory:" and not path.startswith("file:"):
            parent = Path(path).expanduser().resolve().parent
            if not parent.is_dir():
                raise StorageError(f"cannot open {url}: directory {parent} does not exist")
        return db_url.connect(
            url,
            pragmas=[
                ("busy_timeout", int(busy_timeout_ms)),
                ("journal_mode", "wal"),
                ("synchronous", "normal"),
                ("foreign_keys", 1),
            ],
            timeout=busy_timeout_ms / 1000,
            lock_type="IMMEDIATE",
        )
    if scheme in POSTGRES_SCHEMES:
        try:
            return db_url.connect(url)
        except ValueError as exc:
            raise StorageError(f"cannot open {url}: {exc}") from None
    raise StorageError(f"storage.url {url!r}: unsupported scheme {scheme!r}; expected sqlite:/// or postgresql://")


class SqlResultsDB(ResultsDB):
    """Experiments and trials in a SQL database chosen by URL (see the package README)."""

    schema_version = SCHEMA_VERSION

    def __init__(self, url: str = "sqlite:///neuromosaic.db", busy_timeout_ms: int = 10000) -> None:
        self.url = url
        self.db = _open_database(url, busy_timeout_ms)
        self._SchemaVersion, self._ExperimentRow, self._TrialRow = _make_models(self.db)
        self._experiment_ids: dict[str, int] = {}
        self._sql: tuple[str, str] | None = None
        try:
            self.db.connect()
            self._prepare_schema()
        except StorageError:
            self.db.close()
            raise
        except (pw.PeeweeException, OSError) as exc:
            self.db.close()
            raise StorageError(f"cannot open {url}: {_first_line(exc)}") from None

    # -- schema ------------------------------------------------------------------------------

    def _prepare_schema(self) -> None:
        """Create the tables of a new database, refuse a newer one, migrate an older one."""
        with self.db.atomic():
            self.db.create_tables([self._SchemaVersion, self._ExperimentRow, self._TrialRow], safe=True)
            row = self._SchemaVersion.select().order_by(self._SchemaVersion.id).first()
            if row is None:
                self._SchemaVersion.create(version=SCHEMA_VERSION)
                return
            if row.version > SCHEMA_VERSION:
                raise StorageError(
                    f"database schema v{row.version} is newer than this neuromosaic-storage-sql "
                    f"(v{SCHEMA_VERSION}); upgrade the plugin"
                )
            version = row.version
            while version < SCHEMA_VERSION:
                migration = MIGRATIONS.get(version)
                if migration is None:
                    raise StorageError(f"database schema v{version} cannot be migrated to v{SCHEMA_VERSION}: no migration")
                migration(self.db)
                version += 1
            if version != row.version:
                self._SchemaVersion.update(version=version).where(self._SchemaVersion.id == row.id).execute()

    def stored_schema_version(self) -> int:
        """The version recorded in the database."""
        return self._SchemaVersion.select().order_by(self._SchemaVersion.id).first().version

    # -- experiments -------------------------------------------------------------------------

    def _to_experiment(self, row: Any) -> Experiment:
        return Experiment(name=row.name, task=row.task, config=json.loads(row.config), id=row.id)

    def get_experiment(self, name: str) -> Experiment | None:
        row = self._ExperimentRow.get_or_none(self._ExperimentRow.name == name)
        return self._to_experiment(row) if row is not None else None

    def create_experiment(self, experiment: Experiment) -> Experiment:
        with self.db.atomic():
            if self._ExperimentRow.select().where(self._ExperimentRow.name == experiment.name).exists():
                raise StorageError(f"experiment {experiment.name!r} already exists in {self.url}")
            row = self._ExperimentRow.create(
                name=experiment.name, task=experiment.task, config=_dumps(dict(experiment.config))
            )
        experiment.id = row.id
        self._experiment_ids[experiment.name] = row.id
        return experiment

    def list_experiments(self) -> list[Experiment]:
        rows = self._ExperimentRow.select().order_by(self._ExperimentRow.id)
        return [self._to_experiment(r) for r in rows]

    def _experiment_id(self, name: str) -> int:
        cached = self._experiment_ids.get(name)
        if cached is not None:
            return cached
        row = self._ExperimentRow.get_or_none(self._ExperimentRow.name == name)
        if row is None:
            raise StorageError(f"no experiment named {name!r} in {self.url}; create it first")
        self._experiment_ids[name] = row.id
        return row.id

    # -- trials ------------------------------------------------------------------------------

    @staticmethod
    def _trial_columns(trial: Trial) -> dict[str, Any]:
        result = trial.result
        error = result.error if result is not None else None
        return {
            "number": trial.number,
            "status": TrialStatus(trial.status).value,
            "vector": _dumps(converter.unstructure(trial.vector)),
            "spec": _dumps(converter.unstructure(trial.spec)) if trial.spec is not None else None,
            "spec_hash": trial.spec_hash,
            "reuse_key": trial.reuse_key,
            "code": trial.code,
            "metrics": _dumps(converter.unstructure(result.metrics)) if result is not None else None,
            "error_class": error.error_class.value if error is not None else None,
            "error_message": error.message if error is not None else None,
            "weights_path": result.weights_path if result is not None else None,
            "reused_from": trial.reused_from,
        }

    @staticmethod
    def _to_trial(row: Any, experiment: str) -> Trial:
        result = None
        if row.metrics is not None:
            error = None
            if row.error_class is not None:
                error = {"error_class": row.error_class, "message": row.error_message or ""}
            result = converter.structure(
                {"metrics": json.loads(row.metrics), "error": error, "weights_path": row.weights_path}, TrialResult
            )
        return Trial(
            experiment=experiment,
            number=row.number,
            vector=converter.structure(json.loads(row.vector), ArchitectureVector),
            spec=converter.structure(json.loads(row.spec), ArchitectureSpec) if row.spec is not None else None,
            status=TrialStatus(row.status),
            code=row.code,
            result=result,
            reused_from=row.reused_from,
            reuse_key=row.reuse_key,
            id=row.id,
        )

    def _quote(self, name: str) -> str:
        return f"{self.db.quote[0]}{name}{self.db.quote[-1]}"

    def _statements(self, names: list[str]) -> tuple[str, str]:
        """INSERT and UPDATE for these columns, built once: the search loop saves every trial
        twice, and building the SQL through peewee's query objects cost more than running it."""
        if self._sql is None:
            p = self.db.param
            q = self._quote
            table = q(self._TrialRow._meta.table_name)
            columns = [*names, "experiment_id", "created_at", "updated_at"]
            # Identifiers come from the model's own metadata and every value is a bound parameter.
            insert = f"INSERT INTO {table} ({', '.join(map(q, columns))}) VALUES ({', '.join([p] * len(columns))})"  # noqa: S608
            if isinstance(self.db, pw.PostgresqlDatabase):
                insert += " RETURNING id"
            update = f"UPDATE {table} SET {', '.join(f'{q(c)} = {p}' for c in [*names, 'updated_at'])} WHERE id = {p}"  # noqa: S608
            self._sql = (insert, update)
        return self._sql

    def save_trial(self, trial: Trial) -> Trial:
        columns = self._trial_columns(trial)
        insert, update = self._statements(list(columns))
        now = self._TrialRow.updated_at.db_value(_now())
        with self.db.atomic():
            experiment_id = self._experiment_id(trial.experiment)
            if trial.id is None:
                cursor = self.db.execute_sql(insert, [*columns.values(), experiment_id, now, now])
                trial.id = cursor.fetchone()[0] if isinstance(self.db, pw.PostgresqlDatabase) else cursor.lastrowid
            else:
                cursor = self.db.execute_sql(update, [*columns.values(), now, trial.id])
                if cursor.rowcount != 1:
                    raise StorageError(f"trial id {trial.id} does not exist in {self.url}")
        return trial

    def list_trials(self, experiment: str, status: TrialStatus | None = None) -> list[Trial]:
        T, E = self._TrialRow, self._ExperimentRow
        query = T.select().join(E).where(E.name == experiment)
        if status is not None:
            query = query.where(T.status == TrialStatus(status).value)
        return [self._to_trial(r, experiment) for r in query.order_by(T.id)]

    def find_reusable(self, reuse_key: str, experiment: str | None = None) -> Trial | None:
        # Called for every trial and nearly always a miss: a plain indexed lookup first.
        table, p = self._quote(self._TrialRow._meta.table_name), self.db.param
        sql = f"SELECT id FROM {table} WHERE reuse_key = {p} AND status = {p}"  # noqa: S608
        params: list[Any] = [reuse_key, TrialStatus.COMPLETED.value]
        if experiment is not None:
            try:
                params.append(self._experiment_id(experiment))
            except StorageError:
                return None
            sql += f" AND experiment_id = {p}"
        hit = self.db.execute_sql(sql + " ORDER BY id LIMIT 1", params).fetchone()
        if hit is None:
            return None
        T, E = self._TrialRow, self._ExperimentRow
        row = T.select(T, E).join(E).where(T.id == hit[0]).get()
        return self._to_trial(row, row.experiment.name)

    def mark_interrupted(self, experiment: str) -> list[Trial]:
        T = self._TrialRow
        stale_states = (TrialStatus.PENDING.value, TrialStatus.RUNNING.value)
        with self.db.atomic():
            stale = [t for t in self.list_trials(experiment) if t.status.value in stale_states]
            if stale:
                ids = [t.id for t in stale]
                T.update(status=TrialStatus.INTERRUPTED.value, updated_at=_now()).where(
                    T.id.in_(ids) & T.status.in_(stale_states)
                ).execute()
        for t in stale:
            t.status = TrialStatus.INTERRUPTED
        return stale

    # -- backup ------------------------------------------------------------------------------

    def backup(self, target: str) -> None:
        """Copy the whole database to the file ``target``, consistently, while others may write.

        SQLite: the online backup API on this connection (``sqlite3.Connection.backup``); the copy
        is a SQLite file that opens as ``sqlite:///<target>``. PostgreSQL: ``pg_dump`` (plain SQL,
        restore with ``psql -f``), which must be on ``PATH``.
        """
        path = Path(target).expanduser()
        if not path.parent.is_dir():
            raise StorageError(f"cannot back up to {target}: directory {path.parent} does not exist")
        if isinstance(self.db, pw.SqliteDatabase):
            self._backup_sqlite(path)
        elif isinstance(self.db, pw.PostgresqlDatabase):
            self._backup_postgres(path)
        else:  # pragma: no cover - _open_database only makes the two above
            raise StorageError(f"backup is not supported for {type(self.db).__name__}")

    def _backup_sqlite(self, path: Path) -> None:
        source = str(self.db.database)
        if source != ":memory:" and not source.startswith("file:") and path.resolve() == Path(source).expanduser().resolve():
            raise StorageError(f"cannot back up {self.url} onto itself; choose another file")
        try:
            dest = sqlite3.connect(path)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot back up to {path}: {_first_line(exc)}") from None
        try:
            self.db.connection().backup(dest)
        except (sqlite3.Error, pw.PeeweeException) as exc:
            raise StorageError(f"backup of {self.url} to {path} failed: {_first_line(exc)}") from None
        finally:
            dest.close()

    def _backup_postgres(self, path: Path) -> None:
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            raise StorageError("pg_dump was not found on PATH; install the PostgreSQL client tools "
                               "(e.g. apt-get install postgresql-client) to back up a PostgreSQL database")
        # The password goes through the environment, not the command line (visible to ps).
        parts = urlparse(self.url)
        env = dict(os.environ)
        netloc = parts.netloc
        if parts.password is not None:
            env["PGPASSWORD"] = parts.password
            netloc = netloc.replace(f":{parts.password}@", "@", 1)
        url = urlunparse(parts._replace(scheme="postgresql", netloc=netloc))
        done = subprocess.run([pg_dump, "--dbname", url, "--file", str(path), "--no-password"],
                              env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            reason = _first_line(Exception(done.stderr)) if done.stderr.strip() else f"exit status {done.returncode}"
            raise StorageError(f"pg_dump of {url} to {path} failed: {reason}")

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    def __repr__(self) -> str:
        return f"SqlResultsDB({self.url!r})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
