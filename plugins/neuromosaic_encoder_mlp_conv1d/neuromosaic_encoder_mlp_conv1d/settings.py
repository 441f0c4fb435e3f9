"""Settings of the ``mlp_conv1d`` encoder (``encoder.<field>`` on the command line)."""

from __future__ import annotations

import attrs

_depth = attrs.validators.and_(attrs.validators.instance_of(int), attrs.validators.ge(1), attrs.validators.le(8))


@attrs.frozen
class MlpConv1dSettings:
    """``max_mlp_depth``: most hidden linear layers of an MLP (1-8, default 4);
    ``max_conv_blocks``: most convolution blocks of a 1-D CNN (1-8, default 4)."""

    max_mlp_depth: int = attrs.field(default=4, validator=_depth)
    max_conv_blocks: int = attrs.field(default=4, validator=_depth)
