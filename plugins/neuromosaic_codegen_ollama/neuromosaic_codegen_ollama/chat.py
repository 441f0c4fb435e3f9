"""The Ollama transport: one chat through the official ``ollama`` client, failures sorted into
retryable (:class:`TransientLLMError`) and permanent (:class:`LLMError`)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import ollama

from neuromosaic_codegen_ollama.settings import OllamaSettings
from neuromosaic_core.llm import ChatModel, Completion, LLMError, Message, Sampling, TransientLLMError

_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def same_model(wanted: str, served: str) -> bool:
    """Whether two Ollama model names are the same model (``qwen2.5-coder`` is ``qwen2.5-coder:latest``)."""

    def full(name: str) -> str:
        name = name.strip()
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return full(wanted) == full(served)


def translate_error(exc: BaseException, model: str, host: str, timeout: float) -> LLMError | None:
    """The :class:`LLMError` a client exception stands for, or None when it is not a provider failure.

    Connection errors, timeouts, HTTP 5xx, 429 and 408, a body that is not the JSON Ollama sends or
    a connection closed mid-answer are transient; an unknown model (404) and other 4xx are not.
    """
    if isinstance(exc, ollama.ResponseError):
        status = exc.status_code
        if status == 404:
            return LLMError(f"model {model!r} is not on the Ollama server at {host} ({exc.error}); "
                            f"run `ollama pull {model}` there, or set codegen.model to one that `ollama list` shows")
        if status in (-1, 408, 429) or status >= 500:  # -1: an error line inside an answer
            return TransientLLMError(f"the Ollama server at {host} failed: {exc.error} (HTTP {status})")
        return LLMError(f"the Ollama server at {host} refused the request for {model!r}: {exc.error} (HTTP {status})")
    if isinstance(exc, ollama.RequestError):
        return LLMError(f"{exc.error}")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return LLMError(f"cannot use host {host}: {exc}; set codegen.host to http://HOST:PORT")
    if isinstance(exc, httpx.TimeoutException):
        return TransientLLMError(f"no answer from {host} within {timeout:g}s (codegen.timeout)")
    if isinstance(exc, (httpx.TransportError, ConnectionError)):
        # The client turns httpx's ConnectError into a ConnectionError with a generic text: say it shorter.
        reason = "connection failed" if isinstance(exc, ConnectionError) else f"{type(exc).__name__}: {exc}"
        return TransientLLMError(f"cannot reach the Ollama server at {host}: {reason}; is `ollama serve` running there? "
                                 "(codegen.host, $OLLAMA_HOST)")
    if isinstance(exc, (ValueError, httpx.DecodingError)):  # JSONDecodeError, pydantic's ValidationError
        return TransientLLMError(f"malformed reply from {host} ({type(exc).__name__}: {str(exc)[:200]})")
    return None


class OllamaChat(ChatModel):
    """Chats with one model on an Ollama server (``/api/chat``, not streamed)."""

    provider = "ollama"
    settings: OllamaSettings

    def __init__(self, settings: OllamaSettings) -> None:
        super().__init__(settings)
        # host=None lets the client apply $OLLAMA_HOST and its default, as every Ollama tool does.
        self.client = ollama.Client(host=settings.host, timeout=settings.timeout)

    @property
    def host(self) -> str:
        """The server's URL, as the client resolved it."""
        inner = getattr(self.client, "_client", None)
        return str(getattr(inner, "base_url", None) or self.settings.host or "$OLLAMA_HOST").rstrip("/")

    def _options(self, sampling: Sampling) -> dict[str, Any]:
        return {"temperature": sampling.temperature, "seed": sampling.seed, "num_ctx": self.settings.num_ctx,
                "num_predict": sampling.max_tokens}

    def _keep_alive(self) -> str | float | None:
        value = self.settings.keep_alive
        # Ollama reads a bare number as seconds but a string only as a duration ("5m"): send numbers as numbers.
        if value is not None and _NUMBER.fullmatch(value.strip()):
            return float(value)
        return value

    def _fail(self, exc: BaseException) -> LLMError:
        error = translate_error(exc, self.settings.model, self.host, self.settings.timeout)
        if error is None:
            raise exc
        return error

    def chat(self, messages: list[Message], sampling: Sampling) -> Completion:
        try:
            response = self.client.chat(
                model=self.settings.model,
                messages=[{"role": m.role, "content": m.content} for m in messages],
                stream=False,
                options=self._options(sampling),
                keep_alive=self._keep_alive(),
            )
        except Exception as exc:
            raise self._fail(exc) from exc
        message = getattr(response, "message", None)
        text = getattr(message, "content", None)
        if text is None:
            raise TransientLLMError(f"malformed reply from {self.host}: no message content "
                                    f"({json.dumps(response.model_dump(exclude_none=True), default=str)[:200]})")
        return Completion(text, response.prompt_eval_count, response.eval_count)

    def served_models(self) -> list[str]:
        """The names of the models the server has (``/api/tags``)."""
        try:
            listing = self.client.list()
        except Exception as exc:
            raise self._fail(exc) from exc
        return [name for m in listing.models if (name := m.model or m.get("name"))]

    def check(self) -> None:
        models = self.served_models()
        if not any(same_model(self.settings.model, name) for name in models):
            have = (", ".join(models[:20]) + (f" and {len(models) - 20} more" if len(models) > 20 else "")) if models else "no models"
            raise LLMError(f"model {self.settings.model!r} is not on the Ollama server at {self.host} (it has {have}); "
                           f"run `ollama pull {self.settings.model}` there, or set codegen.model to one it has")

    def close(self) -> None:
        self.client.close()
