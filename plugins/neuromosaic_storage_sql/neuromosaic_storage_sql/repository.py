"""``SqlResultsDB``: the :class:`~neuromosaic_core.interfaces.ResultsDB` on peewee.

Every read-then-write runs in one transaction; on SQLite that transaction is ``BEGIN IMMEDIATE``
(the write lock is taken up front), because a deferred transaction that upgrades a read lock to a
write lock fails with "database is locked" whatever the busy timeout when two processes write.
"""

from __future__ import annotations

import gc
import glob
import json
import math
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse, urlunparse

import peewee as pw
from playhouse import db_url

from neuromosaic_core.errors import StorageError
from neuromosaic_core.interfaces import ResultsDB
from neuromosaic_core.model import (
    ArchitectureSpec,
    ArchitectureVector,
    CodeGenRecord,
    ErrorClass,
    Experiment,
    ExperimentError,
    Layer,
    StrategySnapshot,
    Trial,
    TrialResult,
    TrialStatus,
    converter,
)

#: The schema this code writes. Bump it and add a migration to :data:`MIGRATIONS` together.
SCHEMA_VERSION = 5

#: The version the base tables (``schema_version``, ``experiments``, ``trials`` as the models
#: below create them) stand for; every later version is reached through :data:`MIGRATIONS`, for a
#: new database too, so a migrated database and a new one have the same schema.
BASE_VERSION = 1

Step = Callable[[pw.Database], None]


class Migration(NamedTuple):
    """One step: ``upgrade`` takes a database from ``from_version`` to ``from_version + 1``,
    ``downgrade`` takes it back. Both run inside the caller's transaction."""

    upgrade: Step
    downgrade: Step


_STATUSES = {s.value: s for s in TrialStatus}

#: ``save_trials`` of at least this many rows refreshes PostgreSQL's planner statistics.
ANALYZE_AFTER = 1000

SQLITE_SCHEMES = ("sqlite",)
POSTGRES_SCHEMES = ("postgresql", "postgres")

#: Where ``backup`` looks for ``pg_dump`` when it is not on ``PATH`` (Debian/Ubuntu server
#: packages install it only there); the highest version found wins.
PG_BIN_GLOBS: tuple[str, ...] = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin")


def _q(db: pw.Database, name: str) -> str:
    return f"{db.quote[0]}{name}{db.quote[-1]}"


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while building many objects that are all kept: each
    collection would scan every object built so far (a third of the time at 100,000 trials)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _is_postgres(db: pw.Database) -> bool:
    return isinstance(db, pw.PostgresqlDatabase)


def _metric_rows(trial_id: int, experiment_id: int, metrics: dict[str, Any]) -> list[tuple[int, int, str, float]]:
    """The ``trial_metrics`` rows of a completed trial: one per numeric, non-NaN metric."""
    return [(trial_id, experiment_id, str(name), float(value)) for name, value in sorted(metrics.items())
            if isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)]


def _insert_metrics_sql(db: pw.Database, n: int) -> str:
    p, q = db.param, lambda c: _q(db, c)
    row = f"({p}, {p}, {p}, {p})"
    columns = ", ".join(map(q, ("trial_id", "experiment_id", "name", "value")))
    return f"INSERT INTO {q('trial_metrics')} ({columns}) VALUES {', '.join([row] * n)}"  # noqa: S608


def _upgrade_1_to_2(db: pw.Database) -> None:
    """v2: ``trial_metrics`` (one row per metric of a completed trial, indexed for best-k
    queries) backfilled from ``trials.metrics``, and an index on ``trials(experiment_id, status)``."""
    q = lambda c: _q(db, c)  # noqa: E731
    real = "DOUBLE PRECISION" if _is_postgres(db) else "REAL"
    db.execute_sql(
        f"CREATE TABLE {q('trial_metrics')} ("
        f"{q('trial_id')} INTEGER NOT NULL REFERENCES {q('trials')} ({q('id')}) ON DELETE CASCADE, "
        f"{q('experiment_id')} INTEGER NOT NULL REFERENCES {q('experiments')} ({q('id')}) ON DELETE CASCADE, "
        f"{q('name')} VARCHAR(255) NOT NULL, "
        f"{q('value')} {real} NOT NULL, "
        f"PRIMARY KEY ({q('trial_id')}, {q('name')}))"
    )
    db.execute_sql(f"CREATE INDEX {q('trial_metrics_experiment_id_name_value')} ON {q('trial_metrics')} "
                   f"({q('experiment_id')}, {q('name')}, {q('value')})")
    db.execute_sql(f"CREATE INDEX {q('trials_experiment_id_status')} ON {q('trials')} "
                   f"({q('experiment_id')}, {q('status')})")
    p = db.param
    cursor = db.execute_sql(
        f"SELECT {q('id')}, {q('experiment_id')}, {q('metrics')} FROM {q('trials')} "  # noqa: S608
        f"WHERE {q('status')} = {p} AND {q('metrics')} IS NOT NULL ORDER BY {q('id')}",
        [TrialStatus.COMPLETED.value],
    )
    pending: list[tuple[int, int, str, float]] = []
    chunk = 200  # rows per INSERT: 800 parameters, under SQLite's old 999 limit

    def flush(rows: list[tuple[int, int, str, float]]) -> None:
        if rows:
            db.execute_sql(_insert_metrics_sql(db, len(rows)), [v for r in rows for v in r])

    for trial_id, experiment_id, metrics in cursor.fetchall():
        pending.extend(_metric_rows(trial_id, experiment_id, json.loads(metrics)))
        while len(pending) >= chunk:
            flush(pending[:chunk])
            del pending[:chunk]
    flush(pending)


