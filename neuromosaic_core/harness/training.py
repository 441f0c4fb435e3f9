"""The trial harness: what runs inside any runner for one trial.

Loads the generated module (after validating it again), checks the output shape on a dummy
batch, trains with AdamW and early stopping on a validation split (fixed seed, one torch
thread), evaluates, measures, saves the weights and returns a TrialResult. Every runner runs this
same module, so a trial means the same on a laptop, in a container and on a cluster.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import os
import resource
import time
from pathlib import Path
from typing import Any

from neuromosaic_core.codegen.validation import CodeRejected, validate_code
from neuromosaic_core.harness.device import DeviceUnavailable, resolve_device
from neuromosaic_core.interfaces import TrialJob
from neuromosaic_core.model import ErrorClass, TrialResult


class TrialFailure(Exception):
    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def load_generated_module(code_path: str | Path, module_name: str = "neuromosaic_generated") -> Any:
    """Validate and import a generated module from a file; returns the module."""
    code = Path(code_path).read_text()
    validate_code(code)
    spec = importlib.util.spec_from_file_location(module_name, code_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {code_path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _split(n: int, val_fraction: float, seed: int) -> tuple[Any, Any]:
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return order[n_val:], order[:n_val]


class _Rows:
    """Rows of a (memory-mapped) array taken batch by batch onto the device, so a trial holds no
    copy of the data set: the operating system shares the mapped file between all trials."""

    def __init__(self, x: Any, y: Any, index: Any, device: Any) -> None:
        self.x, self.y, self.index, self.device = x, y, index, device

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, positions: Any) -> tuple[Any, Any]:
        import numpy as np
        import torch

        rows = np.sort(self.index[positions])  # ascending: sequential reads of the mapped file
        x = torch.from_numpy(np.ascontiguousarray(self.x[rows], dtype=np.float32)).to(self.device)
        return x, self.y[torch.from_numpy(rows)].to(self.device)

    def batches(self, batch_size: int = 512) -> Any:
        import numpy as np

        for i in range(0, len(self.index), batch_size):
            yield self.batch(np.arange(i, min(i + batch_size, len(self.index))))


def _loss(kind: str, out: Any, y: Any, reduction: str = "mean") -> Any:
    import torch.nn.functional as F

    if kind == "regression":
        return F.mse_loss(out, y.reshape(out.shape), reduction=reduction)
    return F.cross_entropy(out, y, reduction=reduction)


def _evaluate(model: Any, rows: _Rows, kind: str = "classification", y_std: Any = None) -> tuple[float, float]:
    """``(accuracy, mean loss)``; for regression ``(RMSE in the targets' own units, mean squared
    error of the standardised targets)``."""
    import torch

    model.eval()
    score, loss_sum = 0.0, 0.0
    with torch.no_grad():
        for x, y in rows.batches():
            out = model(x)
            loss_sum += _loss(kind, out, y, reduction="sum").item()
            if kind == "regression":
                scale = torch.as_tensor(y_std, dtype=out.dtype, device=out.device) if y_std is not None else 1.0
                score += (((out - y.reshape(out.shape)) * scale) ** 2).sum().item()
            else:
                score += (out.argmax(1) == y).sum().item()
    if kind == "regression":
        targets = max(1, len(rows) * (rows.y.shape[1] if rows.y.dim() > 1 else 1))
        return math.sqrt(score / targets), loss_sum / targets
    return score / len(rows), loss_sum / len(rows)


def _make_optimizer(name: str, params: Any, lr: float, weight_decay: float) -> Any:
    import torch

    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise TrialFailure(ErrorClass.RUNTIME, f"unknown optimizer {name!r}; choose adamw, adam or sgd")


def run_job(job: TrialJob) -> TrialResult:
    """Run one trial (or one segment of it, see :attr:`TrialJob.max_epochs`); every failure comes
    back as a failed TrialResult."""
    try:
        metrics, curve, fidelity = _train_and_measure(job)
        return TrialResult(metrics=metrics, weights_path=job.weights_path, curve=curve, fidelity=fidelity)
    except TrialFailure as exc:
        return TrialResult.failure(exc.error_class, str(exc))
    except CodeRejected as exc:
        return TrialResult.failure(ErrorClass.INVALID_CODE, str(exc))
    except DeviceUnavailable as exc:
        return TrialResult.failure(ErrorClass.RUNTIME, str(exc))
    except MemoryError as exc:
        return TrialResult.failure(ErrorClass.RUNTIME, f"out of memory: MemoryError {exc}".strip())
    except Exception as exc:
        if is_out_of_memory(exc):
            return TrialResult.failure(ErrorClass.RUNTIME, f"out of memory: {type(exc).__name__}: {exc}")
        return TrialResult.failure(ErrorClass.RUNTIME, f"{type(exc).__name__}: {exc}")


def is_out_of_memory(exc: BaseException) -> bool:
    """torch reports a failed allocation as a RuntimeError (CPU) or OutOfMemoryError (CUDA)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or \
        "can't allocate memory" in text or "out of memory" in text.lower()


