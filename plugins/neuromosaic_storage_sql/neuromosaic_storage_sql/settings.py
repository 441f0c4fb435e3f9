"""Settings of the ``sql`` storage backend (cheap to import: no peewee)."""

from __future__ import annotations

import attrs

from neuromosaic_core.settings import StorageSettings


@attrs.frozen
class SqlStorageSettings(StorageSettings):
    """``url``: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite:///:memory:`` or
    ``postgresql://user:password@host:5432/dbname``. ``busy_timeout_ms``: how long a SQLite writer
    waits for another process's lock before giving up."""

    busy_timeout_ms: int = 10000
