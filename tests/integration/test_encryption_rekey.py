"""Key rotation against real files: a SQLite database rekeyed by a process killed (SIGKILL) again and
again, and a git history whose rewrite is cut off after its refs moved. Each rerun completes it; at
no point is a value lost, or readable only with a key that is not the old or the new one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from neuromosaic_core.encryption import (
    EncryptedResultsDB,
    Keyring,
    bytes_fingerprint,
    fingerprint,
    generate_key,
    parse_key,
    raw_storage,
    rekey_run_dir,
    text_fingerprint,
    trial_fingerprints,
)
from neuromosaic_core.model import Experiment
from neuromosaic_core.results import open_results
from neuromosaic_core.testing.storage import make_codegen, make_trial

pytest.importorskip("cryptography")
pytest.importorskip("neuromosaic_storage_sql")

N = 3000
CHILD = """
import sys
from neuromosaic_core.encryption import Keyring, parse_key, rekey_database
from neuromosaic_core.results import open_results
old, new, url = sys.argv[1:4]
db = open_results(url)
rekey_database(db, Keyring(parse_key(new, "new"), [parse_key(old, "old")]), batch=20,
               progress=lambda experiment, n: print(n, flush=True))
print("done", flush=True)
"""


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch):
    for name in ("NEUROMOSAIC_ENCRYPTION_KEY", "NEUROMOSAIC_ENCRYPTION_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def check_nothing_lost(url: str, old: bytes, new: bytes) -> set[str | None]:
    """Every trial reads back whole with the two keys; returns the fingerprints found."""
    db = open_results(url)
    try:
        inner = raw_storage(db)
        trials = inner.list_trials("e")
        found = set().union(*(trial_fingerprints(t) for t in trials))
        reader = EncryptedResultsDB(inner, Keyring(new, [old]))
        opened = reader.list_trials("e")
        assert [t.code for t in opened] == [make_trial("e", n).code for n in range(1, N + 1)]
        assert all(t.codegen == make_codegen(f"k{t.number}") for t in opened)
        return found
    finally:
        db.close()


def test_a_rekey_killed_at_any_point_is_finished_by_a_rerun(tmp_path):
    old_text, new_text = generate_key(), generate_key()
    old, new = parse_key(old_text, "old"), parse_key(new_text, "new")
    url = f"sqlite:///{tmp_path / 'results.db'}"
    db = open_results(url, create=True)
    sealed = EncryptedResultsDB(raw_storage(db), Keyring(old), encrypt=True)
    sealed.create_experiment(Experiment("e", "digits"))
    sealed.save_trials([make_trial("e", n, codegen=make_codegen(f"k{n}")) for n in range(1, N + 1)])
    db.close()
    assert check_nothing_lost(url, old, new) == {fingerprint(old)}

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    kills = 0
    for wait_lines in (1, 4, 9, 2, 30, 200):
        child = subprocess.Popen([sys.executable, "-c", CHILD, old_text, new_text, url], stdout=subprocess.PIPE,
                                 text=True, env=env)
        assert child.stdout is not None
        lines = [child.stdout.readline() for _ in range(wait_lines)]
        if "done\n" in lines or "" in lines:
            child.wait(timeout=120)
            break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        kills += 1
        found = check_nothing_lost(url, old, new)
        assert found <= {fingerprint(old), fingerprint(new)}
    assert kills >= 2  # the rotation really was cut off, more than once
    assert found == {fingerprint(old), fingerprint(new)}  # ... half-way through

    finished = subprocess.run([sys.executable, "-c", CHILD, old_text, new_text, url], capture_output=True, text=True,
                              env=env, timeout=300)
    assert finished.returncode == 0 and finished.stdout.endswith("done\n"), finished.stderr
    assert check_nothing_lost(url, old, new) == {fingerprint(new)}


def git(repo: Path, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          input=data, capture_output=True, check=True).stdout


def blob_fingerprints(repo: Path) -> list[str | None]:
    """The fingerprint of every blob in the object store, reachable or not (None: a clear blob)."""
    listing = git(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype)").decode()
    return [bytes_fingerprint(git(repo, "cat-file", "blob", sha)) for sha, kind in (line.split() for line in listing.splitlines())
            if kind == "blob"]


@pytest.mark.skipif(shutil.which("git") is None, reason="no git executable on PATH")
def test_a_code_history_rewrite_cut_off_after_its_refs_moved_is_finished_by_a_rerun(tmp_path, monkeypatch):
    old, new = parse_key(generate_key(), "old"), parse_key(generate_key(), "new")
    keys_old = Keyring(old)
    run_dir = tmp_path / "run"
    repo = run_dir / "code-history"
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch=main")
    for n in (1, 2, 3):
        code = keys_old.encrypt_bytes(f"class Net:  # {n}\n".encode())
        (repo / f"trial-{n:04d}.py").write_bytes(code)
        (repo / "model.py").write_bytes(code)
        (repo / f"trial-{n:04d}.json").write_text(f'{{"number": {n}}}\n')
        git(repo, "add", ".")
        git(repo, "commit", "--quiet", "-m", f"trial {n:04d}: completed")
        git(repo, "tag", f"trial-{n:04d}")
    (run_dir / "code").mkdir()
    (run_dir / "code" / "trial-0001.py").write_bytes(keys_old.encrypt_bytes(b"class Net: pass\n"))
    log_before = git(repo, "log", "--format=%s %ad", "main")

    keys = Keyring(new, [old])
    real_run = subprocess.run

    def cut_off(command, *args, **kwargs):  # the process dies straight after the refs moved
        if "reset" in command:
            raise KeyboardInterrupt
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", cut_off)
    with pytest.raises(KeyboardInterrupt):
        rekey_run_dir(run_dir, keys)
    monkeypatch.setattr(subprocess, "run", real_run)
    assert fingerprint(old) in blob_fingerprints(repo)  # left behind: the working tree and old objects
    assert bytes_fingerprint((repo / "model.py").read_bytes()) == fingerprint(old)

    rekey_run_dir(run_dir, keys)
    assert set(blob_fingerprints(repo)) == {fingerprint(new), None}  # None: the .json records, in clear
    assert git(repo, "log", "--format=%s %ad", "main") == log_before  # messages and dates kept
    assert git(repo, "tag").split() == [b"trial-0001", b"trial-0002", b"trial-0003"]
    assert git(repo, "status", "--porcelain") == b""
    shown = git(repo, "show", "trial-0002:trial-0002.py")
    assert Keyring(new).decrypt_bytes(shown, "t") == b"class Net:  # 2\n"
    assert bytes_fingerprint((run_dir / "code" / "trial-0001.py").read_bytes()) == fingerprint(new)
    assert fingerprint(new) in (run_dir / "encryption.json").read_text()
    assert text_fingerprint("class Net") is None
