"""The ``openai`` provider against a real model over real HTTP: Qwen2.5-Coder-0.5B-Instruct served by
llama-cpp-python's OpenAI-compatible server (``llama_openai_server``).

A handful of generations in all (temperature 0, fixed seed, at most 512 tokens each). Skipped, with
the reason, when llama-cpp-python, the model or torch (the sandboxed probe) is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

import pytest
from neuromosaic_codegen_openai.chat import OpenAIChat
from neuromosaic_codegen_openai.settings import OpenAISettings

from neuromosaic_core.codegen import generate_validated_code, validate_code
from neuromosaic_core.interfaces import CodeGenRequest
from neuromosaic_core.llm import LLMCodeGen, LLMError, TransientLLMError
from neuromosaic_core.model import ArchitectureSpec, Layer
from neuromosaic_core.testing.llm_servers import fault_server, llama_openai_server
from neuromosaic_core.testing.models import ModelUnavailable, qwen_coder_gguf

#: What a user would type: the served file's name (llama.cpp's server lists the file's path).
MODEL = "qwen2.5-coder-0.5b-instruct"
SPECS = {
    "fc32-relu": ArchitectureSpec("mlp", [Layer("linear", {"out_features": 32}), Layer("activation", {"fn": "relu"})]),
    "fc64-gelu-drop-fc32-relu": ArchitectureSpec("mlp", [
        Layer("linear", {"out_features": 64}), Layer("activation", {"fn": "gelu"}), Layer("dropout", {"p": 0.1}),
        Layer("linear", {"out_features": 32}), Layer("activation", {"fn": "relu"}),
    ]),
}  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """``http://127.0.0.1:P/v1``: the real model behind the OpenAI API, for this module."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed: the sandboxed probe of generated code needs it")
    stack = contextlib.ExitStack()
    try:
        base = stack.enter_context(llama_openai_server(qwen_coder_gguf()))
    except ModelUnavailable as exc:
        pytest.skip(f"no real model: {exc}")
    with stack:
        yield base


def settings(base_url: str, **changes: object) -> OpenAISettings:
    # A 2-core CI machine under load writes ~4 tokens/s: give a call time.
    base = {"base_url": base_url, "model": MODEL, "temperature": 0.0, "seed": 0, "max_tokens": 512, "timeout": 300.0,
            "retries": 1, "backoff": 0.01}
    return OpenAISettings(**{**base, **changes})  # type: ignore[arg-type]


def test_check_finds_the_served_file_by_its_name_and_lists_it_for_a_wrong_one(server: str) -> None:
    chat = OpenAIChat(settings(server))
    chat.check()
    assert chat.request_model.endswith("/qwen2.5-coder-0.5b-instruct.gguf")  # what requests now name
    wrong = OpenAIChat(settings(server, model="gpt-4o"))
    with pytest.raises(LLMError, match="does not serve model 'gpt-4o'; it serves: .*qwen2.5-coder-0.5b-instruct.gguf; set codegen.model"):
        wrong.check()


def test_a_base_url_without_the_version_prefix_fails_once_and_is_not_retried(server: str) -> None:
    with fault_server("flaky", backend=server, n_fail=0) as proxy:  # a counting relay
        codegen = LLMCodeGen(OpenAIChat(settings(proxy.url.removesuffix("/v1"), retries=3)))
        with pytest.raises(LLMError, match="ends with its version prefix, e.g. /v1") as info:
            codegen.complete("Say hi")
        assert not isinstance(info.value, TransientLLMError)
        assert proxy.requests == 1


def test_a_flaky_server_is_retried_until_it_answers(server: str) -> None:
    with fault_server("flaky", backend=server, n_fail=2) as flaky:  # two HTTP 500s, then the model
        codegen = LLMCodeGen(OpenAIChat(settings(flaky.url, retries=2, max_tokens=8)))
        answer = codegen.complete("Say hi.")
        assert answer.strip() and flaky.requests == 3


@pytest.mark.parametrize("name", list(SPECS))
def test_the_real_model_writes_validated_code_or_the_record_says_why_not(server: str, name: str, fallback) -> None:  # noqa: ANN001
    request = CodeGenRequest(SPECS[name], (40,), 10)
    codegen = LLMCodeGen(OpenAIChat(settings(server)))
    codegen.preflight()
    outcome = generate_validated_code(codegen, request, attempts=2, provider_name="openai", fallback=fallback, fallback_name="template")
    record = outcome.record
    assert record is not None
    assert (record.provider, record.model) == ("openai", MODEL) and record.template_version.startswith("default-v")
    llm = [a for a in record.attempts if a.provider == "openai"]
    stages = [a.stage for a in llm]
    print(f"\nREAL openai {name}: {stages} -> {outcome.provider} "
          f"({', '.join(f'{a.latency_s:.1f}s/{a.prompt_tokens}+{a.completion_tokens} tok' for a in llm)})")
    for attempt in llm:  # what a user auditing the trial finds: the chat sent, the answer, its cost
        assert "class Net" in attempt.prompt and "nn.Linear(40, " in attempt.prompt
        assert attempt.response.strip() and attempt.latency_s > 0
        assert attempt.prompt_tokens and attempt.prompt_tokens > 0 and attempt.completion_tokens
    validate_code(outcome.code)
    if outcome.provider == "openai":
        assert stages[-1] == "accepted" and not record.fallback and outcome.code.strip() in llm[-1].response
    else:
        assert record.fallback and len(llm) == 2 and all(a.error for a in llm)
        assert stages[0] in ("extract", "validate", "probe", "fidelity")
    if len(llm) == 2:  # the repair round sent the first rejection back
        assert llm[0].error and llm[0].error.splitlines()[0][:60] in llm[1].prompt
    codegen.close()