def _downgrade_2_to_1(db: pw.Database) -> None:
    """Back to v1: drop what v2 added; ``trials.metrics`` still holds every metric."""
    q = lambda c: _q(db, c)  # noqa: E731
    db.execute_sql(f"DROP INDEX {q('trials_experiment_id_status')}")
    db.execute_sql(f"DROP TABLE {q('trial_metrics')}")  # its own index goes with it


def _upgrade_2_to_3(db: pw.Database) -> None:
    """v3: ``trials.codegen`` (the trial's :class:`~neuromosaic_core.model.CodeGenRecord` as JSON)
    and ``trials.codegen_key`` (its ``cache_key`` when the provider's code was accepted, indexed for
    :meth:`SqlResultsDB.find_cached_code`), both nullable. Nothing to backfill: no v2 trial has a
    record, and NULL is what a trial without one holds."""
    q = lambda c: _q(db, c)  # noqa: E731
    db.execute_sql(f"ALTER TABLE {q('trials')} ADD COLUMN {q('codegen')} TEXT")
    db.execute_sql(f"ALTER TABLE {q('trials')} ADD COLUMN {q('codegen_key')} TEXT")
    db.execute_sql(f"CREATE INDEX {q('trials_codegen_key')} ON {q('trials')} ({q('codegen_key')})")


def _downgrade_3_to_2(db: pw.Database) -> None:
    """Back to v2: drop the index and the two columns (the code-generation records are lost; the
    trials' code stays in ``trials.code``). SQLite drops a column only once its index is gone, and
    needs 3.35 or later for ``DROP COLUMN``."""
    q = lambda c: _q(db, c)  # noqa: E731
    db.execute_sql(f"DROP INDEX {q('trials_codegen_key')}")
    db.execute_sql(f"ALTER TABLE {q('trials')} DROP COLUMN {q('codegen_key')}")
    db.execute_sql(f"ALTER TABLE {q('trials')} DROP COLUMN {q('codegen')}")


def _upgrade_3_to_4(db: pw.Database) -> None:
    """v4: ``strategy_snapshots``, one row per experiment with its search strategy's latest
    :class:`~neuromosaic_core.model.StrategySnapshot` (``told`` and ``state`` as JSON), so a
    resume restores the strategy instead of replaying the whole history. Nothing to backfill: an
    experiment without a row resumes by replaying, as before."""
    q = lambda c: _q(db, c)  # noqa: E731
    db.execute_sql(
        f"CREATE TABLE {q('strategy_snapshots')} ("
        f"{q('experiment_id')} INTEGER PRIMARY KEY REFERENCES {q('experiments')} ({q('id')}) ON DELETE CASCADE, "
        f"{q('strategy')} TEXT NOT NULL, {q('told_through')} INTEGER NOT NULL, {q('told')} TEXT NOT NULL, "
        f"{q('state')} TEXT NOT NULL, "
        f"{q('created_at')} TIMESTAMP NOT NULL)"
    )


def _downgrade_4_to_3(db: pw.Database) -> None:
    """Back to v3: drop the snapshots; the next resume replays the history instead."""
    db.execute_sql(f"DROP TABLE {_q(db, 'strategy_snapshots')}")


#: The multi-fidelity columns migration 4→5 adds to ``trials``, in order.
V5_COLUMNS = ("curve", "fidelity", "pruned")


def _upgrade_4_to_5(db: pw.Database) -> None:
    """v5: a result's multi-fidelity fields on ``trials``, all nullable: ``curve`` (the learning
    curve as a JSON list of floats, NULL when empty), ``fidelity`` (the epochs the result was
    allowed, NULL when not recorded: full) and ``pruned`` (BOOLEAN on PostgreSQL, INTEGER on
    SQLite as peewee declares booleans there; NULL or false: not pruned). Nothing to backfill: a
    v4 result is a full-fidelity result without a curve, which is what the NULLs read back as."""
    q = lambda c: _q(db, c)  # noqa: E731
    boolean = "BOOLEAN" if _is_postgres(db) else "INTEGER"
    for column, kind in zip(V5_COLUMNS, ("TEXT", "INTEGER", boolean), strict=True):
        db.execute_sql(f"ALTER TABLE {q('trials')} ADD COLUMN {q(column)} {kind}")


