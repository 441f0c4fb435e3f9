"""LLM code generators: one pipeline for every provider, a small transport per plugin.

A provider plugin (``ollama``, ``openai``, ``llamacpp``, ...) implements :class:`ChatModel` —
send a chat, return the text and token counts, and sort its failures into
:class:`TransientLLMError` (worth retrying: connection refused or reset, timeout, HTTP 5xx or
429, a malformed reply) and :class:`LLMError` (will not get better: unknown model, bad key).
:class:`LLMCodeGen` wraps it with everything the providers share:

- prompts rendered from versioned template files (:mod:`neuromosaic_core.codegen.prompts`);
- retries with exponential backoff and jitter (tenacity) on transient errors;
- a circuit breaker (pybreaker): after ``breaker_failures`` failed calls in a row the provider is
  not called for ``breaker_reset`` seconds (the pipeline writes those trials' code with the
  fallback), then one probing call decides whether it closes again.

Validation, the sandboxed probe, the fidelity check, repair rounds, the fallback and the cache are
in :mod:`neuromosaic_core.codegen.pipeline`, shared with non-LLM generators.
"""

from __future__ import annotations

import abc
import time
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from neuromosaic_core.errors import NeuromosaicError
from neuromosaic_core.interfaces import CodeGenProvider, CodeGenRequest, Generation, GenerationError, LLMProvider

if TYPE_CHECKING:  # imported when a generator is built, not when plugins are discovered
    from neuromosaic_core.codegen.prompts import PromptTemplate


class LLMError(NeuromosaicError):
    """A provider failure that retrying will not fix (unknown model, refused credentials)."""


class TransientLLMError(LLMError):
    """A provider failure worth retrying: connection refused or reset, timeout, 5xx, 429, a
    malformed or truncated reply."""


class ProviderUnavailable(LLMError):
    """The circuit breaker is open: the provider failed repeatedly and is left alone for a while."""


@attrs.frozen
class Message:
    role: str  # "system", "user" or "assistant"
    content: str


@attrs.frozen
class Completion:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@attrs.frozen
class Sampling:
    """How to sample one call: the settings' values on a first round; on a repair round the seed
    moves on and the temperature is at least ``repair_temperature`` (at temperature 0 the same
    prompt would give the same rejected answer again)."""

    temperature: float
    seed: int
    max_tokens: int


