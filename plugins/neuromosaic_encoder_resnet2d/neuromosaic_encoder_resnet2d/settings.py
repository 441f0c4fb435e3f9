"""Settings of the ``resnet2d`` encoder (``encoder.<field>`` on the command line)."""

from __future__ import annotations

import attrs

_count = attrs.validators.and_(attrs.validators.instance_of(int), attrs.validators.ge(1), attrs.validators.le(4))


@attrs.frozen
class ResNet2dSettings:
    """``max_stages``: most residual stages (1-4, default 3; every stage after the first halves
    height and width, so 3 stages take an 8x8 image down to 2x2 and 4 stages to 1x1);
    ``max_blocks``: most residual blocks per stage (1-4, default 2)."""

    max_stages: int = attrs.field(default=3, validator=_count)
    max_blocks: int = attrs.field(default=2, validator=_count)
