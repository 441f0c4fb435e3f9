"""Alerts a person receives: rules on the search's signals, sent once per episode to channels.

Rules (``alerts.*`` settings, :class:`AlertSettings`), each off with its setting at 0 or false:

- ``failure_rate``: at least ``alerts.failure_rate`` of the last ``alerts.failure_window``
  trials that ran failed (status ``failed``: a crash, a timeout, code that could not be
  generated; architectures refused by a constraint did not run and are not counted). Resolved when the rate
  falls to half the threshold or below, so a rate hovering at the threshold does not flap.
- ``stalled``: no trial finished for ``alerts.stall_minutes``; resolved by the next one.
- ``llm_breaker``: an LLM provider's circuit breaker (:mod:`neuromosaic_core.llm`) opened;
  resolved when it closes again.
- ``disk_space``: less than ``alerts.min_free_mb`` free on the filesystem of the run directory
  or of the SQLite database (one episode per filesystem); resolved when space is back.
- ``search_end``: an event, not an episode: the search finished, or stopped (``max_failures``,
  ``exhausted``, interrupted, an error).

Each episode is sent twice, when it fires and when it resolves, never once per trial. When the
search ends, episodes still open are resolved (``details.reason: search ended``) so a receiver
that opens incidents closes them.

Delivery never holds up the search: the rules hand alerts to one daemon thread per channel
through a bounded queue (``alerts.queue_size``; an alert that finds it full is dropped and
logged), so a channel that fails or hangs delays only its own later alerts. At the end the
channels get ``alerts.drain_seconds`` to deliver what is queued, then the process goes on.

Channels come from the hook ``register_alert_channels`` (:mod:`neuromosaic_core.hookspecs`);
the core registers ``log`` (loguru) itself, the ``neuromosaic-alerts-webhook`` plugin a webhook.
"""

from __future__ import annotations

import abc
import datetime
import shutil
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from neuromosaic_core.delivery import QueueWorker, drain
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.hookspecs import hookimpl

FIRED = "fired"
RESOLVED = "resolved"
EVENT = "event"
#: Channel names a plugin may not take: they are settings of ``alerts`` itself.
RESERVED = frozenset({"enabled", "channels", "failure_rate", "failure_window", "stall_minutes", "min_free_mb",
                      "breaker", "search_end", "check_seconds", "queue_size", "drain_seconds"})


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@attrs.frozen
class Alert:
    """One message to a person. ``state``: ``fired`` or ``resolved`` (the two ends of an episode),
    or ``event`` (a one-off: the search ended). ``severity``: ``info``, ``warning`` or
    ``critical``. ``key`` tells episodes of one rule apart (a filesystem, a provider);
    ``episode`` counts them per rule and key. :meth:`to_dict` is what a webhook receives."""

    rule: str
    state: str
    severity: str
    summary: str
    experiment: str
    key: str = ""
    episode: int = 0
    details: dict[str, Any] = attrs.field(factory=dict)
    time: str = attrs.field(factory=_now)
    run_dir: str = ""
    host: str = attrs.field(factory=socket.gethostname)

    @property
    def id(self) -> str:
        """Stable across retries: a receiver can drop a duplicate delivery by it."""
        return "/".join(p for p in (self.experiment, self.rule, self.key, str(self.episode), self.state) if p)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **attrs.asdict(self)}


class AlertChannel(abc.ABC):
    """Where alerts go. A channel's :meth:`send` runs on the channel's own thread, one alert at
    a time; it may block (the search does not wait for it) and raises on failure (the error is
    logged; the alert is not retried by the core, so a channel retries itself where that helps)."""

    @abc.abstractmethod
    def send(self, alert: Alert) -> None:
        """Deliver one alert; raise on failure."""

    def close(self) -> None:
        """Release what the channel holds (called after the last alert)."""


class LogChannel(AlertChannel):
    """Alerts as log lines (loguru), in the run's ``neuromosaic.log`` and on the console: fired
    and stopped at WARNING (ERROR when critical), resolved and finished at INFO."""

    def send(self, alert: Alert) -> None:
        level = "INFO" if alert.severity == "info" or alert.state == RESOLVED else \
            "ERROR" if alert.severity == "critical" else "WARNING"
        label = alert.rule if alert.state == EVENT else f"{alert.rule} {alert.state}"
        logger.bind(experiment=alert.experiment).log(level, f"alert [{label}]: {alert.summary}")


