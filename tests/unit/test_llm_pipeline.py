"""The LLM code-generation pipeline: prompt templates, the sandboxed probe and fidelity check,
repair rounds with an audit record, retries, the circuit breaker and the cache.

A scripted :class:`ChatModel` stands in for the network here; the providers' plugins test the same
pipeline against the real Qwen2.5-Coder model over real HTTP and in-process.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from neuromosaic_core.codegen import CodeGenFailed, generate_validated_code
from neuromosaic_core.codegen.probe import check_fidelity, expected_ops, probe_code
from neuromosaic_core.codegen.prompts import load_template
from neuromosaic_core.errors import ConfigError
from neuromosaic_core.interfaces import CodeGenProvider, CodeGenRequest
from neuromosaic_core.llm import ChatModel, Completion, LLMCodeGen, LLMError, LLMSettings, Message, Sampling, TransientLLMError
from neuromosaic_core.model import ArchitectureSpec, Layer

pytest.importorskip("torch")

MLP = ArchitectureSpec("mlp", (Layer("linear", {"out_features": 32}), Layer("activation", {"fn": "relu"}),
                               Layer("dropout", {"p": 0.1})))
CONV = ArchitectureSpec("conv1d", (Layer("conv1d", {"out_channels": 8, "kernel_size": 5, "stride": 1}), Layer("batchnorm", {}),
                                   Layer("activation", {"fn": "gelu"}), Layer("maxpool1d", {"kernel_size": 2}), Layer("flatten", {}),
                                   Layer("linear", {"out_features": 16}), Layer("layernorm", {}), Layer("activation", {"fn": "tanh"})))
REQUEST = CodeGenRequest(MLP, (40,), 10)

FAITHFUL = """```python
import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(40, 32)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.drop(F.relu(self.fc1(x))))
```"""
MISSING_RELU = FAITHFUL.replace("F.relu(self.fc1(x))", "self.fc1(x)")
WRONG_SIZE = FAITHFUL.replace("nn.Linear(40, 32)", "nn.Linear(40, 64)").replace("nn.Linear(32, 10)", "nn.Linear(64, 10)")
SOFTMAX = FAITHFUL.replace("return self.head(", "return torch.softmax(self.head(").replace("(x))))", "(x)))), dim=1)")
CONV_CODE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 5, padding=2)
        self.bn = nn.BatchNorm1d(8)
        self.pool = nn.MaxPool1d(2)
        self.fc = nn.Linear(160, 16)
        self.ln = nn.LayerNorm(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(nn.functional.gelu(self.bn(self.conv(x.unsqueeze(1)))))
        x = torch.tanh(self.ln(self.fc(x.flatten(1))))
        return self.head(x)
"""


class ScriptedChat(ChatModel):
    """Answers (or raises) from a script; records every chat it was sent."""

    provider = "scripted"

    def __init__(self, answers: list, settings: LLMSettings | None = None) -> None:
        super().__init__(settings or LLMSettings(model="tiny-coder", retries=0, backoff=0.001, backoff_max=0.001))
        self.answers, self.sent, self.sampled = list(answers), [], []

    def chat(self, messages: list[Message], sampling: Sampling) -> Completion:
        self.sent.append(messages)
        self.sampled.append(sampling)
        answer = self.answers.pop(0) if self.answers else TransientLLMError("script exhausted")
        if isinstance(answer, Exception):
            raise answer
        return Completion(answer, prompt_tokens=100 + len(self.sent), completion_tokens=50)


class Fallback(CodeGenProvider):
    trusted = True

    def generate_code(self, request: CodeGenRequest) -> str:
        return FAITHFUL


# -- prompt templates ------------------------------------------------------------------------------


