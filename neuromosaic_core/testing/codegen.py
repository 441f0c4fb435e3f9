"""Contract tests for :class:`~neuromosaic_core.interfaces.CodeGenProvider` plugins.

Subclass :class:`CodeGenContract` in a class whose name starts with ``Test`` and implement
:meth:`CodeGenContract.make_provider` and :meth:`CodeGenContract.sample_specs`::

    from neuromosaic_core.testing.codegen import CodeGenContract

    class TestMyProvider(CodeGenContract):
        deterministic = False          # an LLM answers differently each time

        def make_provider(self):
            return MyProvider(MySettings())

        def sample_specs(self):
            return [ArchitectureSpec("mlp", [Layer("linear", {"out_features": 32})])]

Checks: the answer (after :func:`~neuromosaic_core.codegen.extract_code`) passes
:func:`~neuromosaic_core.codegen.validate_code` for every sample spec; the same request gives the
same code when ``deterministic``; and, when torch is installed and ``check_forward`` is set, the
generated ``Net`` maps a ``(batch, *input_shape)`` batch to ``(batch, num_classes)`` logits (with
``exact_params``, its parameter count equals :func:`~neuromosaic_core.layers.analyse`'s).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from neuromosaic_core.codegen import extract_code, validate_code
from neuromosaic_core.interfaces import CodeGenProvider, CodeGenRequest
from neuromosaic_core.layers import analyse
from neuromosaic_core.model import ArchitectureSpec

__all__ = ["CodeGenContract"]


class CodeGenContract:
    """The code-generator contract as tests. Subclass it (in a ``Test*`` class) and implement
    :meth:`make_provider` and :meth:`sample_specs`. Class attributes tune the checks."""

    #: the same request always gives the same code (true of templates, not of LLMs)
    deterministic: bool = True
    #: import the generated module and run a batch through ``Net`` (skipped without torch)
    check_forward: bool = True
    #: the generated ``Net`` has exactly the parameters ``layers.analyse`` counts
    exact_params: bool = False
    #: the task the sample specs are generated for
    input_shape: tuple[int, ...] = (40,)
    num_classes: int = 10
    batch_size: int = 3

    def make_provider(self) -> CodeGenProvider:
        raise NotImplementedError("implement make_provider() to return the provider under test")

    def sample_specs(self) -> Sequence[ArchitectureSpec]:
        raise NotImplementedError("implement sample_specs() to return a few specs valid for input_shape")

    def sample_requests(self) -> list[CodeGenRequest]:
        """One request per sample spec; override to vary input shapes or class counts."""
        return [CodeGenRequest(spec, tuple(self.input_shape), self.num_classes) for spec in self.sample_specs()]

    # -- helpers --------------------------------------------------------------------------

    def _code(self, provider: CodeGenProvider, request: CodeGenRequest) -> str:
        answer = provider.generate_code(request)
        assert isinstance(answer, str), f"generate_code must return str, got {type(answer).__name__}"
        return extract_code(answer)

    # -- the contract ---------------------------------------------------------------------

    def test_is_a_provider_with_samples(self) -> None:
        assert isinstance(self.make_provider(), CodeGenProvider)
        assert self.sample_requests(), "sample_specs() must return at least one spec"

    def test_generated_code_validates(self) -> None:
        provider = self.make_provider()
        for request in self.sample_requests():
            code = self._code(provider, request)
            try:
                validate_code(code)
            except Exception as exc:
                raise AssertionError(f"code for {request.spec.describe()} rejected: {exc}\n{code}") from exc

    def test_generation_is_deterministic(self) -> None:
        if not self.deterministic:
            pytest.skip("provider declared non-deterministic")
        first, second = self.make_provider(), self.make_provider()
        for request in self.sample_requests():
            code = self._code(first, request)
            assert self._code(first, request) == code, "same provider, same request, different code"
            assert self._code(second, request) == code, "fresh provider, same request, different code"

    def test_generated_net_runs(self, tmp_path: Path) -> None:
        if not self.check_forward:
            pytest.skip("forward check disabled (check_forward = False)")
        torch = pytest.importorskip("torch")
        from neuromosaic_core.harness.training import load_generated_module

        provider = self.make_provider()
        for i, request in enumerate(self.sample_requests()):
            path = tmp_path / f"net_{i}.py"
            path.write_text(self._code(provider, request))
            module = load_generated_module(path, module_name=f"neuromosaic_contract_net_{i}")
            net = module.Net()
            net.eval()
            torch.manual_seed(0)
            x = torch.randn(self.batch_size, *request.input_shape)
            with torch.no_grad():
                out = net(x)
            assert tuple(out.shape) == (self.batch_size, request.num_classes), (
                f"{request.spec.describe()}: output shape {tuple(out.shape)}, expected {(self.batch_size, request.num_classes)}"
            )
            if self.exact_params:
                n_params = sum(p.numel() for p in net.parameters())
                expected = analyse(request.spec, request.input_shape, request.num_classes).params
                assert n_params == expected, f"{request.spec.describe()}: torch counts {n_params} parameters, analyse {expected}"
