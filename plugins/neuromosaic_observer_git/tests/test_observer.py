"""The observer with fake trials in a temporary run directory (no search, no training)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import neuromosaic_observer_git as observer
import pytest
from loguru import logger
from neuromosaic_observer_git.history import CodeHistory, metric_summary

from neuromosaic_core.model import ArchitectureVector, ErrorClass, Experiment, Trial, TrialResult, TrialStatus
from neuromosaic_core.plugins import PluginSystem

CONFIG = {"search": {"metric": "val_accuracy"}}


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def code(width):
    return f"import torch.nn as nn\n\nclass Net(nn.Module):\n    width = {width}\n"


def trial(number, *, width=8, ok=True, code_present=True, reused_from=None):
    result = (TrialResult(metrics={"params": 100.0 * width, "val_accuracy": 0.5 + width / 100})
              if ok else TrialResult.failure(ErrorClass.RUNTIME, "boom\nsecond line"))
    status = TrialStatus.COMPLETED if ok else TrialStatus.FAILED
    return Trial("exp", number, ArchitectureVector({"width": width}), status=status,
                 code=code(width) if code_present else None, result=result, reused_from=reused_from)


@pytest.fixture
def warnings():
    messages = []
    sink = logger.add(messages.append, level="WARNING", format="{message}")
    yield messages
    logger.remove(sink)


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.setattr(observer, "_history", None)
    monkeypatch.setattr(observer, "_warned_missing", False)


def start(run_dir):
    observer.experiment_started(Experiment("exp", "digits"), CONFIG, run_dir)
    return run_dir / "code-history"


def test_the_entry_point_registers_the_observer_hooks():
    info = PluginSystem.load().plugins["git"]
    assert info.error is None and info.distribution == "neuromosaic-observer-git"
    assert info.hooks == ["experiment_finished", "experiment_started", "trial_finished"]


def test_one_commit_and_one_tag_per_trial_with_code(tmp_path, warnings):
    repo = start(tmp_path)
    observer.trial_finished(trial(1, width=8))
    observer.trial_finished(trial(2, width=16))
    observer.trial_finished(trial(3, ok=False, width=4))
    observer.trial_finished(trial(4, code_present=False))  # invalid: no code, not committed
    observer.experiment_finished(Experiment("exp", "digits"), {})
    assert warnings == []

    assert git(repo, "rev-list", "--count", "HEAD").strip() == "3"
    assert git(repo, "tag").split() == ["trial-0001", "trial-0002", "trial-0003"]
    assert git(repo, "show", "trial-0002:trial-0002.py") == code(16)
    assert git(repo, "show", "trial-0002:model.py") == code(16)
    record = json.loads(git(repo, "show", "trial-0002:trial-0002.json"))
    assert record["number"] == 2 and record["status"] == "completed" and record["metrics"]["val_accuracy"] == pytest.approx(0.66)
    failed = json.loads(git(repo, "show", "trial-0003:trial-0003.json"))
    assert failed["status"] == "failed" and failed["error"] == {"class": "runtime_error", "message": "boom\nsecond line"}
    assert "trial-0004.py" not in git(repo, "ls-files")

    assert git(repo, "log", "-1", "--format=%s", "trial-0002") == "trial 0002: completed val_accuracy=0.66 params=1600\n"
    assert git(repo, "log", "-1", "--format=%s", "trial-0003") == "trial 0003: failed (runtime_error) boom\n"
    assert git(repo, "log", "-1", "--format=%an <%ae>", "trial-0001") == "Neuromosaic <neuromosaic@localhost>\n"
    diff = git(repo, "diff", "trial-0001", "trial-0002", "--", "model.py")
    assert "-    width = 8" in diff and "+    width = 16" in diff
    assert git(repo, "config", "--local", "user.name") == "Neuromosaic\n"


def test_resume_adds_to_the_same_repository_and_a_rerun_moves_its_tag(tmp_path, warnings):
    repo = start(tmp_path)
    observer.trial_finished(trial(1))
    first = git(repo, "rev-parse", "trial-0001").strip()
    (repo / ".git" / "index.lock").write_text("")  # as left by a search killed mid-commit
    start(tmp_path)  # resumed
    observer.trial_finished(trial(1))  # re-run in place after a crash, identical code
    observer.trial_finished(trial(2, width=32))
    assert warnings == []
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "3"
    assert git(repo, "rev-parse", "trial-0001").strip() not in (first, "")
    assert git(repo, "rev-parse", f"{first}~0").strip() == first  # the old commit is still in the history
    assert git(repo, "tag").split() == ["trial-0001", "trial-0002"]


def test_a_reused_trial_is_committed_with_a_note(tmp_path):
    repo = start(tmp_path)
    observer.trial_finished(trial(5, reused_from=3))
    assert "Result reused from trial id 3" in git(repo, "log", "-1", "--format=%B")


def test_git_missing_logs_one_warning_and_records_nothing(tmp_path, monkeypatch, warnings):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    start(tmp_path)
    observer.trial_finished(trial(1))
    start(tmp_path / "second")
    observer.trial_finished(trial(2))
    assert len(warnings) == 1 and "no `git` executable" in warnings[0]
    assert not (tmp_path / "code-history").exists()


def test_errors_are_logged_never_raised(tmp_path, warnings):
    (tmp_path / "code-history").write_text("a file where the repository should be")
    start(tmp_path)
    observer.trial_finished(trial(1))
    assert len(warnings) == 1 and "cannot open the code history" in warnings[0]

    warnings.clear()
    repo = start(tmp_path / "ok")
    observer.trial_finished(trial(1))
    (repo / ".git" / "index.lock").write_text("")  # another process holds the repository
    observer.trial_finished(trial(2))
    (repo / ".git" / "index.lock").unlink()
    observer.trial_finished(trial(3))
    assert len(warnings) == 1 and "trial 2 not committed" in warnings[0]
    assert git(repo, "tag").split() == ["trial-0001", "trial-0003"]


def test_git_environment_of_the_caller_is_ignored(tmp_path, monkeypatch):
    outer = tmp_path / "outer"
    outer.mkdir()
    git(outer, "init", "-q")
    monkeypatch.setenv("GIT_DIR", str(outer / ".git"))  # as inside another repository's hook
    monkeypatch.setenv("GIT_AUTHOR_NAME", "someone else")
    repo = start(tmp_path / "run")
    observer.trial_finished(trial(1))
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_AUTHOR_NAME")
    assert git(repo, "log", "-1", "--format=%an") == "Neuromosaic\n"
    assert git(outer, "tag") == ""


def test_metric_summary_puts_the_search_metric_first():
    t = trial(1, width=10)
    assert metric_summary(t, "val_accuracy") == "val_accuracy=0.6 params=1000"
    assert metric_summary(t, "absent") == "params=1000 val_accuracy=0.6"


def test_commits_are_fast(tmp_path):
    history = CodeHistory()
    history.start(tmp_path, "val_accuracy")
    started = time.perf_counter()
    for number in range(1, 21):
        assert history.record(trial(number, width=number))
    per_commit = (time.perf_counter() - started) / 20
    print(f"\ngit observer: {per_commit * 1000:.1f} ms per commit")
    assert per_commit < float(os.environ.get("NEUROMOSAIC_GIT_COMMIT_LIMIT_S", "0.5"))


def test_a_resume_after_checking_out_an_old_trial_commits_on_main(tmp_path, warnings):
    repo = start(tmp_path)
    observer.trial_finished(trial(1, width=8))
    observer.trial_finished(trial(2, width=16))
    git(repo, "checkout", "-q", "trial-0001")
    assert (repo / "model.py").read_text() == code(8)
    start(tmp_path)
    observer.trial_finished(trial(3, width=24))
    assert warnings == []
    assert git(repo, "rev-parse", "main") == git(repo, "rev-parse", "trial-0003")
    assert git(repo, "rev-list", "--count", "main").strip() == "3"


def test_with_encryption_at_rest_the_code_is_committed_encrypted_and_the_record_in_clear(tmp_path, monkeypatch, warnings):
    pytest.importorskip("cryptography")
    from neuromosaic_core.encryption import Keyring, bytes_fingerprint, generate_key, parse_key

    key = generate_key()
    monkeypatch.setenv("NEUROMOSAIC_ENCRYPTION_KEY", key)
    run_dir = tmp_path / "run"
    observer.experiment_started(Experiment("exp", "digits"), {**CONFIG, "encryption": {"enabled": True, "key_file": ""}}, run_dir)
    observer.trial_finished(trial(1, width=8))
    observer.trial_finished(trial(2, width=16))
    repo = run_dir / "code-history"
    assert warnings == []
    keys = Keyring(parse_key(key, "k"))
    for name in ("trial-0001.py", "model.py"):
        shown = subprocess.run(["git", "-C", str(repo), "show", f"trial-0001:{name}"], capture_output=True, check=True).stdout
        assert b"class Net" not in shown and bytes_fingerprint(shown) == keys.primary
        assert keys.decrypt_bytes(shown, name).decode() == code(8)
    record = json.loads(git(repo, "show", "trial-0002:trial-0002.json"))
    assert record["metrics"]["params"] == 1600.0  # metrics stay in clear
    assert git(repo, "log", "-1", "--format=%s", "trial-0002").startswith("trial 0002: completed val_accuracy=")


def test_with_encryption_on_and_no_key_nothing_is_committed_in_clear(tmp_path, monkeypatch, warnings):
    pytest.importorskip("cryptography")
    monkeypatch.delenv("NEUROMOSAIC_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("NEUROMOSAIC_ENCRYPTION_KEY_FILE", raising=False)
    run_dir = tmp_path / "run"
    observer.experiment_started(Experiment("exp", "digits"), {**CONFIG, "encryption": {"enabled": True, "key_file": ""}}, run_dir)
    observer.trial_finished(trial(1))
    assert any("no key is given" in w for w in warnings)
    assert not (run_dir / "code-history" / "trial-0001.py").exists()
