"""The plugin manager: entry points, allow/deny lists, the component registry and the listing.

Plugins are loaded from the entry-point group ``neuromosaic``. Two environment variables control
which are loaded, as in pytest and llm:

- ``NEUROMOSAIC_LOAD_PLUGINS``: comma-separated allow list of entry-point names; when set but
  empty, no plugin is loaded.
- ``NEUROMOSAIC_DISABLE_PLUGINS``: comma-separated names never loaded.

A disabled plugin's components (and therefore its config options) do not exist.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

import attrs
import pluggy

from neuromosaic_core import hookspecs
from neuromosaic_core.errors import DuplicateComponentError, UnknownComponentError

ENTRY_POINT_GROUP = "neuromosaic"
KINDS = tuple(hookspecs.REGISTRATION_HOOKS)


@attrs.frozen
class Component:
    """A registered component: what ``kind=name`` on the command line selects."""

    kind: str
    name: str
    plugin: str
    factory: Callable[..., Any]
    settings: type | None = None
    description: str = ""
    metadata: dict[str, Any] = attrs.field(factory=dict)

    def default_settings(self) -> Any:
        return self.settings() if self.settings is not None else None


@attrs.define
class PluginInfo:
    """One plugin as ``neuromosaic-plugins`` lists it."""

    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = attrs.field(factory=list)
    components: dict[str, list[str]] = attrs.field(factory=dict)
    error: str | None = None


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [p.strip() for p in raw.split(",") if p.strip()]


class PluginSystem:
    """A pluggy manager plus the registry of components collected from it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, extra_plugins: Iterable[tuple[str, object]] = (), entry_points: bool = True) -> PluginSystem:
        """Load entry-point plugins (honouring the allow/deny variables) plus ``extra_plugins``
        given as ``(name, module_or_object)``, then collect their components."""
        system = cls()
        if entry_points:
            system._load_entry_points()
        for name, plugin in extra_plugins:
            system.add_plugin(name, plugin)
        system.collect()
        return system

    def _load_entry_points(self) -> None:
        allow = _env_list("NEUROMOSAIC_LOAD_PLUGINS")
        deny = set(_env_list("NEUROMOSAIC_DISABLE_PLUGINS") or [])
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if (allow is not None and ep.name not in allow) or ep.name in deny or ep.name in self.plugins:
                continue
            dist = ep.dist
            info = PluginInfo(ep.name, dist.name if dist else None, dist.version if dist else None)
            self.plugins[ep.name] = info
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                info.error = f"{type(exc).__name__}: {exc}"
                continue
            self.add_plugin(ep.name, plugin, info)

    def add_plugin(self, name: str, plugin: object, info: PluginInfo | None = None) -> None:
        """Register one plugin and check its hook implementations against the specs."""
        info = info or self.plugins.setdefault(name, PluginInfo(name))
        self.plugins[name] = info
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            info.error = f"{type(exc).__name__}: {exc}"
            return
        info.hooks = sorted(impl.name for impl in self.pm.get_hookcallers(plugin) or [])

    def collect(self) -> None:
        """Call every registration hook, plugin by plugin, so each name is traced to its plugin."""
        from neuromosaic_core.alerts import BUILTIN_CHANNELS

        for name, factory, description in BUILTIN_CHANNELS:  # the core's own: a plugin may not take the name
            self._register(Component("alert_channel", name, "neuromosaic-core", factory, None, description))
        for kind, hook_name in hookspecs.REGISTRATION_HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name

                def register(name: str, factory: Callable[..., Any], settings: type | None = None,
                             description: str = "", _kind: str = kind, _plugin: str = plugin_name,
                             **extra: Any) -> None:
                    self._register(Component(_kind, name, _plugin, factory, settings, description, extra))

                impl.function(register=register)

    def _register(self, component: Component) -> None:
        existing = self.components[component.kind].get(component.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{component.kind} {component.name!r} is registered twice: by plugin {existing.plugin!r} "
                f"and by plugin {component.plugin!r}; uninstall one or disable it with NEUROMOSAIC_DISABLE_PLUGINS"
            )
        self.components[component.kind][component.name] = component
        info = self.plugins.get(component.plugin)
        if info is not None:
            info.components.setdefault(component.kind, []).append(component.name)

    # -- lookup ----------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> Component:
        try:
            return self.components[kind][name]
        except KeyError:
            raise UnknownComponentError(kind, name, self.names(kind)) from None

    def errors(self) -> dict[str, str]:
        return {name: info.error for name, info in self.plugins.items() if info.error}

    def listing(self) -> list[dict[str, Any]]:
        """What ``neuromosaic-plugins --json`` prints."""
        return [attrs.asdict(info) for _, info in sorted(self.plugins.items())]
