"""The server's Containerfile, built and started with podman against a private PostgreSQL on the
host, as CI does it without a registry: the base image is the podman runner's debootstrapped
``localhost/neuromosaic-trial`` and the host's interpreter and environment are mounted read-only
(``wheels/`` is left empty). Needs root, podman and the PostgreSQL server binaries; skips with
the reason otherwise (CI installs them and turns the skip into a failure)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest
from neuromosaic_api.testing import bearer, fill, free_port, token

HERE = Path(__file__).resolve().parents[1]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
TAG = "localhost/neuromosaic-api-test:latest"


def _why_not() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install -y podman runc debootstrap)"
    if os.geteuid() != 0:
        return "the container test needs rootful podman (run it as root)"
    if not (PG_BIN / "pg_ctl").is_file() or shutil.which("runuser") is None:
        return f"PostgreSQL server binaries not found in {PG_BIN} (or no runuser)"
    try:
        import neuromosaic_runner_podman  # noqa: F401 - its base image and containers.conf
        import psycopg2  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e plugins/neuromosaic_runner_podman psycopg2-binary)"
    return None


@pytest.fixture
def postgres() -> str:
    """A private cluster on 127.0.0.1 (trust authentication), stopped and removed afterwards;
    the test skips (with the reason) before starting it when the machine cannot run the test."""
    reason = _why_not()
    if reason:
        print(reason)
        pytest.skip(reason)
    directory = Path(tempfile.mkdtemp(prefix="nm-api-pg-"))
    shutil.chown(directory, "postgres", "postgres")
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-w", "start",
                    "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {directory} -c fsync=off"],
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


def _mounts() -> list[str]:
    """The interpreter, the environment and the source of every editable neuromosaic package, read-only."""
    import neuromosaic_api
    import neuromosaic_storage_sql

    import neuromosaic_core

    paths = {Path(sys.base_prefix), Path(sys.prefix)}
    paths |= {Path(m.__file__).resolve().parents[1] for m in (neuromosaic_core, neuromosaic_api, neuromosaic_storage_sql)}
    paths |= _native_libraries()
    return [arg for p in sorted(paths) for arg in ("-v", f"{p}:{p}:ro")]


def _native_libraries() -> set[Path]:
    """The host libraries the interpreter's ``_ssl`` and ``_sqlite3`` link to (PyJWT imports
    ``ssl``, the sql plugin ``sqlite3``), which a minimal debootstrapped base lacks; the C library
    itself is the base image's own."""
    import _sqlite3
    import _ssl

    libraries = set()
    for module in (_ssl, _sqlite3):
        out = subprocess.run(["ldd", module.__file__], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "=>" in line and not any(f"{c}.so" in line for c in ("libc", "libm", "libpthread", "libdl", "librt", "ld-linux")):
                libraries.add(Path(line.split("=>")[1].split("(")[0].strip()))
    return libraries


def test_the_container_serves_a_postgresql_database(tmp_path, postgres):
    from neuromosaic_runner_podman import image

    from neuromosaic_core.results import open_results

    env = image.podman_env()
    if not image.image_is_current(image.DEFAULT_TAG):
        image.build(image.DEFAULT_TAG, rootfs=True)
    db = open_results(postgres)
    fill(db)
    db.close()

    context = tmp_path / "context"
    (context / "wheels").mkdir(parents=True)
    shutil.copy(HERE / "Containerfile", context / "Containerfile")
    built = subprocess.run(["podman", "build", "--build-arg", f"BASE={image.DEFAULT_TAG}", "-t", TAG, str(context)],
                           env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]

    secret, port, name = secrets.token_urlsafe(48), free_port(), f"nm-api-test-{uuid.uuid4().hex[:8]}"
    run = ["podman", "run", "-d", "--name", name, "--network=host", "-e", f"NEUROMOSAIC_API_SECRET={secret}",
           *_mounts(), "--entrypoint", str(Path(sys.prefix) / "bin" / "neuromosaic-api"), TAG,
           "--host", "127.0.0.1", "--port", str(port), "--url", postgres, "--runs", "/runs"]
    started = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, health = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        logs = subprocess.run(["podman", "logs", name], env=env, capture_output=True, text=True).stderr
        assert health is not None and health.json() == {"status": "ok", "database": "ok"}, logs
        headers = bearer(token("read", secret=secret))
        (row,) = httpx.get(f"{base}/api/experiments", headers=headers, timeout=30).json()
        assert (row["name"], row["trials"], row["completed"]) == ("exp", 12, 9)
        page = httpx.get(f"{base}/api/experiments/exp/trials?offset=10", headers=headers, timeout=30).json()
        assert [t["number"] for t in page["items"]] == [11, 12]
        assert httpx.get(f"{base}/api/experiments", timeout=30).status_code == 401
        user = subprocess.run(["podman", "exec", name, "id", "-u"], env=env, capture_output=True, text=True)
        assert user.stdout.strip() == "65534"  # the image does not run the server as root
    finally:
        subprocess.run(["podman", "rm", "-f", name], env=env, capture_output=True, timeout=120)