def test_default_prompt_lists_layers_with_shapes_and_the_head():
    chat = load_template("default").messages(CodeGenRequest(CONV, (40,), 10))
    assert [m.role for m in chat] == ["system", "user"]
    user = chat[1].content
    rows = [line for line in user.splitlines() if line[:3].strip().rstrip(".").isdigit()]
    # every step of the forward pass as a module, the flat input's reshape first and the head last
    assert rows[0].startswith(" 1. nn.Unflatten(1, (1, 40))") and "# (40,) -> (1, 40)" in rows[0]
    assert rows[1].startswith(" 2. nn.Conv1d(1, 8, kernel_size=5, stride=1, padding=2)") and "# (1, 40) -> (8, 40)" in rows[1]
    assert rows[-1].startswith("10. nn.Linear(16, 10)") and "the classification head" in rows[-1]
    assert "```python" in user and "super().__init__()" in user  # the output contract
    assert "```python" not in load_template("default").steps["examples"]  # small models copy examples
    assert "```python" in load_template("example").messages(REQUEST)[1].content


def test_repair_prompt_carries_the_previous_answer_and_the_rejection():
    chat = load_template().messages(CodeGenRequest(MLP, (40,), 10, feedback="fidelity: missing ReLU", previous_code="x = 1"))
    assert [m.role for m in chat] == ["system", "user", "assistant", "user"]
    assert "x = 1" in chat[2].content and "fidelity: missing ReLU" in chat[3].content


def test_a_variant_overrides_one_step_and_changes_the_version(tmp_path: Path):
    variant = tmp_path / "terse"
    variant.mkdir()
    (variant / "template.toml").write_text('extends = "default"\nversion = "1"\n')
    (variant / "system.md").write_text("Write PyTorch. Code only.\n")
    template = load_template(str(variant))
    chat = template.messages(REQUEST)
    assert chat[0].content == "Write PyTorch. Code only."
    assert chat[1].content == load_template().messages(REQUEST)[1].content  # the rest inherited
    assert template.version.startswith("terse-v1+") and template.version != load_template().version
    (variant / "system.md").write_text("Write PyTorch code only.\n")
    assert load_template(str(variant)).version != template.version  # an edit never passes for the original


@pytest.mark.parametrize(("files", "message"), [
    ({"template.toml": 'extends = "default"\n', "task.md": "Write $nonsense\n"}, "bad placeholder"),
    ({"template.toml": 'extends = "default"\n', "taks.md": "typo\n"}, "unknown step"),
    ({"template.toml": 'version = "1"\n', "system.md": "only a system step\n"}, "lacks step"),
    ({"system.md": "no manifest\n"}, "no template.toml"),
])
def test_broken_templates_are_refused_when_loaded(tmp_path: Path, files: dict, message: str):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_template(str(tmp_path))


def test_unknown_template_name_lists_the_bundled_ones():
    with pytest.raises(ConfigError, match="default, example"):
        load_template("nope")


# -- probe and fidelity ----------------------------------------------------------------------------


def test_probe_traces_modules_and_functional_calls_in_call_order():
    report = probe_code(CONV_CODE, (40,), 10)
    assert report.ok and report.output_shape == (2, 10)
    want, params = expected_ops(CONV, (40,), 10)
    assert list(report.ops) == want and report.params == params
    assert check_fidelity(report, CONV, (40,), 10) is None


@pytest.mark.parametrize(("answer", "complaint"), [
    (MISSING_RELU, "missing ReLU after nn.Linear(40, 32)"),
    (WRONG_SIZE, "the spec has nn.Linear(40, 32)"),
    (SOFTMAX, "extra softmax"),
])
def test_fidelity_names_what_differs_from_the_spec(answer: str, complaint: str):
    from neuromosaic_core.codegen import extract_code

    problem = check_fidelity(probe_code(extract_code(answer), (40,), 10), MLP, (40,), 10)
    assert problem is not None and complaint in problem


def test_parameter_count_outside_the_tolerance_is_unfaithful():
    no_bias = FAITHFUL.replace("nn.Linear(40, 32)", "nn.Linear(40, 32, bias=False)").strip("`").removeprefix("python\n")
    report = probe_code(no_bias, (40,), 10)
    assert check_fidelity(report, MLP, (40,), 10, tolerance=0.5) is None
    assert "parameters" in check_fidelity(report, MLP, (40,), 10, tolerance=0.001)


