"""Shared fixtures, and what an isolated session (``nox -s plugin``) leaves out.

``nox -s plugin`` installs this plugin alone with the core, to prove it declares what it needs.
Two modules need more: ``test_cli.py`` runs the ``neuromosaic`` command, which also needs a
strategy, encoder, runner, storage and task plugin; ``test_real_model.py`` needs llama-cpp-python
and the Qwen2.5-Coder model. A skip would fail there under CI's ``NEUROMOSAIC_STRICT_SKIPS=1``, so
in an isolated session those modules are not collected, and the session header says why. With
everything installed (the README's ``pytest``) they are collected, and skip with their reason
when the model is missing.
"""

from __future__ import annotations

import importlib.util

import pytest

from neuromosaic_core.interfaces import CodeGenProvider, CodeGenRequest
from neuromosaic_core.testing.plugins import missing_components

#: The plugins a default ``neuromosaic`` run with ``task=digits`` combines with this one.
CLI_NEEDS = {"random": "strategy", "mlp_conv1d": "encoder", "local": "runner", "sql": "storage", "digits": "task",
             "template": "codegen (the fallback)"}


MISSING = missing_components(CLI_NEEDS)
ISOLATED = bool(MISSING)
NO_LLAMA = importlib.util.find_spec("llama_cpp") is None

collect_ignore: list[str] = []
if ISOLATED:
    collect_ignore.append("test_cli.py")
    if NO_LLAMA:
        collect_ignore.append("test_real_model.py")


def pytest_report_header() -> list[str]:
    if not collect_ignore:
        return []
    why = [f"{', '.join(MISSING)} not installed"] + (["llama-cpp-python not installed"] if NO_LLAMA else [])
    return [f"neuromosaic-codegen-ollama: {', '.join(collect_ignore)} not collected ({'; '.join(why)})"]


_TRUSTED_MLP = '''import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(40, 32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.body(x))
'''


class TrustedMlp(CodeGenProvider):
    """A stand-in fallback when the template plugin is not installed (fits the tests' MLP request:
    linear 32, ReLU, input (40,), 10 classes)."""

    trusted = True

    def generate_code(self, request: CodeGenRequest) -> str:
        return _TRUSTED_MLP


@pytest.fixture
def fallback() -> CodeGenProvider:
    """The template generator when installed (as the CLI uses it), else a trusted stand-in."""
    if importlib.util.find_spec("neuromosaic_codegen_template") is not None:
        from neuromosaic_codegen_template.generator import TemplateCodeGen

        return TemplateCodeGen()
    return TrustedMlp()
