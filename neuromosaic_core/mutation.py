"""One-dimension mutation of an architecture vector, shared by the mutation-based strategies.

``mutate`` changes exactly one active dimension of a vector and samples the dimensions the change
switches on (they hold their canonical default in the parent). Categorical dimensions take
another choice; integers step by one (or by a gaussian step in log space for ``log`` dimensions)
and are resampled with probability :data:`RESAMPLE_PROBABILITY`; reals take a gaussian step of
:data:`STEP_FRACTION` of their range (in log space for ``log``), reflected at the bounds.
"""

from __future__ import annotations

import math
import random
from typing import Any

from neuromosaic_core.model import (
    AnyDimension,
    ArchitectureVector,
    CategoricalDimension,
    IntDimension,
    RealDimension,
    Scalar,
    SearchSpace,
)

#: Standard deviation of a real (or log-int) step, as a fraction of the dimension's range.
STEP_FRACTION = 0.1
#: Probability that an int mutation resamples the dimension instead of stepping.
RESAMPLE_PROBABILITY = 0.2


def mutate(space: SearchSpace, parent: ArchitectureVector, rng: random.Random, max_retries: int = 100) -> ArchitectureVector | None:
    """``parent`` with one active dimension changed, or None if no active dimension can change."""
    values: dict[str, Scalar] = dict(parent.values)
    was_active = space.active_dimensions(values)
    mutable = [d for d in was_active if can_change(d)]
    if not mutable:
        return None
    dim = rng.choice(mutable)
    values[dim.name] = change_value(dim, values[dim.name], rng, max_retries)
    # Dimensions the change switches on hold their canonical default in the parent: sample them.
    was_active_names = {d.name for d in was_active}
    active: dict[str, Scalar] = {}
    for d in space.dimensions:
        if all(p in active and active[p] in allowed for p, allowed in d.active_if.items()):
            if d.name not in was_active_names:
                values[d.name] = d.sample(rng)
            active[d.name] = values[d.name]
    return space.canonicalize(values)


def change_value(dim: AnyDimension, current: Scalar, rng: random.Random, max_retries: int = 100) -> Scalar:
    """A value of ``dim`` different from ``current`` (``can_change(dim)`` must hold)."""
    if isinstance(dim, CategoricalDimension):
        return rng.choice([c for c in dim.choices if not _same(c, current)])
    if isinstance(dim, IntDimension):
        cur = int(current) if isinstance(current, (int, float)) else dim.low
        for _ in range(max_retries):
            if rng.random() < RESAMPLE_PROBABILITY:
                new = dim.sample(rng)
            elif dim.log and dim.low > 0:
                step = rng.gauss(0.0, STEP_FRACTION * (math.log(dim.high) - math.log(dim.low)))
                new = int(round(math.exp(math.log(max(cur, dim.low)) + step)))
                if new == cur:
                    new = cur + (1 if step >= 0 else -1)
            else:
                new = cur + rng.choice((-1, 1))
            new = min(dim.high, max(dim.low, new))
            if new != cur:
                return new
        return dim.low if cur != dim.low else dim.high
    assert isinstance(dim, RealDimension)
    cur_f = float(current) if isinstance(current, (int, float)) else float(dim.low)
    log = dim.log and dim.low > 0
    low, high = (math.log(dim.low), math.log(dim.high)) if log else (float(dim.low), float(dim.high))
    here = math.log(min(max(cur_f, dim.low), dim.high)) if log else min(max(cur_f, low), high)
    for _ in range(max_retries):
        new_f = reflect(here + rng.gauss(0.0, STEP_FRACTION * (high - low)), low, high)
        value = min(max(math.exp(new_f) if log else new_f, dim.low), dim.high)
        if value != cur_f:
            return value
    return float(dim.low) if cur_f != dim.low else float(dim.high)


def can_change(dim: AnyDimension) -> bool:
    """Whether ``dim`` has more than one value."""
    if isinstance(dim, CategoricalDimension):
        return len(dim.choices) > 1
    return dim.high > dim.low


def reflect(x: float, low: float, high: float) -> float:
    """Fold ``x`` back into ``[low, high]`` (a step past an edge bounces off it)."""
    if high <= low:
        return low
    span = high - low
    x = (x - low) % (2 * span)
    return low + (x if x <= span else 2 * span - x)


def _same(a: Any, b: Any) -> bool:
    return a == b and type(a) is type(b)
