"""Export one trial's trained model (ONNX, TorchScript or a ``torch.export`` program) with a model card.

    from neuromosaic_core import results
    from neuromosaic_export.export import export_trial

    db = results.open_results("sqlite:///results.db")
    done = export_trial(db, "digits-mlp_conv1d-random", "onnx", "exported/")
    print(done.verification.max_abs_diff, done.files)

What happens, in order:

1. the trial is chosen (``trial=N``, else the experiment's best as the storage ranks it by the
   search's own metric) and checked: completed, with code and kept weights (decrypted in memory
   when they are encrypted at rest: the key never enters the sandbox);
2. the task's test inputs are read from the run directory (``data/*.npz``, where the trials read
   them), else prepared afresh by the task plugin named in the experiment's stored config;
3. the export runs as ``python -m neuromosaic_export.worker`` in the sandbox a trial gets
   (:mod:`neuromosaic_core.sandbox`: bubblewrap, no network, unprivileged uid, read-only but for
   its own empty output directory, rlimits): the model's code may have been written by an LLM,
   and loading it runs it;
4. this process checks what came back: the export's file, and the outputs of the PyTorch model
   and of the export loaded back from its file on the same test inputs (for ONNX, it also runs
   the file itself with onnxruntime). Outputs further apart than ``tolerance`` (largest absolute
   difference) refuse the export: :class:`ExportRefused`, and nothing is written;
5. the file is moved into the output directory, with ``README.md``: a model card with the
   metadata block Hugging Face reads (see :mod:`neuromosaic_export.card`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from neuromosaic_core.errors import NeuromosaicError
from neuromosaic_core.interfaces import ResultsDB
from neuromosaic_core.model import Trial, TrialStatus

FORMATS = ("onnx", "torchscript", "exported-program")
#: The largest absolute difference between the export's outputs and the PyTorch model's that is
#: accepted: float32 rounding of a reordered computation stays far below it.
DEFAULT_TOLERANCE = 1e-4
#: Test rows the export is checked on (the first ones of the task's test split).
MAX_SAMPLES = 1024
#: Rows per forward pass, for the PyTorch model and for the export alike: the export is checked at
#: several batch sizes (the last batch is usually smaller), not only the one it was traced with.
BATCH_SIZE = 64
DEFAULT_TIMEOUT_S = 600.0
#: What the sandboxed export inherits from this process's environment: enough to find Python and
#: its packages, never credentials (an encryption key, an API key).
INHERITED = ("PATH", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH")
#: The most of the sandbox's ``outputs.npz`` read back (a few MB for 1,024 rows of logits).
OUTPUTS_LIMIT = 256 << 20


class ExportError(NeuromosaicError):
    """The export cannot be done as asked (unknown experiment or trial, a failed trial, a trial
    without weights, a bad format, an output directory that is not empty): exit code 2."""


class ExportRefused(NeuromosaicError):
    """The export was attempted and refused: it failed in the sandbox, or its outputs disagree
    with the PyTorch model's. Nothing is written. Exit code 1."""

    exit_code = 1


@attrs.frozen
class Verification:
    """How the export compared with the PyTorch model on ``samples`` test rows: the largest
    absolute difference of their outputs, and the share of rows whose argmax (the predicted class)
    agrees (None for a regression model)."""

    samples: int
    max_abs_diff: float
    argmax_agreement: float | None
    tolerance: float
    checked_by: str

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def describe(self) -> str:
        agree = "" if self.argmax_agreement is None else f", argmax agreement {self.argmax_agreement:.1%}"
        return f"max abs diff {self.max_abs_diff:.3g} on {self.samples} test samples{agree}"


@attrs.frozen
class ExportResult:
    """What :func:`export_trial` wrote: ``directory``, the model ``files`` in it (names), the
    model card's path, the trial exported and the verification."""

    directory: Path
    files: tuple[str, ...]
    card: Path
    trial: int
    format: str
    verification: Verification
    isolation: str


# -- choosing the trial -----------------------------------------------------------------------


