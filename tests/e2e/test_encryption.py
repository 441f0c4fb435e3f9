"""Encryption at rest end to end: a real search through the CLI (subprocesses, real training) with
``encryption.enabled=true``, then everything a stolen database or run directory would hold is
searched for the code in clear, the results read back with the key, without it and with a wrong
one, and the key rotated."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from neuromosaic_core.encryption import bytes_fingerprint, fingerprint, parse_key

pytestmark = pytest.mark.e2e
pytest.importorskip("cryptography")

EXP = "digits-mlp_conv1d-random"
ARGS = ["task=digits", "training.epochs=1", "visualizers=[html]", "runner.workers=2", "encryption.enabled=true"]
CLEAR = (b"class Net", b"nn.Module", b"def forward")


def environ(key_file: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    if key_file is not None:
        env["NEUROMOSAIC_ENCRYPTION_KEY_FILE"] = str(key_file)
    return env


def neuromosaic(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=environ(), timeout=300)


def results(cwd: Path, *args: str, key: Path | None = None) -> subprocess.CompletedProcess:
    code = "import sys; from neuromosaic_core.cli import results_main; results_main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=environ(key), timeout=300)


def one_line_error(proc: subprocess.CompletedProcess, *expected: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def clear_code_in(paths: list[Path]) -> list[str]:
    return [str(p) for p in paths if p.is_file() and any(marker in p.read_bytes() for marker in CLEAR)]


def git_blob_fingerprints(repo: Path) -> set[str | None]:
    listing = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype)"],
                             capture_output=True, text=True, check=True).stdout.split("\n")
    found = set()
    for line in filter(None, listing):
        sha, kind = line.split()
        if kind == "blob":
            data = subprocess.run(["git", "-C", str(repo), "cat-file", "blob", sha], capture_output=True, check=True).stdout
            if not data.lstrip().startswith(b"{"):  # the .json records stay in clear
                found.add(bytes_fingerprint(data))
    return found


def test_an_encrypted_search_reveals_no_code_reads_back_with_the_key_and_rotates(tmp_path, monkeypatch):
    work, keys = tmp_path / "work", tmp_path / "keys"
    work.mkdir()
    keys.mkdir()
    assert results(work, "keygen", str(keys / "k1")).returncode == 0
    assert results(work, "keygen", str(keys / "k2")).returncode == 0
    k1, k2 = (fingerprint(parse_key((keys / k).read_text(), k)) for k in ("k1", "k2"))
    run_dir = work / "run"

    # Turned on without a key, or with the key beside the database: refused before anything is made.
    one_line_error(neuromosaic(work, *ARGS, f"hydra.run.dir={run_dir}"), "encryption.key_file", "keygen")
    (work / "k").write_text((keys / "k1").read_text())
    one_line_error(neuromosaic(work, *ARGS, "encryption.key_file=k", f"hydra.run.dir={run_dir}"), "beside the data")
    (work / "k").unlink()
    assert not run_dir.exists()

    proc = neuromosaic(work, *ARGS, "search.trials=2", f"encryption.key_file={keys / 'k1'}", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr

    # What a thief of the database and the run directory gets: no code, no prompt, no weights in clear.
    stolen = [work / "neuromosaic.db", *(p for p in run_dir.rglob("*") if ".git" not in p.parts)]
    assert clear_code_in(stolen) == []
    for name in ("code/trial-0001.py", "code/trial-0002.py"):
        assert bytes_fingerprint((run_dir / name).read_bytes()) == k1
    weights = sorted((run_dir / "weights").glob("*.pt"))
    assert weights and {bytes_fingerprint(w.read_bytes()) for w in weights} == {k1}
    assert "encrypted at rest" in (run_dir / "report.html").read_text()
    if shutil.which("git"):
        assert git_blob_fingerprints(run_dir / "code-history") == {k1}

    # Metrics need no key; the code needs the right one, and says so in one line.
    best = results(work, "best", EXP, "--json")
    assert best.returncode == 0 and '"val_accuracy"' in best.stdout
    one_line_error(results(work, "show", EXP, "1"), "encryption.key_file", k1)
    one_line_error(results(work, "show", EXP, "1", key=keys / "k2"), k1, k2)
    shown = results(work, "show", EXP, "1", key=keys / "k1")
    assert shown.returncode == 0 and "class Net" in shown.stdout

    monkeypatch.setenv("NEUROMOSAIC_ENCRYPTION_KEY_FILE", str(keys / "k1"))
    from neuromosaic_core.loading import load_best_model

    model = load_best_model(run_dir)
    assert type(model).__name__ == "Net" and not model.training
    monkeypatch.delenv("NEUROMOSAIC_ENCRYPTION_KEY_FILE")

    # A resume with another key would mix two keys in one experiment: stopped in one line.
    one_line_error(neuromosaic(work, *ARGS, "search.trials=3", f"encryption.key_file={keys / 'k2'}", f"hydra.run.dir={run_dir}"),
                   k1, "encryption.key_file")

    # Rotation: everything under k2, readable with it, and no longer with k1. The run directory is found
    # from the trials' weights paths.
    rekey = results(work, "rekey", "--new-key-file", str(keys / "k2"), key=keys / "k1")
    assert rekey.returncode == 0, rekey.stderr
    assert f"now under key {k2}" in rekey.stdout and f"{run_dir.resolve()}: " in rekey.stdout
    assert "class Net" in results(work, "show", EXP, "2", key=keys / "k2").stdout
    one_line_error(results(work, "show", EXP, "2", key=keys / "k1"), k2)
    assert {bytes_fingerprint(p.read_bytes()) for p in [*weights, *(run_dir / "code").glob("*.py")]} == {k2}
    if shutil.which("git"):
        assert git_blob_fingerprints(run_dir / "code-history") == {k2}
