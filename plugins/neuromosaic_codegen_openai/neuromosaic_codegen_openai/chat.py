"""The OpenAI-compatible transport: one chat completion through the ``openai`` client, failures
sorted into retryable (:class:`TransientLLMError`) and permanent (:class:`LLMError`)."""

from __future__ import annotations

import os

import openai
from loguru import logger

from neuromosaic_codegen_openai.settings import OpenAISettings
from neuromosaic_core.llm import ChatModel, Completion, LLMError, Message, Sampling, TransientLLMError

#: Sent when the key's variable is unset: local servers (llama.cpp, vLLM) ignore it, and the
#: client refuses to start without some key.
NO_KEY = "none"


def _names(model_id: str) -> set[str]:
    """What a served id may be called: itself, its last path part, and that without ``.gguf``
    (llama.cpp's server lists the model file's path)."""
    base = model_id.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    return {model_id.lower(), base, base.removesuffix(".gguf")}


def match_model(wanted: str, served: list[str]) -> str | None:
    """The served id that ``wanted`` names: exactly, else the one id whose file or last path part
    (with or without ``.gguf``) is ``wanted``; None when there is none or it is ambiguous."""
    if wanted in served:
        return wanted
    candidates = [s for s in served if _names(wanted) & _names(s)]
    return candidates[0] if len(candidates) == 1 else None


class OpenAIChat(ChatModel):
    """Chats with one model behind an OpenAI-compatible ``/chat/completions``."""

    provider = "openai"
    settings: OpenAISettings

    def __init__(self, settings: OpenAISettings) -> None:
        super().__init__(settings)
        key = os.environ.get(settings.api_key_env) or ""
        self._key_set = bool(key)
        self._secret = key
        organization = os.environ.get(settings.organization_env) if settings.organization_env else None
        self.client = openai.OpenAI(
            api_key=key or NO_KEY,
            organization=organization or None,
            base_url=settings.base_url,
            timeout=settings.timeout,
            max_retries=0,  # LLMCodeGen retries with backoff and a circuit breaker
        )
        self.request_model = settings.model  # what is sent; check() may resolve it to the served id

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if len(self._secret) >= 4 else text

    def _describe(self, exc: openai.APIError) -> str:
        return self._scrub(str(exc))[:300]

    def translate(self, exc: BaseException) -> LLMError | None:
        """The :class:`LLMError` a client exception stands for, or None when it is not a provider failure."""
        s, url = self.settings, self.settings.base_url
        if isinstance(exc, openai.APITimeoutError):
            return TransientLLMError(f"no answer from {url} within {s.timeout:g}s (codegen.timeout)")
        if isinstance(exc, openai.APIConnectionError):
            cause = f": {type(exc.__cause__).__name__}: {self._scrub(str(exc.__cause__))[:200]}" if exc.__cause__ else ""
            return TransientLLMError(f"cannot reach {url} ({exc}{cause}); check codegen.base_url and that the server runs")
        if isinstance(exc, openai.AuthenticationError):
            where = f"${s.api_key_env}" if self._key_set else f"no key (${s.api_key_env} is not set)"
            return LLMError(f"{url} refused the API key from {where} (HTTP 401); set {s.api_key_env} to a valid key, "
                            "or codegen.api_key_env to the name of the variable that holds it")
        if isinstance(exc, openai.PermissionDeniedError):
            return LLMError(f"the key from ${s.api_key_env} may not use {s.model!r} at {url} (HTTP 403): {self._describe(exc)}")
        if isinstance(exc, openai.NotFoundError):
            return LLMError(f"{url} has no model {s.model!r} or no chat API (HTTP 404: {self._describe(exc)}); check "
                            f"codegen.model (GET {url.rstrip('/')}/models lists them) and that codegen.base_url ends with its "
                            "version prefix, e.g. /v1")
        if isinstance(exc, openai.BadRequestError):
            return LLMError(f"{url} refused the request for {s.model!r} (HTTP 400): {self._describe(exc)}")
        if isinstance(exc, (openai.RateLimitError, openai.InternalServerError)):
            return TransientLLMError(f"{url} failed (HTTP {exc.status_code}): {self._describe(exc)}")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            kind = TransientLLMError if status in (408, 409, 429) or status >= 500 else LLMError
            return kind(f"{url} answered HTTP {status}: {self._describe(exc)}")
        if isinstance(exc, openai.APIResponseValidationError):
            return TransientLLMError(f"malformed reply from {url}: {self._describe(exc)}")
        if isinstance(exc, ValueError):  # a body that is not JSON (JSONDecodeError), or not UTF-8
            return TransientLLMError(f"malformed reply from {url} ({type(exc).__name__}: {self._scrub(str(exc))[:200]})")
        if isinstance(exc, openai.OpenAIError):
            return LLMError(f"{type(exc).__name__}: {self._scrub(str(exc))[:300]}")
        return None

    def _fail(self, exc: BaseException) -> LLMError:
        error = self.translate(exc)
        if error is None:
            raise exc
        return error

    def chat(self, messages: list[Message], sampling: Sampling) -> Completion:
        s = self.settings
        try:
            response = self.client.chat.completions.create(
                model=self.request_model,
                messages=[{"role": m.role, "content": m.content} for m in messages],  # type: ignore[misc]
                temperature=sampling.temperature,
                max_tokens=sampling.max_tokens,
                seed=sampling.seed,
            )
        except Exception as exc:
            # The key's value must never reach a log or a stored record: drop the client's exception chain.
            raise self._fail(exc) from None
        choices = getattr(response, "choices", None)
        message = getattr(choices[0], "message", None) if choices else None
        if message is None:
            raise TransientLLMError(f"malformed reply from {s.base_url}: no choices ({str(response)[:200]})")
        usage = getattr(response, "usage", None)
        return Completion(message.content or "", getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None))

    def served_models(self) -> list[str] | None:
        """The ids ``GET /models`` lists, or None when the server has no such endpoint."""
        try:
            return [m.id for m in self.client.models.list()]
        except openai.NotFoundError:
            return None
        except Exception as exc:
            raise self._fail(exc) from None

    def check(self) -> None:
        served = self.served_models()
        if not served:
            return  # nothing to compare with: the first chat tells
        found = match_model(self.settings.model, served)
        if found is None:
            shown = ", ".join(served[:20]) + (f" and {len(served) - 20} more" if len(served) > 20 else "")
            raise LLMError(f"{self.settings.base_url} does not serve model {self.settings.model!r}; it serves: "
                           f"{shown}; set codegen.model to one of them")
        if found != self.settings.model:
            logger.info(f"openai: codegen.model={self.settings.model!r} is served as {found!r} by {self.settings.base_url}")
        self.request_model = found

    def close(self) -> None:
        self.client.close()
