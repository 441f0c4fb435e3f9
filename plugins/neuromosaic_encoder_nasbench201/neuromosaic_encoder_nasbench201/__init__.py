"""Neuromosaic plugin: the ``nasbench201`` architecture encoder (the NAS-Bench-201 cell space).

Only hook implementations live here, so discovering the plugin stays cheap; the encoder itself
is imported when the component is built.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.1.0"


@attrs.frozen
class NasBench201Settings:
    """The space is fixed by the benchmark, so there is nothing to set; the empty settings class
    makes ``encoder.<anything>=...`` fail as an unknown key instead of being ignored."""


def _factory(settings: NasBench201Settings | None) -> Any:
    from neuromosaic_encoder_nasbench201.encoder import NasBench201Encoder

    return NasBench201Encoder(settings)


@hookimpl
def register_encoders(register: Any) -> None:
    register(
        "nasbench201",
        _factory,
        settings=NasBench201Settings,
        description="the NAS-Bench-201 cell: 6 edges, each one of 5 operations (15,625 cells)",
    )
