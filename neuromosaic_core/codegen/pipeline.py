"""From a provider's answer to validated code: extract, validate, repair, fall back.

LLMs wrap code in prose and markdown fences, forget methods, or answer nothing. Each attempt's
rejection is fed back to the provider (``CodeGenRequest.feedback``); after ``attempts`` failures
the fallback provider (the template generator, when installed) writes the code instead.
"""

from __future__ import annotations

import re

import attrs

from neuromosaic_core.codegen.validation import CodeRejected, validate_code
from neuromosaic_core.interfaces import CodeGenProvider, CodeGenRequest

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
    """Validated code, who wrote it and the rejections on the way."""

    code: str
    provider: str
    attempts: int
    rejections: tuple[str, ...] = ()


class CodeGenFailed(Exception):
    """No provider produced valid code; ``rejections`` lists why, attempt by attempt."""

    def __init__(self, rejections: list[str]) -> None:
        super().__init__("no valid code after {} attempts: {}".format(len(rejections), "; ".join(rejections[-3:])))
        self.rejections = rejections


def generate_validated_code(
    provider: CodeGenProvider,
    request: CodeGenRequest,
    attempts: int = 3,
    provider_name: str = "codegen",
    fallback: CodeGenProvider | None = None,
    fallback_name: str = "fallback",
) -> CodeGenOutcome:
    """Ask ``provider`` up to ``attempts`` times, feeding each rejection back; then ``fallback``."""
    rejections: list[str] = []
    current = request
    for attempt in range(1, attempts + 1):
        try:
            code = extract_code(provider.generate_code(current))
        except Exception as exc:  # a provider going away is a failed attempt, not a crash
            rejections.append(f"provider error: {type(exc).__name__}: {exc}")
            continue
        try:
            validate_code(code)
        except CodeRejected as exc:
            rejections.append(str(exc))
            current = attrs.evolve(request, feedback=str(exc), previous_code=code)
            continue
        return CodeGenOutcome(code, provider_name, attempt, tuple(rejections))
    if fallback is not None:
        code = extract_code(fallback.generate_code(request))
        try:
            validate_code(code)
        except CodeRejected as exc:
            rejections.append(f"fallback: {exc}")
        else:
            return CodeGenOutcome(code, fallback_name, attempts + 1, tuple(rejections))
    raise CodeGenFailed(rejections)
