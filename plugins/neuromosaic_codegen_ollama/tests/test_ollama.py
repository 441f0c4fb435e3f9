"""The ``ollama`` provider without a model: settings through the core's config, registration, and
every failure of a server over real HTTP (``fault_server``) sorted, retried, counted by the circuit
breaker and covered by the fallback."""

from __future__ import annotations

import subprocess
import sys
import time

import attrs
import neuromosaic_codegen_ollama as plugin
import ollama
import pytest
from neuromosaic_codegen_ollama.chat import OllamaChat, same_model, translate_error
from neuromosaic_codegen_ollama.settings import OllamaSettings

from neuromosaic_core.codegen import generate_validated_code, validate_code
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.interfaces import CodeGenRequest
from neuromosaic_core.llm import LLMCodeGen, LLMError, Message, ProviderUnavailable, Sampling, TransientLLMError
from neuromosaic_core.model import ArchitectureSpec, Layer, converter
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import structure_settings
from neuromosaic_core.testing.llm_servers import fault_server

MLP = ArchitectureSpec("mlp", [Layer("linear", {"out_features": 32}), Layer("activation", {"fn": "relu"})])
REQUEST = CodeGenRequest(MLP, (40,), 10)
HI = [Message("user", "hi")]
SAMPLING = Sampling(temperature=0.0, seed=0, max_tokens=16)
FAULTS = ["refuse", "hang", "error500", "garbage", "drop"]


def fast(host: str, **changes: object) -> OllamaSettings:
    """Settings for a fault test: a 1 s timeout, quick retries."""
    base = {"host": host, "model": "qwen2.5-coder:0.5b", "timeout": 1.0, "retries": 1, "backoff": 0.01, "backoff_max": 0.02}
    return OllamaSettings(**{**base, **changes})  # type: ignore[arg-type]


# -- settings and registration -------------------------------------------------------------------


def test_settings_round_trip_through_the_config_converter() -> None:
    settings = OllamaSettings(host="http://gpu-box:11434", num_ctx=8192, keep_alive="10m", temperature=0.0)
    node = converter.unstructure(settings)
    assert node["model"] == "qwen2.5-coder:7b" and node["host"] == "http://gpu-box:11434"
    assert structure_settings(node, OllamaSettings, "codegen") == settings
    # What Hydra hands over for `codegen.num_ctx=2048 codegen.keep_alive=-1`: strings and ints.
    parsed = structure_settings({"num_ctx": "2048", "keep_alive": -1, "host": None}, OllamaSettings, "codegen")
    assert parsed.num_ctx == 2048 and parsed.keep_alive == "-1" and parsed.host is None


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"api_key": "x"}, "unknown key 'api_key'"),
        ({"hots": "x"}, "valid keys: "),
        ({"num_ctx": 0}, "num_ctx must be at least 1"),
        ({"num_ctx": "big"}, "codegen.num_ctx: expected an integer, got 'big'"),
        ({"model": " "}, "model must name an Ollama model"),
        ({"retries": -1}, "retries must be at least 0"),
    ],
)
def test_bad_settings_are_one_line_config_errors(node: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        structure_settings(node, OllamaSettings, "codegen")


def test_plugin_registers_an_llm_code_generator() -> None:
    system = PluginSystem.load(extra_plugins=[("ollama_test", plugin)], entry_points=False)
    component = system.get("codegen", "ollama")
    assert component.settings is OllamaSettings
    provider = component.factory(settings=component.default_settings())
    assert isinstance(provider, LLMCodeGen) and isinstance(provider.chat_model, OllamaChat)
    assert provider.model == "qwen2.5-coder:7b" and not provider.trusted
    provider.close()


def test_plugin_import_is_cheap() -> None:
    code = "import sys, neuromosaic_codegen_ollama; print(sorted(m for m in ('torch', 'ollama', 'httpx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_host_unset_follows_ollama_host_like_every_ollama_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert OllamaChat(OllamaSettings()).host == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:1234")
    assert OllamaChat(OllamaSettings()).host == "http://gpu-box:1234"
    assert OllamaChat(OllamaSettings(host="http://other:5")).host == "http://other:5"  # the setting wins


def test_model_names_match_with_and_without_latest() -> None:
    assert same_model("qwen2.5-coder", "qwen2.5-coder:latest")
    assert same_model("qwen2.5-coder:latest", "qwen2.5-coder")
    assert same_model("registry.local:5000/team/coder", "registry.local:5000/team/coder:latest")
    assert not same_model("qwen2.5-coder:7b", "qwen2.5-coder:latest")
    assert not same_model("qwen2.5-coder", "qwen2.5-coder:0.5b")


@pytest.mark.parametrize(
    ("status", "kind", "says"),
    [
        (404, LLMError, "ollama pull qwen2.5-coder:0.5b"),
        (400, LLMError, "refused the request"),
        (401, LLMError, "refused the request"),
        (429, TransientLLMError, "HTTP 429"),
        (500, TransientLLMError, "HTTP 500"),
        (503, TransientLLMError, "HTTP 503"),
    ],
)
def test_response_errors_by_status(status: int, kind: type, says: str) -> None:
    error = translate_error(ollama.ResponseError('{"error": "boom"}', status), "qwen2.5-coder:0.5b", "http://h:1", 1.0)
    assert type(error) is kind and says in str(error)


