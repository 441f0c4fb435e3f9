"""Searches started through the API: validated in this process, run as ``neuromosaic`` subprocesses.

Creating an experiment takes the command line's settings (``key=value`` overrides) and checks
them exactly as ``neuromosaic`` does before it starts (:func:`neuromosaic_core.config.preflight`:
Hydra composition, the plugin registry, the attrs settings classes), so a bad key or value is
refused with the CLI's one-line message. Starting it runs ``neuromosaic <overrides>`` in its own
process group: the search never runs inside the API process, and a crash of one cannot take the
other down. Stopping sends SIGTERM, which the orchestrator treats like Ctrl-C (running trials
are cut off; starting again resumes them); the process group is killed if it has not exited
after ``stop_grace_seconds``. The orchestrator leaves a cut-off trial's row ``running`` for its
next start to mark; once a stopped search has exited, ``on_stopped(name)`` is called (the app marks
those rows ``interrupted`` then, so the API never shows a stopped search's trials as running).

Before any of that, each setting must pass the server's :class:`~neuromosaic_api.policy.ClientPolicy`
(what a client may set, within which bounds): a write token lets a client run searches with the
server's environment, so settings such as ``runner.python`` or ``codegen.base_url`` are the
operator's. The policy is checked again on the composed configuration (bounds) and again at each
start (the operator may have narrowed it since, and definitions written by older versions were
never checked).

The API adds settings of its own to every search, and refuses them from the client: the
operator's ``--set`` overrides, the results database (``storage.url``, so the search writes where
the API reads) and the run directory (``hydra.run.dir=<runs>/<experiment>``, so files land where
the API serves them). Definitions are kept in ``<runs>/api-experiments.json`` so a restarted
server can start them again. An experiment that is in the database without having been started
by this API (run from the command line, say) is never created, started or resumed here (409).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from neuromosaic_api.files import SAFE_NAME
from neuromosaic_api.policy import ClientPolicy, PolicyError
from neuromosaic_api.settings import SECRET_ENV

_LAUNCH = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"


class SettingsError(Exception):
    """Overrides that ``neuromosaic`` would refuse; ``index`` is the offending item (or None)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class SearchStateError(Exception):
    """A start or stop that does not fit the search's state (409), or an unknown search (404)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def _quote(value: str) -> str:
    """A Hydra override value quoted so any path (spaces, commas, ``=``) stays one string."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SearchManager:
    """The searches this server defined and started (thread-safe: endpoints run in a pool)."""

    def __init__(self, runs: Path, url: str, stop_grace_seconds: float = 30.0,
                 on_stopped: Callable[[str], None] | None = None, policy: ClientPolicy | None = None,
                 stored: Callable[[str], bool] | None = None) -> None:
        """``policy``: what clients may set (default: :class:`ClientPolicy`'s safe default);
        ``stored(name)``: whether the results database has that experiment (never taken over)."""
        self.runs, self.url, self.grace, self.on_stopped = runs.resolve(), url, stop_grace_seconds, on_stopped
        self.policy = policy if policy is not None else ClientPolicy()
        self._stored = stored if stored is not None else (lambda _name: False)
        self._file = self.runs / "api-experiments.json"
        self._lock = threading.Lock()
        self._compose_lock = threading.Lock()  # Hydra's global state allows one composition at a time
        self._system: Any = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping: set[str] = set()
        self._settled: set[str] = set()  # stopped searches whose rows on_stopped has marked
        self._definitions: dict[str, dict[str, Any]] = self._load()

    # -- definitions -------------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self) -> None:
        self.runs.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._definitions, indent=2))
        tmp.replace(self._file)

    def defined(self) -> list[str]:
        with self._lock:
            return list(self._definitions)

    def definition(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._definitions.get(name)
            return dict(found) if found is not None else None

    # -- validation --------------------------------------------------------------------------

    def validate(self, overrides: list[str]) -> str:
        """The experiment name these overrides give; SettingsError naming the setting if the policy
        or ``neuromosaic`` would refuse them."""
        from neuromosaic_core.config import with_env_overrides

        try:
            self.policy.check(overrides)
        except PolicyError as exc:
            raise SettingsError(str(exc), exc.index) from None
        args = with_env_overrides([*overrides, *self.policy.fixed, f"storage.url={_quote(self.url)}"])
        with self._compose_lock:
            resolved = self._preflight(args)
        given = {item.partition("=")[0].strip() for item in overrides}
        try:
            self.policy.check_composed(resolved.raw, given)
        except PolicyError as exc:
            index = next((i for i, item in enumerate(overrides) if item.partition("=")[0].strip() == exc.key), None)
            raise SettingsError(str(exc), index) from None
        name = str(resolved.core.experiment.name)
        if not SAFE_NAME.match(name):
            raise SettingsError(f"experiment.name={name!r}: use letters, digits, '.', '_' and '-' only "
                                "(it names the run directory)")
        return name

    def _preflight(self, args: list[str]) -> Any:
        from neuromosaic_core.config import preflight, register_config_nodes
        from neuromosaic_core.errors import NeuromosaicError
        from neuromosaic_core.plugins import PluginSystem

        if self._system is None:
            system = PluginSystem.load()
            register_config_nodes(system)
            self._system = system
        try:
            return preflight(args, self._system)
        except NeuromosaicError as exc:
            raise SettingsError(str(exc)) from None
        except Exception as exc:  # Hydra and OmegaConf raise their own types for odd input
            logger.warning(f"composition failed on {args!r}: {type(exc).__name__}: {exc}")
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SettingsError(f"cannot compose these settings: {first}") from None

    # -- lifecycle ---------------------------------------------------------------------------

    def create(self, overrides: list[str], who: str) -> str:
        """Validate and record a definition; SettingsError, or SearchStateError if it is running or
        belongs to a search this API did not start."""
        name = self.validate(overrides)
        with self._lock:
            self._refuse_unmanaged(name)
            if self._running(name):
                raise SearchStateError(f"experiment {name!r} is running; stop it before redefining it")
            previous = self._definitions.get(name) or {}
            self._definitions[name] = {"overrides": list(overrides), "created_by": who,
                                       "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            if previous.get("started_at"):  # redefining a search of ours: it stays ours
                self._definitions[name]["started_at"] = previous["started_at"]
            self._save()
        return name

    def _refuse_unmanaged(self, name: str) -> None:
        """409 when ``name`` is in the database but this API never started a search of that name:
        its trials are someone else's (a command-line run), and adding to them is not ours to do."""
        if self._stored(name) and not (self._definitions.get(name) or {}).get("started_at"):
            raise SearchStateError(f"experiment {name!r} is in the results database but was not started through this "
                                   "API (a command-line run, say), so the API will not add to it; choose another "
                                   "experiment.name")

    def _running(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def start(self, name: str, validated: bool = False) -> int:
        """Start the defined search ``name``; its process id. Its settings are checked again unless
        ``validated`` (just created)."""
        with self._lock:
            definition = self._definitions.get(name)
            if definition is None:
                raise SearchStateError(f"experiment {name!r} was not created through the API, so its settings are "
                                       "unknown here; create it first (POST /api/experiments)", 404)
            if self._running(name):
                raise SearchStateError(f"experiment {name!r} is already running")
            self._refuse_unmanaged(name)
            overrides = list(definition["overrides"])
        # Checked again: the operator may have narrowed the policy since, and an older version
        # stored definitions without any policy.
        if not validated and self.validate(overrides) != name:
            raise SettingsError(f"these settings now name another experiment than {name!r}; create it again")
        with self._lock:
            if self._running(name):
                raise SearchStateError(f"experiment {name!r} is already running")
            self._refuse_unmanaged(name)
            definition = self._definitions.get(name)
            if definition is None or definition["overrides"] != overrides:
                raise SearchStateError(f"experiment {name!r} was redefined while starting; start it again")
            definition.setdefault("started_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            self._save()
            run_dir = self.runs / name
            run_dir.mkdir(parents=True, exist_ok=True)
            args = [*overrides, *self.policy.fixed, f"storage.url={_quote(self.url)}", f"hydra.run.dir={_quote(str(run_dir))}"]
            env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}  # searches never see the signing key
            with (run_dir / "api-search.log").open("ab") as log:
                proc = subprocess.Popen([sys.executable, "-c", _LAUNCH, *args], stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            self._procs[name] = proc
            self._stopping.discard(name)
            self._settled.discard(name)
            logger.info(f"started search {name} (pid {proc.pid})")
            return proc.pid

    def stop(self, name: str) -> None:
        """SIGTERM to the search (it stores its interrupted trials), SIGKILL to its group after the grace."""
        with self._lock:
            proc = self._procs.get(name)
            if proc is None or proc.poll() is not None:
                raise SearchStateError(f"experiment {name!r} is not running")
            self._stopping.add(name)
            proc.send_signal(signal.SIGTERM)
        threading.Thread(target=self._reap, args=(name, proc), daemon=True).start()

    def _reap(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """Wait for a stopped search (killing its group after the grace), then report it stopped."""
        try:
            proc.wait(timeout=self.grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        if self.on_stopped is not None:
            try:
                self.on_stopped(name)
            except Exception as exc:  # a database hiccup must not kill the reaper thread silently
                logger.warning(f"after stopping {name}: {type(exc).__name__}: {exc}")
        with self._lock:
            self._settled.add(name)

    def state(self, name: str) -> dict[str, Any]:
        """``state``: ``running``, ``stopping``, ``stopped``, ``finished``, ``failed``, ``created`` (defined,
        never started here) or ``unmanaged`` (in the database only); ``exit_code`` once it ended."""
        with self._lock:
            proc = self._procs.get(name)
            if proc is None:
                return {"state": "created" if name in self._definitions else "unmanaged", "exit_code": None, "pid": None}
            code = proc.poll()
            if code is None:
                state = "stopping" if name in self._stopping else "running"
            elif name in self._stopping:
                state = "stopped" if name in self._settled else "stopping"
            else:
                state = "finished" if code == 0 else "failed"
            return {"state": state, "exit_code": code, "pid": proc.pid}

    def shutdown(self) -> None:
        """Stop every running search and wait for each (the server is going away)."""
        with self._lock:
            running = [(n, p) for n, p in self._procs.items() if p.poll() is None]
            for name, proc in running:
                self._stopping.add(name)
                proc.send_signal(signal.SIGTERM)
        for name, proc in running:
            self._reap(name, proc)
