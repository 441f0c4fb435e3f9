"""Neuromosaic plugin: the ``openai`` code generator (any OpenAI-compatible chat endpoint).

Only the hook implementation and a lazy factory live here, so discovering the plugin stays cheap:
the ``openai`` client is imported when the component is built.
"""

from __future__ import annotations

from typing import Any

from neuromosaic_codegen_openai.settings import OpenAISettings
from neuromosaic_core import hookimpl

__version__ = "0.1.2"


def _factory(settings: OpenAISettings) -> Any:
    from neuromosaic_codegen_openai.chat import OpenAIChat
    from neuromosaic_core.llm import LLMCodeGen

    return LLMCodeGen(OpenAIChat(settings if settings is not None else OpenAISettings()))


@hookimpl
def register_codegen_providers(register: Any) -> None:
    register(
        "openai",
        _factory,
        settings=OpenAISettings,
        description="an LLM behind any OpenAI-compatible API writes the code (OpenAI, llama.cpp, vLLM; codegen.base_url)",
        llm=True,  # an LLMProvider too: the llm strategy can use it
    )
