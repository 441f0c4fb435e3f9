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


def _evaluate(model: Any, x: Any, y: Any, batch_size: int = 512) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = model(x[i : i + batch_size])
            loss_sum += F.cross_entropy(out, y[i : i + batch_size], reduction="sum").item()
            correct += (out.argmax(1) == y[i : i + batch_size]).sum().item()
    return correct / len(x), loss_sum / len(x)


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
    """Run one trial; every failure comes back as a failed TrialResult."""
    try:
        return TrialResult(metrics=_train_and_measure(job), weights_path=job.weights_path)
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


def _train_and_measure(job: TrialJob) -> dict[str, float]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if job.code_path:
        validate_code(Path(job.code_path).read_text())  # before importing torch: rejected code costs no start-up
    import numpy as np
    import torch
    import torch.nn.functional as F
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

    with np.load(job.data_path, allow_pickle=False) as data:
        x_all = torch.tensor(data["x_train"], dtype=torch.float32)
        y_all = torch.tensor(data["y_train"], dtype=torch.long)
        x_test = torch.tensor(data["x_test"], dtype=torch.float32)
        y_test = torch.tensor(data["y_test"], dtype=torch.long)
    train_idx, val_idx = _split(len(x_all), settings.val_fraction, settings.seed)
    x_train, y_train = x_all[train_idx].to(device), y_all[train_idx].to(device)
    x_val, y_val = x_all[val_idx].to(device), y_all[val_idx].to(device)
    x_test, y_test = x_test.to(device), y_test.to(device)
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
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x_val[:1])
    flops = counter.get_total_flops()

    optimizer = _make_optimizer(settings.optimizer, model.parameters(), settings.learning_rate, settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    best_acc, best_state, best_epoch, epochs_run = -1.0, None, 0, 0
    start = time.perf_counter()
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        for i in range(0, len(order), settings.batch_size):
            idx = order[i : i + settings.batch_size]
            if len(idx) < 2:
                continue  # batch norm cannot train on one sample
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            if not math.isfinite(loss.item()):
                raise TrialFailure(ErrorClass.NAN_LOSS, f"training loss became {loss.item()} in epoch {epoch + 1}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        epochs_run = epoch + 1
        val_acc, _ = _evaluate(model, x_val, y_val)
        if val_acc > best_acc:
            best_acc, best_state, best_epoch = val_acc, copy.deepcopy(model.state_dict()), epoch
        elif epoch - best_epoch >= settings.patience:
            break
    train_seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)

    val_acc, val_loss = _evaluate(model, x_val, y_val)
    test_acc, test_loss = _evaluate(model, x_test, y_test)

    model.eval()
    timings = []
    with torch.no_grad():
        for i in range(min(50, len(x_test))):
            t0 = time.perf_counter()
            model(x_test[i : i + 1])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timings.append(time.perf_counter() - t0)
    latency_ms = sorted(timings)[len(timings) // 2] * 1000

    if job.weights_path:
        Path(job.weights_path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, job.weights_path)

    return {
        "val_accuracy": val_acc,
        "val_loss": val_loss,
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "params": float(params),
        "flops": float(flops),
        "latency_ms": latency_ms,
        "train_seconds": train_seconds,
        "epochs": float(epochs_run),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
