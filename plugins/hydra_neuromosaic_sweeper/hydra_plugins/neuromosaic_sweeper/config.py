"""The sweeper's settings (``hydra.sweeper.*``), stored in Hydra's ConfigStore as ``hydra/sweeper=neuromosaic``."""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where a dataclass with string annotations cannot resolve them.
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class NeuromosaicSweeperConf:
    """``strategy``: an installed Neuromosaic strategy (random, evolution, optuna, hillclimb, ...),
    configured by ``strategy_settings``; ``n_trials``: trials the experiment should hold in the end
    (a rerun only runs what is missing); ``n_jobs``: trials handed to the launcher at once;
    ``direction``: ``minimize`` or ``maximize`` the app's return value, stored as metric ``metric``
    (an app returning a dict of numbers stores them all, ``metric`` is the one optimised);
    ``storage_url``: the results database (None: ``$NEUROMOSAIC_STORAGE_URL``, else
    ``sqlite:///neuromosaic.db``); ``experiment``: its name there (None: ``<job name>-<strategy>``);
    ``meta`` with ``prescreen`` k > 1: a meta-learner (``surrogate``) ranks k candidates per trial and
    only the best runs; ``max_failures``: consecutive failed jobs that stop the sweep; ``params``:
    sweeps given in the config (``key: sweep``) instead of on the command line."""

    _target_: str = "hydra_plugins.neuromosaic_sweeper.neuromosaic_sweeper.NeuromosaicSweeper"
    strategy: str = "random"
    strategy_settings: dict[str, Any] = field(default_factory=dict)
    n_trials: int = 20
    n_jobs: int = 1
    direction: str = "minimize"
    metric: str = "objective"
    seed: int = 0
    storage_url: Optional[str] = None  # noqa: UP045 - OmegaConf reads Optional[...] on Python 3.11, not X | None
    experiment: Optional[str] = None  # noqa: UP045
    meta: Optional[str] = None  # noqa: UP045
    meta_settings: dict[str, Any] = field(default_factory=dict)
    prescreen: int = 1
    max_failures: int = 3
    params: Optional[dict[str, str]] = None  # noqa: UP045


ConfigStore.instance().store(group="hydra/sweeper", name="neuromosaic", node=NeuromosaicSweeperConf, provider="neuromosaic_sweeper")
