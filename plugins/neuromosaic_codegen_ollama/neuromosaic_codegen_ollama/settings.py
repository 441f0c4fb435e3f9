"""Settings of the ``ollama`` code generator (``codegen.<field>`` on the command line)."""

from __future__ import annotations

import attrs

from neuromosaic_core.llm import LLMSettings


@attrs.frozen
class OllamaSettings(LLMSettings):
    """The shared LLM settings (:class:`~neuromosaic_core.llm.LLMSettings`) plus Ollama's own.

    ``model``: an Ollama model name (``qwen2.5-coder:7b``; a name without a tag means ``:latest``).
    ``host``: the server (``http://gpu-box:11434``); unset, the ``ollama`` client's own rule
    applies: ``$OLLAMA_HOST``, else ``http://127.0.0.1:11434``. ``num_ctx``: the context window
    the model runs with (Ollama reloads the model when it changes). ``keep_alive``: how long the
    server keeps the model loaded after a call (``5m``, ``1h``, ``-1`` forever, ``0`` unload);
    unset, the server's default.
    """

    model: str = "qwen2.5-coder:7b"
    host: str | None = None
    num_ctx: int = 4096
    keep_alive: str | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not self.model.strip():
            raise ValueError("model must name an Ollama model, e.g. qwen2.5-coder:7b (see `ollama list`)")
        if self.num_ctx < 1:
            raise ValueError(f"num_ctx must be at least 1, got {self.num_ctx}")