def _downgrade_5_to_4(db: pw.Database) -> None:
    """Back to v4: drop the three columns (SQLite 3.35 or later). The trials and their metrics
    stay; their learning curves are lost and every pruned result reads as a full one again."""
    q = lambda c: _q(db, c)  # noqa: E731
    for column in reversed(V5_COLUMNS):
        db.execute_sql(f"ALTER TABLE {q('trials')} DROP COLUMN {q(column)}")


#: ``{from_version: Migration(upgrade, downgrade)}`` between ``from_version`` and ``from_version + 1``.
MIGRATIONS: dict[int, Migration] = {
    1: Migration(_upgrade_1_to_2, _downgrade_2_to_1),
    2: Migration(_upgrade_2_to_3, _downgrade_3_to_2),
    3: Migration(_upgrade_3_to_4, _downgrade_4_to_3),
    4: Migration(_upgrade_4_to_5, _downgrade_5_to_4),
}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _make_models(db: pw.Database) -> tuple[type[pw.Model], ...]:
    """The tables, as model classes bound to ``db`` (one set per open database, so two
    ``SqlResultsDB`` in one process never share a binding). ``SchemaVersion``, ``ExperimentRow``
    and ``TrialRow`` are created as the v1 base (:data:`BASE_VERSION`); ``TrialRowV5`` maps the
    same ``trials`` table with the columns migrations 2→3 and 4→5 add and ``TrialMetric`` the
    table that migration 1→2 makes, so neither is ever created from its model."""

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

    class TrialRow(Base):  # the class name is in the v1 index names (trialrow_status, ...)
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

    class TrialRowV3(TrialRow):
        codegen = pw.TextField(null=True)  # JSON of the CodeGenRecord, NULL if none (v3)
        codegen_key = pw.TextField(null=True)  # its cache_key when the provider's code was accepted (v3)

        class Meta:
            table_name = "trials"

    class TrialRowV5(TrialRowV3):
        curve = pw.TextField(null=True)  # JSON list of the result's learning curve, NULL if empty (v5)
        fidelity = pw.IntegerField(null=True)  # epochs the result was allowed, NULL: not recorded = full (v5)
        pruned = pw.BooleanField(null=True)  # stopped or paused by a scheduler; NULL reads as false (v5)

        class Meta:
            table_name = "trials"

    class TrialMetric(Base):
        trial = pw.ForeignKeyField(TrialRow, column_name="trial_id", on_delete="CASCADE")
        experiment_id = pw.IntegerField()
        name = pw.CharField(max_length=255)
        value = pw.DoubleField()

        class Meta:
            table_name = "trial_metrics"
            primary_key = pw.CompositeKey("trial", "name")

    return SchemaVersion, ExperimentRow, TrialRow, TrialRowV5, TrialMetric


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


def check_database(url: str, busy_timeout_ms: int = 10000) -> None:
    """Raise :class:`StorageError` (one line) when :class:`SqlResultsDB` could not open ``url``,
    creating nothing, so a command can refuse before it writes a run directory.

    SQLite: a new file's directory must exist and be writable; an existing file must be a readable
    SQLite database that is empty or holds a Neuromosaic schema this plugin can migrate (tables of
    another program are refused rather than mixed with ours). PostgreSQL: the server must accept
    the connection, and a stored schema must not be newer than this plugin's."""
    scheme = urlparse(url).scheme
    if scheme in SQLITE_SCHEMES:
        tables, version = _read_sqlite_schema(url, busy_timeout_ms)
    elif scheme in POSTGRES_SCHEMES:
        tables, version = _read_postgres_schema(url, busy_timeout_ms)
    else:
        _open_database(url, busy_timeout_ms)  # the unsupported-scheme error
        return
    if tables and "schema_version" not in tables and scheme in SQLITE_SCHEMES:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StorageError(f"cannot open {url}: it holds tables of another program ({shown}) and no neuromosaic "
                           "schema; choose another file")
    if version is not None and version > SCHEMA_VERSION:
        raise StorageError(f"cannot open {url}: database schema v{version} is newer than this "
                           f"neuromosaic-storage-sql (v{SCHEMA_VERSION}); upgrade the plugin")