def test_probe_contains_hangs_crashes_and_wrong_shapes():
    loop = "import torch\nfrom torch import nn\n\nclass Net(nn.Module):\n    def forward(self, x):\n        while True:\n            pass\n"
    start = time.monotonic()
    assert "longer than 2s" in probe_code(loop, (40,), 10, timeout=2).error
    assert time.monotonic() - start < 15
    broken = "import torch\nfrom torch import nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        raise ValueError('no')\n\n    def forward(self, x):\n        return x\n"
    assert "Net() failed: ValueError" in probe_code(broken, (40,), 10).error
    wrong = FAITHFUL.strip("`").removeprefix("python\n").replace("nn.Linear(32, 10)", "nn.Linear(32, 7)")
    problem = check_fidelity(probe_code(wrong, (40,), 10), MLP, (40,), 10)
    assert problem.startswith("shape:") and "(2, 7)" in problem


def test_probes_share_a_warm_worker_and_a_bad_answer_costs_only_its_own():
    from neuromosaic_core.codegen.probe import probe_pool

    pool = probe_pool().pool
    assert probe_code(CONV_CODE, (40,), 10).ok  # the worker is warm from here on
    started, replaced = pool.started, pool.replaced
    for _ in range(3):
        assert probe_code(CONV_CODE, (40,), 10).ok
    assert pool.started == started  # no new interpreter per answer
    crash = "import torch\nfrom torch import nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        raise ValueError(3)\n"
    assert not probe_code(crash, (40,), 10).ok
    assert probe_code(CONV_CODE, (40,), 10).ok and pool.replaced == replaced  # a failing answer is only a failed child


# -- the pipeline with an LLM ------------------------------------------------------------------------


def test_fidelity_rejection_is_fed_back_and_every_attempt_is_recorded():
    chat = ScriptedChat(["I think you want an MLP.", MISSING_RELU, FAITHFUL])
    outcome = generate_validated_code(LLMCodeGen(chat), REQUEST, attempts=3, provider_name="scripted")
    assert outcome.provider == "scripted" and outcome.attempts == 3
    record = outcome.record
    assert [a.stage for a in record.attempts] == ["validate", "fidelity", "accepted"]
    assert "missing ReLU" in chat.sent[2][-1].content  # the repair round carries the complaint
    assert all(a.prompt.startswith("system: ") and a.response and a.latency_s >= 0 for a in record.attempts)
    assert record.attempts[0].prompt_tokens == 101 and record.attempts[2].completion_tokens == 50
    assert record.model == "tiny-coder" and record.template_version.startswith("default-v1+") and not record.fallback
    # at temperature 0 a repeated prompt gives the same answer: repair rounds sample differently
    assert [(s.temperature, s.seed) for s in chat.sampled] == [(0.2, 0), (0.6, 1), (0.6, 2)]


def test_after_the_rounds_the_fallback_writes_the_code():
    outcome = generate_validated_code(LLMCodeGen(ScriptedChat([MISSING_RELU] * 2)), REQUEST, attempts=2,
                                      provider_name="scripted", fallback=Fallback(), fallback_name="template")
    assert outcome.provider == "template" and outcome.record.fallback
    assert [(a.provider, a.stage) for a in outcome.record.attempts] == [("scripted", "fidelity"), ("scripted", "fidelity"), ("template", "accepted")]


def test_without_a_fallback_the_failure_keeps_the_record():
    with pytest.raises(CodeGenFailed) as info:
        generate_validated_code(LLMCodeGen(ScriptedChat(["", ""])), REQUEST, attempts=2, provider_name="scripted")
    assert [a.stage for a in info.value.record.attempts] == ["extract", "extract"]


def test_transient_errors_are_retried_with_backoff():
    settings = LLMSettings(model="m", retries=2, backoff=0.001, backoff_max=0.002)
    chat = ScriptedChat([TransientLLMError("503"), TransientLLMError("reset"), FAITHFUL], settings)
    outcome = generate_validated_code(LLMCodeGen(chat), REQUEST, attempts=1, provider_name="scripted")
    assert outcome.provider == "scripted" and len(chat.sent) == 3


def test_permanent_errors_are_not_retried():
    chat = ScriptedChat([LLMError("model 'x' not found"), FAITHFUL], LLMSettings(model="m", retries=3, backoff=0.001))
    outcome = generate_validated_code(LLMCodeGen(chat), REQUEST, attempts=2, provider_name="scripted")
    assert len(chat.sent) == 2 and outcome.record.attempts[0].stage == "provider"
    assert "not found" in outcome.record.attempts[0].error


