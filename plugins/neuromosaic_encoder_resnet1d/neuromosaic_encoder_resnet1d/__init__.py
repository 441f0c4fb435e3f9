"""Neuromosaic plugin: the ``resnet1d`` architecture encoder (residual networks of dilated 1-D convolutions).

Only hook implementations live here, so discovering the plugin stays cheap; the encoder itself
is imported when the component is built.
"""

from __future__ import annotations

from typing import Any

from neuromosaic_core import hookimpl
from neuromosaic_encoder_resnet1d.settings import ResNet1dSettings

__version__ = "0.1.1"


def _factory(settings: ResNet1dSettings) -> Any:
    from neuromosaic_encoder_resnet1d.encoder import ResNet1dEncoder

    return ResNet1dEncoder(settings)


@hookimpl
def register_encoders(register: Any) -> None:
    register(
        "resnet1d",
        _factory,
        settings=ResNet1dSettings,
        description="residual stages of dilated 1-D convolutions, optional squeeze-and-excitation, global pooling head",
    )
