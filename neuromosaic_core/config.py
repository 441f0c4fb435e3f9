"""Configuration: plugin config nodes, environment overrides and the pre-flight check.

- Every registered component's settings class becomes a Hydra config node in its kind's group
  (``strategy/random``, ``runner/local``...), stored in Hydra's ConfigStore from the plugin
  registry: installing a plugin makes its option selectable with no edit to ``conf/``, and a
  disabled plugin's options disappear.
- Precedence: command line > environment variables > config files > defaults. The documented
  variables in :data:`ENV_OVERRIDES` are turned into overrides placed before the user's own.
- Before Hydra starts a job, the command line is composed and checked here, so an unknown
  component, an unknown key or a wrongly typed value exits with one line naming the key, the bad
  value and the valid choices — before any work or output directory exists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import attrs

from neuromosaic_core.errors import ConfigError, NeuromosaicError, StorageError, UnknownComponentError
from neuromosaic_core.model import converter
from neuromosaic_core.plugins import Component, PluginSystem
from neuromosaic_core.settings import CoreSettings, structure_settings

CONFIG_MODULE = "neuromosaic_core.conf"
CONFIG_NAME = "config"
#: Config groups filled by plugins. Visualizers are different: ``visualizers`` is a list of names
#: (several may run), and each one's settings live under ``visualizer.<name>``.
GROUPS = ("strategy", "encoder", "codegen", "runner", "storage", "task")
#: Optional groups: none selected by default (``meta: null`` in conf/config.yaml); selecting one
#: (``meta=surrogate``) adds its node.
OPTIONAL_GROUPS = ("meta", "scheduler")

#: Documented environment variables and the setting each one sets.
ENV_OVERRIDES = {
    "NEUROMOSAIC_EXPERIMENT_NAME": "experiment.name",
    "NEUROMOSAIC_SEARCH_TRIALS": "search.trials",
    "NEUROMOSAIC_RUNNER_WORKERS": "runner.workers",
    "NEUROMOSAIC_STORAGE_URL": "storage.url",
    "NEUROMOSAIC_LOG_JSON": "log.json",
    "NEUROMOSAIC_DEBUG": "debug",
}

#: Hydra flags that take a value (``--cfg job``), so the value is not mistaken for an override.
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path", "-cp",
                     "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}
_NO_PREFLIGHT = {"--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc"}


def register_config_nodes(system: PluginSystem) -> None:
    """Store one config node per registered component in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group in GROUPS + OPTIONAL_GROUPS:
        for name in system.names(group):
            component = system.get(group, name)
            settings = component.default_settings()
            node = {"name": name, **(converter.unstructure(settings) if settings is not None else {})}
            store.store(group=group, name=name, node=node, provider=component.plugin)
    # One node with every installed visualizer's settings, selected by `visualizer: installed` in
    # conf/config.yaml, so `visualizer.matplotlib.dpi=200` works without editing conf/.
    visualizer_nodes = {}
    for name in system.names("visualizer"):
        settings = system.get("visualizer", name).default_settings()
        visualizer_nodes[name] = converter.unstructure(settings) if settings is not None else {}
    store.store(group="visualizer", name="installed", node=visualizer_nodes)
    # Likewise the settings of every installed alert channel, merged into `alerts` (the core's
    # alert settings come from conf/config.yaml): `alerts.webhook.url=...`.
    from neuromosaic_core.alerts import channel_nodes

    store.store(group="alerts", name="installed", node=channel_nodes(system))
    # And of every installed tracker, merged into `tracker`: `tracker.mlflow.tracking_uri=...`.
    from neuromosaic_core.trackers import tracker_nodes

    store.store(group="tracker", name="installed", node=tracker_nodes(system))
    _register_task_tag(system)


def _register_task_tag(system: PluginSystem) -> None:
    """``${neuromosaic.task_tag:${task}}`` (the default ``experiment.name`` starts with it): the
    task's name, followed by what its registration metadata ``experiment_tag`` (a callable taking
    the task's config node) says tells its data apart, so a search on other data of one task (two
    files) is another experiment, with a run directory of its own, rather than the first one
    resumed."""
    from omegaconf import OmegaConf

    def task_tag(node: Any) -> str:
        name = str(node.get("name", "")) if hasattr(node, "get") else str(node)
        try:
            component = system.get("task", name)
        except NeuromosaicError:
            return name
        tag = component.metadata.get("experiment_tag")
        suffix = tag(node) if callable(tag) else ""
        return f"{name}-{suffix}" if suffix else name

    OmegaConf.register_new_resolver("neuromosaic.task_tag", task_tag, replace=True)


