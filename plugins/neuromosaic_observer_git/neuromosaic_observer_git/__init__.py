"""Neuromosaic plugin: the ``git`` observer, a git repository of every trial's generated code.

On ``experiment_started`` it opens ``<run_dir>/code-history`` (``git init`` the first time, reused
on resume); on ``trial_finished`` it commits the trial's code as ``trial-NNNN.py`` (plus
``trial-NNNN.json``) and tags the commit ``trial-NNNN``. It never breaks a search: every error is
logged (loguru) and swallowed, and without a ``git`` executable it logs one warning and records
nothing.

With encryption at rest (``encryption.enabled=true``, docs/security.md) the ``.py`` files are
committed encrypted with the operator's key; ``trial-NNNN.json`` (status, metrics, architecture)
stays in clear. A missing or bad key stops the search before this observer runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loguru import logger

from neuromosaic_core import hookimpl
from neuromosaic_observer_git.history import CodeHistory

__version__ = "0.2.0"

_history: CodeHistory | None = None
_warned_missing = False


def _keys(config: Any) -> Any:
    """The keys of encryption at rest when the search has it on, else None."""
    try:
        section = config["encryption"]
        enabled, key_file = bool(section["enabled"]), str(section.get("key_file") or "")
    except (KeyError, TypeError, AttributeError):
        return None
    if not enabled:
        return None
    from neuromosaic_core.encryption import Keyring

    return Keyring.from_environment(key_file)


def _metric(config: Any) -> str | None:
    try:
        return str(config["search"]["metric"])
    except (KeyError, TypeError):
        return None


@hookimpl
def experiment_started(experiment: Any, config: Any, run_dir: Any) -> None:
    global _history, _warned_missing
    _history = None
    try:
        history = CodeHistory(keys=_keys(config))
        if history.git is None:
            if not _warned_missing:
                logger.warning("git observer: no `git` executable on PATH; trial code is not versioned")
                _warned_missing = True
            return
        repo = history.start(Path(run_dir), _metric(config))
        _history = history
        logger.debug(f"git observer: recording {experiment.name} in {repo}")
    except Exception as exc:
        logger.warning(f"git observer: cannot open the code history, trial code is not versioned: {type(exc).__name__}: {exc}")


@hookimpl
def trial_finished(trial: Any) -> None:
    history = _history
    if history is None:
        return
    try:
        if history.record(trial):
            logger.debug(f"git observer: committed trial {trial.number} in {history.commit_seconds[-1] * 1000:.1f} ms")
    except Exception as exc:
        logger.warning(f"git observer: trial {getattr(trial, 'number', '?')} not committed: {type(exc).__name__}: {exc}")


@hookimpl
def experiment_finished(experiment: Any, summary: Any) -> None:
    global _history
    history, _history = _history, None
    if history is not None and history.commit_seconds:
        times = history.commit_seconds
        logger.debug(f"git observer: {len(times)} commit(s), {sum(times) / len(times) * 1000:.1f} ms each on average")
