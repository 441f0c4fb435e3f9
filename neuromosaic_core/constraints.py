"""Architecture constraints (the seed's IConstraintValidator): parameter, FLOP and depth budgets.

Checked on the spec alone, before code is generated; every violation is listed, and a violating
architecture is recorded as an invalid trial without training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


#: Vectors :func:`check_fits_task` decodes before a search: enough that a family with some
#: invalid corners is not refused, few enough to take milliseconds.
FIT_SAMPLES = 64


def check_fits_task(encoder: Any, input_shape: Sequence[int], num_classes: int, encoder_name: str = "",
                    task_name: str = "", samples: int = FIT_SAMPLES) -> None:
    """Refuse, before a search starts, an encoder none of whose networks can take the task's
    input: ``samples`` vectors of its space (seeded, so the answer is the same every time) are
    decoded and their shapes analysed; when not one of them can be built, a
    :class:`~neuromosaic_core.errors.ConfigError` says so in one line with the first reason
    (a flat family on images, a 2-D family on a sequence). Without it such a search would
    record every trial as invalid until ``search.max_failures`` stops it."""
    import random

    from neuromosaic_core.errors import ConfigError

    space = encoder.search_space()
    rng = random.Random(0)  # noqa: S311  # nosec B311 - a reproducible sample of the space, not cryptography
    first: str | None = None
    for _ in range(samples):
        try:
            analyse(encoder.decode(space.sample(rng)), input_shape, num_classes)
            return
        except (LayerError, ValueError) as exc:
            first = first or str(exc)
    which = f"encoder={encoder_name}" if encoder_name else "the encoder"
    task = f"task={task_name}'s" if task_name else "the task's"
    shape = "x".join(str(s) for s in input_shape)
    raise ConfigError(f"{which} builds no network for {task} input of shape {shape}: none of {samples} sampled "
                      f"architectures fits ({first}); choose an encoder for this kind of input "
                      "(1-D sequences or flat features: mlp_conv1d, resnet1d; images: resnet2d, nb201_cell)")
