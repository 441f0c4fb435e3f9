"""Settings of the ``resnet1d`` encoder (``encoder.<field>`` on the command line)."""

from __future__ import annotations

import attrs


def _between(low: int, high: int) -> object:
    return attrs.validators.and_(attrs.validators.instance_of(int), attrs.validators.ge(low), attrs.validators.le(high))


@attrs.frozen
class ResNet1dSettings:
    """``max_stages``: most residual stages (1-4, default 3; each stage after the first halves the
    length); ``max_blocks``: most residual blocks per stage (1-4, default 2)."""

    max_stages: int = attrs.field(default=3, validator=_between(1, 4))
    max_blocks: int = attrs.field(default=2, validator=_between(1, 4))
