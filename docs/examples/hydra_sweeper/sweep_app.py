"""A Hydra app whose sweep Neuromosaic drives: a fast, known objective (no training, no torch).

    python docs/examples/hydra_sweeper/sweep_app.py --multirun hydra/sweeper=neuromosaic \
        hydra.sweeper.strategy=evolution hydra.sweeper.n_trials=20 \
        'model.depth=range(1,8)' 'optim.lr=tag(log,interval(1e-4,1e-1))' 'model.act=choice(relu,gelu)'

The app returns the "validation loss" of its configuration; the sweeper minimises it (the default
``hydra.sweeper.direction``). Its minimum, 0, is at depth 5, lr 3e-3 (log10 -2.5) and gelu.
"""

from __future__ import annotations

import math

import hydra
from omegaconf import DictConfig


def loss(depth: int, lr: float, act: str) -> float:
    """The objective: a bowl in depth and log10(lr), plus a penalty for relu."""
    return 0.1 * (depth - 5) ** 2 + (math.log10(lr) + 2.5) ** 2 + (0.0 if act == "gelu" else 0.5)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    value = loss(cfg.model.depth, cfg.optim.lr, cfg.model.act)
    print(f"depth={cfg.model.depth} lr={cfg.optim.lr:.3g} act={cfg.model.act} -> loss={value:.4f}")
    return value


if __name__ == "__main__":
    main()