# -- faults over real HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", FAULTS)
def test_every_fault_is_a_transient_error_raised_promptly(mode: str) -> None:
    with fault_server(mode) as srv:
        chat = OllamaChat(fast(srv.url))
        started = time.monotonic()
        with pytest.raises(TransientLLMError) as info:
            chat.chat(HI, SAMPLING)
        assert time.monotonic() - started < 30  # the 1 s timeout holds: no 120 s default, no hang
        assert srv.url.removeprefix("http://") in str(info.value)  # the message names the server
        chat.close()


@pytest.mark.parametrize("mode", FAULTS)
def test_retries_send_retries_plus_one_requests(mode: str) -> None:
    with fault_server(mode) as srv:
        codegen = LLMCodeGen(OllamaChat(fast(srv.url, retries=1)))
        with pytest.raises(TransientLLMError):
            codegen.call(HI)
        assert srv.requests == (0 if mode == "refuse" else 2)  # nothing listens on a refused port
        codegen.close()


def test_a_permanent_error_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def unknown_model(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise ollama.ResponseError('{"error": "model \\"x\\" not found, try pulling it first"}', 404)

    codegen = LLMCodeGen(OllamaChat(fast("http://127.0.0.1:9", retries=3)))
    monkeypatch.setattr(codegen.chat_model.client, "chat", unknown_model)
    with pytest.raises(LLMError, match="ollama pull") as info:
        codegen.call(HI)
    assert not isinstance(info.value, TransientLLMError) and len(calls) == 1


def test_the_circuit_opens_after_breaker_failures_and_keeps_requests_off_the_server() -> None:
    with fault_server("error500") as srv:
        codegen = LLMCodeGen(OllamaChat(fast(srv.url, retries=0, breaker_failures=2, breaker_reset=60.0)))
        with pytest.raises(TransientLLMError):
            codegen.call(HI)
        with pytest.raises(TransientLLMError) as second:  # the second failure opens the circuit, keeping its cause
            codegen.call(HI)
        assert not isinstance(second.value, ProviderUnavailable)
        assert srv.requests == 2
        for _ in range(3):
            with pytest.raises(ProviderUnavailable, match="not called again for 60s"):
                codegen.call(HI)
        assert srv.requests == 2  # an open circuit sends nothing
        codegen.close()


@pytest.mark.parametrize("mode", FAULTS)
def test_the_fallback_writes_the_code_whatever_the_fault(mode: str, fallback) -> None:  # noqa: ANN001
    with fault_server(mode) as srv:
        codegen = LLMCodeGen(OllamaChat(fast(srv.url, retries=1, breaker_failures=2)))
        outcome = generate_validated_code(codegen, REQUEST, attempts=3, provider_name="ollama", fallback=fallback, fallback_name="template")
        codegen.close()
    record = outcome.record
    assert record is not None and record.fallback and outcome.provider == "template"
    validate_code(outcome.code)
    assert record.provider == "ollama" and record.model == "qwen2.5-coder:0.5b"
    llm = [a for a in record.attempts if a.provider == "ollama"]
    # Two failed calls open the circuit (each keeps its real cause); the third attempt is not sent.
    assert [a.stage for a in llm] == ["provider"] * 3 and all(a.prompt and a.error for a in llm)
    assert "not called again" not in llm[1].error and "not called again" in llm[-1].error
    assert record.attempts[-1].provider == "template" and record.attempts[-1].stage == "accepted"
    assert srv.requests == (0 if mode == "refuse" else 2 * 2)  # (retries + 1) x breaker_failures


def test_options_and_keep_alive_reach_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: dict = {}

    def capture(**kwargs: object) -> ollama.ChatResponse:
        sent.update(kwargs)
        return ollama.ChatResponse(model="m", message={"role": "assistant", "content": "ok"}, prompt_eval_count=7, eval_count=3)

    chat = OllamaChat(OllamaSettings(model="m", temperature=0.0, seed=5, num_ctx=2048, max_tokens=256, keep_alive="-1"))
    monkeypatch.setattr(chat.client, "chat", capture)
    first_round = LLMCodeGen(chat).sampling(1)  # the settings' values on a first round
    completion = chat.chat([Message("system", "be brief"), Message("user", "hi")], first_round)
    assert (completion.text, completion.prompt_tokens, completion.completion_tokens) == ("ok", 7, 3)
    assert sent["options"] == {"temperature": 0.0, "seed": 5, "num_ctx": 2048, "num_predict": 256}
    assert sent["stream"] is False and sent["keep_alive"] == -1.0 and sent["model"] == "m"
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    chat = OllamaChat(attrs.evolve(chat.settings, keep_alive="5m"))
    monkeypatch.setattr(chat.client, "chat", capture)
    chat.chat(HI, SAMPLING)
    assert sent["keep_alive"] == "5m"