@attrs.frozen
class LLMSettings:
    """Settings every LLM code generator shares (a provider's settings class subclasses this).

    ``prompt``: a bundled template set (``default``, ``example``) or the path of a directory of
    step files (see ``docs/generated-code.md``). ``retries``: extra tries of one call on a
    transient error, waiting ``backoff`` × 2^n seconds (plus jitter, at most ``backoff_max``).
    ``breaker_failures`` failed calls in a row open the circuit for ``breaker_reset`` seconds.
    ``repair_temperature``: the least temperature of a repair round (whose seed also moves on).
    ``fidelity_tolerance``: the largest relative difference between the module's parameter count
    and the spec's. ``probe_timeout``: seconds for the sandboxed instantiate-and-forward check.
    ``cache``: reuse the stored, accepted code of an identical request (same spec, shapes,
    provider, model and template version) instead of calling the model.
    """

    model: str = ""
    temperature: float = 0.2
    max_tokens: int = 1024
    seed: int = 0
    timeout: float = 120.0
    prompt: str = "default"
    retries: int = 2
    backoff: float = 1.0
    backoff_max: float = 20.0
    breaker_failures: int = 3
    breaker_reset: float = 60.0
    repair_temperature: float = 0.6
    fidelity_tolerance: float = 0.05
    probe_timeout: float = 60.0
    cache: bool = True

    def __attrs_post_init__(self) -> None:
        for name in ("retries",):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")
        for name in ("max_tokens", "breaker_failures"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("timeout", "probe_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.fidelity_tolerance <= 1:
            raise ValueError(f"fidelity_tolerance must be between 0 and 1, got {self.fidelity_tolerance}")


class ChatModel(abc.ABC):
    """One provider's transport: a chat request in, text and token counts out."""

    #: How the provider names itself in logs and trial records.
    provider: str = "llm"

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings

    @property
    def model(self) -> str:
        return self.settings.model

    @abc.abstractmethod
    def chat(self, messages: list[Message], sampling: Sampling) -> Completion:
        """Send one chat; raise :class:`TransientLLMError` or :class:`LLMError` on failure."""

    def check(self) -> None:
        """Cheap start-up check that the model exists (raise :class:`LLMError`) and the server
        answers (raise :class:`TransientLLMError`). Optional."""

    def close(self) -> None:
        """Release clients or the loaded model."""


class LLMCodeGen(CodeGenProvider, LLMProvider):
    """A code generator (and free-form :class:`LLMProvider`) over any :class:`ChatModel`."""

    trusted = False

    def __init__(self, chat_model: ChatModel, settings: LLMSettings | None = None, template: PromptTemplate | None = None) -> None:
        import pybreaker

        from neuromosaic_core.codegen.prompts import load_template

        self.chat_model = chat_model
        self.settings = settings if settings is not None else chat_model.settings
        self.template = template if template is not None else load_template(self.settings.prompt)
        self.fidelity_tolerance = self.settings.fidelity_tolerance
        self.probe_timeout = self.settings.probe_timeout
        self.cache = self.settings.cache
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=self.settings.breaker_failures,
            reset_timeout=self.settings.breaker_reset,
            name=chat_model.provider,
            # Only provider failures count: a bug of ours must not open the circuit.
            exclude=[lambda exc: not isinstance(exc, LLMError)],
            throw_new_error_on_trip=False,  # the call that trips it keeps its own error in the record
        )

    # -- identity (the cache key and the trial record) ----------------------------------------

    @property
    def model(self) -> str:
        return self.chat_model.model

    def identity(self) -> tuple[str, str]:
        return self.model, self.template.version

    def identity_for(self, request: CodeGenRequest) -> tuple[str, str]:
        # a graph is asked with the graph steps: their hash joins the version (sequential: unchanged)
        return self.model, self.template.version_for(request)

    # -- calls ----------------------------------------------------------------------------------

    def _retrying(self) -> Any:
        import tenacity

        s = self.settings

        def _log(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            logger.warning(f"{self.chat_model.provider}: {exc}; retry {state.attempt_number}/{s.retries} "
                           f"in {state.next_action.sleep if state.next_action else 0:.1f}s")

        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(s.retries + 1),
            wait=tenacity.wait_exponential(multiplier=s.backoff, max=s.backoff_max) + tenacity.wait_random(0, s.backoff),
            retry=tenacity.retry_if_exception_type(TransientLLMError),
            before_sleep=_log,
            reraise=True,
        )

    def sampling(self, attempt: int = 1) -> Sampling:
        s = self.settings
        if attempt <= 1:
            return Sampling(s.temperature, s.seed, s.max_tokens)
        return Sampling(max(s.temperature, s.repair_temperature), s.seed + attempt - 1, s.max_tokens)

    def call(self, messages: list[Message], sampling: Sampling | None = None) -> Completion:
        """One chat through the retries and the circuit breaker.

        Raises :class:`ProviderUnavailable` while the circuit is open, else the provider's last
        :class:`LLMError`.
        """
        import pybreaker

        try:
            return self.breaker.call(self._retrying(), self.chat_model.chat, messages, sampling or self.sampling())
        except pybreaker.CircuitBreakerError as exc:
            raise ProviderUnavailable(
                f"{self.chat_model.provider} failed {self.settings.breaker_failures} calls in a row; "
                f"not called again for {self.settings.breaker_reset:g}s ({exc})"
            ) from None

    def generate(self, request: CodeGenRequest) -> Generation:
        messages = self.template.messages(request)
        prompt = "\n\n".join(f"{m.role}: {m.content}" for m in messages)
        start = time.perf_counter()
        try:
            completion = self.call(messages, self.sampling(request.attempt))
        except LLMError as exc:
            raise GenerationError(str(exc), prompt, time.perf_counter() - start,
                                  unavailable=isinstance(exc, ProviderUnavailable)) from exc
        return Generation(completion.text, prompt, time.perf_counter() - start,
                          completion.prompt_tokens, completion.completion_tokens)

    def generate_code(self, request: CodeGenRequest) -> str:
        return self.generate(request).text

    def complete(self, prompt: str, system: str | None = None) -> str:
        messages = ([Message("system", system)] if system else []) + [Message("user", prompt)]
        return self.call(messages).text

    def preflight(self) -> None:
        """Check the provider before the search: a permanent error (unknown model) stops the run
        with its message; an unreachable server only warns (the fallback covers it)."""
        try:
            self.chat_model.check()
        except TransientLLMError as exc:
            logger.warning(f"{self.chat_model.provider} is not reachable now ({exc}); trials fall back "
                           "to the template generator until it answers")

    def close(self) -> None:
        self.chat_model.close()


__all__ = [
    "ChatModel",
    "Completion",
    "GenerationError",
    "LLMCodeGen",
    "LLMError",
    "LLMSettings",
    "Message",
    "ProviderUnavailable",
    "Sampling",
    "TransientLLMError",
]
