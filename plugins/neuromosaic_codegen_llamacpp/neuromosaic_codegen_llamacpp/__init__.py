"""Neuromosaic plugin: the ``llamacpp`` code generator (an LLM run in-process from a GGUF file).

Only the hook implementation and a lazy factory live here, so discovering the plugin stays cheap:
llama-cpp-python is imported, and the model loaded, only when the generator is first used.
"""

from __future__ import annotations

from typing import Any

from neuromosaic_codegen_llamacpp.settings import LlamaCppSettings
from neuromosaic_core import hookimpl

__version__ = "0.1.2"


def _factory(settings: LlamaCppSettings) -> Any:
    """An :class:`~neuromosaic_core.llm.LLMCodeGen` over :class:`~neuromosaic_codegen_llamacpp.chat.LlamaCppChat`;
    :class:`~neuromosaic_core.errors.ConfigError` if ``model_path`` is unset or not a file."""
    from neuromosaic_codegen_llamacpp.chat import LlamaCppChat
    from neuromosaic_core.llm import LLMCodeGen

    return LLMCodeGen(LlamaCppChat(settings if settings is not None else LlamaCppSettings()))


@hookimpl
def register_codegen_providers(register: Any) -> None:
    register(
        "llamacpp",
        _factory,
        settings=LlamaCppSettings,
        description="an LLM run in-process from a local GGUF file (llama-cpp-python; set codegen.model_path)",
        llm=True,  # an LLMProvider too: the llm strategy can use it
    )
