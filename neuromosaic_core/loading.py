"""Load a trained model from a run directory without retraining.

    from neuromosaic_core.loading import load_best_model
    model = load_best_model("runs/mnist1d-mlp_conv1d-random")

The generated code is validated again before it is imported (it is your own run's code, but the
file may have been edited since).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_model(code_path: str | Path, weights_path: str | Path) -> Any:
    """Build ``Net`` from a generated module and load its trained weights; returns it in eval mode."""
    import torch

    from neuromosaic_core.harness.training import load_generated_module

    model = load_generated_module(code_path, "neuromosaic_loaded_model").Net()
    model.load_state_dict(torch.load(weights_path, weights_only=True))
    return model.eval()


def load_best_model(run_dir: str | Path) -> Any:
    """The best model of a run, as recorded in its ``summary.json``."""
    run_dir = Path(run_dir)
    best = json.loads((run_dir / "summary.json").read_text())["best"]
    if not best or not best.get("code") or not best.get("weights"):
        raise FileNotFoundError(f"{run_dir} has no best model with saved weights")
    return load_model(run_dir / best["code"], run_dir / best["weights"])
