"""Architecture constraints (the seed's IConstraintValidator): parameter, FLOP and depth budgets.

Checked on the spec alone, before code is generated; every violation is listed, and a violating
architecture is recorded as an invalid trial without training.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from neuromosaic_core.layers import LayerError, analyse
from neuromosaic_core.model import ArchitectureSpec


@attrs.frozen
class Constraints:
    """Budgets; ``None`` means unlimited. Depth is the longest path of weight layers (linear,
    conv1d, conv2d) from the input to the output plus the head: a sequential network counts its
    weight layers, a residual stage its blocks' convolutions (skips add nothing), a cell its
    deepest edge chain (see :mod:`neuromosaic_core.layers`)."""

    max_params: int | None = None
    max_flops: int | None = None
    max_depth: int | None = None


@attrs.frozen
class Violation:
    """One broken constraint, e.g. ``Violation("max_params", 2_000_000, 1_000_000)``."""

    constraint: str
    actual: int | str
    limit: int | None

    def __str__(self) -> str:
        if self.limit is None:
            return f"{self.constraint}: {self.actual}"
        return f"{self.constraint}: {self.actual:,} > {self.limit:,}"


@attrs.frozen
class ValidationResult:
    """The outcome of a constraint check: ``ok`` when nothing is violated."""

    violations: tuple[Violation, ...]
    params: int | None = None
    flops: int | None = None
    depth: int | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def message(self) -> str:
        return "; ".join(str(v) for v in self.violations)


class ConstraintValidator:
    """Checks a spec against :class:`Constraints` for one task's input shape and class count."""

    def __init__(self, constraints: Constraints, input_shape: Sequence[int], num_classes: int) -> None:
        self.constraints = constraints
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes

    def get_constraint_violations(self, spec: ArchitectureSpec) -> list[Violation]:
        return list(self.validate_constraints(spec).violations)

    def validate_constraints(self, spec: ArchitectureSpec) -> ValidationResult:
        try:
            a = analyse(spec, self.input_shape, self.num_classes)
        except LayerError as exc:
            return ValidationResult((Violation("shape", str(exc), None),))
        c = self.constraints
        checks = [("max_params", a.params, c.max_params), ("max_flops", a.flops, c.max_flops), ("max_depth", a.depth, c.max_depth)]
        violations = tuple(Violation(name, actual, limit) for name, actual, limit in checks if limit is not None and actual > limit)
        return ValidationResult(violations, a.params, a.flops, a.depth)