def test_the_circuit_opens_and_trials_go_straight_to_the_fallback_then_it_probes_again():
    settings = LLMSettings(model="m", retries=0, breaker_failures=2, breaker_reset=0.5)
    chat = ScriptedChat([TransientLLMError("refused")] * 2 + [FAITHFUL], settings)
    codegen = LLMCodeGen(chat)
    first = generate_validated_code(codegen, REQUEST, attempts=3, provider_name="s", fallback=Fallback(), fallback_name="template")
    # two failures opened the circuit; the third attempt was not sent and the fallback wrote the code
    assert len(chat.sent) == 2 and first.record.fallback
    assert "not called again" in first.record.attempts[-2].error
    second = generate_validated_code(codegen, REQUEST, attempts=3, provider_name="s", fallback=Fallback(), fallback_name="template")
    assert len(chat.sent) == 2 and second.record.fallback and len(second.record.attempts) == 2  # no call while open
    time.sleep(0.6)
    third = generate_validated_code(codegen, REQUEST, attempts=3, provider_name="s", fallback=Fallback(), fallback_name="template")
    assert len(chat.sent) == 3 and third.provider == "s"  # half-open: one probing call, it answered


def test_the_cache_answers_an_identical_request_without_a_call():
    chat = ScriptedChat([FAITHFUL])
    codegen = LLMCodeGen(chat)
    first = generate_validated_code(codegen, REQUEST, provider_name="scripted")
    store = {first.record.cache_key: first.code}
    again = generate_validated_code(codegen, REQUEST, provider_name="scripted", cache_lookup=store.get)
    assert again.record.cached and again.code == first.code and len(chat.sent) == 1
    other_template = LLMCodeGen(ScriptedChat([FAITHFUL]), template=load_template("example"))
    miss = generate_validated_code(other_template, REQUEST, provider_name="scripted", cache_lookup=store.get)
    assert not miss.record.cached and miss.record.cache_key != first.record.cache_key


def test_preflight_refuses_an_unknown_model_and_warns_when_the_server_is_down():
    class Checked(ScriptedChat):
        def __init__(self, error):
            super().__init__([])
            self.error = error

        def check(self):
            raise self.error

    with pytest.raises(LLMError, match="pull"):
        LLMCodeGen(Checked(LLMError("model 'x' not found; ollama pull x"))).preflight()
    LLMCodeGen(Checked(TransientLLMError("connection refused"))).preflight()  # only a warning


def test_settings_are_checked():
    with pytest.raises(ValueError, match="fidelity_tolerance"):
        LLMSettings(fidelity_tolerance=2)
    with pytest.raises(ValueError, match="retries"):
        LLMSettings(retries=-1)


def test_a_failing_forward_pass_names_the_first_layer_that_differs():
    # the second convolution has 8 output channels where the spec asks for 16: the third one then fails
    spec = ArchitectureSpec("conv1d", (Layer("conv1d", {"out_channels": 8, "kernel_size": 3, "stride": 1}),
                                       Layer("conv1d", {"out_channels": 16, "kernel_size": 7, "stride": 2}),
                                       Layer("conv1d", {"out_channels": 8, "kernel_size": 5, "stride": 2}), Layer("flatten", {})))
    code = CONV_CODE.replace("self.conv = nn.Conv1d(1, 8, 5, padding=2)", "self.conv = nn.Sequential(nn.Conv1d(1, 8, 3, padding=1), "
                             "nn.Conv1d(8, 8, 7, stride=2, padding=3), nn.Conv1d(16, 8, 5, stride=2, padding=2))")
    problem = check_fidelity(probe_code(code, (40,), 10), spec, (40,), 10)
    assert problem.startswith("shape: forward on a (2, 40) batch failed: RuntimeError")
    assert "Layer 2 is wrong: the spec has nn.Conv1d(8, 16, kernel_size=7, stride=2), the code runs nn.Conv1d(8, 8, kernel_size=7, stride=2)" in problem
