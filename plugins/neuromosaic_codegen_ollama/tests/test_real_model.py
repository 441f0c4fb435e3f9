"""The ``ollama`` provider against a real model over real HTTP, through the official ``ollama`` client.

No genuine Ollama server can be installed where these tests run, so the server is
:mod:`neuromosaic_core.testing.ollama_server` (``ollama_test_server``): Ollama's ``/api/chat``,
``/api/tags`` and error answers, backed by Qwen2.5-Coder-0.5B-Instruct loaded with llama-cpp-python.
A handful of generations in all (temperature 0, fixed seed, at most 512 tokens each). Skipped, with
the reason, when llama-cpp-python, the model or torch (the sandboxed probe) is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

import pytest
from neuromosaic_codegen_ollama.chat import OllamaChat
from neuromosaic_codegen_ollama.settings import OllamaSettings

from neuromosaic_core.codegen import generate_validated_code, validate_code
from neuromosaic_core.interfaces import CodeGenRequest
from neuromosaic_core.llm import LLMCodeGen, LLMError, TransientLLMError
from neuromosaic_core.model import ArchitectureSpec, Layer
from neuromosaic_core.testing.llm_servers import fault_server, ollama_test_server
from neuromosaic_core.testing.models import ModelUnavailable, qwen_coder_gguf

MODEL = "qwen2.5-coder:0.5b"
SPECS = {
    "fc32-relu": ArchitectureSpec("mlp", [Layer("linear", {"out_features": 32}), Layer("activation", {"fn": "relu"})]),
    "fc64-gelu-drop-fc32-relu": ArchitectureSpec("mlp", [
        Layer("linear", {"out_features": 64}), Layer("activation", {"fn": "gelu"}), Layer("dropout", {"p": 0.1}),
        Layer("linear", {"out_features": 32}), Layer("activation", {"fn": "relu"}),
    ]),
}  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """``http://127.0.0.1:P``: the real model behind Ollama's API, for this module."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed: the sandboxed probe of generated code needs it")
    stack = contextlib.ExitStack()
    try:
        host = stack.enter_context(ollama_test_server(qwen_coder_gguf(), name=MODEL))
    except ModelUnavailable as exc:
        pytest.skip(f"no real model: {exc}")
    with stack:
        yield host


def settings(host: str, **changes: object) -> OllamaSettings:
    # A 2-core CI machine under load writes ~4 tokens/s: give a call time.
    base = {"host": host, "model": MODEL, "temperature": 0.0, "seed": 0, "max_tokens": 512, "timeout": 300.0,
            "retries": 1, "backoff": 0.01}
    return OllamaSettings(**{**base, **changes})  # type: ignore[arg-type]


def test_check_finds_the_model_and_says_how_to_get_a_missing_one(server: str) -> None:
    OllamaChat(settings(server)).check()
    with pytest.raises(LLMError, match=r"not on the Ollama server at .* \(it has qwen2.5-coder:0.5b\); run `ollama pull qwen2.5-coder:7b`"):
        OllamaChat(settings(server, model="qwen2.5-coder:7b")).check()


def test_an_unknown_model_fails_once_and_is_not_retried(server: str) -> None:
    with fault_server("flaky", backend=server, n_fail=0) as proxy:  # a counting relay
        codegen = LLMCodeGen(OllamaChat(settings(proxy.url, model="llama3:70b", retries=3)))
        with pytest.raises(LLMError, match="run `ollama pull llama3:70b`") as info:
            codegen.complete("Say hi")
        assert not isinstance(info.value, TransientLLMError)
        assert proxy.requests == 1


def test_a_flaky_server_is_retried_until_it_answers(server: str) -> None:
    with fault_server("flaky", backend=server, n_fail=2) as flaky:  # two HTTP 500s, then the model
        codegen = LLMCodeGen(OllamaChat(settings(flaky.url, retries=2, max_tokens=8)))
        answer = codegen.complete("Say hi.")
        assert answer.strip() and flaky.requests == 3


@pytest.mark.parametrize("name", list(SPECS))
def test_the_real_model_writes_validated_code_or_the_record_says_why_not(server: str, name: str, fallback) -> None:  # noqa: ANN001
    request = CodeGenRequest(SPECS[name], (40,), 10)
    codegen = LLMCodeGen(OllamaChat(settings(server)))
    codegen.preflight()
    outcome = generate_validated_code(codegen, request, attempts=2, provider_name="ollama", fallback=fallback, fallback_name="template")
    record = outcome.record
    assert record is not None
    assert (record.provider, record.model) == ("ollama", MODEL) and record.template_version.startswith("default-v")
    llm = [a for a in record.attempts if a.provider == "ollama"]
    stages = [a.stage for a in llm]
    print(f"\nREAL ollama {name}: {stages} -> {outcome.provider} "
          f"({', '.join(f'{a.latency_s:.1f}s/{a.prompt_tokens}+{a.completion_tokens} tok' for a in llm)})")
    for attempt in llm:  # what a user auditing the trial finds: the chat sent, the answer, its cost
        assert "class Net" in attempt.prompt and "nn.Linear(40, " in attempt.prompt
        assert attempt.response.strip() and attempt.latency_s > 0
        assert attempt.prompt_tokens and attempt.prompt_tokens > 0 and attempt.completion_tokens
    validate_code(outcome.code)
    if outcome.provider == "ollama":
        assert stages[-1] == "accepted" and not record.fallback and outcome.code.strip() in llm[-1].response
    else:
        assert record.fallback and len(llm) == 2 and all(a.error for a in llm)
        assert stages[0] in ("extract", "validate", "probe", "fidelity")
    if len(llm) == 2:  # the repair round sent the first rejection back
        assert llm[0].error and llm[0].error.splitlines()[0][:60] in llm[1].prompt
    codegen.close()