def _read_sqlite_schema(url: str, busy_timeout_ms: int) -> tuple[set[str], int | None]:
    path = db_url.parse(url)["database"]
    if not path or path == ":memory:" or path.startswith("file:"):
        return set(), None
    file = Path(path).expanduser().resolve()
    if not file.exists():
        if not file.parent.is_dir():
            raise StorageError(f"cannot open {url}: directory {file.parent} does not exist")
        if not os.access(file.parent, os.W_OK | os.X_OK):
            raise StorageError(f"cannot open {url}: directory {file.parent} is not writable")
        return set(), None
    if not file.is_file():
        raise StorageError(f"cannot open {url}: {file} is not a file")
    if not os.access(file, os.R_OK | os.W_OK):
        raise StorageError(f"cannot open {url}: {file} is not readable and writable")
    # A read-only connection to a WAL database creates its -wal and -shm files when they are
    # missing (and leaves them): with both present (the database is open elsewhere, or was not
    # closed), read it normally; without, nothing is waiting in a WAL, so read the file as it is.
    in_use = Path(f"{file}-wal").exists() and Path(f"{file}-shm").exists()
    uri = f"{file.as_uri()}?{'mode=ro' if in_use else 'immutable=1'}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_ms / 1000)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                      if not r[0].startswith("sqlite_")}
            row = (conn.execute('SELECT "version" FROM "schema_version" ORDER BY "id" LIMIT 1').fetchone()
                   if "schema_version" in tables else None)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {url}: {_first_line(exc)}") from None
    return tables, int(row[0]) if row is not None else None


def _read_postgres_schema(url: str, busy_timeout_ms: int) -> tuple[set[str], int | None]:
    db = _open_database(url, busy_timeout_ms)
    schema_version = _make_models(db)[0]
    try:
        db.connect()
        if not db.table_exists(schema_version._meta.table_name):
            return set(db.get_tables()), None
        row = schema_version.select().order_by(schema_version.id).first()
        return set(db.get_tables()), int(row.version) if row is not None else None
    except (pw.PeeweeException, OSError) as exc:
        raise StorageError(f"cannot open {url}: {_first_line(exc)}") from None
    finally:
        db.close()


def _prepare_base(db: pw.Database, *base: type[pw.Model]) -> int:
    """The stored schema version; a database without one gets the v1 base tables and version
    :data:`BASE_VERSION` (the caller then migrates it forward like any older database)."""
    schema_version = base[0]
    if db.table_exists(schema_version._meta.table_name):
        row = schema_version.select().order_by(schema_version.id).first()
        if row is not None:
            return int(row.version)
    db.create_tables(list(base), safe=True)
    schema_version.create(version=BASE_VERSION)
    return BASE_VERSION


def _step(db: pw.Database, schema_version: type[pw.Model], current: int, target: int) -> None:
    """Run the migrations between ``current`` and ``target`` (up or down) and record ``target``."""
    version = current
    while version < target:
        migration = MIGRATIONS.get(version)
        if migration is None:
            raise StorageError(f"database schema v{version} cannot be migrated to v{target}: no migration")
        migration.upgrade(db)
        version += 1
    while version > target:
        migration = MIGRATIONS.get(version - 1)
        if migration is None:
            raise StorageError(f"database schema v{version} cannot be migrated to v{target}: no migration")
        migration.downgrade(db)
        version -= 1
    if version != current:
        schema_version.update(version=version).execute()


def migrate_database(url: str, to_version: int = SCHEMA_VERSION, busy_timeout_ms: int = 10000) -> tuple[int, int]:
    """Upgrade or downgrade the database at ``url`` to schema ``to_version`` in one transaction;
    returns ``(from_version, to_version)``. This is the rollback path: run it with the old
    version *before* installing an older plugin (``python -m neuromosaic_storage_sql.migrate``).
    A new database is not created: ``url`` must hold a Neuromosaic schema."""
    if not BASE_VERSION <= to_version <= SCHEMA_VERSION:
        raise StorageError(f"cannot migrate to schema v{to_version}: this neuromosaic-storage-sql knows "
                           f"v{BASE_VERSION} to v{SCHEMA_VERSION}")
    db = _open_database(url, busy_timeout_ms)
    schema_version = _make_models(db)[0]
    try:
        db.connect()
        with db.atomic():
            if not db.table_exists(schema_version._meta.table_name):
                raise StorageError(f"{url} holds no neuromosaic schema (no schema_version table)")
            row = schema_version.select().order_by(schema_version.id).first()
            if row is None:
                raise StorageError(f"{url} holds no neuromosaic schema (empty schema_version table)")
            current = int(row.version)
            if current > SCHEMA_VERSION:
                raise StorageError(
                    f"database schema v{current} is newer than this neuromosaic-storage-sql "
                    f"(v{SCHEMA_VERSION}); migrate it with the plugin that wrote it"
                )
            _step(db, schema_version, current, to_version)
        return current, to_version
    except (pw.PeeweeException, OSError) as exc:
        raise StorageError(f"cannot migrate {url}: {_first_line(exc)}") from None
    finally:
        db.close()


