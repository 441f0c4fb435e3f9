"""Hook specifications of the ``neuromosaic`` plugin project (pluggy).

A plugin is a module (or object) with functions marked ``@neuromosaic_core.hookimpl``, published
under the entry-point group ``neuromosaic``::

    [project.entry-points.neuromosaic]
    random = "neuromosaic_strategy_random"

**Registration hooks** receive a ``register`` callback; one plugin may call it several times::

    register(name, factory, settings=SettingsClass, description="...", **metadata)

- ``name``: what users type on the command line (``strategy=<name>``); unique per kind.
- ``factory``: a callable building the component (keep heavy imports inside it). Its arguments
  per kind are documented on each hook.
- ``settings``: an attrs class with defaults; its fields become the component's config node
  (``strategy.<field>``) and the composed node is structured into it with cattrs, so wrong keys
  and types fail before any work starts.
- ``metadata``: kind-specific extras (storage: ``url_schemes``; codegen: ``llm=True`` for an LLM
  generator; strategy: ``uses_llm=True`` to be given ``system`` and the selected LLM generator as
  ``provider``).

**Observer hooks** are called on every plugin, in no particular order; their return values are
ignored. They must be quick and must not raise (an exception is logged and swallowed).

Add new hook arguments only at the end; never give a hookimpl argument a default (pluggy does
not pass it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "neuromosaic"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


@hookspec
def register_search_strategies(register: Register) -> None:
    """Register search strategies. Factory: ``factory(space, seed, settings, metric, maximize)``
    returning a :class:`~neuromosaic_core.interfaces.SearchStrategy`."""


@hookspec
def register_encoders(register: Register) -> None:
    """Register architecture encoders. Factory: ``factory(settings)`` returning an
    :class:`~neuromosaic_core.interfaces.ArchitectureEncoder`."""


@hookspec
def register_codegen_providers(register: Register) -> None:
    """Register code generators (LLM providers and templates). Factory: ``factory(settings)``
    returning a :class:`~neuromosaic_core.interfaces.CodeGenProvider`."""


@hookspec
def register_runners(register: Register) -> None:
    """Register runners. Factory: ``factory(settings)`` returning a
    :class:`~neuromosaic_core.interfaces.Runner`. The settings class must have ``workers`` and
    ``timeout`` fields (subclass :class:`neuromosaic_core.settings.RunnerSettings`); the core
    refuses ``workers`` below 1 and a ``timeout`` that is not above 0, even where the subclass
    redeclares the fields."""


@hookspec
def register_storage_backends(register: Register) -> None:
    """Register storage backends. Factory: ``factory(settings)`` returning a
    :class:`~neuromosaic_core.interfaces.ResultsDB`; the settings class has a ``url`` field
    (subclass :class:`neuromosaic_core.settings.StorageSettings`). Metadata ``url_schemes``: the
    URL schemes it serves, e.g. ``("sqlite", "postgresql")``. Metadata ``check`` (optional):
    ``check(settings)`` raises :class:`~neuromosaic_core.errors.StorageError` when the factory
    could not open the database, creating nothing; the CLI calls it before it makes the run
    directory, so a bad ``storage.url`` leaves nothing behind."""


@hookspec
def register_visualizers(register: Register) -> None:
    """Register visualizers. Factory: ``factory(settings)`` returning a
    :class:`~neuromosaic_core.interfaces.Visualizer`."""


@hookspec
def register_tasks(register: Register) -> None:
    """Register tasks (data sets). Factory: ``factory(settings)`` returning a
    :class:`~neuromosaic_core.interfaces.Task`."""


@hookspec
def register_meta_learners(register: Register) -> None:
    """Register meta-learners (surrogate models of the search). Factory:
    ``factory(space, seed, settings, metric, maximize)`` returning a
    :class:`~neuromosaic_core.interfaces.MetaLearner`; the settings class subclasses
    :class:`neuromosaic_core.settings.MetaSettings` (the warm-start and recommendation settings the
    orchestrator reads)."""


@hookspec
def register_schedulers(register: Register) -> None:
    """Register trial schedulers (multi-fidelity: stop or pause poor trials early). Factory:
    ``factory(settings, max_epochs, metric, maximize)`` returning a
    :class:`~neuromosaic_core.interfaces.TrialScheduler`; ``max_epochs`` is ``training.epochs``
    (full fidelity), ``metric``/``maximize`` the learning curve's score and direction."""


@hookspec
def register_alert_channels(register: Register) -> None:
    """Register alert channels: where the alerts of ``alerts.*`` go (see
    :mod:`neuromosaic_core.alerts`). Factory: ``factory(settings)`` returning an
    :class:`~neuromosaic_core.alerts.AlertChannel`, whose ``send(alert)`` is called on the
    channel's own thread (it may block; the search never waits for it) and raises on failure.
    The settings class's fields become the node ``alerts.<name>.*``; a channel runs when
    ``alerts.enabled`` is true and ``alerts.channels`` lists it. Metadata ``check`` (optional):
    ``check(settings)`` raises ``ValueError("<key>: <what is wrong>")`` for settings the channel
    cannot work with (a missing URL), checked before the search starts when the channel is
    selected. Metadata ``secret`` (optional): names of settings holding secrets (a token in a
    URL or a header), replaced by ``***`` in the configuration stored with the experiment and
    given to observers. The core registers ``log`` itself."""


@hookspec
def register_trackers(register: Register) -> None:
    """Register experiment trackers: services a search is recorded in as it runs (MLflow,
    TensorBoard), see :mod:`neuromosaic_core.trackers`. Factory: ``factory(settings)`` returning
    a :class:`~neuromosaic_core.trackers.Tracker`, whose methods are called on the tracker's own
    thread (the search never waits for it). The settings class's fields become the node
    ``tracker.<name>.*``; a tracker runs only when the list ``trackers`` names it, so installing
    one changes nothing until then (keep heavy imports in the factory). Metadata ``secret``
    (optional): names of settings holding secrets, replaced by ``***`` in the configuration
    stored with the experiment and given to observers."""


@hookspec
def experiment_started(experiment: Any, config: Any, run_dir: Any) -> None:
    """An experiment (:class:`~neuromosaic_core.model.Experiment`) starts or resumes, with its
    composed configuration (a plain dict) and ``run_dir``, the run directory, a pathlib.Path."""


@hookspec
def trial_started(trial: Any) -> None:
    """A trial (:class:`~neuromosaic_core.model.Trial`) was stored and handed to the runner."""


@hookspec
def trial_finished(trial: Any) -> None:
    """A trial ended (completed, failed or invalid); ``trial.result`` holds its result. Under a
    scheduler (multi-fidelity) also at each milestone of a trial that trains on in segments:
    ``trial.result.fidelity`` says how many epochs it reached, ``pruned`` that it is not full yet."""


@hookspec
def experiment_finished(experiment: Any, summary: Any) -> None:
    """An experiment ended; ``summary`` is the dict written to ``summary.json``."""


REGISTRATION_HOOKS = {
    "strategy": "register_search_strategies",
    "encoder": "register_encoders",
    "codegen": "register_codegen_providers",
    "runner": "register_runners",
    "storage": "register_storage_backends",
    "visualizer": "register_visualizers",
    "task": "register_tasks",
    "meta": "register_meta_learners",
    "scheduler": "register_schedulers",
    "alert_channel": "register_alert_channels",
    "tracker": "register_trackers",
}
