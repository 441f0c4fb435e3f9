"""The ``openai`` provider without a model: settings through the core's config, the API key kept out
of everything stored, registration, and every failure of a server over real HTTP (``fault_server``)
sorted, retried, counted by the circuit breaker and covered by the fallback."""

from __future__ import annotations

import subprocess
import sys
import time

import neuromosaic_codegen_openai as plugin
import pytest
from neuromosaic_codegen_openai.chat import NO_KEY, OpenAIChat, match_model
from neuromosaic_codegen_openai.settings import OpenAISettings

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
SECRET = "sk-test-0123456789abcdefSECRET"


def fast(base_url: str, **changes: object) -> OpenAISettings:
    """Settings for a fault test: a 1 s timeout, quick retries."""
    base = {"base_url": base_url + "/v1", "model": "coder", "timeout": 1.0, "retries": 1, "backoff": 0.01, "backoff_max": 0.02}
    return OpenAISettings(**{**base, **changes})  # type: ignore[arg-type]


# -- settings and registration -------------------------------------------------------------------


def test_settings_round_trip_through_the_config_converter() -> None:
    settings = OpenAISettings(base_url="http://127.0.0.1:8080/v1", model="qwen", api_key_env="MY_KEY", temperature=0.0)
    node = converter.unstructure(settings)
    assert node["base_url"] == "http://127.0.0.1:8080/v1" and node["api_key_env"] == "MY_KEY"
    assert structure_settings(node, OpenAISettings, "codegen") == settings
    defaults = OpenAISettings()
    assert (defaults.base_url, defaults.api_key_env, defaults.organization_env) == ("https://api.openai.com/v1", "OPENAI_API_KEY", None)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"api_key": SECRET}, "unknown key 'api_key'"),
        ({"base_url": "localhost:8080"}, "base_url must be an http:// or https:// URL"),
        ({"api_key_env": ""}, "api_key_env must name an environment variable"),
        ({"model": ""}, "model must name the endpoint's model"),
        ({"timeout": 0}, "timeout must be positive"),
    ],
)
def test_bad_settings_are_one_line_config_errors(node: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        structure_settings(node, OpenAISettings, "codegen")
    assert SECRET not in str(info.value)


def test_the_key_comes_from_the_named_variable_and_none_is_sent_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", SECRET)
    assert OpenAIChat(OpenAISettings(api_key_env="MY_KEY")).client.api_key == SECRET
    monkeypatch.delenv("MY_KEY")
    assert OpenAIChat(OpenAISettings(api_key_env="MY_KEY")).client.api_key == NO_KEY
    monkeypatch.setenv("MY_ORG", "org-42")
    assert OpenAIChat(OpenAISettings(organization_env="MY_ORG")).client.organization == "org-42"


def test_the_client_does_not_retry_on_its_own() -> None:
    chat = OpenAIChat(OpenAISettings(timeout=7.0))
    assert chat.client.max_retries == 0 and chat.client.timeout == 7.0


def test_plugin_registers_an_llm_code_generator() -> None:
    system = PluginSystem.load(extra_plugins=[("openai_test", plugin)], entry_points=False)
    component = system.get("codegen", "openai")
    assert component.settings is OpenAISettings
    provider = component.factory(settings=component.default_settings())
    assert isinstance(provider, LLMCodeGen) and isinstance(provider.chat_model, OpenAIChat)
    assert provider.model == "gpt-4o-mini" and not provider.trusted
    provider.close()


def test_plugin_import_is_cheap() -> None:
    code = "import sys, neuromosaic_codegen_openai; print(sorted(m for m in ('torch', 'openai', 'httpx', 'httpx2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_a_model_name_matches_the_file_a_llama_cpp_server_lists() -> None:
    served = ["/models/qwen2.5-coder-0.5b-instruct.gguf"]
    assert match_model("qwen2.5-coder-0.5b-instruct", served) == served[0]
    assert match_model("qwen2.5-coder-0.5b-instruct.gguf", served) == served[0]
    assert match_model("Qwen/Qwen2.5-Coder-7B-Instruct", ["Qwen/Qwen2.5-Coder-7B-Instruct"]) == "Qwen/Qwen2.5-Coder-7B-Instruct"
    assert match_model("Qwen2.5-Coder-7B-Instruct", ["Qwen/Qwen2.5-Coder-7B-Instruct"]) == "Qwen/Qwen2.5-Coder-7B-Instruct"
    assert match_model("gpt-4o", ["gpt-4o-mini", "gpt-4.1"]) is None
    assert match_model("coder", ["a/coder", "b/coder"]) is None  # ambiguous


# -- faults over real HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", FAULTS)
def test_every_fault_is_a_transient_error_raised_promptly(mode: str) -> None:
    with fault_server(mode) as srv:
        chat = OpenAIChat(fast(srv.url))
        started = time.monotonic()
        with pytest.raises(TransientLLMError) as info:
            chat.chat(HI, SAMPLING)
        assert time.monotonic() - started < 30  # the 1 s timeout holds: no 120 s default, no hang
        assert srv.url in str(info.value)  # the message names the endpoint
        chat.close()


@pytest.mark.parametrize("mode", FAULTS)
def test_retries_send_retries_plus_one_requests(mode: str) -> None:
    with fault_server(mode) as srv:
        codegen = LLMCodeGen(OpenAIChat(fast(srv.url, retries=1)))
        with pytest.raises(TransientLLMError):
            codegen.call(HI)
        assert srv.requests == (0 if mode == "refuse" else 2)  # nothing listens on a refused port
        codegen.close()


def test_the_circuit_opens_after_breaker_failures_and_keeps_requests_off_the_server() -> None:
    with fault_server("error500") as srv:
        codegen = LLMCodeGen(OpenAIChat(fast(srv.url, retries=0, breaker_failures=2, breaker_reset=60.0)))
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
        codegen = LLMCodeGen(OpenAIChat(fast(srv.url, retries=1, breaker_failures=2)))
        outcome = generate_validated_code(codegen, REQUEST, attempts=3, provider_name="openai", fallback=fallback, fallback_name="template")
        codegen.close()
    record = outcome.record
    assert record is not None and record.fallback and outcome.provider == "template"
    validate_code(outcome.code)
    assert record.provider == "openai" and record.model == "coder"
    llm = [a for a in record.attempts if a.provider == "openai"]
    # Two failed calls open the circuit (each keeps its real cause); the third attempt is not sent.
    assert [a.stage for a in llm] == ["provider"] * 3 and all(a.prompt and a.error for a in llm)
    assert "not called again" not in llm[1].error and "not called again" in llm[-1].error
    assert record.attempts[-1].provider == "template" and record.attempts[-1].stage == "accepted"
    assert srv.requests == (0 if mode == "refuse" else 2 * 2)  # (retries + 1) x breaker_failures



def _status_error(status: int, body: str = "nope") -> Exception:
    """The exception the client raises for an HTTP ``status`` answer (its own classes and transport)."""
    try:
        import httpx2 as http  # openai >= 3 ships its own fork of httpx
    except ImportError:  # pragma: no cover - openai 1.x and 2.x use httpx
        import httpx as http  # type: ignore[no-redef]
    from openai import OpenAI

    request = http.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = http.Response(status, request=request, json={"error": {"message": body}})
    return OpenAI(api_key="x", base_url="http://127.0.0.1:9/v1")._make_status_error_from_response(response)


@pytest.mark.parametrize(
    ("status", "kind", "says"),
    [
        (400, LLMError, "refused the request for 'coder' (HTTP 400)"),
        (403, LLMError, "may not use 'coder'"),
        (404, LLMError, "codegen.base_url ends with its version prefix"),
        (422, LLMError, "HTTP 422"),
        (408, TransientLLMError, "HTTP 408"),
        (429, TransientLLMError, "HTTP 429"),
        (500, TransientLLMError, "HTTP 500"),
        (503, TransientLLMError, "HTTP 503"),
    ],
)
def test_http_errors_by_status(status: int, kind: type, says: str) -> None:
    error = OpenAIChat(fast("http://127.0.0.1:9")).translate(_status_error(status))
    assert type(error) is kind and says in str(error)


def test_a_refused_key_names_the_variable_and_never_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_KEY", SECRET)
    chat = OpenAIChat(fast("http://127.0.0.1:9", api_key_env="TEAM_KEY"))
    error = chat.translate(_status_error(401, f"Incorrect API key provided: {SECRET}"))
    assert type(error) is LLMError and "$TEAM_KEY" in str(error) and SECRET not in str(error)
    monkeypatch.delenv("TEAM_KEY")
    error = OpenAIChat(fast("http://127.0.0.1:9", api_key_env="TEAM_KEY")).translate(_status_error(401))
    assert "$TEAM_KEY is not set" in str(error)
    error = chat.translate(_status_error(500, f"upstream echoed {SECRET}"))
    assert SECRET not in str(error) and "***" in str(error)