def _load_checkpoint(path: str | None) -> dict[str, Any] | None:
    """The training state a previous segment of this trial left, or None. ``weights_only``: the
    file lies in the trial's directory, where the generated code could have written too."""
    if not path or not Path(path).is_file():
        return None
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrialFailure(ErrorClass.RUNTIME, f"cannot read the checkpoint {path}: {type(exc).__name__}: {exc}") from None


def _save_checkpoint(path: str, state: dict[str, Any]) -> None:
    import torch

    tmp = Path(path).with_suffix(".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write leaves the previous checkpoint, never half of one


def _train_and_measure(job: TrialJob) -> tuple[dict[str, float], tuple[float, ...], int]:
    """Train (from the checkpoint when there is one) and measure; the metrics, the learning curve
    and the fidelity reached (``training.epochs`` when training ran to its end)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if job.code_path:
        validate_code(Path(job.code_path).read_text())  # before importing torch: rejected code costs no start-up
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(1)
    settings = job.training
    torch.manual_seed(settings.seed)
    device = torch.device(resolve_device(job.device, torch))
    print(f"neuromosaic harness: trial {job.trial_id} trains on {device}", flush=True)

    try:
        module = load_generated_module(job.code_path, f"neuromosaic_generated_{job.trial_id}")
        model = module.Net()
    except (CodeRejected, MemoryError):
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise
        raise TrialFailure(ErrorClass.IMPORT, f"loading Net failed: {type(exc).__name__}: {exc}") from None

    from neuromosaic_core.harness.data import open_arrays

    kind = job.kind
    if kind not in ("classification", "regression"):
        raise TrialFailure(ErrorClass.RUNTIME, f"unknown task kind {kind!r}; expected classification or regression")
    data = open_arrays(job.data_path)  # memory-mapped: the features are read batch by batch, never copied whole
    y_dtype = torch.float32 if kind == "regression" else torch.long
    y_all = torch.as_tensor(np.array(data["y_train"]), dtype=y_dtype)
    y_test_all = torch.as_tensor(np.array(data["y_test"]), dtype=y_dtype)
    y_std = None
    if kind == "regression" and "y_mean" in data and "y_std" in data:  # train on standardised targets, report RMSE in their units
        y_mean, y_std = np.array(data["y_mean"], dtype=np.float32), np.array(data["y_std"], dtype=np.float32)
        y_all = (y_all - torch.from_numpy(y_mean)) / torch.from_numpy(y_std)
        y_test_all = (y_test_all - torch.from_numpy(y_mean)) / torch.from_numpy(y_std)
    train_idx, val_idx = _split(len(y_all), settings.val_fraction, settings.seed)
    train_rows = _Rows(data["x_train"], y_all, train_idx, device)
    val_rows = _Rows(data["x_train"], y_all, val_idx, device)
    test_rows = _Rows(data["x_test"], y_test_all, np.arange(len(y_test_all)), device)
    model = model.to(device)

    expected = (2, job.num_classes)
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *job.input_shape, device=device))
    except MemoryError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise
        raise TrialFailure(ErrorClass.SHAPE, f"forward on a dummy batch {(2, *job.input_shape)} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TrialFailure(ErrorClass.SHAPE, f"forward returned {got}, expected {expected}")

    params = sum(p.numel() for p in model.parameters())
    if job.max_params is not None and params > job.max_params:
        raise TrialFailure(ErrorClass.CONSTRAINT, f"max_params: the generated model has {params:,} > {job.max_params:,} parameters")
    x_one, _ = val_rows.batch(np.arange(1))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x_one)
    flops = counter.get_total_flops()

    optimizer = _make_optimizer(settings.optimizer, model.parameters(), settings.learning_rate, settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    # early stopping on validation accuracy, or on (minus) the validation RMSE for regression
    best_score, best_state, best_epoch, epochs_run = -math.inf, None, 0, 0
    curve: list[float] = []  # the validation score after each epoch
    stopped_early, seconds_before = False, 0.0
    checkpoint = _load_checkpoint(job.checkpoint_path)
    if checkpoint is not None:  # a later segment: continue exactly where the last one stopped
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["torch_rng"])
        best_score, best_state, best_epoch = checkpoint["best_score"], checkpoint["best_state"], checkpoint["best_epoch"]
        epochs_run, curve, seconds_before = checkpoint["epochs"], list(checkpoint["curve"]), checkpoint["train_seconds"]
    until = min(settings.epochs, job.max_epochs or settings.epochs)
    start = time.perf_counter()
    for epoch in range(epochs_run, until):
        model.train()
        order = torch.randperm(len(train_rows), generator=generator).numpy()
        for i in range(0, len(order), settings.batch_size):
            idx = order[i : i + settings.batch_size]
            if len(idx) < 2:
                continue  # batch norm cannot train on one sample
            x_batch, y_batch = train_rows.batch(idx)
            loss = _loss(kind, model(x_batch), y_batch)
            if not math.isfinite(loss.item()):
                raise TrialFailure(ErrorClass.NAN_LOSS, f"training loss became {loss.item()} in epoch {epoch + 1}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        epochs_run = epoch + 1
        val_score, _ = _evaluate(model, val_rows, kind, y_std)
        curve.append(val_score)
        score = -val_score if kind == "regression" else val_score
        if score > best_score:
            best_score, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch
        elif epoch - best_epoch >= settings.patience:
            stopped_early = True
            break
    train_seconds = seconds_before + time.perf_counter() - start
    finished = stopped_early or epochs_run >= settings.epochs
    if job.checkpoint_path:
        if finished:
            Path(job.checkpoint_path).unlink(missing_ok=True)
        else:  # paused at a milestone: what the next segment needs to go on as if never stopped
            _save_checkpoint(job.checkpoint_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(), "best_score": best_score, "best_state": best_state,
                "best_epoch": best_epoch, "epochs": epochs_run, "curve": curve, "train_seconds": train_seconds})
    if best_state is not None:
        model.load_state_dict(best_state)

    val_acc, val_loss = _evaluate(model, val_rows, kind, y_std)
    test_acc, test_loss = _evaluate(model, test_rows, kind, y_std)

    model.eval()
    timings = []
    with torch.no_grad():
        for i in range(min(50, len(test_rows))):
            x_i, _ = test_rows.batch(np.arange(i, i + 1))
            t0 = time.perf_counter()
            model(x_i)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timings.append(time.perf_counter() - t0)
    latency_ms = sorted(timings)[len(timings) // 2] * 1000

    if job.weights_path:
        Path(job.weights_path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, job.weights_path)

    score = "rmse" if kind == "regression" else "accuracy"
    return {
        f"val_{score}": val_acc,
        "val_loss": val_loss,
        f"test_{score}": test_acc,
        "test_loss": test_loss,
        "params": float(params),
        "flops": float(flops),
        "latency_ms": latency_ms,
        "train_seconds": train_seconds,
        "epochs": float(epochs_run),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }, tuple(curve), settings.epochs if finished else epochs_run
