"""Neuromosaic plugin: the ``resnet2d`` architecture encoder (2-D residual networks for images).

Only hook implementations live here, so discovering the plugin stays cheap; the encoder itself
is imported when the component is built.
"""

from __future__ import annotations

from typing import Any

from neuromosaic_core import hookimpl
from neuromosaic_encoder_resnet2d.settings import ResNet2dSettings

__version__ = "0.1.1"


def _factory(settings: ResNet2dSettings) -> Any:
    from neuromosaic_encoder_resnet2d.encoder import ResNet2dEncoder

    return ResNet2dEncoder(settings)


@hookimpl
def register_encoders(register: Any) -> None:
    register(
        "resnet2d",
        _factory,
        settings=ResNet2dSettings,
        description="2-D residual networks for (C, H, W) images: stages of basic or bottleneck blocks, SE, stride or pool downsampling",
    )
