"""Settings of the ``llamacpp`` code generator (``codegen.<field>`` on the command line)."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from neuromosaic_core.errors import ConfigError
from neuromosaic_core.llm import LLMSettings


@attrs.frozen
class LlamaCppSettings(LLMSettings):
    """The shared LLM settings (:class:`~neuromosaic_core.llm.LLMSettings`) plus how to load the model.

    ``model_path``: the GGUF file (required; checked when the generator is built, so
    ``neuromosaic --cfg job`` works without it). ``model``: the name stored in the trial record and
    the code cache key; empty means the file's stem. ``n_ctx``: the context window in tokens.
    ``n_threads``: CPU threads for generation; 0 means half the CPUs this process may run on (at
    least one), as llama.cpp itself chooses: a search trains trials beside the generator, and
    llama.cpp's threads spin while they wait for a busy core (ten times slower with too many).
    ``n_gpu_layers``: layers offloaded to a GPU (needs a GPU build of llama-cpp-python; -1: all).
    ``chat_format``: a llama-cpp-python chat format name (``chatml``, ``llama-3``...); ``None``
    uses the chat template stored in the GGUF file. ``timeout`` is not used: an in-process
    generation is bounded by ``max_tokens`` instead.
    """

    model_path: str = ""
    n_ctx: int = 4096
    n_threads: int = 0
    n_gpu_layers: int = 0
    chat_format: str | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.n_ctx < 1:
            raise ValueError(f"n_ctx must be at least 1, got {self.n_ctx}")
        if self.n_threads < 0:
            raise ValueError(f"n_threads must be 0 (half the CPUs) or more, got {self.n_threads}")
        if self.n_gpu_layers < -1:
            raise ValueError(f"n_gpu_layers must be -1 (all layers) or more, got {self.n_gpu_layers}")

    def checked_model_path(self) -> Path:
        """The model file; :class:`ConfigError` (one line naming ``codegen.model_path``) if it is not set
        or not a file."""
        if not self.model_path:
            raise ConfigError("codegen=llamacpp needs a model file: set codegen.model_path=/path/to/model.gguf")
        path = Path(self.model_path).expanduser()
        if not path.is_file():
            problem = "is a directory, not a GGUF file" if path.is_dir() else "does not exist"
            raise ConfigError(f"codegen.model_path={self.model_path!r} {problem}; point it at a GGUF model file")
        return path

    def model_name(self) -> str:
        """``model``, else the model file's stem (``qwen2.5-coder-0.5b-instruct``)."""
        return self.model or Path(self.model_path).stem

    def thread_count(self) -> int:
        """``n_threads``, with 0 resolved to half the CPUs this process may use (its affinity mask,
        which a container or ``taskset`` may narrow below ``os.cpu_count()``), at least one."""
        if self.n_threads:
            return self.n_threads
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cpus = os.cpu_count() or 1
        return max(cpus // 2, 1)
