"""The code history: a git repository of generated code, one commit and one tag per trial.

Uses the ``git`` command line through :mod:`subprocess` (no Python git library: the plugin stays
dependency-free). Every git call runs with its own identity and signing switched off
(``-c user.name=... -c commit.gpgsign=false``), never relying on the user's global git config, and
with the ``GIT_*`` variables of the calling environment removed, so a search started from inside
another repository's hook cannot write into that repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

REPO_DIR = "code-history"
CURRENT = "model.py"
IDENTITY = {"user.name": "Neuromosaic", "user.email": "neuromosaic@localhost"}
SETTINGS = {**IDENTITY, "commit.gpgsign": "false", "tag.gpgsign": "false", "core.autocrlf": "false"}
TIMEOUT_S = 30.0


class GitError(RuntimeError):
    """A git command exited non-zero or timed out."""


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    return env


def metric_summary(trial: Any, metric: str | None, limit: int = 4) -> str:
    """``val_accuracy=0.9611 test_accuracy=0.95 params=12345``: the search metric first."""
    result = trial.result
    if result is None:
        return ""
    if result.error is not None:
        first = (result.error.message or "").strip().splitlines()
        return f"({result.error.error_class.value}) {first[0][:100] if first else ''}".rstrip()
    names = [metric] if metric in result.metrics else []
    names += [k for k in result.metrics if k != metric]
    return " ".join(f"{k}={result.metrics[k]:.4g}" for k in names[:limit])


def trial_record(trial: Any) -> dict[str, Any]:
    """The small JSON stored next to the code: number, status, spec hash, metrics or error."""
    result = trial.result
    record: dict[str, Any] = {
        "experiment": trial.experiment,
        "number": trial.number,
        "status": getattr(trial.status, "value", str(trial.status)),
        "spec_hash": trial.spec_hash,
        "architecture": trial.spec.describe() if trial.spec is not None else None,
        "reused_from": trial.reused_from,
    }
    if result is not None and result.error is not None:
        record["error"] = {"class": result.error.error_class.value, "message": result.error.message}
    elif result is not None:
        record["metrics"] = dict(result.metrics)
    return record


class CodeHistory:
    """One run directory's code history. ``start`` opens (or creates) it; ``record`` commits a trial.

    Not an observer itself: the hook implementations in :mod:`neuromosaic_observer_git` call it and
    catch everything it raises.
    """

    def __init__(self, git: str | None = None, keys: Any = None) -> None:
        self.git = git or shutil.which("git")
        #: A :class:`neuromosaic_core.encryption.Keyring` when code is committed encrypted.
        self.keys = keys
        self.repo: Path | None = None
        self.metric: str | None = None
        self.commit_seconds: list[float] = []
        self._lock = threading.Lock()

    def _run(self, *args: str) -> str:
        assert self.git is not None and self.repo is not None
        command = [self.git, "-C", str(self.repo)]
        for key, value in SETTINGS.items():
            command += ["-c", f"{key}={value}"]
        try:
            proc = subprocess.run([*command, *args], capture_output=True, text=True, env=_environment(), timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise GitError(f"git {args[0]} timed out after {TIMEOUT_S:.0f} s") from exc
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            raise GitError(f"git {args[0]} exited {proc.returncode}: {lines[0] if lines else ''}")
        return proc.stdout

    def start(self, run_dir: Path, metric: str | None = None) -> Path:
        """Create ``<run_dir>/code-history`` as a git repository, or reuse it (a resumed search)."""
        if self.git is None:
            raise FileNotFoundError("git")
        self.repo, self.metric = None, metric
        repo = Path(run_dir).resolve() / REPO_DIR
        repo.mkdir(parents=True, exist_ok=True)
        self.repo = repo
        if not (repo / ".git").is_dir():
            self._run("init", "--quiet", "--initial-branch=main")
            for key, value in SETTINGS.items():  # for whoever commits there by hand later
                self._run("config", key, value)
        # A search killed during a commit leaves the index locked; this search owns the repository.
        (repo / ".git" / "index.lock").unlink(missing_ok=True)
        if self._has_main():
            # Someone checked out an older trial: commit on main, not on a detached HEAD (fails,
            # and so records nothing, if they left edits that the checkout would overwrite).
            self._run("checkout", "--quiet", "main")
        return repo

    def _has_main(self) -> bool:
        try:
            self._run("rev-parse", "--verify", "--quiet", "refs/heads/main")
        except GitError:
            return False
        return True

    def record(self, trial: Any) -> bool:
        """Commit the trial's code and record as ``trial-NNNN``; False when it has no code.

        The tree keeps every trial's ``trial-NNNN.py`` and ``trial-NNNN.json``, and ``model.py``
        holds the code of the trial just committed, so ``git diff trial-0001 trial-0002 -- model.py``
        shows how two architectures differ. A trial re-run in place gets a new commit and the tag
        moves to it.
        """
        if self.repo is None or not trial.code:
            return False
        started = time.perf_counter()
        stem = f"trial-{trial.number:04d}"
        record = trial_record(trial)
        with self._lock:
            code = trial.code.encode("utf-8")
            if self.keys is not None:
                code = self.keys.encrypt_bytes(code)
            (self.repo / f"{stem}.py").write_bytes(code)
            (self.repo / CURRENT).write_bytes(code)
            (self.repo / f"{stem}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            message = f"trial {trial.number:04d}: {record['status']} {metric_summary(trial, self.metric)}".rstrip()
            if trial.reused_from is not None:
                message += f"\n\nResult reused from trial id {trial.reused_from} (same architecture)."
            self._run("add", "--", f"{stem}.py", f"{stem}.json", CURRENT)
            self._run("commit", "--quiet", "--no-verify", "--allow-empty", "-m", message)
            self._run("tag", "--force", stem)
        self.commit_seconds.append(time.perf_counter() - started)
        return True
