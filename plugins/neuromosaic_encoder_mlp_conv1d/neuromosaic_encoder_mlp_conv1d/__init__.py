"""Neuromosaic plugin: the ``mlp_conv1d`` architecture encoder (MLPs and 1-D CNNs in one space).

Only hook implementations live here, so discovering the plugin stays cheap; the encoder itself
is imported when the component is built.
"""

from __future__ import annotations

from typing import Any

from neuromosaic_core import hookimpl
from neuromosaic_encoder_mlp_conv1d.settings import MlpConv1dSettings

__version__ = "0.1.2"


def _factory(settings: MlpConv1dSettings) -> Any:
    from neuromosaic_encoder_mlp_conv1d.encoder import MlpConv1dEncoder

    return MlpConv1dEncoder(settings)


@hookimpl
def register_encoders(register: Any) -> None:
    register(
        "mlp_conv1d",
        _factory,
        settings=MlpConv1dSettings,
        description="MLPs and 1-D CNNs in one conditional space, chosen by a 'family' dimension",
    )