def choose_trial(db: ResultsDB, experiment: str, number: int | None = None) -> Trial:
    """Trial ``number`` of ``experiment`` (with its code), or the best completed one as the
    storage ranks it by the search's own metric and direction; raises :class:`ExportError` for a
    trial that cannot be exported (failed, not finished, no code)."""
    from neuromosaic_core import results

    if number is None:
        found = db.get_experiment(experiment)
        if found is None:
            raise results.UnknownExperimentError(experiment, [e.name for e in db.list_experiments()])
        metric, maximize = results.objective(found)
        top = db.get_best_architectures(experiment, k=1, metric=metric, maximize=maximize)
        if not top:
            raise ExportError(f"experiment {experiment!r} has no completed trial with {metric}; nothing to export")
        number = top[0].number
    trial = results.trial(db, experiment, number)
    if trial.status != TrialStatus.COMPLETED or trial.result is None or not trial.result.ok:
        error = trial.result.error if trial.result is not None else None
        why = f": {error.error_class.value}: {error.message.splitlines()[0] if error.message else ''}" if error else ""
        raise ExportError(f"trial {number} of {experiment!r} is {TrialStatus(trial.status).value}{why}; only a completed "
                          f"trial has a model to export (see `neuromosaic-results best {experiment}`)")
    if not trial.code:
        raise ExportError(f"trial {number} of {experiment!r} has no stored code (its runner builds no model); nothing to export")
    return trial


def weights_file(trial: Trial, runs: Path | None = None) -> Path:
    """The trial's weights file: where its result says (absolute, in its run directory), else
    ``runs/<experiment>/weights/trial-NNNN.pt``; raises :class:`ExportError` when none is there."""
    kept = trial.result.weights_path if trial.result is not None else None
    candidates = [Path(kept)] if kept else []
    if runs is not None:
        candidates.append(runs / trial.experiment / "weights" / f"trial-{trial.number:04d}.pt")
    for path in candidates:
        if path.is_file():
            return path
    if not kept:
        reused = f" (it reused trial id {trial.reused_from}'s result)" if trial.reused_from is not None else ""
        raise ExportError(f"trial {trial.number} of {trial.experiment!r} kept no weights{reused}: the search deleted them "
                          "(harness.keep_weights) or never saved them; export one of the best trials, or rerun with "
                          "harness.keep_weights=all")
    where = " or ".join(str(p) for p in candidates)
    raise ExportError(f"trial {trial.number}'s weights are not at {where}: run this where the search ran, or point "
                      "--runs at the folder holding its run directory")


def _run_dirs(trial: Trial, weights: Path, runs: Path | None) -> list[Path]:
    dirs = []
    if weights.parent.name == "weights":
        dirs.append(weights.parent.parent)
    if runs is not None:
        dirs.append(runs / trial.experiment)
    return dirs


def test_inputs(experiment: Any, run_dirs: list[Path], scratch: Path, limit: int = MAX_SAMPLES) -> Any:
    """The first ``limit`` rows of the task's test inputs (float32): from a run directory's
    ``data/*.npz`` (what the trials read), else prepared by the task plugin of the experiment's
    stored config in ``scratch``."""
    import numpy as np

    for run_dir in run_dirs:
        for path in sorted((run_dir / "data").glob("*.npz")) if (run_dir / "data").is_dir() else []:
            with np.load(path, allow_pickle=False) as data:
                if "x_test" in data.files:
                    return np.ascontiguousarray(data["x_test"][:limit], dtype=np.float32)
    path = _prepare_task_data(experiment, scratch)
    with np.load(path, allow_pickle=False) as data:
        return np.ascontiguousarray(data["x_test"][:limit], dtype=np.float32)


