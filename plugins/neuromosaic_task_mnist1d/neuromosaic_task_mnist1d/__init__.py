"""Neuromosaic plugin: the ``mnist1d`` task (MNIST-1D generated locally, never downloaded).

Cheap to import: numpy and mnist1d are imported by :mod:`neuromosaic_task_mnist1d.task`, which
the factory loads, and mnist1d only when the data is generated.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.1.1"


@attrs.frozen
class Mnist1dSettings:
    """``seed``: the generator's seed (mnist1d's own default is 42); ``num_samples``: examples in
    all, split 80/20 into train and test (rounded down to a multiple of 10, one share per class)."""

    seed: int = 42
    num_samples: int = attrs.field(default=5000)

    @num_samples.validator
    def _check_samples(self, _attribute: Any, value: int) -> None:
        if value < 50:
            raise ValueError(f"expected num_samples >= 50, got {value}")


def factory(settings: Mnist1dSettings | None) -> Any:
    from neuromosaic_task_mnist1d.task import Mnist1dTask

    return Mnist1dTask(settings if settings is not None else Mnist1dSettings())


@hookimpl
def register_tasks(register: Any) -> None:
    register("mnist1d", factory, settings=Mnist1dSettings, description="MNIST-1D, generated locally (40 features, 10 classes)")