@attrs.frozen
class AlertSettings:
    """``alerts.*``: whether alerts are on, the channels they go to and the rules' thresholds
    (see the module's docstring; 0 or false turns a rule off)."""

    enabled: bool = False
    channels: list[str] = attrs.field(factory=lambda: ["log"])
    failure_rate: float = 0.5
    failure_window: int = 10
    stall_minutes: float = 30.0
    min_free_mb: float = 1024.0
    breaker: bool = True
    search_end: bool = True
    check_seconds: float = 30.0
    queue_size: int = 100
    drain_seconds: float = 10.0

    def __attrs_post_init__(self) -> None:
        from neuromosaic_core.settings import SettingValueError  # a key-naming error: "alerts.failure_rate: ..."

        if not 0 <= self.failure_rate <= 1:
            raise SettingValueError("failure_rate", f"must be between 0 (off) and 1, got {self.failure_rate}")
        for name in ("failure_window", "queue_size"):
            if getattr(self, name) < 1:
                raise SettingValueError(name, f"must be at least 1, got {getattr(self, name)}")
        for name in ("stall_minutes", "min_free_mb", "drain_seconds"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise SettingValueError(name, f"must be 0 (off) or a positive number, got {getattr(self, name)}")
        if not 0 < self.check_seconds < float("inf"):
            raise SettingValueError("check_seconds", f"must be above 0, got {self.check_seconds}")
        if len(set(self.channels)) != len(self.channels):
            raise SettingValueError("channels", f"lists a channel twice: {self.channels}")


@attrs.frozen
class AlertConfig:
    """The checked ``alerts`` node: its settings and the selected channels with theirs."""

    settings: AlertSettings
    channels: list[tuple[Any, Any]] = attrs.field(factory=list)  # (plugins.Component, settings)


def channel_names(system: Any) -> list[str]:
    """The installed alert channels (a name that is one of ``alerts``' own keys cannot be one)."""
    return [name for name in system.names("alert_channel") if name not in RESERVED]


def channel_nodes(system: Any) -> dict[str, dict[str, Any]]:
    """The config node of every installed channel with settings: ``alerts.<channel>.*``."""
    from neuromosaic_core.settings import settings_nodes

    return settings_nodes(system, "alert_channel", channel_names(system))


def resolve_alerts(node: dict[str, Any] | None, system: Any) -> AlertConfig:
    """Check the composed ``alerts`` node: the core's settings, then each installed channel's
    node (``alerts.<channel>.*``). Raises :class:`ConfigError` with one line naming the key."""
    from neuromosaic_core.settings import structure_settings

    node = dict(node or {})
    names = channel_names(system)
    nodes = {name: node.pop(name) for name in names if name in node}
    settings = structure_settings(node, AlertSettings, "alerts")
    unknown = [name for name in settings.channels if name not in names]
    if unknown:
        raise ConfigError(f"alerts.channels: {unknown[0]!r} is not an installed alert channel; valid choices: {', '.join(names)}")
    from neuromosaic_core.settings import structure_settings_nodes

    selected = []
    for component, channel_settings in structure_settings_nodes(system, "alert_channel", names, nodes, "alerts"):
        name = component.name
        if name in settings.channels:
            selected.append((component, channel_settings))
            check = component.metadata.get("check")
            if settings.enabled and check is not None:
                try:
                    check(channel_settings)
                except (ValueError, TypeError) as exc:
                    raise ConfigError(f"alerts.{name}.{exc}") from None
        elif settings.enabled and channel_settings != component.default_settings():
            wanted = ",".join([*settings.channels, name])
            raise ConfigError(f"alerts.{name}.* is set but alerts.channels does not list {name}; "
                              f"add it: alerts.channels=[{wanted}]")
    return AlertConfig(settings, selected)


def redact_secrets(node: dict[str, Any] | None, system: Any) -> dict[str, Any] | None:
    """A copy of the ``alerts`` node with each channel's secret settings (registration metadata
    ``secret``: field names, e.g. a webhook URL that embeds a token, or request headers) replaced
    by ``***``: the configuration stored with an experiment and handed to observers must not
    keep them."""
    from neuromosaic_core.settings import redact_secret_settings

    return redact_secret_settings(node, system, "alert_channel", channel_names(system))


def _describe(alert: Alert) -> str:
    return f"{alert.rule} {alert.state}"


def _sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL (relative) or ``sqlite:////path`` (absolute)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class AlertEngine:
    """The rules, as an observer plugin (register it with the plugin manager), plus a monitor
    thread for the rules that need a clock (stalled, disk space).

    ``clock`` (seconds, monotonic) and ``disk_free`` (bytes free for a path) are for tests.
    """

    def __init__(self, settings: AlertSettings, channels: Sequence[tuple[str, AlertChannel]],
                 clock: Callable[[], float] = time.monotonic,
                 disk_free: Callable[[Path], int] = lambda p: shutil.disk_usage(p).free) -> None:
        self.s = settings
        # One thread per channel: a slow channel delays only its own alerts.
        self.workers = [QueueWorker(f"alert channel {name}", channel.send, channel.close, settings.queue_size,
                                    "alerts.queue_size", _describe, f"alerts-{name}") for name, channel in channels]
        self.clock, self.disk_free = clock, disk_free
        self.experiment = ""
        self.run_dir = ""
        self._paths: list[tuple[str, Path]] = []
        self._outcomes: deque[bool] = deque(maxlen=settings.failure_window)
        self._last_error = ""
        self._last_progress = clock()
        self._open: dict[tuple[str, str], Alert] = {}
        self._episodes: dict[tuple[str, str], int] = {}
        self._lock = threading.RLock()
        self._started = self._ended = self._closed = False
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None

    # -- episodes -----------------------------------------------------------------------------

    def _send(self, alert: Alert) -> None:
        for worker in self.workers:
            worker.offer(alert)

    def _fire(self, rule: str, key: str, severity: str, summary: str, details: dict[str, Any]) -> None:
        with self._lock:
            if (rule, key) in self._open or self._ended:
                return
            episode = self._episodes[(rule, key)] = self._episodes.get((rule, key), 0) + 1
            alert = Alert(rule, FIRED, severity, summary, self.experiment, key, episode, details, run_dir=self.run_dir)
            self._open[(rule, key)] = alert
            self._send(alert)

    def _resolve(self, rule: str, key: str, summary: str, details: dict[str, Any]) -> None:
        with self._lock:
            fired = self._open.pop((rule, key), None)
            if fired is None:
                return
            self._send(Alert(rule, RESOLVED, fired.severity, summary, self.experiment, key, fired.episode,
                             {**details, "fired_at": fired.time}, run_dir=self.run_dir))

    @property
    def open_episodes(self) -> list[Alert]:
        with self._lock:
            return list(self._open.values())

    # -- observer hooks -----------------------------------------------------------------------

    @hookimpl
    def experiment_started(self, experiment: Any, config: Any, run_dir: Any) -> None:
        self.experiment, self.run_dir = experiment.name, str(run_dir)
        self._started, self._last_progress = True, self.clock()
        paths = [("run directory", Path(run_dir))]
        url = ((config or {}).get("storage") or {}).get("url") if isinstance(config, dict) else None
        db = _sqlite_path(url) if isinstance(url, str) else None
        if db is not None:
            paths.append(("database", db))
        self._paths = paths
        self.check()
        if (self.s.stall_minutes or self.s.min_free_mb) and self._monitor is None:
            self._monitor = threading.Thread(target=self._watch, name="alerts-monitor", daemon=True)
            self._monitor.start()

    @hookimpl
    def trial_finished(self, trial: Any) -> None:
        now = self.clock()
        stalled_for = now - self._last_progress
        self._last_progress = now
        self._resolve("stalled", "", f"trial {trial.number} finished after {stalled_for / 60:.1f} min without one",
                      {"minutes": round(stalled_for / 60, 1)})
        if not self.s.failure_rate:
            return
        status = getattr(trial.status, "value", trial.status)
        if status not in ("failed", "completed"):
            return  # refused by a constraint: never ran, neither a failure nor a success
        failed = status == "failed"
        if failed and trial.result is not None and trial.result.error is not None:
            error = trial.result.error
            self._last_error = f"trial {trial.number}: {getattr(error.error_class, 'value', error.error_class)}: {error.message}"[:300]
        self._outcomes.append(failed)
        n, failures = len(self._outcomes), sum(self._outcomes)
        rate = failures / n
        details = {"failed": failures, "window": n, "rate": round(rate, 3), "threshold": self.s.failure_rate}
        if n == self.s.failure_window and rate >= self.s.failure_rate:
            self._fire("failure_rate", "", "warning",
                       f"{failures} of the last {n} trials failed (alerts.failure_rate={self.s.failure_rate:g}); "
                       f"last: {self._last_error}", {**details, "last_error": self._last_error})
        elif rate <= self.s.failure_rate / 2:
            self._resolve("failure_rate", "", f"{failures} of the last {n} trials failed: back at or below half the threshold",
                          details)

    @hookimpl
    def experiment_finished(self, experiment: Any, summary: Any) -> None:
        stopped = summary.get("stopped", "completed")
        counts = summary.get("trials", {})
        text = (f"{counts.get('completed', 0)} completed, {counts.get('failed', 0)} failed, "
                f"{counts.get('invalid', 0)} invalid")
        best = summary.get("best") or {}
        metric = summary.get("metric")
        if metric and best.get(metric) is not None:
            text += f"; best {metric}={best[metric]:.4f} (trial {best.get('trial_id')})"
        if stopped == "completed":
            self._end("info", f"search finished: {text}", {"stopped": stopped, "trials": counts})
        else:
            self._end("warning", f"search stopped ({stopped}): {text}", {"stopped": stopped, "trials": counts})

    def _end(self, severity: str, summary: str, details: dict[str, Any]) -> None:
        with self._lock:
            if self._ended:
                return
            for rule, key in list(self._open):
                self._resolve(rule, key, "no longer watched: the search ended", {"reason": "search ended"})
            self._ended = True
            if self.s.search_end:
                self._send(Alert("search_end", EVENT, severity, summary, self.experiment, details=details, run_dir=self.run_dir))

    # -- the clock rules --------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.s.check_seconds):
            try:
                self.check()
            except Exception as exc:  # a rule's bug must not end the monitoring silently
                logger.warning(f"alerts: check failed: {type(exc).__name__}: {exc}")

    def check(self) -> None:
        """Evaluate the stalled and disk-space rules now (the monitor thread calls this every
        ``alerts.check_seconds``)."""
        if not self._started or self._ended:
            return
        idle = self.clock() - self._last_progress
        if self.s.stall_minutes and idle >= self.s.stall_minutes * 60:
            self._fire("stalled", "", "warning",
                       f"no trial finished for {idle / 60:.1f} min (alerts.stall_minutes={self.s.stall_minutes:g})",
                       {"minutes": round(idle / 60, 1), "threshold_minutes": self.s.stall_minutes})
        if self.s.min_free_mb:
            self._check_disk()

    def _check_disk(self) -> None:
        # A database not created yet is on the filesystem of the folder it will be created in.
        by_device: dict[int, list[tuple[str, Path, Path]]] = {}
        for label, path in self._paths:
            existing = _existing(path)
            try:
                device = existing.stat().st_dev
            except OSError:
                continue
            by_device.setdefault(device, []).append((label, path.absolute(), existing))
        threshold = self.s.min_free_mb * 2**20
        for entries in by_device.values():
            key = str(entries[0][1])
            what = " and ".join(f"the {label} ({path})" for label, path, _ in entries)
            try:
                free = self.disk_free(entries[0][2])
            except OSError as exc:
                logger.warning(f"alerts: cannot read free space of {key}: {exc}")
                continue
            details = {"free_mb": round(free / 2**20, 1), "threshold_mb": self.s.min_free_mb,
                       "paths": {label: str(path) for label, path, _ in entries}}
            if free < threshold:
                self._fire("disk_space", key, "critical",
                           f"{free / 2**20:,.0f} MB free on the filesystem of {what} (alerts.min_free_mb={self.s.min_free_mb:.0f})",
                           details)
            else:
                self._resolve("disk_space", key, f"{free / 2**20:,.0f} MB free again on the filesystem of {what}", details)

    # -- LLM circuit breakers --------------------------------------------------------------------

    def watch_breaker(self, breaker: Any, provider: str) -> None:
        """Alert while ``breaker`` (a :class:`pybreaker.CircuitBreaker`) is open."""
        import pybreaker

        engine = self

        class _Listener(pybreaker.CircuitBreakerListener):
            def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
                name = getattr(new_state, "name", str(new_state))
                if name == pybreaker.STATE_OPEN:
                    engine._fire("llm_breaker", provider, "warning",
                                 f"LLM provider {provider}: circuit breaker open after {cb.fail_max} failed calls in a row; "
                                 f"trials use the fallback generator, next try in {cb.reset_timeout:g}s",
                                 {"provider": provider, "fail_max": cb.fail_max, "reset_seconds": cb.reset_timeout})
                elif name == pybreaker.STATE_CLOSED:
                    engine._resolve("llm_breaker", provider, f"LLM provider {provider} answers again: circuit breaker closed",
                                    {"provider": provider})

        breaker.add_listener(_Listener())

    def watch_components(self, components: Any) -> None:
        """Watch the circuit breaker of every LLM generator the search uses: the code generator,
        its fallback and any the strategy holds (the ``llm`` strategy's provider)."""
        seen: set[int] = set()
        strategy = getattr(components, "strategy", None)
        candidates = [getattr(components, "codegen", None), getattr(components, "fallback", None),
                      *(vars(strategy).values() if hasattr(strategy, "__dict__") else ())]
        for candidate in candidates:
            breaker = getattr(candidate, "breaker", None)
            if breaker is None or id(breaker) in seen or not hasattr(breaker, "add_listener"):
                continue
            seen.add(id(breaker))
            chat_model = getattr(candidate, "chat_model", None)
            self.watch_breaker(breaker, getattr(chat_model, "provider", None) or getattr(breaker, "name", None) or "llm")

    # -- the end ------------------------------------------------------------------------------------

    def close(self, reason: str | None = None) -> None:
        """End the search's alerts: a search that started but did not finish is reported as
        stopped (``reason``: ``interrupted``, an error), open episodes are resolved, and the
        channels get ``alerts.drain_seconds`` to deliver what is queued."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._started and not self._ended:
            self._end("warning", f"search stopped ({reason or 'interrupted'})", {"stopped": reason or "interrupted"})
        drain(self.workers, self.s.drain_seconds, "alerts.drain_seconds")


def start_alerts(config: AlertConfig | None, system: Any, components: Any = None) -> AlertEngine | None:
    """Build the channels and the engine of a search and register the engine as an observer
    plugin (``None`` when ``alerts.enabled`` is false). End it with :func:`stop_alerts`."""
    if config is None or not config.settings.enabled:
        return None
    channels = [(component.name, component.factory(settings=settings)) for component, settings in config.channels]
    engine = AlertEngine(config.settings, channels)
    if components is not None and config.settings.breaker:
        engine.watch_components(components)
    system.pm.register(engine, name="neuromosaic-alerts")
    return engine


def stop_alerts(engine: AlertEngine | None, system: Any, error: BaseException | None = None) -> None:
    """Close ``engine`` (see :meth:`AlertEngine.close`) and unregister it; ``error``: what
    ended the search early, if anything."""
    if engine is None:
        return
    reason = None
    if error is not None:
        reason = "interrupted" if isinstance(error, (KeyboardInterrupt, SystemExit)) or type(error).__name__ == "CancelledError" \
            else f"error: {type(error).__name__}: {error}"[:300]
    try:
        engine.close(reason)
    finally:
        if system.pm.is_registered(engine):
            system.pm.unregister(engine)


def _log_channel(settings: Any) -> AlertChannel:
    return LogChannel()


#: Channels the core registers itself (as if by a plugin named ``neuromosaic-core``).
BUILTIN_CHANNELS = (("log", _log_channel, "alerts as log lines (loguru): the console and the run's neuromosaic.log"),)
