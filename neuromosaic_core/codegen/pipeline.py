"""From a provider's answer to validated code: extract, validate, repair, fall back.

LLMs wrap code in prose and markdown fences, forget methods, or answer nothing. Each attempt's
rejection is fed back to the provider (``CodeGenRequest.feedback``); after ``attempts`` failures
the fallback provider (the template generator, when installed) writes the code instead.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import attrs

from neuromosaic_core.codegen.probe import check_fidelity, probe_code
from neuromosaic_core.codegen.validation import CodeRejected, validate_code
from neuromosaic_core.interfaces import CodeGenProvider, CodeGenRequest, Generation, GenerationError
from neuromosaic_core.model import CodeGenAttempt, CodeGenRecord, stable_hash

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(answer: str) -> str:
    """The code in an answer: the fenced block defining ``class Net`` (else the longest python
    block), or the whole answer when it has no fences."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(answer or "")]
    if not blocks:
        return (answer or "").strip() + "\n"
    with_net = [b for lang, b in blocks if "class Net" in b]
    if with_net:
        return with_net[0].strip() + "\n"
    python = [b for lang, b in blocks if lang in ("", "python", "py")] or [b for _, b in blocks]
    return max(python, key=len).strip() + "\n"


@attrs.frozen
class CodeGenOutcome:
    """Validated code, who wrote it, the rejections on the way and the full audit record."""

    code: str
    provider: str
    attempts: int
    rejections: tuple[str, ...] = ()
    record: CodeGenRecord | None = None


class CodeGenFailed(Exception):
    """No provider produced valid code; ``rejections`` lists why, attempt by attempt."""

    def __init__(self, rejections: list[str], record: CodeGenRecord | None = None) -> None:
        super().__init__("no valid code after {} attempts: {}".format(len(rejections), "; ".join(rejections[-3:])))
        self.rejections = rejections
        self.record = record


def cache_key(request: CodeGenRequest, provider_name: str, model: str, template_version: str) -> str:
    """What makes two answers interchangeable: spec, shapes, provider, model, template version."""
    return stable_hash([request.spec.canonical_hash(), list(request.input_shape), request.num_classes,
                        provider_name, model, template_version])


def _check(provider: CodeGenProvider, request: CodeGenRequest, code: str) -> tuple[str, str] | None:
    """``(stage, message)`` when ``code`` is not acceptable, else None."""
    if not code.strip():
        return "extract", "[empty] the answer contains no code; answer with one python code block"
    try:
        validate_code(code)
    except CodeRejected as exc:
        return "validate", str(exc)
    if provider.trusted:
        return None
    report = probe_code(code, request.input_shape, request.num_classes, provider.probe_timeout)
    problem = check_fidelity(report, request.spec, request.input_shape, request.num_classes, provider.fidelity_tolerance)
    if problem is not None:
        return ("probe" if report.error else "fidelity"), problem
    return None


def new_record(provider: CodeGenProvider, request: CodeGenRequest, provider_name: str) -> CodeGenRecord:
    """The empty audit record of a request: provider, model, template version and cache key."""
    model, version = provider.identity_for(request)
    return CodeGenRecord(provider_name, model, version, cache_key(request, provider_name, model, version) if provider.cache else None)


def lookup_cached(provider: CodeGenProvider, request: CodeGenRequest, provider_name: str,
                  lookup: Callable[[str], str | None]) -> CodeGenOutcome | None:
    """The stored code of an identical earlier request (still passing validation), or None."""
    record = new_record(provider, request, provider_name)
    if record.cache_key is None or (code := lookup(record.cache_key)) is None:
        return None
    try:
        validate_code(code)  # the rules may have tightened since it was stored
    except CodeRejected:
        return None
    return CodeGenOutcome(code, provider_name, 0, (), attrs.evolve(record, cached=True))


def generate_validated_code(
    provider: CodeGenProvider,
    request: CodeGenRequest,
    attempts: int = 3,
    provider_name: str = "codegen",
    fallback: CodeGenProvider | None = None,
    fallback_name: str = "fallback",
    cache_lookup: Callable[[str], str | None] | None = None,
) -> CodeGenOutcome:
    """Ask ``provider`` up to ``attempts`` times, feeding each rejection back; then ``fallback``.

    Each answer is extracted, validated statically and, for an untrusted provider, probed in a
    sandboxed subprocess and checked against the spec (:mod:`neuromosaic_core.codegen.probe`).
    With ``cache_lookup`` (key -> stored code) an identical earlier request answers without a
    call. A provider whose circuit breaker is open goes straight to the fallback.
    """
    if cache_lookup is not None and (hit := lookup_cached(provider, request, provider_name, cache_lookup)) is not None:
        return hit
    record = new_record(provider, request, provider_name)
    rejections: list[str] = []
    log: list[CodeGenAttempt] = []
    current = request
    for attempt in range(1, attempts + 1):
        start = time.perf_counter()
        try:
            gen = provider.generate(current)
        except GenerationError as exc:
            rejections.append(f"provider error: {exc}")
            log.append(CodeGenAttempt(provider_name, "provider", exc.prompt, "", str(exc), exc.latency_s))
            if exc.unavailable:
                break
            continue
        except Exception as exc:  # a provider going away is a failed attempt, not a crash
            rejections.append(f"provider error: {type(exc).__name__}: {exc}")
            log.append(CodeGenAttempt(provider_name, "provider", "", "", f"{type(exc).__name__}: {exc}", time.perf_counter() - start))
            continue
        code = extract_code(gen.text)
        problem = _check(provider, request, code)
        stage, error = problem if problem is not None else ("accepted", None)
        log.append(CodeGenAttempt(provider_name, stage, gen.prompt, gen.text, error, gen.latency_s, gen.prompt_tokens, gen.completion_tokens))
        if problem is None:
            return CodeGenOutcome(code, provider_name, attempt, tuple(rejections), attrs.evolve(record, attempts=tuple(log)))
        rejections.append(error)  # type: ignore[arg-type]
        current = attrs.evolve(request, feedback=error, previous_code=code, attempt=attempt + 1)
    if fallback is not None:
        try:
            gen = fallback.generate(request)
        except Exception as exc:  # noqa: BLE001 - e.g. a spec the template cannot render
            gen, code = Generation(f"{type(exc).__name__}: {exc}"), ""
            problem = ("provider", gen.text)
        else:
            code = extract_code(gen.text)
            problem = _check(fallback, request, code)
        stage, error = problem if problem is not None else ("accepted", None)
        log.append(CodeGenAttempt(fallback_name, stage, gen.prompt, gen.text, error, gen.latency_s))
        if problem is None:
            return CodeGenOutcome(code, fallback_name, len(log), tuple(rejections),
                                  attrs.evolve(record, fallback=True, attempts=tuple(log)))
        rejections.append(f"fallback: {error}")
    raise CodeGenFailed(rejections, attrs.evolve(record, attempts=tuple(log)))
