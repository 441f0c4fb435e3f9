"""Neuromosaic plugin: the ``nasbench201`` architecture encoder (the NAS-Bench-201 cell space,
looked up in the benchmark's table) and ``nb201_cell`` (the same cells as trainable networks).

Only hook implementations live here, so discovering the plugin stays cheap; the encoders
themselves are imported when a component is built.
"""

from __future__ import annotations

from typing import Any

import attrs

from neuromosaic_core import hookimpl

__version__ = "0.2.1"


@attrs.frozen
class NasBench201Settings:
    """The space is fixed by the benchmark, so there is nothing to set; the empty settings class
    makes ``encoder.<anything>=...`` fail as an unknown key instead of being ignored."""


_positive = attrs.validators.and_(attrs.validators.instance_of(int), attrs.validators.ge(1))


@attrs.frozen
class Nb201CellSettings:
    """``channels``: channels of the first stage, ``C`` (the second and third have ``2C`` and
    ``4C``; default 16, the benchmark's); ``cells_per_stage``: cells in each of the three stages,
    ``N`` (default 5, the benchmark's; 1 for quick tests)."""

    channels: int = attrs.field(default=16, validator=_positive)
    cells_per_stage: int = attrs.field(default=5, validator=_positive)


def _factory(settings: NasBench201Settings | None) -> Any:
    from neuromosaic_encoder_nasbench201.encoder import NasBench201Encoder

    return NasBench201Encoder(settings)


def _cell_factory(settings: Nb201CellSettings | None) -> Any:
    from neuromosaic_encoder_nasbench201.cell_network import Nb201CellEncoder

    return Nb201CellEncoder(settings)


@hookimpl
def register_encoders(register: Any) -> None:
    register(
        "nasbench201",
        _factory,
        settings=NasBench201Settings,
        description="the NAS-Bench-201 cell: 6 edges, each one of 5 operations (15,625 cells)",
    )
    register(
        "nb201_cell",
        _cell_factory,
        settings=Nb201CellSettings,
        description="the NAS-Bench-201 cells (same vectors as nasbench201) as trainable networks in the benchmark's skeleton",
    )
