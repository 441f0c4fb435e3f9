"""Shared fixtures, and what an isolated session (``nox -s plugin``) leaves out.

``nox -s plugin`` installs this plugin alone with the core, to prove it declares what it needs.
``test_cli.py`` runs the ``neuromosaic`` command, which also needs a strategy, encoder, runner,
storage and task plugin (and the template generator as fallback). A skip would fail there under
CI's ``NEUROMOSAIC_STRICT_SKIPS=1``, so in an isolated session that module is not collected, and
the session header says why. With everything installed (the README's ``pytest``) it is collected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from neuromosaic_core.testing.plugins import leave_out_without

#: The plugins a ``neuromosaic codegen=llamacpp task=digits`` run combines.
CLI_NEEDS = {"llamacpp": "codegen (this plugin, installed)", "random": "strategy", "mlp_conv1d": "encoder", "local": "runner",
             "sql": "storage", "digits": "task", "template": "codegen (the fallback)"}

collect_ignore, pytest_report_header = leave_out_without("neuromosaic-codegen-llamacpp", CLI_NEEDS)


def _skip(reason: str) -> None:
    print(f"SKIP: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def gguf() -> Path:
    """A real GGUF chat model: Qwen2.5-Coder-0.5B-Instruct (or ``NEUROMOSAIC_TEST_GGUF``); skips, saying
    why, without it or without llama-cpp-python."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        _skip(f"llama-cpp-python is not importable ({exc}): pip install -e plugins/neuromosaic_codegen_llamacpp")
    from neuromosaic_core.testing.models import ModelUnavailable, qwen_coder_gguf

    try:
        return qwen_coder_gguf()
    except ModelUnavailable as exc:
        _skip(str(exc))
    raise AssertionError("unreachable")