def _prepare_task_data(experiment: Any, scratch: Path) -> Path:
    from neuromosaic_core.plugins import PluginSystem
    from neuromosaic_core.settings import structure_settings

    node = dict((experiment.config or {}).get("task") or {})
    name = str(node.pop("name", experiment.task))
    system = PluginSystem.load()
    if name not in system.names("task"):
        raise ExportError(f"no run directory with the test data of {experiment.name!r} was found, and its task {name!r} "
                          "is not installed to prepare it; run this where the search ran, or pass --runs")
    component = system.get("task", name)
    settings = structure_settings(node, component.settings, "task") if component.settings else None
    return Path(component.factory(settings=settings).prepare_data(scratch))


# -- running the export in the sandbox --------------------------------------------------------


def _read_weights(path: Path) -> bytes:
    from neuromosaic_core.encryption import bytes_fingerprint, read_file

    data = path.read_bytes()
    return data if bytes_fingerprint(data) is None else read_file(path)  # decrypted here, never in the sandbox


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in INHERITED}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def check_isolation(isolation: str, trial: Trial) -> str:
    """What the export will run in; refuses code an LLM wrote where no sandbox is available unless
    ``process-group`` was chosen on purpose (as the local runner does for a search)."""
    from neuromosaic_core.sandbox import resolve_isolation

    try:
        resolved = resolve_isolation(isolation)
    except NeuromosaicError as exc:
        raise ExportError(str(exc).replace("runner.isolation", "--isolation")) from None
    trusted = trial.codegen is not None and trial.codegen.provider == "template"  # our own templates' code
    if resolved != "bubblewrap" and isolation != "process-group" and not trusted:
        raise ExportError("bubblewrap (bwrap) is not installed, and this trial's code was written by a code generator "
                          "whose code is not trusted: install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or "
                          "accept the risk with --isolation process-group")
    return resolved


def _sandbox_failure(outcome: Any) -> str:
    """The worker's own one-line error when it wrote one, else the last line of its output."""
    from neuromosaic_export.worker import PREFIX

    lines = [line.strip() for line in outcome.output.splitlines() if line.strip()]
    said = [line[len(PREFIX):].strip() for line in lines if line.startswith(PREFIX)]
    cause = outcome.describe()
    if said:
        return f"{said[-1]} ({cause})"
    return f"{cause}: {lines[-1][:300]}" if lines else cause


def _read_outputs(out: Path, samples: int) -> tuple[Any, Any]:
    import numpy as np

    from neuromosaic_core.sandbox import is_regular_file
    from neuromosaic_export.worker import OUTPUTS

    path = out / OUTPUTS
    if not is_regular_file(path) or path.stat().st_size > OUTPUTS_LIMIT:
        raise ExportRefused("the sandboxed export left no readable outputs to check it with; nothing written")
    try:
        with np.load(path, allow_pickle=False) as data:
            reference = np.asarray(data["reference"])
            exported = np.asarray(data["exported"]) if "exported" in data.files else None
    except Exception as exc:  # written by the sandboxed process
        raise ExportRefused(f"the sandboxed export's outputs are unreadable ({type(exc).__name__}); nothing written") from None
    if reference.shape[:1] != (samples,):
        raise ExportRefused(f"the sandboxed export returned outputs for {reference.shape[:1]} rows, expected {samples}; "
                            "nothing written")
    return reference, exported


def compare(reference: Any, exported: Any, tolerance: float, checked_by: str, classification: bool = True) -> Verification:
    """Compare two output arrays row by row (see :class:`Verification`): a difference in shape,
    or a non-finite value where the other is finite, counts as an infinite difference."""
    import numpy as np

    reference, exported = np.asarray(reference, dtype=np.float64), np.asarray(exported, dtype=np.float64)
    samples = int(reference.shape[0]) if reference.ndim else 0
    if reference.shape != exported.shape:
        return Verification(samples, float("inf"), 0.0 if classification else None, tolerance, checked_by)
    same_nonfinite = ~np.isfinite(reference) & ~np.isfinite(exported) & (np.isnan(reference) == np.isnan(exported))
    same_nonfinite &= np.isnan(reference) | (reference == exported)
    diff = np.where(same_nonfinite, 0.0, np.abs(reference - exported))
    diff = np.where(np.isnan(diff), np.inf, diff)
    largest = float(diff.max()) if diff.size else 0.0
    agreement = None
    if classification and reference.ndim == 2 and samples:
        agreement = float((reference.argmax(1) == exported.argmax(1)).mean())
    return Verification(samples, largest, agreement, tolerance, checked_by)