class SqlResultsDB(ResultsDB):
    """Experiments and trials in a SQL database chosen by URL (see the package README)."""

    schema_version = SCHEMA_VERSION

    def __init__(self, url: str = "sqlite:///neuromosaic.db", busy_timeout_ms: int = 10000) -> None:
        self.url = url
        self.db = _open_database(url, busy_timeout_ms)
        (self._SchemaVersion, self._ExperimentRow, self._TrialRowV1, self._TrialRow,
         self._TrialMetric) = _make_models(self.db)
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
            version = _prepare_base(self.db, self._SchemaVersion, self._ExperimentRow, self._TrialRowV1)
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"database schema v{version} is newer than this neuromosaic-storage-sql "
                    f"(v{SCHEMA_VERSION}); upgrade the plugin"
                )
            _step(self.db, self._SchemaVersion, version, SCHEMA_VERSION)

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
        result, codegen = trial.result, trial.codegen
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
            "codegen": _dumps(converter.unstructure(codegen)) if codegen is not None else None,
            "codegen_key": codegen.cache_key if codegen is not None and not codegen.fallback and trial.code else None,
            # floats and ints: a curve or fidelity of numpy scalars is stored as plain numbers
            "curve": _dumps([float(v) for v in result.curve]) if result is not None and result.curve else None,
            "fidelity": int(result.fidelity) if result is not None and result.fidelity is not None else None,
            "pruned": bool(result.pruned) if result is not None else None,
        }

    @staticmethod
    def _to_trial(row: Any, experiment: str) -> Trial:
        # Built directly rather than through cattrs: a resume reads every trial of the experiment,
        # and the generic structuring was most of its cost (the shapes here are fixed and ours).
        result = None
        if row.metrics is not None:
            error = None
            if row.error_class is not None:
                error = ExperimentError(ErrorClass(row.error_class), row.error_message or "")
            result = TrialResult(json.loads(row.metrics), error, row.weights_path,
                                 curve=tuple(json.loads(row.curve)) if row.curve is not None else (),
                                 fidelity=row.fidelity, pruned=bool(row.pruned))
        spec = None
        if row.spec is not None:
            data = json.loads(row.spec)
            spec = ArchitectureSpec(data["family"], tuple(Layer(layer["type"], layer["params"], layer.get("inputs", ()), layer.get("name"))
                                                          for layer in data["layers"]))  # graph nodes carry inputs and a name
        return Trial(
            experiment=experiment,
            number=row.number,
            vector=ArchitectureVector(json.loads(row.vector)["values"]),
            spec=spec,
            status=TrialStatus(row.status),
            code=row.code,
            result=result,
            reused_from=row.reused_from,
            reuse_key=row.reuse_key,
            codegen=converter.structure(json.loads(row.codegen), CodeGenRecord) if row.codegen is not None else None,
            id=row.id,
        )

    def _quote(self, name: str) -> str:
        return _q(self.db, name)

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
                trial.id = self._insert(insert, [*columns.values(), experiment_id, now, now])
            else:
                cursor = self.db.execute_sql(update, [*columns.values(), now, trial.id])
                if cursor.rowcount != 1:
                    raise StorageError(f"trial id {trial.id} does not exist in {self.url}")
                self.db.execute_sql(self._delete_metrics_sql(), [trial.id])
            self._insert_metrics(trial, experiment_id)
        return trial

    def save_trials(self, trials: list[Trial]) -> list[Trial]:
        """Insert many new trials (``id`` None) in one transaction: the bulk path for imports and
        benchmarks. Same rows as :meth:`save_trial` one by one, much faster."""
        if any(t.id is not None for t in trials):
            raise StorageError("save_trials inserts new trials only; update saved ones with save_trial")
        with self.db.atomic():
            for trial in trials:
                columns = self._trial_columns(trial)
                insert, _ = self._statements(list(columns))
                now = self._TrialRow.updated_at.db_value(_now())
                experiment_id = self._experiment_id(trial.experiment)
                trial.id = self._insert(insert, [*columns.values(), experiment_id, now, now])
                self._insert_metrics(trial, experiment_id)
        if _is_postgres(self.db) and len(trials) >= ANALYZE_AFTER:
            # Fresh statistics for the planner: straight after a bulk load, before autovacuum got
            # to it, best-k on trial_metrics was planned as a full sort (458 ms instead of 2 ms).
            self.db.execute_sql(f"ANALYZE {self._quote('trials')}, {self._quote('trial_metrics')}")
        return trials

    def _insert(self, sql: str, params: list[Any]) -> int:
        cursor = self.db.execute_sql(sql, params)
        return int(cursor.fetchone()[0] if _is_postgres(self.db) else cursor.lastrowid)

    def _delete_metrics_sql(self) -> str:
        q, p = self._quote, self.db.param
        return f"DELETE FROM {q('trial_metrics')} WHERE {q('trial_id')} = {p}"  # noqa: S608

    def _insert_metrics(self, trial: Trial, experiment_id: int) -> None:
        """Index the metrics of a completed trial in ``trial_metrics`` (in the caller's transaction)."""
        if TrialStatus(trial.status) is not TrialStatus.COMPLETED or trial.result is None or trial.id is None:
            return
        rows = _metric_rows(trial.id, experiment_id, dict(trial.result.metrics))
        if rows:
            self.db.execute_sql(_insert_metrics_sql(self.db, len(rows)), [v for r in rows for v in r])

    def list_history(self, experiment: str, after: int = 0) -> list[Trial]:
        """Only what a resume needs: ``spec``, ``code`` and ``codegen`` are left None (at 100,000
        trials reading and parsing those was most of the resume's start-up time); ``list_trials``
        has them.

        The JSON columns (vector, metrics, curve) come back as one aggregated JSON array each and
        are parsed by a single ``json.loads``: parsing 100,000 small documents one by one cost more
        than everything else here together. The plain columns come from a second query, rows
        matched by id; rows added in between (by another writer) are left out."""
        table, p = self._quote(self._TrialRow._meta.table_name), self.db.param
        try:
            experiment_id = self._experiment_id(experiment)
        except StorageError:
            return []
        rows = self.db.execute_sql(
            f"SELECT id, number, status, error_class, error_message, weights_path, reused_from, reuse_key, "  # noqa: S608
            f"fidelity, pruned "
            f"FROM {table} WHERE experiment_id = {p} AND id > {p} ORDER BY id",
            [experiment_id, after],
        ).fetchall()
        if not rows:
            return []
        # In id order: PostgreSQL's ORDER BY inside the aggregate; SQLite aggregates an ordered
        # subquery in its order. Checked below, with a lookup by id as the fallback.
        agg = "string_agg({}, ',' ORDER BY id)" if _is_postgres(self.db) else "group_concat({}, ',')"
        columns = ", ".join(agg.format(c) for c in ("CAST(id AS TEXT)", "vector", "COALESCE(metrics, 'null')",
                                                    "COALESCE(curve, 'null')"))
        ids, vectors, metrics, curves = self.db.execute_sql(
            f"SELECT {columns} FROM (SELECT id, vector, metrics, curve FROM {table} "  # noqa: S608
            f"WHERE experiment_id = {p} AND id > {p} AND id <= {p} ORDER BY id) ordered",
            [experiment_id, after, rows[-1][0]],
        ).fetchone()
        with _gc_paused():
            # Every aggregate of one query walks the rows in the same order, so the lists line up.
            parsed = list(zip(json.loads(f"[{vectors}]"), json.loads(f"[{metrics}]"), json.loads(f"[{curves}]"), strict=True))
            order = json.loads(f"[{ids}]")
            if order != [row[0] for row in rows]:
                by_id = dict(zip(order, parsed, strict=True))
                parsed = [by_id[row[0]] for row in rows]
            history = []
            for row, (vector, metrics_, curve) in zip(rows, parsed, strict=True):
                id_, number, status, error_class, error_message, weights_path, reused_from, key, fidelity, pruned = row
                result = None
                if metrics_ is not None:
                    error = ExperimentError(ErrorClass(error_class), error_message or "") if error_class is not None else None
                    result = TrialResult(metrics_, error, weights_path, tuple(curve) if curve is not None else (),
                                         fidelity, bool(pruned))
                values = vector["values"]  # written with sorted keys (_dumps)
                history.append(Trial(experiment, number, ArchitectureVector.from_sorted(values), None,
                                     _STATUSES[status], None, result, reused_from, key, id=id_))
        return history

    def list_trials(self, experiment: str, status: TrialStatus | None = None) -> list[Trial]:
        T, E = self._TrialRow, self._ExperimentRow
        query = T.select().join(E).where(E.name == experiment)
        if status is not None:
            query = query.where(T.status == TrialStatus(status).value)
        return [self._to_trial(r, experiment) for r in query.order_by(T.id).namedtuples()]

    def find_reusable(self, reuse_key: str, experiment: str | None = None) -> Trial | None:
        """The earliest completed twin that was not pruned, else the earliest pruned one."""
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
        # NULL (a v4 row) is not pruned; the twins of one key are few, so the sort costs nothing.
        hit = self.db.execute_sql(sql + f" ORDER BY COALESCE(pruned, {p}), id LIMIT 1", [*params, False]).fetchone()
        if hit is None:
            return None
        T, E = self._TrialRow, self._ExperimentRow
        row = T.select(T, E).join(E).where(T.id == hit[0]).get()
        return self._to_trial(row, row.experiment.name)

    def find_cached_code(self, cache_key: str) -> str | None:
        """One indexed query on ``trials.codegen_key``, which is set only when the record is not
        the fallback's and the trial has code; the earliest such trial wins, in any experiment."""
        table, p = self._quote(self._TrialRow._meta.table_name), self.db.param
        hit = self.db.execute_sql(
            f"SELECT code FROM {table} WHERE codegen_key = {p} ORDER BY id LIMIT 1",  # noqa: S608
            [cache_key],
        ).fetchone()
        return hit[0] if hit is not None else None

    def get_best_architectures(self, experiment: str, k: int = 5, metric: str = "val_accuracy",
                               maximize: bool = True) -> list[Trial]:
        """The ``k`` completed trials with the best ``metric``, full results first (see
        :meth:`ResultsDB.get_best_architectures`), ties in creation order.

        The full results come from one query walking ``trial_metrics`` (``experiment_id, name,
        value``) in metric order, which stops after ``k`` of them; only when there are fewer than
        ``k`` does a second query rank the pruned ones (highest fidelity first, NULL last), which
        no index orders."""
        if k <= 0:
            return []
        try:
            experiment_id = self._experiment_id(experiment)
        except StorageError:
            return []
        T, M = self._TrialRow, self._TrialMetric
        order = M.value.desc() if maximize else M.value.asc()
        ranked = (T.select().join(M, on=(M.trial == T.id))
                  .where((M.experiment_id == experiment_id) & (M.name == metric) & (T.status == TrialStatus.COMPLETED.value)))
        pruned = pw.fn.COALESCE(T.pruned, False)
        found = list(ranked.where(~pruned).order_by(order, T.id).limit(k))
        if len(found) < k:
            fidelity = pw.fn.COALESCE(T.fidelity, 0)
            found.extend(ranked.where(pruned).order_by(fidelity.desc(), order, T.id).limit(k - len(found)))
        return [self._to_trial(r, experiment) for r in found]

    def metric_names(self, experiment: str) -> list[str]:
        """Walked down the ``trial_metrics(experiment_id, name, value)`` index one name at a time
        (one seek per distinct name), instead of reading every metric row."""
        try:
            experiment_id = self._experiment_id(experiment)
        except StorageError:
            return []
        table, p = self._quote(self._TrialMetric._meta.table_name), self.db.param
        sql = f"SELECT MIN(name) FROM {table} WHERE experiment_id = {p} AND name > {p}"  # noqa: S608
        names: list[str] = []
        while (name := self.db.execute_sql(sql, [experiment_id, names[-1] if names else ""]).fetchone()[0]) is not None:
            names.append(name)
        return names

    def metric_points(self, experiment: str, metrics: Sequence[str]) -> list[tuple[int, tuple[float, ...]]]:
        """One query joining ``trial_metrics`` once per metric (its rows exist only for completed
        trials and never hold NaN)."""
        if not metrics:
            return []
        try:
            experiment_id = self._experiment_id(experiment)
        except StorageError:
            return []
        table, p = self._quote(self._TrialMetric._meta.table_name), self.db.param
        values = ", ".join(f"m{i}.value" for i in range(len(metrics)))
        joins = " ".join(f"JOIN {table} m{i} ON m{i}.trial_id = m0.trial_id AND m{i}.name = {p}" for i in range(1, len(metrics)))
        cursor = self.db.execute_sql(
            f"SELECT m0.trial_id, {values} FROM {table} m0 {joins} "  # noqa: S608
            f"WHERE m0.experiment_id = {p} AND m0.name = {p} ORDER BY m0.trial_id",
            [*metrics[1:], experiment_id, metrics[0]],
        )
        return [(row[0], tuple(row[1:])) for row in cursor]

    def pareto_ids(self, experiment: str, x: str, y: str, *, minimize_x: bool = True, maximize_y: bool = True) -> list[int]:
        """The front in one query: with both metrics as costs, each x-cost group's lowest y-cost is
        compared with the running minimum over the groups of strictly lower x-cost (a window that
        only grows, so the database keeps it in one pass; a frame that excludes the current group
        made SQLite quadratic), and the points at their group's minimum of the groups that beat
        it are the front. Only the front's ids leave the database."""
        try:
            experiment_id = self._experiment_id(experiment)
        except StorageError:
            return []
        table, p = self._quote(self._TrialMetric._meta.table_name), self.db.param
        finite = "BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308"
        # Identifiers come from the model's metadata and every value is a bound parameter.
        sql = (
            "WITH points AS ("  # noqa: S608
            f" SELECT mx.trial_id AS id, {'' if minimize_x else '-'}mx.value AS xc, {'-' if maximize_y else ''}my.value AS yc"
            f" FROM {table} mx JOIN {table} my ON my.trial_id = mx.trial_id AND my.name = {p}"
            f" WHERE mx.experiment_id = {p} AND mx.name = {p} AND mx.value {finite} AND my.value {finite}),"
            " groups AS (SELECT xc, MIN(yc) AS best FROM points GROUP BY xc),"
            " ranked AS (SELECT xc, best, MIN(best) OVER (ORDER BY xc ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
            " AS before FROM groups)"
            " SELECT points.id FROM points JOIN ranked ON points.xc = ranked.xc AND points.yc = ranked.best"
            " WHERE ranked.before IS NULL OR ranked.best < ranked.before ORDER BY points.id"
        )
        return [row[0] for row in self.db.execute_sql(sql, [y, experiment_id, x])]

    def get_trials(self, experiment: str, ids: Sequence[int]) -> list[Trial]:
        T, E = self._TrialRow, self._ExperimentRow
        found: list[Trial] = []
        wanted = sorted(set(ids))
        for i in range(0, len(wanted), 500):  # bounded IN lists
            query = T.select().join(E).where((E.name == experiment) & T.id.in_(wanted[i:i + 500])).order_by(T.id)
            found.extend(self._to_trial(r, experiment) for r in query.namedtuples())
        return found

    def find_trial(self, experiment: str, number: int) -> Trial | None:
        T, E = self._TrialRow, self._ExperimentRow
        row = (T.select().join(E).where((E.name == experiment) & (T.number == number))
               .order_by(T.id.desc()).limit(1).namedtuples().first())
        return self._to_trial(row, experiment) if row is not None else None

    def count_trials(self, experiment: str) -> dict[TrialStatus, int]:
        T, E = self._TrialRow, self._ExperimentRow
        query = (T.select(T.status, pw.fn.COUNT(T.id)).join(E).where(E.name == experiment)
                 .group_by(T.status).tuples())
        return {TrialStatus(status): n for status, n in query}

    def max_trial_number(self, experiment: str) -> int:
        T, E = self._TrialRow, self._ExperimentRow
        return T.select(pw.fn.MAX(T.number)).join(E).where(E.name == experiment).scalar() or 0

    # -- strategy snapshots ------------------------------------------------------------------

    def save_snapshot(self, experiment: str, snapshot: StrategySnapshot) -> None:
        table, p = self._quote("strategy_snapshots"), self.db.param
        experiment_id = self._experiment_id(experiment)
        row = [snapshot.strategy, snapshot.told_through, _dumps(snapshot.told),
               json.dumps(snapshot.state, separators=(",", ":")), _now()]
        with self.db.atomic():
            self.db.execute_sql(f"DELETE FROM {table} WHERE experiment_id = {p}", [experiment_id])  # noqa: S608
            self.db.execute_sql(
                f"INSERT INTO {table} (experiment_id, strategy, told_through, told, state, created_at) "  # noqa: S608
                f"VALUES ({p}, {p}, {p}, {p}, {p}, {p})", [experiment_id, *row])

    def load_snapshot(self, experiment: str) -> StrategySnapshot | None:
        table, p = self._quote("strategy_snapshots"), self.db.param
        try:
            experiment_id = self._experiment_id(experiment)
        except StorageError:
            return None
        row = self.db.execute_sql(
            f"SELECT strategy, told_through, told, state FROM {table} WHERE experiment_id = {p}",  # noqa: S608
            [experiment_id]).fetchone()
        if row is None:
            return None
        return StrategySnapshot(row[0], row[1], tuple((a, b) for a, b in json.loads(row[2])), json.loads(row[3]))

    def mark_interrupted(self, experiment: str) -> list[Trial]:
        T, E = self._TrialRow, self._ExperimentRow
        stale_states = (TrialStatus.PENDING.value, TrialStatus.RUNNING.value)
        with self.db.atomic():
            # Only the stale rows are read (index on experiment_id, status), not the whole history.
            rows = T.select().join(E).where((E.name == experiment) & T.status.in_(stale_states)).order_by(T.id)
            stale = [self._to_trial(r, experiment) for r in rows]
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
        restore with ``psql -f``), found on ``PATH`` or in the server's own directory
        (:data:`PG_BIN_GLOBS`, e.g. ``/usr/lib/postgresql/15/bin``).
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
        pg_dump = find_pg_tool("pg_dump")
        if pg_dump is None:
            raise StorageError(f"pg_dump was not found on PATH or in {', '.join(PG_BIN_GLOBS)}; install the PostgreSQL "
                               "client tools (e.g. apt-get install postgresql-client) to back up a PostgreSQL database")
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


def find_pg_tool(name: str) -> str | None:
    """``name`` (``pg_dump``, ``psql``…) on ``PATH``, else in the newest :data:`PG_BIN_GLOBS` directory."""
    found = shutil.which(name)
    if found is not None:
        return found

    def version(directory: str) -> tuple[int, ...]:
        digits = "".join(c if c.isdigit() else " " for c in directory).split()
        return tuple(int(d) for d in digits)

    directories = sorted((d for pattern in PG_BIN_GLOBS for d in glob.glob(pattern)), key=version, reverse=True)
    for directory in directories:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
