"""Neuromosaic plugin: the ``ollama`` code generator (a model served by Ollama writes the code).

Only the hook implementation and a lazy factory live here, so discovering the plugin stays cheap:
the ``ollama`` client (and httpx, pydantic) is imported when the component is built.
"""

from __future__ import annotations

from typing import Any

from neuromosaic_codegen_ollama.settings import OllamaSettings
from neuromosaic_core import hookimpl

__version__ = "0.1.2"


def _factory(settings: OllamaSettings) -> Any:
    from neuromosaic_codegen_ollama.chat import OllamaChat
    from neuromosaic_core.llm import LLMCodeGen

    return LLMCodeGen(OllamaChat(settings if settings is not None else OllamaSettings()))


@hookimpl
def register_codegen_providers(register: Any) -> None:
    register(
        "ollama",
        _factory,
        settings=OllamaSettings,
        description="an LLM served by Ollama writes the code (codegen.model=qwen2.5-coder:7b, codegen.host)",
        llm=True,  # an LLMProvider too: the llm strategy can use it
    )
