"""Turning an LLM's answer into vectors of a search space: JSON extraction, coercion and repair.

Everything here is pure (the only randomness is the ``rng`` passed in, used to fill missing
dimensions), so the strategy stays deterministic for a seed and a deterministic provider.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from neuromosaic_core.model import (
    AnyDimension,
    ArchitectureVector,
    CategoricalDimension,
    IntDimension,
    RealDimension,
    Scalar,
    SearchSpace,
)

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
#: At most this many ``[``/``{`` positions are tried when the JSON is buried in prose.
_MAX_SCAN = 500


class Invalid(ValueError):
    """A proposal (or one of its values) that no repair can turn into a point of the space."""


def extract_proposals(answer: str, names: list[str]) -> list[Any] | None:
    """The list of proposals in ``answer``, or None when it holds no usable JSON.

    Candidates, in order: each fenced block (```json ... ```), the whole answer, then every JSON
    value starting at a ``[`` or ``{`` in the prose. The first candidate that holds an object wins
    (so a stray ``[1]`` in the prose is skipped); failing that, the first list at all. A single
    object counts as a list of one; an object without any dimension name but with exactly one list
    value (``{"architectures": [...]}``) is unwrapped.
    """
    fallback: list[Any] | None = None
    for value in _json_values(answer):
        proposals = _as_list(value, names)
        if proposals is None:
            continue
        if any(isinstance(p, dict) for p in proposals):
            return proposals
        if fallback is None:
            fallback = proposals
    return fallback


def _json_values(answer: str) -> Iterator[Any]:
    for text in [m.group(1) for m in _FENCE.finditer(answer)] + [answer]:
        try:
            yield json.loads(text.strip())
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    starts = [i for i, ch in enumerate(answer) if ch in "[{"][:_MAX_SCAN]
    for start in starts:
        try:
            value, _ = decoder.raw_decode(answer, start)
        except ValueError:
            continue
        yield value


def _as_list(value: Any, names: list[str]) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if any(_match_key(k, names) is not None for k in value):
            return [value]
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


def _match_key(key: Any, names: list[str]) -> str | None:
    if not isinstance(key, str):
        return None
    if key in names:
        return key
    folded = [n for n in names if n.casefold() == key.strip().casefold()]
    return folded[0] if len(folded) == 1 else None


@attrs.frozen
class Parsed:
    """One proposal turned into a canonical vector of the space; ``repairs`` lists what was changed
    beyond lossless type coercion (empty: the proposal was valid as given)."""

    vector: ArchitectureVector
    repairs: tuple[str, ...]


def to_vector(proposal: Any, space: SearchSpace, rng: random.Random) -> Parsed:
    """Coerce and repair one proposal into a canonical vector of ``space``; raise :class:`Invalid`.

    Lossless coercion (not a repair): numeric strings and integral floats to an int dimension's
    type, ints and numeric strings to floats for real dimensions, a categorical value equal to a
    choice of another numeric type or given as a string of it. Repairs: unknown keys dropped (a key
    differing only in case is renamed), missing active dimensions sampled, ints and reals clipped
    into range, a categorical near miss (case or surrounding blanks) mapped to its choice. Values
    given for inactive dimensions are ignored (canonicalisation resets them). Anything else
    (a non-integral float for an int, an unknown categorical value, a non-finite number, a bool)
    is invalid.
    """
    if not isinstance(proposal, Mapping):
        raise Invalid(f"expected a JSON object, got {type(proposal).__name__}")
    names = space.names
    repairs: list[str] = []
    given: dict[str, Any] = {}
    for key, value in proposal.items():
        name = _match_key(key, names)
        if name is None:
            repairs.append(f"dropped unknown key {key!r}")
            continue
        if name != key:
            repairs.append(f"renamed key {key!r} to {name!r}")
        given[name] = value
    values: dict[str, Scalar] = {}
    active: set[str] = set()  # in order, as SearchSpace.active_dimensions decides it
    for dim in space.dimensions:
        if not all(p in active and values[p] in allowed for p, allowed in dim.active_if.items()):
            values[dim.name] = dim.default()
            continue
        active.add(dim.name)
        if dim.name not in given:
            values[dim.name] = dim.sample(rng)
            repairs.append(f"sampled missing {dim.name!r}")
            continue
        value, note = coerce(dim, given[dim.name])
        if note:
            repairs.append(note)
        values[dim.name] = value
    vector = space.canonicalize(values)
    problems = space.violations(vector)
    if problems:  # pragma: no cover - coerce() only returns values inside the domain
        raise Invalid("; ".join(problems))
    return Parsed(vector, tuple(repairs))


def coerce(dim: AnyDimension, value: Any) -> tuple[Scalar, str | None]:
    """``value`` as a member of ``dim``'s domain and a note when that took a repair; raise :class:`Invalid`."""
    if isinstance(dim, CategoricalDimension):
        return _coerce_categorical(dim, value)
    number = _number(value, dim.name)
    if isinstance(dim, IntDimension):
        if isinstance(number, float):
            if not number.is_integer():
                raise Invalid(f"{dim.name}={value!r} is not an integer")
            number = int(number)
        clipped: Scalar = min(dim.high, max(dim.low, number))
    else:
        assert isinstance(dim, RealDimension)
        number = float(number)
        clipped = float(min(dim.high, max(dim.low, number)))
    if clipped != number:
        return clipped, f"clipped {dim.name}={value!r} to {clipped!r}"
    return clipped, None


def _number(value: Any, name: str) -> int | float:
    if isinstance(value, bool):
        raise Invalid(f"{name}={value!r} is not a number")
    if isinstance(value, str):
        text = value.strip()
        try:
            number: int | float = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise Invalid(f"{name}={value!r} is not a number") from None
    elif isinstance(value, (int, float)):
        number = value
    else:
        raise Invalid(f"{name}={value!r} is not a number")
    if isinstance(number, float) and not math.isfinite(number):
        raise Invalid(f"{name}={value!r} is not finite")
    return number


def _coerce_categorical(dim: CategoricalDimension, value: Any) -> tuple[Scalar, str | None]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Invalid(f"{dim.name}={value!r} is not one of {list(dim.choices)}")
    exact = [c for c in dim.choices if c == value and type(c) is type(value)]
    if exact:
        return exact[0], None
    # Lossless: the same number in another numeric type, or a string holding it.
    numeric = [c for c in dim.choices if not isinstance(c, str)]
    if numeric:
        try:
            number = _number(value, dim.name)
        except Invalid:
            number = None
        if number is not None:
            same = [c for c in numeric if c == number]
            if len(same) == 1:
                return same[0], None
    # A near miss: differs only in case or surrounding blanks (a repair, if unambiguous).
    if isinstance(value, str):
        folded = value.strip().casefold()
        near = [c for c in dim.choices if isinstance(c, str) and c.strip().casefold() == folded]
        if len(near) == 1:
            return near[0], f"mapped {dim.name}={value!r} to {near[0]!r}"
    raise Invalid(f"{dim.name}={value!r} is not one of {list(dim.choices)}")