def _onnx_outputs(model: Path, x: Any) -> Any:
    """The ONNX file run here with onnxruntime, independently of the sandbox's own run: an ONNX
    graph is data (standard operators only), so this process can run it."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    try:
        proto = onnx.load(str(model), load_external_data=False)
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
            # exported with external_data=False: a file naming others (anywhere on disk) was not ours
            raise ValueError("the file refers to external data files; it was exported as one self-contained file")
        onnx.checker.check_model(proto)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: x[i:i + BATCH_SIZE]})[0] for i in range(0, len(x), BATCH_SIZE)])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ExportRefused(f"the ONNX export does not load or run in onnxruntime: {type(exc).__name__}: {first}; "
                            "nothing written") from None


def _check_target(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a directory; choose an empty or new directory with -o")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir} is not empty; choose an empty or new directory with -o (nothing is overwritten)")
    parent = out_dir.parent
    if not out_dir.exists() and not parent.is_dir():
        raise ExportError(f"cannot create {out_dir}: directory {parent} does not exist")


def export_trial(db: ResultsDB, experiment: str, fmt: str, out_dir: str | Path, *, trial: int | None = None,
                 runs: str | Path | None = "runs", tolerance: float = DEFAULT_TOLERANCE,
                 timeout_s: float = DEFAULT_TIMEOUT_S, isolation: str = "auto", python: str | None = None,
                 memory_mb: int | None = 8192, samples: int = MAX_SAMPLES) -> ExportResult:
    """Export a trial's model into ``out_dir`` with a model card; see the module docstring.

    ``runs``: the folder of run directories (``runs/<experiment>``), searched when the paths the
    database holds do not exist here. ``isolation``: ``auto``, ``bubblewrap`` or ``process-group``
    (as ``runner.isolation``). ``python``: the interpreter that runs the sandboxed worker (default:
    this one). Raises :class:`ExportError` for a request that cannot be done and
    :class:`ExportRefused` when the export fails or disagrees; ``out_dir`` is then left as it was.
    """
    import sys

    from neuromosaic_core.sandbox import Limits, default_cpu_seconds, empty_directory, is_regular_file, run_sandboxed_sync
    from neuromosaic_export.card import CardFacts, model_card
    from neuromosaic_export.worker import FILES, REPORT

    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if not tolerance >= 0:
        raise ExportError(f"the tolerance must be a number >= 0, got {tolerance}")
    target = Path(out_dir).expanduser()
    _check_target(target)
    chosen = choose_trial(db, experiment, trial)
    runs_dir = Path(runs).expanduser() if runs is not None else None
    weights = weights_file(chosen, runs_dir)
    isolation = check_isolation(isolation, chosen)
    exp = db.get_experiment(experiment)

    scratch = Path(tempfile.mkdtemp(prefix="neuromosaic-export-"))
    try:
        stage, out = scratch / "in", scratch / "out"
        stage.mkdir(mode=0o755)
        out.mkdir()
        x = test_inputs(exp, _run_dirs(chosen, weights, runs_dir), scratch / "task-data", limit=samples)
        if len(x) == 0:
            raise ExportError(f"the test split of {experiment!r} is empty; nothing to check the export on")
        import numpy as np

        np.savez(stage / "inputs.npz", x=x)
        (stage / "code.py").write_text(chosen.code or "")
        (stage / "weights.pt").write_bytes(_read_weights(weights))
        job = {"format": fmt, "code": str(stage / "code.py"), "weights": str(stage / "weights.pt"),
               "inputs": str(stage / "inputs.npz"), "batch_size": BATCH_SIZE}
        (stage / "job.json").write_text(json.dumps(job))
        for path in stage.iterdir():
            path.chmod(0o644)  # read by the sandbox's unprivileged uid
        limits = Limits(timeout_s=timeout_s, memory_mb=memory_mb, cpu_seconds=default_cpu_seconds(timeout_s),
                        processes=64, file_size_mb=4096, output_mb=16, tmp_mb=256)
        argv = [python or sys.executable, "-m", "neuromosaic_export.worker", str(stage / "job.json")]
        outcome = run_sandboxed_sync(argv, out, limits, _environment(), readable=[str(stage)], isolation=isolation,
                                     gpu=False)
        if outcome.returncode != 0 or outcome.timed_out or outcome.output_exceeded or outcome.processes_exceeded \
                or outcome.cpu_exceeded:
            raise ExportRefused(f"the {fmt} export of trial {chosen.number} failed in the sandbox: "
                                f"{_sandbox_failure(outcome)}; nothing written")
        model_name = FILES[fmt]
        model_file = out / model_name
        if not is_regular_file(model_file) or model_file.stat().st_size == 0:
            raise ExportRefused(f"the sandboxed {fmt} export wrote no {model_name}; nothing written")
        reference, exported = _read_outputs(out, len(x))
        classification = not _is_regression(chosen)
        if fmt == "onnx":  # run the file here too: the sandbox's own numbers are not taken on trust
            exported = _onnx_outputs(model_file, x)
            checked = compare(reference, exported, tolerance, "onnxruntime, outside the sandbox", classification)
        else:
            loader = "torch.jit.load" if fmt == "torchscript" else "torch.export.load"
            if exported is None:
                raise ExportRefused(f"the sandboxed {fmt} export returned no outputs of its own; nothing written")
            checked = compare(reference, exported, tolerance, f"{loader}, in the sandbox", classification)
        if not checked.ok:
            raise ExportRefused(f"the {fmt} export of trial {chosen.number} disagrees with the PyTorch model: "
                                f"{checked.describe()}, above the tolerance {tolerance:g}; nothing written")
        report = _worker_report(out / REPORT)
        names = (model_name,)
        facts = CardFacts(
            experiment=exp, trial=chosen, fmt=fmt, files=names, verification=checked,
            input_shape=tuple(int(d) for d in x.shape[1:]), outputs=int(reference.shape[1]) if reference.ndim == 2 else 1,
            code_sha256=hashlib.sha256((chosen.code or "").encode()).hexdigest(), versions=report.get("versions", {}),
            isolation=outcome.isolation)
        text = model_card(facts)
        _check_target(target)  # still empty: nothing is overwritten
        created = not target.exists()
        target.mkdir(exist_ok=True)
        try:
            for name in names:
                shutil.move(str(out / name), str(target / name))
            (target / "README.md").write_text(text, encoding="utf-8")
        except OSError as exc:
            empty_directory(target)
            if created:
                shutil.rmtree(target, ignore_errors=True)
            raise ExportError(f"cannot write into {target}: {exc.strerror or exc}") from None
        return ExportResult(target, names, target / "README.md", chosen.number, fmt, checked, outcome.isolation)
    finally:
        empty_directory(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


def _is_regression(trial: Trial) -> bool:
    metrics = trial.result.metrics if trial.result is not None else {}
    return "val_rmse" in metrics or "test_rmse" in metrics


def _worker_report(path: Path) -> Mapping[str, Any]:
    """The versions the worker reports (for the card only; never used to decide anything)."""
    from neuromosaic_core.sandbox import is_regular_file

    try:
        if is_regular_file(path) and path.stat().st_size < 1 << 16:
            report = json.loads(path.read_text())
            versions = report.get("versions", {}) if isinstance(report, dict) else {}
            return {"versions": {str(k)[:40]: str(v)[:40] for k, v in versions.items()} if isinstance(versions, dict) else {}}
    except (OSError, ValueError):
        pass
    return {}


__all__ = ["DEFAULT_TOLERANCE", "FORMATS", "ExportError", "ExportRefused", "ExportResult", "Verification", "choose_trial",
           "compare", "export_trial", "test_inputs", "weights_file"]
