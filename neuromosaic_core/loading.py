"""Load a trained model from a run directory without retraining.

    from neuromosaic_core.loading import load_best_model, load_best_predictor
    model = load_best_model("runs/mnist1d-mlp_conv1d-random")
    predictor = load_best_predictor("runs/files-mlp_conv1d-random")  # with the task's preprocessing

The generated code is validated again before it is imported (it is your own run's code, but the
file may have been edited since). Code and weights encrypted at rest (docs/security.md) are
decrypted in memory with the operator's key (``$NEUROMOSAIC_ENCRYPTION_KEY`` or
``$NEUROMOSAIC_ENCRYPTION_KEY_FILE``); nothing is written back in clear.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs


def load_model(code_path: str | Path, weights_path: str | Path) -> Any:
    """Build ``Net`` from a generated module and load its trained weights; returns it in eval mode."""
    import io

    from neuromosaic_core.encryption import bytes_fingerprint, read_file

    code = read_file(code_path)
    weights = read_file(weights_path)
    import torch

    from neuromosaic_core.harness.training import load_generated_module

    if bytes_fingerprint(Path(code_path).read_bytes()) is None:
        module = load_generated_module(code_path, "neuromosaic_loaded_model")
    else:  # decrypted into a private temporary file that is gone once imported
        import tempfile

        with tempfile.TemporaryDirectory(prefix="neuromosaic-load-") as tmp:
            clear = Path(tmp) / "model.py"
            clear.write_bytes(code)
            module = load_generated_module(clear, "neuromosaic_loaded_model")
    model = module.Net()
    model.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    return model.eval()


def load_best_model(run_dir: str | Path) -> Any:
    """The best model of a run, as recorded in its ``summary.json``."""
    run_dir = Path(run_dir)
    best = json.loads((run_dir / "summary.json").read_text())["best"]
    if not best or not best.get("code") or not best.get("weights"):
        raise FileNotFoundError(f"{run_dir} has no best model with saved weights")
    return load_model(run_dir / best["code"], run_dir / best["weights"])


@attrs.frozen
class Predictor:
    """A model with what its task needs around it (:meth:`Task.predictor_state`): fitted
    preprocessing, class names, a vocabulary. ``state`` is None for a task that has none."""

    model: Any
    state: dict[str, Any] | None = None


def load_best_predictor(run_dir: str | Path) -> Any:
    """The best model of a run with its task's saved preprocessing (``preprocessing.json``): the
    class the state names (``predictor``, a ``module:Class`` of a ``neuromosaic`` package, built
    as ``Class(model, state)``), which predicts on raw inputs, else a :class:`Predictor`."""
    import importlib

    run_dir = Path(run_dir)
    model = load_best_model(run_dir)
    best = json.loads((run_dir / "summary.json").read_text())["best"]
    name = best.get("preprocessing")
    if not name:
        return Predictor(model)
    state = json.loads((run_dir / name).read_text())
    target = str(state.get("predictor") or "")
    module_name, _, class_name = target.partition(":")
    if not module_name.startswith("neuromosaic") or not class_name:
        return Predictor(model, state)
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(model, state)