def with_env_overrides(args: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """Add overrides from the documented environment variables for keys the command line does not
    set, so the command line wins over the environment, which wins over the config files."""
    environ = os.environ if environ is None else environ
    given = {a.split("=", 1)[0].lstrip("+~") for a in args if "=" in a and not a.startswith("-")}
    extra = [f"{key}={environ[var]}" for var, key in ENV_OVERRIDES.items() if var in environ and key not in given]
    # Hydra takes its overrides as one run of positional arguments: join the user's run, if any.
    first = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    return args[:first] + extra + args[first:]


def split_args(args: list[str]) -> tuple[list[str], bool]:
    """The overrides among Hydra's arguments, and whether a pre-flight check makes sense."""
    overrides, check = [], True
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        if arg in _NO_PREFLIGHT:
            check = False
        if arg.startswith("-"):
            skip_next = arg in _FLAGS_WITH_VALUE
            continue
        overrides.append(arg)
    return overrides, check


@attrs.frozen
class ResolvedConfig:
    """The composed configuration, checked: core settings and one (component, settings) per group."""

    core: CoreSettings
    components: dict[str, tuple[Component, Any]]
    visualizers: list[tuple[Component, Any]]
    raw: dict[str, Any]
    #: The selected meta-learner and its settings, or None (the default: no surrogate).
    meta: tuple[Component, Any] | None = None
    #: ``alerts.*``, checked (:class:`neuromosaic_core.alerts.AlertConfig`); None for a config without the node.
    alerts: Any = None
    #: The selected trial scheduler and its settings, or None (the default: every trial trains to its end).
    scheduler: tuple[Component, Any] | None = None
    #: ``trackers`` and ``tracker.*``, checked (:class:`neuromosaic_core.trackers.TrackerConfig`).
    trackers: Any = None

    def settings(self, kind: str) -> Any:
        return self.components[kind][1]

    def component(self, kind: str) -> Component:
        return self.components[kind][0]


def resolve(cfg: Any, system: PluginSystem) -> ResolvedConfig:
    """Check a composed config (OmegaConf or dict) against the registry and the settings classes."""
    from omegaconf import OmegaConf

    try:
        raw = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
    except Exception as exc:
        raise ConfigError(f"cannot resolve the configuration: {exc}") from None
    assert isinstance(raw, dict)
    raw.pop("hydra", None)
    components: dict[str, tuple[Component, Any]] = {}
    for group in GROUPS:
        node = dict(raw.get(group) or {})
        name = node.pop("name", None)
        if name is None:
            raise ConfigError(f"no {group} selected; choose one of: {', '.join(system.names(group)) or 'none installed'}")
        component = system.get(group, str(name))
        settings = structure_settings(node, component.settings, group) if component.settings else None
        components[group] = (component, settings)
    meta = None
    meta_node = dict(raw.get("meta") or {})
    if meta_node:
        component = system.get("meta", str(meta_node.pop("name", None)))
        meta = (component, structure_settings(meta_node, component.settings, "meta") if component.settings else None)
    scheduler = None
    scheduler_node = dict(raw.get("scheduler") or {})
    if scheduler_node:
        component = system.get("scheduler", str(scheduler_node.pop("name", None)))
        scheduler = (component, structure_settings(scheduler_node, component.settings, "scheduler") if component.settings else None)
    skip = {*GROUPS, *OPTIONAL_GROUPS, "visualizer", "alerts", "trackers", "tracker"}
    core = structure_settings({k: v for k, v in raw.items() if k not in skip}, CoreSettings, "")
    core = _with_task_objective(core, *components["task"], raw)
    if core.search.prescreen > 1 and meta is None:
        choices = ", ".join(system.names("meta")) or "none installed"
        raise ConfigError(f"search.prescreen={core.search.prescreen} needs a meta-learner to rank the candidates: "
                          f"add meta=<name> (installed: {choices})")
    visualizers = []
    visualizer_nodes = raw.get("visualizer") or {}
    for name in core.visualizers:
        component = system.get("visualizer", name)
        node = visualizer_nodes.get(name, {})
        settings = structure_settings(node, component.settings, f"visualizer.{name}") if component.settings else None
        visualizers.append((component, settings))
    storage_component, storage_settings = components["storage"]
    schemes = storage_component.metadata.get("url_schemes")
    url = getattr(storage_settings, "url", None)
    if schemes and url is not None:
        scheme = urlparse(url).scheme.split("+")[0]
        if scheme not in schemes:
            raise ConfigError(f"storage.url={url!r}: storage {storage_component.name!r} serves {', '.join(schemes)} URLs")
    from neuromosaic_core.alerts import redact_secrets, resolve_alerts

    alerts = resolve_alerts(raw.get("alerts"), system)
    if "alerts" in raw:  # the stored config keeps no webhook token
        raw["alerts"] = redact_secrets(raw["alerts"], system)
    from neuromosaic_core import trackers as tracking

    trackers = tracking.resolve_trackers(raw.get("trackers"), raw.get("tracker"), system)
    if "tracker" in raw:
        raw["tracker"] = tracking.redact_secrets(raw["tracker"], system)
    return ResolvedConfig(core, components, visualizers, raw, meta, alerts, scheduler, trackers)


def task_objective(component: Component, settings: Any) -> tuple[str, str]:
    """The metric a task is searched by and its direction, without building the task: the
    registration metadata ``objective`` (a ``(metric, direction)`` pair, or a callable taking the
    task's settings and returning one, for a task whose kind depends on its settings or data),
    else ``("val_accuracy", "maximize")``."""
    objective = component.metadata.get("objective")
    if callable(objective):
        objective = objective(settings)
    if objective is None:
        return "val_accuracy", "maximize"
    metric, direction = objective
    return str(metric), str(direction)


def _with_task_objective(core: CoreSettings, component: Component, settings: Any, raw: dict[str, Any]) -> CoreSettings:
    """``search.metric`` / ``search.direction`` left unset (null) become the task's, and are
    written back into ``raw`` too (the config stored with the experiment, which the report, the
    API and ``neuromosaic-results`` read)."""
    search = core.search
    if search.metric is not None and search.direction is not None:
        return core
    metric, direction = search.metric, search.direction
    task_metric, task_direction = task_objective(component, settings) if metric is None or direction is None else (None, None)
    if metric is None:
        metric = task_metric
    if direction is None:
        if metric == task_metric:
            direction = task_direction
        else:
            from neuromosaic_core.analysis import is_maximized

            direction = "maximize" if is_maximized(str(metric)) else "minimize"
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"task {component.name!r} declares direction {direction!r}; expected maximize or minimize")
    node = raw.setdefault("search", {})
    if isinstance(node, dict):
        node["metric"], node["direction"] = metric, direction
    return attrs.evolve(core, search=attrs.evolve(search, metric=metric, direction=direction))


