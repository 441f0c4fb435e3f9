"""Neuromosaic storage backend ``sql``: experiments and trials in SQLite or PostgreSQL (peewee).

This module holds the hook implementations only; peewee is imported when a database is opened.
"""

from __future__ import annotations

from typing import Any

from neuromosaic_core import hookimpl
from neuromosaic_storage_sql.settings import SqlStorageSettings

__version__ = "0.2.0"
__all__ = ["SqlStorageSettings", "__version__", "register_storage_backends"]


def _factory(settings: SqlStorageSettings) -> Any:
    from neuromosaic_storage_sql.repository import SqlResultsDB

    return SqlResultsDB(settings.url, busy_timeout_ms=settings.busy_timeout_ms)


def _check(settings: SqlStorageSettings) -> None:
    from neuromosaic_storage_sql.repository import check_database

    check_database(settings.url, busy_timeout_ms=settings.busy_timeout_ms)


@hookimpl
def register_storage_backends(register: Any) -> None:
    register(
        "sql",
        _factory,
        settings=SqlStorageSettings,
        description="SQLite (WAL, multi-process safe) or PostgreSQL through peewee, chosen by storage.url",
        url_schemes=("sqlite", "postgresql", "postgres"),
        check=_check,
    )
