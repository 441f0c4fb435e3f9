"""The tabular runner: a trial's result is read from a NAS-Bench-201 table, nothing is trained.

The table is the JSON file described in ``shared/benchmarks/README.md``: a mapping from the cell
string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` to ``{"val_acc_200", "test_acc_200", "rank"}``
(accuracies in percent, rank 1 = best test accuracy). It is read once, on the first trial, and
kept (per file, shared by every runner of the process).

Metrics are reported as Neuromosaic reports them everywhere, as fractions:
``val_accuracy = val_acc_200 / 100``, ``test_accuracy = test_acc_200 / 100``, and ``rank`` as
given. A search must be steered by ``val_accuracy`` only (``search.metric``, the default); the
test accuracy and the rank are for reporting, as in the NAS literature. No ``params`` metric is
reported: the table does not have it.
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

FAMILY = "nasbench201"
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
FIELDS = ("val_acc_200", "test_acc_200", "rank")

Table = Mapping[str, Mapping[str, float]]


def resolve_table_path(table: str) -> Path:
    """The table's absolute path; :class:`ConfigError` (one line) when unset or not a file."""
    if not table:
        raise ConfigError("runner.table is not set: point it at a NAS-Bench-201 table, "
                          "e.g. runner.table=/path/to/nasbench201_cifar10.json")
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
    if not isinstance(entry, dict) or any(f not in entry for f in FIELDS):
        raise ConfigError(f"runner.table={path!r}: entry {key!r} lacks one of {', '.join(FIELDS)}")
    return table


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
        self.path = resolve_table_path(self.settings.table)
        self.workers = self.settings.resolved_workers()

    @property
    def table(self) -> Table:
        """The table, read on first use (a malformed file raises :class:`ConfigError`)."""
        return load_table(self.path)

    def evaluate(self, spec: ArchitectureSpec | None) -> TrialResult:
        """The result of one spec (synchronous; :meth:`run_trial` is this for a job)."""
        if spec is None:
            return TrialResult.failure(ErrorClass.RUNTIME, "the job carries no spec; the tabular runner evaluates job.spec")
        try:
            key = cell_key(spec)
        except ValueError as exc:
            return TrialResult.failure(ErrorClass.RUNTIME, str(exc))
        entry = self.table.get(key)
        if entry is None:
            return TrialResult.failure(ErrorClass.RUNTIME, f"cell {key} is not in the table {os.fspath(self.path)}")
        try:
            metrics = {"val_accuracy": float(entry["val_acc_200"]) / 100.0,
                       "test_accuracy": float(entry["test_acc_200"]) / 100.0,
                       "rank": float(entry["rank"])}
        except (KeyError, TypeError, ValueError) as exc:
            return TrialResult.failure(ErrorClass.RUNTIME, f"table entry of {key} is malformed: {exc!r}")
        return TrialResult(metrics=metrics)

    async def run_trial(self, job: TrialJob) -> TrialResult:
        return self.evaluate(job.spec)