# -- pre-flight ----------------------------------------------------------------------------

_MISSING = re.compile(r"Could not find '([^'/]+)/([^']+)'")
_NOT_IN_STRUCT = re.compile(r"Could not override '([^']+)'")


def _compose(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        return compose(config_name=CONFIG_NAME, overrides=overrides)


def _visualizer_group_error(name: str, system: PluginSystem) -> ConfigError:
    """``visualizer=<name>``: the group holds only the settings node of every installed visualizer
    (``installed``); the visualizers that run are the list ``visualizers``."""
    if name in system.names("visualizer"):
        return ConfigError(f"visualizer={name!r}: choose the visualizers that run with visualizers=[{name}] "
                           f"(a list); visualizer.{name}.<key> sets its settings")
    return UnknownComponentError("visualizer", name, system.names("visualizer"))


def _hydra_error(exc: Exception, system: PluginSystem, base: Any) -> ConfigError:
    text = str(exc)
    missing = _MISSING.search(text)
    if missing and missing.group(1) in GROUPS + OPTIONAL_GROUPS:
        group, name = missing.groups()
        return UnknownComponentError(group, name, system.names(group))
    if missing and missing.group(1) == "visualizer":
        return _visualizer_group_error(missing.group(2), system)
    bad_key = _NOT_IN_STRUCT.search(text)
    if bad_key:
        key = bad_key.group(1)
        parent_path, _, leaf = key.rpartition(".")
        parent = base
        for part in parent_path.split(".") if parent_path else []:
            parent = parent.get(part) if parent is not None and hasattr(parent, "get") else None
        group = key.split(".")[0]
        if group in OPTIONAL_GROUPS and parent is None:
            return ConfigError(f"unknown key {key!r}: no {group} is selected; choose one first "
                               f"({group}=<name>, installed: {', '.join(system.names(group)) or 'none'})")
        valid = ", ".join(sorted(parent.keys())) if parent is not None and hasattr(parent, "keys") else "none"
        return ConfigError(f"unknown key {key!r} (valid keys under {parent_path or 'the top level'!r}: {valid})")
    return ConfigError(text.strip().splitlines()[0])


def _expand_sweeps(overrides: list[str]) -> list[list[str]]:
    """One override list per sweep value (others at their first value), enough to check each value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    firsts, choices = [], []
    for o in parsed:
        if o.is_sweep_override():
            values = [str(v) for v in o.sweep_string_iterator()]
            firsts.append(f"{o.get_key_element()}={values[0]}")
            choices.append((len(firsts) - 1, o.get_key_element(), values[1:]))
        else:
            firsts.append(o.input_line)
    runs = [firsts]
    for index, key, rest in choices:
        for value in rest:
            variant = list(firsts)
            variant[index] = f"{key}={value}"
            runs.append(variant)
    return runs


def check_storage(resolved: ResolvedConfig) -> None:
    """Ask the selected storage backend whether it can open its database (the registration
    metadata ``check``, called with the storage settings), creating nothing: a missing folder, an
    unreachable server or a file that is not a database stops the run before its run directory
    exists. Raises :class:`~neuromosaic_core.errors.StorageError`."""
    component, settings = resolved.components["storage"]
    check = component.metadata.get("check")
    if check is None:
        return
    try:
        check(settings)
    except NeuromosaicError:
        raise
    except Exception as exc:  # a backend's bug should still read as one line naming the storage
        url = getattr(settings, "url", "")
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StorageError(f"cannot check storage {component.name!r} ({url}): {type(exc).__name__}: {first}") from None


def check_task(resolved: ResolvedConfig) -> None:
    """Ask the selected task whether its data can be used (the registration metadata ``check``,
    called with the task settings): a task on the user's files reads and checks them here, so a
    missing label column or an unreadable image stops the run before its run directory exists.
    Raises a :class:`~neuromosaic_core.errors.NeuromosaicError` (one line)."""
    component, settings = resolved.components["task"]
    check = component.metadata.get("check")
    if check is not None:
        check(settings)


def check_encryption(resolved: ResolvedConfig) -> None:
    """With ``encryption.enabled``: a key must be given, readable, and not kept in the database's
    own folder (raises :class:`~neuromosaic_core.encryption.EncryptionKeyError`, one line)."""
    settings = resolved.core.encryption
    if not settings.enabled:
        return
    from neuromosaic_core.encryption import EncryptionKeyError, check_key_location, key_from_environment
    from neuromosaic_core.results import sqlite_path

    if key_from_environment(settings.key_file) is None:
        raise EncryptionKeyError("encryption.enabled is true but no key is given; set encryption.key_file (or "
                                 "$NEUROMOSAIC_ENCRYPTION_KEY / $NEUROMOSAIC_ENCRYPTION_KEY_FILE); "
                                 "`neuromosaic-results keygen FILE` makes one")
    database = sqlite_path(str(getattr(resolved.components["storage"][1], "url", "") or ""))
    check_key_location(os.environ.get("NEUROMOSAIC_ENCRYPTION_KEY_FILE") or settings.key_file,
                       [database.parent] if database is not None else [])


def preflight(overrides: list[str], system: PluginSystem, storage: bool = False) -> ResolvedConfig:
    """Compose and check the configuration the command line asks for; raise ConfigError.

    ``storage``: also check that each run's database can be opened (:func:`check_storage`; it may
    connect to a database server), for a command about to run rather than print its config."""
    from hydra.errors import HydraException

    try:
        runs = _expand_sweeps(overrides)
    except HydraException as exc:
        raise ConfigError(str(exc).strip().splitlines()[0]) from None
    resolved = None
    for run in runs:
        for arg in run:
            key, _, value = arg.partition("=")
            if key in GROUPS + OPTIONAL_GROUPS:
                system.get(key, value)  # unknown component: UnknownComponentError with the choices
            elif key == "visualizer" and value not in ("installed", "null"):
                raise _visualizer_group_error(value, system)
        try:
            cfg = _compose(run)
        except HydraException as exc:
            # Only now compose the groups alone: they tell which keys an unknown key could have been.
            groups_only = [a for a in run if a.partition("=")[0] in GROUPS + OPTIONAL_GROUPS]
            try:
                base = _compose(groups_only)
            except HydraException as base_exc:
                raise _hydra_error(base_exc, system, None) from None
            raise _hydra_error(exc, system, base) from None
        checked = resolve(cfg, system)
        if storage:
            check_storage(checked)
            check_encryption(checked)
            check_task(checked)
        resolved = resolved or checked
    assert resolved is not None
    return resolved
