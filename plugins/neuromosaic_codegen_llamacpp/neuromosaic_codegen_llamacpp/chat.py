"""The ``llamacpp`` transport: a chat answered in-process by llama-cpp-python from a GGUF file.

The model is loaded once, on the first call or at the pre-flight :meth:`LlamaCppChat.check`.
One ``Llama`` object is not safe to use from several threads at once, and the orchestrator calls
the code generator from worker threads, so loading and every generation hold one lock: calls
queue up and run one at a time (each already uses every thread in ``n_threads``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import attrs
from loguru import logger

from neuromosaic_codegen_llamacpp.settings import LlamaCppSettings
from neuromosaic_core.llm import ChatModel, Completion, LLMError, Message, Sampling, TransientLLMError


class LlamaCppChat(ChatModel):
    """A :class:`~neuromosaic_core.llm.ChatModel` over ``llama_cpp.Llama``.

    Raises :class:`~neuromosaic_core.errors.ConfigError` at construction when ``model_path`` is
    unset or not a file; :class:`LLMError` (naming the file) when llama.cpp cannot load it;
    :class:`TransientLLMError` when a generation raises.
    """

    provider = "llamacpp"

    def __init__(self, settings: LlamaCppSettings) -> None:
        self.path = settings.checked_model_path()
        # The name goes into the code cache key and the trial record, so fill it in once here.
        super().__init__(attrs.evolve(settings, model=settings.model_name()))
        self.settings: LlamaCppSettings
        self._lock = threading.Lock()
        self._llama: Any = None

    # -- loading ------------------------------------------------------------------------------

    def _loaded(self) -> Any:
        """The ``Llama`` object, loaded on first use. Call with the lock held."""
        if self._llama is not None:
            return self._llama
        try:
            from llama_cpp import Llama, llama_chat_format
        except ImportError as exc:
            raise LLMError(f"llamacpp: llama-cpp-python is not importable ({exc}); "
                           "pip install -e plugins/neuromosaic_codegen_llamacpp") from None
        s = self.settings
        if s.chat_format is not None:  # else llama.cpp would fail on every call, not at start-up
            try:
                llama_chat_format.get_chat_completion_handler(s.chat_format)
            except Exception:
                known = sorted(getattr(llama_chat_format.LlamaChatCompletionHandlerRegistry, "_chat_handlers", {}))
                raise LLMError(f"llamacpp: codegen.chat_format={s.chat_format!r} is not a llama-cpp-python chat format "
                               f"(null: the GGUF's own template; known: {', '.join(known) or '?'})") from None
        threads = s.thread_count()
        start = time.perf_counter()
        try:
            self._llama = Llama(
                model_path=str(self.path),
                n_ctx=s.n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=s.n_gpu_layers,
                chat_format=s.chat_format,
                seed=s.seed,
                verbose=False,
            )
        except Exception as exc:  # llama.cpp says only "Failed to load model from file"
            raise LLMError(f"llamacpp: cannot load codegen.model_path={str(self.path)!r} ({type(exc).__name__}: "
                           f"{_one_line(exc)}); is it a GGUF model file this llama.cpp supports?") from None
        logger.info(f"llamacpp: loaded {self.path.name} in {time.perf_counter() - start:.1f}s "
                    f"({threads} threads, n_ctx {s.n_ctx}, {s.n_gpu_layers} GPU layers)")
        return self._llama

    def check(self) -> None:
        """Load the model now, so a bad file stops the run before the search starts."""
        with self._lock:
            self._loaded()

    def close(self) -> None:
        """Free the model (a later call loads it again)."""
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None

    # -- chat -----------------------------------------------------------------------------------

    def chat(self, messages: list[Message], sampling: Sampling) -> Completion:
        s = self.settings
        payload = [{"role": m.role, "content": m.content} for m in messages]
        with self._lock:
            llama = self._loaded()
            start = time.perf_counter()
            try:
                reply = llama.create_chat_completion(messages=payload, temperature=sampling.temperature,
                                                     max_tokens=sampling.max_tokens, seed=sampling.seed)
            except ValueError as exc:
                if "context window" in str(exc):  # the same prompt will never fit: not worth a retry
                    raise LLMError(f"llamacpp: {_one_line(exc)}; raise codegen.n_ctx (now {s.n_ctx}) "
                                   "or lower codegen.max_tokens") from None
                raise TransientLLMError(f"llamacpp: generation failed: ValueError: {_one_line(exc)}") from exc
            except Exception as exc:
                raise TransientLLMError(f"llamacpp: generation failed: {type(exc).__name__}: {_one_line(exc)}") from exc
            seconds = time.perf_counter() - start
        try:
            text = reply["choices"][0]["message"]["content"] or ""
            usage = reply.get("usage") or {}
        except (KeyError, IndexError, TypeError) as exc:
            raise TransientLLMError(f"llamacpp: malformed reply ({type(exc).__name__}: {exc})") from None
        completion_tokens = usage.get("completion_tokens")
        if completion_tokens:
            logger.debug(f"llamacpp: {completion_tokens} tokens in {seconds:.1f}s ({completion_tokens / seconds:.1f} tokens/s), "
                         f"finish reason {reply['choices'][0].get('finish_reason')}")
        return Completion(text, usage.get("prompt_tokens"), completion_tokens)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
