"""Neuromosaic plugin: the ``template`` code generator (offline, deterministic PyTorch code).

Only hook implementations live here, so discovering the plugin stays cheap (no torch import);
the generator itself is imported when the component is built.
"""

from __future__ import annotations

from typing import Any

from neuromosaic_codegen_template.settings import TemplateSettings
from neuromosaic_core import hookimpl

__version__ = "0.2.0"


def _factory(settings: TemplateSettings) -> Any:
    from neuromosaic_codegen_template.generator import TemplateCodeGen

    return TemplateCodeGen(settings)


@hookimpl
def register_codegen_providers(register: Any) -> None:
    register(
        "template",
        _factory,
        settings=TemplateSettings,
        description="offline, deterministic PyTorch code from the layer vocabulary (no LLM); the usual fallback",
    )
