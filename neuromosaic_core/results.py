"""Reading results back: a small Python API over any :class:`~neuromosaic_core.interfaces.ResultsDB`.

The ``neuromosaic-results`` command is a thin layer over these functions::

    from neuromosaic_core import results

    db = results.open_results("sqlite:///neuromosaic.db")
    for row in results.list_experiments(db):
        print(row["name"], row["completed"], row["best"])
    top = results.best_trials(db, "digits-mlp_conv1d-random", k=3)
    front = results.pareto_front(db, "digits-mlp_conv1d-random", x="params", y="val_accuracy")
    results.export(db, "digits-mlp_conv1d-random", "trials.csv")

Every user mistake (no database at that path, an unknown experiment, trial or metric) raises a
:class:`ResultsError` (a :class:`~neuromosaic_core.errors.NeuromosaicError`) whose message is one
line naming the valid choices. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from neuromosaic_core.errors import NeuromosaicError, StorageError
from neuromosaic_core.interfaces import ResultsDB
from neuromosaic_core.model import Trial, TrialStatus, converter

__all__ = [
    "DEFAULT_URL",
    "ResultsError",
    "UnknownExperimentError",
    "UnknownMetricError",
    "UnknownTrialError",
    "backup",
    "best_trials",
    "curve_metric",
    "curve_record",
    "default_url",
    "export",
    "export_rows",
    "fidelity_label",
    "list_experiments",
    "objective",
    "open_results",
    "pareto_front",
    "pruned_count",
    "sqlite_path",
    "trial",
    "trial_record",
]

DEFAULT_URL = "sqlite:///neuromosaic.db"
EXPORT_FORMATS = ("csv", "json")


class ResultsError(NeuromosaicError):
    """A results query that cannot be answered as asked (the message says why, in one line)."""


class UnknownExperimentError(ResultsError):
    def __init__(self, name: str, choices: Sequence[str]) -> None:
        held = f"experiments: {_choices(choices)}" if choices else "the database holds no experiments"
        super().__init__(f"no experiment named {name!r}; {held}")
        self.name, self.choices = name, list(choices)


class UnknownTrialError(ResultsError):
    def __init__(self, experiment: str, number: int, numbers: Sequence[int]) -> None:
        if numbers:
            held = f"its trials are numbered {_number_ranges(numbers)}"
        else:
            held = "it has no trials"
        super().__init__(f"experiment {experiment!r} has no trial {number}; {held}")
        self.experiment, self.number = experiment, number


class UnknownMetricError(ResultsError):
    def __init__(self, metric: str, experiment: str, choices: Sequence[str]) -> None:
        held = f"metrics: {_choices(choices)}" if choices else "its completed trials report no metrics"
        super().__init__(f"no completed trial of {experiment!r} reports metric {metric!r}; {held}")
        self.metric, self.experiment, self.choices = metric, experiment, list(choices)


def _choices(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _number_ranges(numbers: Iterable[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``1-3, 5``."""
    ordered = sorted(set(numbers))
    parts: list[str] = []
    start = prev = ordered[0]
    for n in [*ordered[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


# -- opening ---------------------------------------------------------------------------------


def default_url() -> str:
    """``$NEUROMOSAIC_STORAGE_URL`` when set, else ``sqlite:///neuromosaic.db`` (as the search uses)."""
    return os.environ.get("NEUROMOSAIC_STORAGE_URL") or DEFAULT_URL


def _scheme(url: str) -> str:
    return urlparse(url).scheme.split("+")[0].lower()


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names (``sqlite:///rel.db``, ``sqlite:////abs.db``); None for
    other schemes and for in-memory databases."""
    if _scheme(url) != "sqlite":
        return None
    parts = urlparse(url)
    path = unquote(parts.path)
    path = path[1:] if path.startswith("/") else path  # sqlite:///rel.db -> "/rel.db" -> "rel.db"
    if not path or path == ":memory:" or path.startswith("file:") or "mode=memory" in parts.query:
        return None
    return Path(path).expanduser()


def open_results(url: str = DEFAULT_URL, *, create: bool = False) -> ResultsDB:
    """Open the results database at ``url`` with the installed storage backend serving its scheme.

    A SQLite file must already exist unless ``create`` is true, so a mistyped path is reported
    instead of silently becoming a new, empty database.
    """
    path = sqlite_path(url)
    if path is not None and not create and not path.is_file():
        raise StorageError(f"no results database at {path.resolve()} ({url}); run a search first, "
                           "or point --url / NEUROMOSAIC_STORAGE_URL at an existing database")
    from neuromosaic_core.plugins import PluginSystem
    from neuromosaic_core.settings import structure_settings

    scheme = _scheme(url)
    if not scheme:
        raise StorageError(f"storage URL {url!r} has no scheme; expected e.g. sqlite:///neuromosaic.db")
    system = PluginSystem.load()
    served: list[str] = []
    for name in system.names("storage"):
        component = system.get("storage", name)
        schemes = tuple(component.metadata.get("url_schemes") or ())
        served.extend(schemes)
        if scheme in schemes:
            from neuromosaic_core.encryption import EncryptedResultsDB, Keyring, key_from_environment

            settings = structure_settings({"url": url}, component.settings, "storage") if component.settings else None
            key = key_from_environment()  # before opening: a malformed key leaves nothing open
            db = component.factory(settings=settings)
            # With the operator's key, reading decrypts what is encrypted at rest (each value names its
            # key; nothing is sealed here). Without one, code encrypted at rest stays so, and `trial`
            # refuses to show it in one line (require_open).
            return EncryptedResultsDB(db, Keyring(key)) if key is not None else db
    valid = ", ".join(sorted(set(served))) or "none (no storage plugin is installed)"
    raise StorageError(f"no installed storage backend serves {scheme!r} URLs ({url}); schemes served: {valid}")


# -- queries ---------------------------------------------------------------------------------


def _require_experiment(db: ResultsDB, experiment: str) -> None:
    if db.get_experiment(experiment) is None:
        raise UnknownExperimentError(experiment, [e.name for e in db.list_experiments()])


def _metric_names(trials: Iterable[Trial]) -> list[str]:
    names: set[str] = set()
    for t in trials:
        if t.result is not None:
            names.update(t.result.metrics)
    return sorted(names)


def _check_metrics(db: ResultsDB, experiment: str, *metrics: str) -> None:
    """Raise for a metric no completed trial reports (nothing to check with no completed trials).
    Asks the backend for the metric names (an index walk in the sql plugin), not every trial."""
    known = db.metric_names(experiment)
    if not known:
        return
    for metric in metrics:
        if metric not in known:
            raise UnknownMetricError(metric, experiment, known)


def objective(experiment: Any) -> tuple[str, bool]:
    """``(metric, maximize)``: what an experiment was searched for (its stored config), else the defaults."""
    search = (experiment.config or {}).get("search") or {}
    return str(search.get("metric") or "val_accuracy"), search.get("direction", "maximize") != "minimize"


def pruned_count(trials: Iterable[Trial]) -> int:
    """How many completed trials a scheduler stopped or paused below full fidelity (they count as
    completed too: each has a result, at its own fidelity)."""
    return sum(1 for t in trials if t.status == TrialStatus.COMPLETED and t.result is not None and t.result.pruned)


def list_experiments(db: ResultsDB, history: Callable[[str], Sequence[Trial]] | None = None) -> list[dict[str, Any]]:
    """One row per experiment, in creation order: ``name``, ``task``, ``trials`` (all rows),
    ``completed``, ``pruned`` (of the completed, those a scheduler stopped early), ``failed``,
    ``invalid``, ``metric`` and ``direction`` (what the search optimised) and ``best`` (that
    metric's best completed value, None when there is none).

    ``history`` reads an experiment's trials without spec and code (default
    ``db.list_history``) for the pruned count; a caller that keeps that list (the REST API)
    passes its own. It is read only for experiments with completed trials."""
    read_history = history if history is not None else db.list_history
    rows = []
    for exp in db.list_experiments():
        counts = db.count_trials(exp.name)
        metric, maximize = objective(exp)
        top = db.get_best_architectures(exp.name, k=1, metric=metric, maximize=maximize)
        best = top[0].result.metrics.get(metric) if top and top[0].result is not None else None
        completed = counts.get(TrialStatus.COMPLETED, 0)
        rows.append({
            "name": exp.name,
            "task": exp.task,
            "trials": sum(counts.values()),
            "completed": completed,
            "pruned": pruned_count(read_history(exp.name)) if completed else 0,
            "failed": counts.get(TrialStatus.FAILED, 0),
            "invalid": counts.get(TrialStatus.INVALID, 0),
            "metric": metric,
            "direction": "maximize" if maximize else "minimize",
            "best": best if _finite(best) else None,
        })
    return rows


def best_trials(db: ResultsDB, experiment: str, k: int = 10, metric: str = "val_accuracy", maximize: bool = True) -> list[Trial]:
    """The ``k`` completed trials with the best ``metric``, best first (ties in creation order)."""
    if k < 1:
        raise ResultsError(f"k must be at least 1, got {k}")
    _require_experiment(db, experiment)
    _check_metrics(db, experiment, metric)
    return db.get_best_architectures(experiment, k=k, metric=metric, maximize=maximize)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pareto_front(db: ResultsDB, experiment: str, x: str = "params", y: str = "val_accuracy",
                 minimize_x: bool = True, maximize_y: bool = True) -> list[Trial]:
    """The completed trials no other completed trial dominates on (``x``, ``y``), sorted by ``x``.

    A trial dominates another when it is at least as good on both metrics and better on one, so
    trials with equal values are all kept. Trials missing either metric (or with a NaN) are left out.
    """
    _require_experiment(db, experiment)
    _check_metrics(db, experiment, x, y)
    front_ids = db.pareto_ids(experiment, x, y, minimize_x=minimize_x, maximize_y=maximize_y)
    front = db.get_trials(experiment, front_ids)  # only the front's members are read whole
    return sorted(front, key=lambda t: (t.result.metrics[x], t.number))  # type: ignore[union-attr]


def trial(db: ResultsDB, experiment: str, number: int, *, need_code: bool = True) -> Trial:
    """Trial ``number`` of ``experiment``, with its spec, code and result (the latest row when a
    number was stored twice). ``need_code=False``: the caller reads no code (a learning curve, say),
    so code encrypted at rest under a key not held is no reason to refuse."""
    _require_experiment(db, experiment)
    found = db.find_trial(experiment, number)
    if found is None:
        raise UnknownTrialError(experiment, number, [t.number for t in db.list_history(experiment)])
    if not need_code:
        return found
    from neuromosaic_core.encryption import EncryptedResultsDB, require_open

    # Code encrypted at rest under a key not held: one line naming the fingerprints and the setting.
    return require_open(found, db.keys if isinstance(db, EncryptedResultsDB) else None)


# -- records and export ----------------------------------------------------------------------


def curve_metric(t: Trial) -> str:
    """The score a trial's learning curve holds: ``val_rmse`` for a regression task's trial (its
    metrics report an RMSE), else ``val_accuracy``."""
    metrics = t.result.metrics if t.result is not None else {}
    return "val_rmse" if "val_rmse" in metrics or "test_rmse" in metrics else "val_accuracy"


def curve_record(t: Trial) -> dict[str, Any]:
    """A trial's learning curve as a JSON-ready dict: ``metric`` (see :func:`curve_metric`),
    ``epochs`` (1, 2, ...) and ``values`` (the validation score after each), ``fidelity`` (the
    epochs it was allowed; None: full) and ``pruned``. Empty lists for a trial that trained no
    epoch (pending, failed before training, a lookup-table runner)."""
    result = t.result
    values = list(result.curve) if result is not None else []
    return {"metric": curve_metric(t), "epochs": list(range(1, len(values) + 1)), "values": values,
            "fidelity": result.fidelity if result is not None else None,
            "pruned": bool(result.pruned) if result is not None else False}


def fidelity_label(t: Trial) -> str:
    """A trial's fidelity for a table: its epochs (``12``), ``12, pruned`` when a scheduler stopped
    it there, ``full`` when none was recorded (no scheduler, an older result), ``-`` without a
    result."""
    result = t.result
    if result is None or not result.ok:
        return "-"
    if result.fidelity is None:
        return "full"
    return f"{result.fidelity}, pruned" if result.pruned else str(result.fidelity)


def trial_record(t: Trial, *, spec: bool = True, code: bool = False) -> dict[str, Any]:
    """A trial as a JSON-ready dict: number, status, error, metrics, vector, spec hash, ...,
    ``fidelity`` (epochs allowed, None: full), ``pruned`` and the learning ``curve`` (the
    validation score per epoch)."""
    result = t.result
    error = result.error if result is not None else None
    record: dict[str, Any] = {
        "number": t.number,
        "status": TrialStatus(t.status).value,
        "error_class": error.error_class.value if error is not None else None,
        "error": error.message if error is not None else None,
        "metrics": dict(result.metrics) if result is not None else {},
        "vector": dict(t.vector.values),
        "spec_hash": t.spec_hash,
        "architecture": t.spec.describe() if t.spec is not None else None,
        "reused_from": t.reused_from,
        "fidelity": result.fidelity if result is not None else None,
        "pruned": bool(result.pruned) if result is not None else False,
        "curve": list(result.curve) if result is not None else [],
    }
    if spec:
        record["spec"] = converter.unstructure(t.spec) if t.spec is not None else None
    if code:
        record["code"] = t.code
        record["codegen"] = converter.unstructure(t.codegen) if t.codegen is not None else None
    return record


def codegen_summary(t: Trial) -> str | None:
    """Who wrote a trial's code, in one line: provider, model, prompt version, the attempts."""
    cg = t.codegen
    if cg is None:
        return None
    who = " ".join(x for x in (cg.provider, cg.model) if x)
    if cg.template_version:
        who += f", prompt {cg.template_version}"
    if cg.cached:
        return f"{who}: from the cache (no call)"
    stages = ", ".join(f"{a.provider}:{a.stage}" if a.provider != cg.provider else a.stage for a in cg.attempts)
    how = "the fallback wrote it" if cg.fallback else f"accepted after {len(cg.attempts)} attempt(s)"
    return f"{who}: {how} ({stages}; full record: show --json)"


def export_rows(trials: Sequence[Trial]) -> tuple[list[str], list[dict[str, Any]]]:
    """The flat table ``export`` writes: its columns, and one row per trial.

    Columns: ``number, status, error_class, error``, every metric any trial reports (sorted), the
    vector's dimensions as ``vector.<name>``, then ``spec_hash, architecture, reused_from``, and
    ``fidelity`` (epochs allowed; empty: full) and ``pruned``.
    """
    metrics = _metric_names(trials)
    dims: list[str] = []
    for t in trials:
        dims.extend(d for d in t.vector.values if d not in dims)
    columns = ["number", "status", "error_class", "error", *metrics, *(f"vector.{d}" for d in dims),
               "spec_hash", "architecture", "reused_from", "fidelity", "pruned"]
    rows = []
    for t in trials:
        rec = trial_record(t, spec=False)
        row = {k: rec[k] for k in ("number", "status", "error_class", "error")}
        row.update({m: rec["metrics"].get(m) for m in metrics})
        row.update({f"vector.{d}": rec["vector"].get(d) for d in dims})
        row.update({k: rec[k] for k in ("spec_hash", "architecture", "reused_from", "fidelity", "pruned")})
        rows.append(row)
    return columns, rows


def export(db: ResultsDB, experiment: str, path: str | Path, fmt: str = "csv") -> int:
    """Write every trial of ``experiment`` to ``path`` and return how many were written.

    ``csv``: one row per trial with the columns of :func:`export_rows` (empty cells for missing
    values). ``json``: a list of objects with the same keys plus ``spec`` (the architecture as
    stored) and ``curve`` (the validation score per epoch).
    """
    if fmt not in EXPORT_FORMATS:
        raise ResultsError(f"unknown export format {fmt!r}; choose one of: {', '.join(EXPORT_FORMATS)}")
    _require_experiment(db, experiment)
    target = Path(path).expanduser()
    if not target.parent.is_dir():
        raise ResultsError(f"cannot write {target}: directory {target.parent} does not exist")
    trials = db.list_trials(experiment)
    columns, rows = export_rows(trials)
    try:
        if fmt == "json":
            for row, t in zip(rows, trials, strict=True):
                row["spec"] = converter.unstructure(t.spec) if t.spec is not None else None
                row["curve"] = list(t.result.curve) if t.result is not None else []
            target.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        else:
            with target.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    except OSError as exc:
        raise ResultsError(f"cannot write {target}: {exc.strerror or exc}") from None
    return len(rows)


def backup(db: ResultsDB, target: str | Path, overwrite: bool = False) -> Path:
    """Copy the whole database to ``target`` with the backend's online backup; return the path.

    An existing ``target`` is refused unless ``overwrite``.
    """
    path = Path(target).expanduser()
    if path.exists() and not overwrite:
        raise ResultsError(f"{path} already exists; choose another file or allow overwriting (--force)")
    try:
        db.backup(str(path))
    except NotImplementedError:
        raise ResultsError(f"the storage backend {type(db).__name__} does not support backups") from None
    return path


# -- the neuromosaic-results command (the entry point is neuromosaic_core.cli.results_main) --------


def build_parser() -> Any:
    """The argument parser of ``neuromosaic-results``."""
    import argparse

    url_help = "results database URL (default: $NEUROMOSAIC_STORAGE_URL or sqlite:///neuromosaic.db)"
    parser = argparse.ArgumentParser(prog="neuromosaic-results",
                                     description="Query, export and back up the results of Neuromosaic searches.")
    parser.add_argument("--url", default=None, help=url_help)
    # --url is accepted after the subcommand too; SUPPRESS keeps the main parser's value when absent.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=url_help)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", parents=[common, as_json], help="experiments with their trial counts and best value")
    best = sub.add_parser("best", parents=[common, as_json], help="the best completed trials of an experiment")
    best.add_argument("experiment")
    best.add_argument("-k", type=int, default=10, help="how many (default 10)")
    best.add_argument("--metric", default="val_accuracy", help="metric to rank by (default val_accuracy)")
    best.add_argument("--minimize", action="store_true", help="lowest first (default: highest first)")
    pareto = sub.add_parser("pareto", parents=[common, as_json], help="the non-dominated trials on two metrics")
    pareto.add_argument("experiment")
    pareto.add_argument("--x", default="params", help="first metric, minimised (default params)")
    pareto.add_argument("--y", default="val_accuracy", help="second metric, maximised (default val_accuracy)")
    pareto.add_argument("--maximize-x", action="store_true", help="maximise --x instead")
    pareto.add_argument("--minimize-y", action="store_true", help="minimise --y instead")
    show = sub.add_parser("show", parents=[common, as_json], help="one trial: spec, metrics, error and code")
    show.add_argument("experiment")
    show.add_argument("number", type=int)
    exp = sub.add_parser("export", parents=[common], help="every trial of an experiment to CSV or JSON")
    exp.add_argument("experiment")
    exp.add_argument("-o", "--output", required=True, help="file to write")
    exp.add_argument("--format", choices=EXPORT_FORMATS, default=None,
                     help="csv or json (default: from the file's suffix, else csv)")
    bak = sub.add_parser("backup", parents=[common], help="a consistent copy of the database, safe while a search writes")
    bak.add_argument("target", help="file to write (SQLite: a database file; PostgreSQL: pg_dump's SQL)")
    bak.add_argument("--force", action="store_true", help="overwrite an existing target")
    keygen = sub.add_parser("keygen", help="write a new encryption key to a file (mode 0600) for encryption.key_file")
    keygen.add_argument("target", help="key file to create (keep it away from the database and the run directories)")
    rekey = sub.add_parser("rekey", parents=[common],
                           help="re-encrypt the database (and run directories) under a new key; rerun after an interruption")
    rekey.add_argument("--new-key-file", default=None,
                       help="file holding the new key (default: $NEUROMOSAIC_NEW_ENCRYPTION_KEY); the current key comes "
                            "from $NEUROMOSAIC_ENCRYPTION_KEY or $NEUROMOSAIC_ENCRYPTION_KEY_FILE")
    rekey.add_argument("--run-dir", action="append", default=[], metavar="DIR",
                       help="a run directory whose code, weights and code history to re-encrypt too (repeatable); "
                            "those the trials' weights paths point to are found without it")
    return parser


def _console() -> Any:
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)  # a pipe gets the whole table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 1000:  # params, flops: 106,698
            return f"{int(value):,}" if value.is_integer() else f"{value:,.1f}"
        return f"{value:.4f}"
    return str(value)


def _print_table(table: Any, title: str) -> None:
    """The title on its own line: a table's own title wraps to the table's width."""
    table.title = None
    console = _console()
    console.print(title, markup=False, highlight=False)
    console.print(table)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def run_command(args: Any) -> int:
    """Run one parsed ``neuromosaic-results`` command; raise :class:`NeuromosaicError` for bad input."""
    if args.command == "keygen":
        return _keygen(Path(args.target).expanduser())
    url = args.url or default_url()
    if args.command == "rekey":
        return _rekey(url, args)
    db = open_results(url)
    try:
        return _dispatch(db, url, args)
    finally:
        db.close()


def _keygen(target: Path) -> int:
    from neuromosaic_core.encryption import fingerprint, generate_key, parse_key

    if target.exists():
        raise ResultsError(f"{target} already exists; a key file is never overwritten (choose another name)")
    if not target.parent.is_dir():
        raise ResultsError(f"cannot write {target}: directory {target.parent} does not exist")
    key = generate_key()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key + "\n")
    print(f"wrote a new key to {target} (fingerprint {fingerprint(parse_key(key, str(target)))}); "
          "keep it away from the data and back it up: without it the encrypted data cannot be read")
    return 0


def _rekey(url: str, args: Any) -> int:
    """``rekey``: every trial's secret values, then each ``--run-dir``, under the new key."""
    from neuromosaic_core.encryption import (
        NEW_KEY_ENV,
        EncryptionKeyError,
        Keyring,
        key_from_environment,
        parse_key,
        read_key_file,
        rekey_database,
        rekey_run_dir,
    )

    if args.new_key_file:
        new = read_key_file(args.new_key_file, "--new-key-file")
    elif os.environ.get(NEW_KEY_ENV):
        new = parse_key(os.environ[NEW_KEY_ENV], f"${NEW_KEY_ENV}")
    else:
        raise EncryptionKeyError(f"rekey needs the new key: --new-key-file FILE or ${NEW_KEY_ENV}")
    old = key_from_environment()
    keys = Keyring(new, [old] if old is not None else [])
    run_dirs = [Path(d).expanduser() for d in args.run_dir]
    for d in run_dirs:
        if not d.is_dir():
            raise ResultsError(f"run directory {d} does not exist")
    db = open_results(url)
    try:
        counts = rekey_database(db, keys)
    finally:
        db.close()
    print(f"{url}: {counts.trials} trial(s) re-encrypted, {counts.kept} already under key {keys.primary} or with nothing secret",
          flush=True)
    given, missing = {d.resolve() for d in run_dirs}, []
    for found in sorted(counts.run_dirs):
        if found.resolve() in given:
            continue
        if (found / "encryption.json").is_file():  # a run directory searched with encryption on
            run_dirs.append(found)
        elif not found.is_dir():
            missing.append(found)
            print(f"{found}: not found here (trials' weights point there); if it holds encrypted files, rekey it with "
                  "--run-dir where it is", flush=True)
    for d in run_dirs:
        done = rekey_run_dir(d, keys)
        print(f"{d}: {done.files} file(s) re-encrypted, {done.histories} git history(ies) rewritten", flush=True)
    if missing:
        print(f"the database and the run directories above are under key {keys.primary}; {len(missing)} run "
              "directory(ies) were not found here and keep their key until rekeyed where they are")
    else:
        print(f"every encrypted value is now under key {keys.primary}; the old key is no longer needed for these")
    return 0


def _dispatch(db: ResultsDB, url: str, args: Any) -> int:
    from rich.table import Table

    command = args.command
    if command == "list":
        rows = list_experiments(db)
        if args.json:
            _print_json(rows)
            return 0
        if not rows:
            _console().print(f"no experiments in {url}", markup=False, highlight=False)
            return 0
        table = Table()
        for column, justify in (("experiment", "left"), ("task", "left"), ("trials", "right"), ("completed", "right"),
                                ("pruned", "right"), ("failed", "right"), ("invalid", "right"), ("best", "right"),
                                ("metric", "left")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for r in rows:
            arrow = "↑" if r["direction"] == "maximize" else "↓"
            table.add_row(r["name"], r["task"], str(r["trials"]), str(r["completed"]), str(r["pruned"]), str(r["failed"]),
                          str(r["invalid"]), _fmt(r["best"]), f"{r['metric']} {arrow}")
        _print_table(table, f"Experiments in {url} (pruned: completed trials a scheduler stopped early, counted in completed)")
        return 0
    if command == "best":
        trials = best_trials(db, args.experiment, k=args.k, metric=args.metric, maximize=not args.minimize)
        if args.json:
            _print_json([trial_record(t) for t in trials])
            return 0
        order = "lowest" if args.minimize else "highest"
        title = f"Best {len(trials)} of {args.experiment} by {args.metric} ({order} first)"
        if not trials:
            _console().print(f"{args.experiment}: no completed trials.", markup=False, highlight=False)
            return 0
        _print_table(_best_table(trials, args.metric), title)
        return 0
    if command == "pareto":
        front = pareto_front(db, args.experiment, x=args.x, y=args.y, minimize_x=not args.maximize_x, maximize_y=not args.minimize_y)
        if args.json:
            _print_json([trial_record(t) for t in front])
            return 0
        if not front:
            _console().print(f"{args.experiment}: no completed trials report {args.x} and {args.y}.", markup=False, highlight=False)
            return 0
        x_dir, y_dir = ("max" if args.maximize_x else "min"), ("min" if args.minimize_y else "max")
        table = Table()
        for column, justify in (("trial", "right"), (args.x, "right"), (args.y, "right"), ("fidelity", "right"),
                                ("family", "left"), ("architecture", "left")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for t in front:
            m = t.result.metrics if t.result else {}
            table.add_row(str(t.number), _fmt(m.get(args.x)), _fmt(m.get(args.y)), fidelity_label(t),
                          t.spec.family if t.spec else "-", t.spec.describe().split(": ", 1)[-1] if t.spec else "-")
        _print_table(table, f"Pareto front of {args.experiment}: {x_dir} {args.x}, {y_dir} {args.y} ({len(front)} trials)")
        return 0
    if command == "show":
        t = trial(db, args.experiment, args.number)
        if args.json:
            _print_json(trial_record(t, code=True))
            return 0
        _show(t)
        return 0
    if command == "export":
        fmt = args.format or ("json" if Path(args.output).suffix.lower() == ".json" else "csv")
        n = export(db, args.experiment, args.output, fmt)
        print(f"wrote {n} trials of {args.experiment} to {args.output} ({fmt})")
        return 0
    if command == "backup":
        path = backup(db, args.target, overwrite=args.force)
        print(f"backed up {url} to {path}")
        return 0
    raise ResultsError(f"unknown command {command!r}")  # pragma: no cover - argparse rejects it first


def _best_table(trials: Sequence[Trial], metric: str) -> Any:
    """Like the table at the end of a search, ranked by ``metric`` (which is not repeated)."""
    from rich.table import Table

    extra = [m for m in ("val_accuracy", "test_accuracy", "params") if m != metric]
    table = Table()
    for column, justify in (("#", "right"), ("trial", "right"), ("family", "left"), (metric, "right"),
                            *((m, "right") for m in extra), ("fidelity", "right"), ("architecture", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for rank, t in enumerate(trials, 1):
        m = t.result.metrics if t.result else {}
        table.add_row(str(rank), str(t.number), t.spec.family if t.spec else "-", _fmt(m.get(metric)),
                      *(_fmt(m.get(name)) for name in extra), fidelity_label(t),
                      t.spec.describe().split(": ", 1)[-1] if t.spec else "-")
    return table


def _curve_summary(t: Trial) -> str | None:
    """A learning curve in one line: ``5 epochs of val_accuracy: 0.6100 -> 0.9300 (best 0.9400)``."""
    curve = curve_record(t)
    values = [v for v in curve["values"] if isinstance(v, float) and math.isfinite(v)]
    if not values:
        return None
    best = min(values) if curve["metric"] == "val_rmse" else max(values)
    epochs = len(curve["values"])
    return (f"{epochs} epoch{'' if epochs == 1 else 's'} of {curve['metric']}: {_fmt(values[0])} -> {_fmt(values[-1])} "
            f"(best {_fmt(best)})")


def _show(t: Trial) -> None:
    from rich.table import Table

    console = _console()
    rec = trial_record(t, spec=False)
    console.print(f"Trial {t.number} of {t.experiment}", markup=False, highlight=False)
    info = Table(show_header=False)
    info.add_column("field", style="bold")
    info.add_column("value")
    info.add_row("status", rec["status"])
    if t.result is not None and t.result.ok:
        epochs = rec["fidelity"]
        info.add_row("fidelity", "full" if epochs is None else
                     f"{epochs} epochs, pruned (a scheduler stopped it before its training's end)" if rec["pruned"]
                     else f"{epochs} epochs")
        if (curve := _curve_summary(t)) is not None:
            info.add_row("learning curve", curve)
    if t.spec is not None:
        info.add_row("family", t.spec.family)
        info.add_row("architecture", t.spec.describe().split(": ", 1)[-1])
        info.add_row("layers", str(len(t.spec.layers)))
    info.add_row("spec hash", rec["spec_hash"] or "-")
    info.add_row("vector", ", ".join(f"{k}={v}" for k, v in rec["vector"].items()))
    if t.reused_from is not None:
        info.add_row("reused from", f"trial id {t.reused_from}")
    if (written := codegen_summary(t)) is not None:
        info.add_row("code by", written)
    for name, value in sorted(rec["metrics"].items()):
        info.add_row(name, _fmt(value))
    if rec["error_class"] is not None:
        info.add_row("error", f"{rec['error_class']}: {rec['error']}")
    console.print(info)
    console.print()
    if t.code is None:
        console.print("(no code stored: this trial never reached code generation, or its runner needs none)", markup=False)
        return
    console.print("code:", markup=False, highlight=False)
    if console.is_terminal:
        from rich.syntax import Syntax

        console.print(Syntax(t.code, "python"))
    else:
        print(t.code, end="" if t.code.endswith("\n") else "\n")
