"""Tests of the llamacpp code generator.

Three layers, cheapest first:

- settings, errors and the transport's locking against a stand-in ``llama_cpp`` module (no model);
- a real GGUF model (Qwen2.5-Coder-0.5B-Instruct via ``neuromosaic_core.testing.models``, or any
  file in ``NEUROMOSAIC_TEST_GGUF``) loaded once per module: the validated-code pipeline on three
  small specs of the ``mlp_conv1d`` families, and two threads sharing the model;
- the CLI, in ``test_cli.py``.

Tests that lack the model or llama-cpp-python skip with the reason printed.
Generations are few and short (temperature 0, fixed seed, at most 512 tokens).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import neuromosaic_codegen_llamacpp as plugin
import pytest
from neuromosaic_codegen_llamacpp.chat import LlamaCppChat
from neuromosaic_codegen_llamacpp.settings import LlamaCppSettings

from neuromosaic_core.codegen import validate_code
from neuromosaic_core.codegen.pipeline import generate_validated_code
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.interfaces import CodeGenProvider, CodeGenRequest
from neuromosaic_core.llm import LLMCodeGen, LLMError, Message, Sampling, TransientLLMError
from neuromosaic_core.model import ArchitectureSpec, Layer
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import structure_settings


def skip(reason: str) -> None:
    print(f"SKIP: {reason}")
    pytest.skip(reason)


# -- settings -------------------------------------------------------------------------------------


def test_plugin_registers_the_provider() -> None:
    system = PluginSystem.load(extra_plugins=[("llamacpp_test", plugin)], entry_points=False)
    component = system.get("codegen", "llamacpp")
    assert component.settings is LlamaCppSettings
    assert "GGUF" in component.description


def test_settings_structure_from_config_values() -> None:
    settings = structure_settings(
        {"model_path": "/models/x.gguf", "n_ctx": 2048, "n_threads": 2, "n_gpu_layers": -1, "chat_format": "chatml",
         "temperature": 0.0, "max_tokens": 256},
        LlamaCppSettings, "codegen",
    )
    assert (settings.model_path, settings.n_ctx, settings.n_threads, settings.n_gpu_layers, settings.chat_format) == (
        "/models/x.gguf", 2048, 2, -1, "chatml")
    assert (settings.temperature, settings.max_tokens, settings.retries) == (0.0, 256, 2)  # shared LLM settings inherited
    defaults = LlamaCppSettings()
    assert (defaults.model_path, defaults.n_ctx, defaults.n_threads, defaults.n_gpu_layers, defaults.chat_format) == ("", 4096, 0, 0, None)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"n_ctx": "big"}, "codegen.n_ctx: expected an integer"),
        ({"n_ctx": 0}, "n_ctx must be at least 1, got 0"),
        ({"n_threads": -2}, "n_threads must be 0 (half the CPUs) or more"),
        ({"n_gpu_layers": -5}, "n_gpu_layers must be -1 (all layers) or more"),
        ({"modle_path": "/x.gguf"}, "unknown key 'modle_path'"),
    ],
)
def test_bad_settings_are_config_errors(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        structure_settings(data, LlamaCppSettings, "codegen")
    assert expected in str(info.value)


def test_model_name_defaults_to_the_file_stem_and_threads_to_the_usable_cpus(tmp_path: Path) -> None:
    gguf = tmp_path / "tiny-model.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    provider = plugin._factory(LlamaCppSettings(model_path=str(gguf)))
    assert isinstance(provider, LLMCodeGen)
    assert provider.model == "tiny-model.Q4" and provider.settings.model == "tiny-model.Q4"
    assert provider.identity()[0] == "tiny-model.Q4"  # what the code cache key is built from
    assert plugin._factory(LlamaCppSettings(model_path=str(gguf), model="mine")).model == "mine"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert LlamaCppSettings().thread_count() == max(usable // 2, 1)  # half: trials train beside it
    assert LlamaCppSettings(n_threads=3).thread_count() == 3


def test_missing_model_path_is_a_one_line_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^codegen=llamacpp needs a model file: set codegen.model_path=/path/to/model.gguf$"):
        plugin._factory(LlamaCppSettings())
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ConfigError, match=r"^codegen.model_path='.*nope.gguf' does not exist; point it at a GGUF model file$"):
        plugin._factory(LlamaCppSettings(model_path=str(missing)))
    with pytest.raises(ConfigError, match="is a directory, not a GGUF file"):
        plugin._factory(LlamaCppSettings(model_path=str(tmp_path)))


def test_plugin_import_is_cheap() -> None:
    code = "import sys, neuromosaic_codegen_llamacpp; print('llama_cpp' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False False"


# -- the transport against a stand-in llama_cpp module -------------------------------------------


class FakeLlama:
    """Records how it was built and called; answers after a short pause (so overlaps would show)."""

    instances: list[FakeLlama] = []
    fail_with: Exception | None = None

    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs
        self.calls: list[dict] = []
        self.active = 0
        self.max_active = 0
        self.closed = False
        self.guard = threading.Lock()
        FakeLlama.instances.append(self)

    def create_chat_completion(self, **kwargs: object) -> dict:
        with self.guard:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(0.05)
            if FakeLlama.fail_with is not None:
                raise FakeLlama.fail_with
            self.calls.append(kwargs)
            return {"choices": [{"message": {"role": "assistant", "content": "```python\nclass Net: ...\n```"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}
        finally:
            with self.guard:
                self.active -= 1

    def close(self) -> None:
        self.closed = True


def _handler(name: str) -> object:
    if name != "chatml":
        raise ValueError(f"Invalid chat handler: {name}")
    return object()


FAKE_FORMATS = types.SimpleNamespace(get_chat_completion_handler=_handler,
                                     LlamaChatCompletionHandlerRegistry=types.SimpleNamespace(_chat_handlers={"chatml": None}))


@pytest.fixture
def fake_llama(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=FakeLlama, llama_chat_format=FAKE_FORMATS))
    monkeypatch.setattr(FakeLlama, "instances", [])
    monkeypatch.setattr(FakeLlama, "fail_with", None)
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    return gguf


def test_model_is_loaded_lazily_once_with_the_settings(fake_llama: Path) -> None:
    settings = LlamaCppSettings(model_path=str(fake_llama), n_ctx=1024, n_threads=3, n_gpu_layers=2, chat_format="chatml",
                                seed=7, temperature=0.0, max_tokens=99)
    chat = LlamaCppChat(settings)
    assert FakeLlama.instances == []  # building the generator loads nothing
    completion = chat.chat([Message("system", "be brief"), Message("user", "hi")], Sampling(0.0, 7, 99))
    chat.chat([Message("user", "again")], Sampling(0.6, 8, 99))  # a repair round: warmer, next seed
    assert len(FakeLlama.instances) == 1
    llama = FakeLlama.instances[0]
    assert llama.kwargs == {"model_path": str(fake_llama), "n_ctx": 1024, "n_threads": 3, "n_threads_batch": 3,
                            "n_gpu_layers": 2, "chat_format": "chatml", "seed": 7, "verbose": False}
    assert llama.calls[0] == {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                              "temperature": 0.0, "max_tokens": 99, "seed": 7}
    assert {k: llama.calls[1][k] for k in ("temperature", "seed")} == {"temperature": 0.6, "seed": 8}
    assert (completion.text, completion.prompt_tokens, completion.completion_tokens) == ("```python\nclass Net: ...\n```", 12, 7)
    chat.close()
    assert llama.closed
    chat.close()  # closing twice is harmless
    chat.check()  # and a later use loads the model again
    assert len(FakeLlama.instances) == 2


def test_calls_from_several_threads_run_one_at_a_time(fake_llama: Path) -> None:
    chat = LlamaCppChat(LlamaCppSettings(model_path=str(fake_llama)))
    threads = [threading.Thread(target=chat.chat, args=([Message("user", f"q{i}")], Sampling(0.0, 0, 8))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(FakeLlama.instances) == 1  # concurrent first calls still load once
    assert len(FakeLlama.instances[0].calls) == 4 and FakeLlama.instances[0].max_active == 1


def test_generation_errors_are_transient_but_an_overlong_prompt_is_not(fake_llama: Path) -> None:
    chat = LlamaCppChat(LlamaCppSettings(model_path=str(fake_llama), n_ctx=512))
    FakeLlama.fail_with = RuntimeError("llama_decode returned -3")
    with pytest.raises(TransientLLMError, match=r"^llamacpp: generation failed: RuntimeError: llama_decode returned -3$"):
        chat.chat([Message("user", "hi")], Sampling(0.0, 0, 8))
    FakeLlama.fail_with = ValueError("Requested tokens (900) exceed context window of 512")
    with pytest.raises(LLMError, match=r"raise codegen.n_ctx \(now 512\)") as info:
        chat.chat([Message("user", "hi")], Sampling(0.0, 0, 8))
    assert not isinstance(info.value, TransientLLMError)


def test_a_failing_load_is_an_llm_error_naming_the_file(fake_llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**kwargs: object) -> None:
        raise ValueError(f"Failed to load model from file: {kwargs['model_path']}")

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=refuse, llama_chat_format=FAKE_FORMATS))
    provider = plugin._factory(LlamaCppSettings(model_path=str(fake_llama)))
    with pytest.raises(LLMError, match=r"^llamacpp: cannot load codegen.model_path='.*fake.gguf' .*is it a GGUF model file"):
        provider.preflight()


def test_an_unknown_chat_format_is_an_llm_error_before_loading(fake_llama: Path) -> None:
    chat = LlamaCppChat(LlamaCppSettings(model_path=str(fake_llama), chat_format="chatlm"))
    with pytest.raises(LLMError, match=r"^llamacpp: codegen.chat_format='chatlm' is not a llama-cpp-python chat format .*known: chatml\)$"):
        chat.check()
    assert FakeLlama.instances == []


# -- a real llama.cpp ---------------------------------------------------------------------------


def test_a_corrupt_gguf_file_is_a_clear_llm_error(tmp_path: Path) -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        skip(f"llama-cpp-python is not importable ({exc}): pip install -e plugins/neuromosaic_codegen_llamacpp")
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"\x13\x37 not a model \x00\xff" * 4)
    provider = plugin._factory(LlamaCppSettings(model_path=str(bad)))
    with pytest.raises(LLMError) as info:
        provider.preflight()
    message = str(info.value)
    assert not isinstance(info.value, TransientLLMError)
    assert str(bad) in message and "is it a GGUF model file" in message and "\n" not in message
    with pytest.raises(LLMError, match=r"chat_format='nope' is not a llama-cpp-python chat format .*known: .*chatml"):
        plugin._factory(LlamaCppSettings(model_path=str(bad), chat_format="nope")).preflight()


def _lin(n: int) -> Layer:
    return Layer("linear", {"out_features": n})


def _act(fn: str = "relu") -> Layer:
    return Layer("activation", {"fn": fn})


#: Small specs of the two mlp_conv1d families, each with correct code (the test's fallback, so the
#: test checks the plugin and the pipeline, not how clever a 0.5B model is).
SPECS: list[tuple[ArchitectureSpec, str]] = [
    (ArchitectureSpec("mlp", [_lin(32), _act(), _lin(16), _act()]),
     "nn.Linear(40, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)"),
    (ArchitectureSpec("mlp", [_lin(64), Layer("layernorm"), _act("gelu"), Layer("dropout", {"p": 0.1})]),
     "nn.Linear(40, 64), nn.LayerNorm(64), nn.GELU(), nn.Dropout(0.1), nn.Linear(64, 10)"),
    (ArchitectureSpec("conv1d", [Layer("conv1d", {"out_channels": 8, "kernel_size": 3, "stride": 1}), Layer("batchnorm"), _act(),
                                 Layer("maxpool1d", {"kernel_size": 2}), Layer("flatten"), _lin(32), _act()]),
     "nn.Unflatten(1, (1, 40)), nn.Conv1d(1, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2), "
     "nn.Flatten(), nn.Linear(160, 32), nn.ReLU(), nn.Linear(32, 10)"),
]  # fmt: skip


class ReferenceCode(CodeGenProvider):
    """The fallback: the known-good module of each sample spec."""

    def generate_code(self, request: CodeGenRequest) -> str:
        body = next(layers for spec, layers in SPECS if spec == request.spec)
        return ("import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                f"        self.layers = nn.Sequential({body})\n\n    def forward(self, x):\n        return self.layers(x)\n")


@pytest.fixture(scope="module")
def provider(gguf: Path):  # noqa: ANN201
    pytest.importorskip("torch", reason="the sandboxed probe of generated code needs torch")
    # One thread: llama.cpp's threads spin at every barrier, so with more threads than idle cores
    # (a shared CI machine, trials training beside it) generation slows down ten-fold or more.
    provider = plugin._factory(LlamaCppSettings(model_path=str(gguf), temperature=0.0, seed=0, max_tokens=512, n_threads=1))
    provider.preflight()  # loads the model
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def outcomes(provider: LLMCodeGen) -> list:
    """The pipeline on each sample spec (two model attempts, then the reference), timed."""
    results = []
    for spec, _ in SPECS:
        request = CodeGenRequest(spec, (40,), 10)
        start = time.perf_counter()
        outcome = generate_validated_code(provider, request, attempts=2, provider_name="llamacpp",
                                          fallback=ReferenceCode(), fallback_name="reference")
        seconds = time.perf_counter() - start
        results.append((spec, outcome, seconds))
        tokens = sum(a.completion_tokens or 0 for a in outcome.record.attempts)
        model_time = sum(a.latency_s for a in outcome.record.attempts if a.provider == "llamacpp")
        verdict = ("accepted first try" if outcome.provider == "llamacpp" and outcome.attempts == 1
                   else f"accepted after {outcome.attempts - 1} repair(s)" if outcome.provider == "llamacpp" else "fallback")
        print(f"llamacpp {spec.describe()}: {verdict}; {seconds:.1f}s in all, {tokens} completion tokens, "
              f"{tokens / model_time if model_time else 0:.1f} tokens/s; rejections: {list(outcome.rejections)}")
    return results


def test_pipeline_records_every_attempt_and_returns_valid_code(outcomes: list, gguf: Path) -> None:
    for spec, outcome, _ in outcomes:
        validate_code(outcome.code)
        record = outcome.record
        assert record.provider == "llamacpp" and record.model == gguf.stem and not record.cached
        assert record.cache_key and record.template_version.startswith("default-")
        model_attempts = [a for a in record.attempts if a.provider == "llamacpp"]
        assert model_attempts, spec.describe()
        for attempt in model_attempts:
            assert "class Net" in attempt.prompt and attempt.response.strip()
            assert attempt.latency_s > 0 and attempt.prompt_tokens > 0 and attempt.completion_tokens > 0
            assert attempt.stage in ("accepted", "extract", "validate", "probe", "fidelity")
        assert record.fallback == (outcome.provider == "reference")
        assert (outcome.provider == "llamacpp") == (record.attempts[-1].stage == "accepted" and not record.fallback)


def test_the_model_writes_accepted_code_for_some_spec(outcomes: list) -> None:
    # Qwen2.5-Coder-0.5B writes an exact small MLP about half the time; with a repair round, at
    # least one of three specs must pass, or the prompts or the chat template are broken.
    assert any(outcome.provider == "llamacpp" for _, outcome, _ in outcomes), [o.rejections for _, o, _ in outcomes]


def test_two_threads_share_the_model(provider: LLMCodeGen) -> None:
    chat = provider.chat_model
    llama = chat._llama
    active, overlaps = [0], [0]
    original = llama.create_chat_completion

    def counting(**kwargs: object) -> dict:
        active[0] += 1
        overlaps[0] = max(overlaps[0], active[0])
        try:
            return original(**kwargs)
        finally:
            active[0] -= 1

    llama.create_chat_completion = counting
    answers: dict[int, str] = {}
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            answers[i] = provider.complete(f"What is {i} + {i}? Answer with the number only.")
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=ask, args=(i,)) for i in (2, 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        del llama.create_chat_completion
    assert not errors, errors
    assert sorted(answers) == [2, 3] and all(answers.values()), answers
    assert overlaps[0] == 1
