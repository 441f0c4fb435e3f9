"""A private PostgreSQL cluster for the tests that need a real server (fixture ``pg_cluster``).

It is started once per session from the server binaries (``PG_BIN``, default
``/usr/lib/postgresql/15/bin``) in a fresh temporary directory, listens on 127.0.0.1 at a free
port with ``trust`` authentication, and is stopped (``pg_ctl -m fast stop``) and removed at the
end. As root, initdb and pg_ctl run as the ``postgres`` user (the server refuses to run as root).
Without the binaries or psycopg2 the tests skip with the reason; CI sets
``NEUROMOSAIC_STRICT_SKIPS=1``, which turns that skip into a failure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """A running private cluster: ``url(dbname)``, ``create_database(name)``."""

    def __init__(self, bin_dir: Path, directory: Path, port: int, as_user: list[str], durable: bool = False) -> None:
        self.bin_dir, self.directory, self.port, self._as_user = bin_dir, directory, port, as_user
        # A throwaway test cluster need not survive a power cut: without fsync its shutdown
        # checkpoint after ~30 CREATE DATABASE takes 0.5 s instead of 20 s on this VM.
        self.options = "" if durable else " -c fsync=off"
        self.data = directory / "data"

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as_user, str(self.bin_dir / tool), *args],
                              capture_output=True, text=True, check=False, timeout=120)

    def start(self) -> None:
        for step in (
            ("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"),
            ("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"), "-w", "start",
             "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}{self.options}"),
        ):
            done = self.run(*step)
            if done.returncode != 0:
                log = self.directory / "server.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"{step[0]} failed ({done.returncode}): {done.stdout}{done.stderr}{tail}")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def psql(self, dbname: str, sql: str) -> str:
        """Run ``sql`` in ``dbname`` (autocommit); its rows as ``psql -A -t`` prints them."""
        import psycopg2

        conn = psycopg2.connect(self.url(dbname))
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql)
                rows = cursor.fetchall() if cursor.description is not None else []
        finally:
            conn.close()
        return "".join("|".join("" if v is None else str(v) for v in row) + "\n" for row in rows)

    def create_database(self, name: str) -> str:
        """Create ``name`` unless it exists; its URL."""
        if not self.psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
            self.psql("postgres", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def database_for(self, key: object) -> str:
        """The URL of a database named after ``key`` (e.g. a test's tmp_path): the same key
        reopens the same database, so the contract's close-and-reopen test works."""
        return self.create_database("t_" + hashlib.sha1(str(key).encode()).hexdigest()[:16])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed: pip install 'neuromosaic-storage-sql[postgres]'")
    missing = [t for t in ("initdb", "pg_ctl", "psql", "pg_dump") if not (PG_BIN / t).is_file()]
    if missing:
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} ({', '.join(missing)}): "
                    "apt-get install postgresql-15, or set PG_BIN")
    as_user: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="nm-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as the postgres user")
        as_user = [runuser, "-u", "postgres", "--"]
        shutil.chown(directory, "postgres", "postgres")
    cluster = PgCluster(PG_BIN, directory, _free_port(), as_user)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
