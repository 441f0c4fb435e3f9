"""Move a results database to another schema version, down as well as up.

    python -m neuromosaic_storage_sql.migrate --to 1 sqlite:///results.db
    python -m neuromosaic_storage_sql.migrate --to 2 postgresql://user@host/db

Rollback procedure (see docs/plugins/storage-sql.md): stop every run that uses the database, take
a backup, run this with the schema version the older plugin writes, then install that plugin.
Opening the database with a newer plugin upgrades it again. Exit status 0 on success, 2 with a
one-line message on a ``StorageError``.
"""

from __future__ import annotations

import argparse
import sys

from neuromosaic_core.errors import StorageError


def main(argv: list[str] | None = None) -> int:
    from neuromosaic_storage_sql.repository import SCHEMA_VERSION, migrate_database

    parser = argparse.ArgumentParser(prog="python -m neuromosaic_storage_sql.migrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", type=int, default=SCHEMA_VERSION, dest="to_version",
                        help=f"target schema version (default {SCHEMA_VERSION}, the newest this plugin knows)")
    parser.add_argument("url", help="storage.url of the database, e.g. sqlite:///results.db")
    args = parser.parse_args(argv)
    try:
        before, after = migrate_database(args.url, args.to_version)
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.url}: schema v{before} -> v{after}" if before != after else f"{args.url}: already at schema v{after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
