"""Neuromosaic plugin: the ``digits`` and ``digits_images`` tasks (scikit-learn's bundled 8x8 digits, no download).

``digits`` gives each image as 64 features; ``digits_images`` gives the same images, split the
same way, as ``(1, 8, 8)`` arrays for 2-D families such as ``resnet2d``.

Cheap to import: numpy and scikit-learn are imported by :mod:`neuromosaic_task_digits.task`,
which the factory loads.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.2.0"


@attrs.frozen
class DigitsSettings:
    """``test_fraction``: share of the 1,797 images held out as the test set (stratified);
    ``seed``: the split's random state."""

    test_fraction: float = attrs.field(default=0.2)
    seed: int = 0

    @test_fraction.validator
    def _check_fraction(self, _attribute: Any, value: float) -> None:
        if not 0.0 < value < 1.0:
            raise ValueError(f"expected 0 < test_fraction < 1, got {value}")


def factory(settings: DigitsSettings | None) -> Any:
    from neuromosaic_task_digits.task import DigitsTask

    return DigitsTask(settings if settings is not None else DigitsSettings())


def images_factory(settings: DigitsSettings | None) -> Any:
    from neuromosaic_task_digits.task import DigitsImagesTask

    return DigitsImagesTask(settings if settings is not None else DigitsSettings())


@hookimpl
def register_tasks(register: Any) -> None:
    register(
        "digits", factory, settings=DigitsSettings, description="8x8 handwritten digits from scikit-learn (64 features, 10 classes)"
    )
    register(
        "digits_images",
        images_factory,
        settings=DigitsSettings,
        description="the same 8x8 digits as (1, 8, 8) images, for 2-D families such as resnet2d (10 classes)",
    )
