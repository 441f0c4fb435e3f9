"""Hydra's sweep grammar as a Neuromosaic search space, and points of that space back as overrides.

=================================  ==========================================================
``key=choice(a,b,c)``, ``key=a,b``  categorical (any choice order; ``shuffle`` changes nothing)
``key=range(1,8)``                  integer in ``[1, 7]`` (``stop`` excluded, as in Python)
``key=range(0,1,0.25)``             categorical over the range's values (an ordinal set)
``key=interval(0.1,1)``             real in ``[0.1, 1]``
``key=int(interval(1,64))``         integer in ``[1, 64]``
``tag(log, ...)``                   log scale, on an interval or a step-1 integer range
``key=value``                       fixed: passed to every job unchanged
=================================  ==========================================================

Everything else (``glob``, tags other than ``log``, an empty range, ``log`` on a range with another
step or on a bound <= 0) is refused with a one-line :class:`SweepSpaceError`. The module is
imported by the sweeper only (its name starts with ``_``, so Hydra's plugin scan skips it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import CompactHydraException

from neuromosaic_core.model import (
    AnyDimension,
    ArchitectureVector,
    CategoricalDimension,
    IntDimension,
    RealDimension,
    Scalar,
    SearchSpace,
    converter,
)

#: Tags this sweeper understands; any other tag is refused rather than silently ignored.
KNOWN_TAGS = frozenset({"log"})


class SweepSpaceError(CompactHydraException):
    """A sweep the sweeper cannot search (Hydra prints the message alone, in one line)."""


@attrs.frozen
class SweepSpace:
    """The searched dimensions, the fixed overrides, and how each categorical value is written.

    ``texts`` maps a categorical dimension's name to ``{value key: override text}``: a choice that
    is not an int, float or string (``true``, ``[1,2]``) is kept in the vector as its override text
    and written back verbatim, so the job receives exactly what the user typed."""

    space: SearchSpace
    fixed: tuple[str, ...] = ()
    texts: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)

    def overrides(self, vector: ArchitectureVector) -> list[str]:
        """The job's overrides for ``vector``: the fixed ones, then one ``key=value`` per dimension."""
        lines = list(self.fixed)
        for dim in self.space:
            value = vector.values[dim.name]
            texts = self.texts.get(dim.name)
            if texts is not None:
                text = texts[_value_key(value)]
            elif isinstance(dim, RealDimension):
                text = repr(float(value))
            else:
                text = str(int(value))
            lines.append(f"{dim.name}={text}")
        return lines

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the sweep (stored with the experiment, compared on resume)."""
        return {"space": converter.unstructure(self.space), "fixed": list(self.fixed)}


def _value_key(value: Any) -> str:
    return json.dumps([type(value).__name__, value])


def _literal(value: Any) -> str:
    """``value`` as override text: unquoted when Hydra reads it back as the same value, else quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        for text in (value, "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"):
            if _reads_back(text, value):
                return text
        raise SweepSpaceError(f"cannot write the choice {value!r} as an override value")
    return str(Transformer.encode(value))


def _reads_back(text: str, value: Any) -> bool:
    try:
        parsed = OverridesParser.create().parse_overrides([f"k={text}"])[0].value()
    except Exception:
        return False
    return type(parsed) is type(value) and parsed == value


def _check_tags(override: Override, tags: set[str], log_ok: bool) -> bool:
    key = override.get_key_element()
    unknown = sorted(set(tags) - KNOWN_TAGS)
    if unknown:
        raise SweepSpaceError(f"{key}: tag {unknown[0]!r} is not understood by the neuromosaic sweeper (known tags: log)")
    if "log" in tags and not log_ok:
        raise SweepSpaceError(f"{key}: tag(log, ...) applies to interval() and to range() with step 1, not to {override.input_line}")
    return "log" in tags


def _categorical(name: str, values: Sequence[Any]) -> tuple[CategoricalDimension, dict[str, str]]:
    choices: list[Scalar] = []
    texts: dict[str, str] = {}
    for value in values:
        # Scalars are kept as they are; anything else (a bool, a list, a dict) as its override text.
        kept = value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else _literal(value)
        key = _value_key(kept)
        if key not in texts:
            choices.append(kept)
            texts[key] = _literal(value)
    return CategoricalDimension(name, choices=choices), texts


def dimension_for(override: Override) -> tuple[AnyDimension, dict[str, str] | None]:
    """The dimension one sweep override asks for (with its value texts when categorical)."""
    name, value = override.get_key_element(), override.value()
    if isinstance(value, Glob):
        raise SweepSpaceError(f"{name}: glob() is not supported by the neuromosaic sweeper; list the options with choice(...)")
    if isinstance(value, ChoiceSweep):
        _check_tags(override, value.tags, log_ok=False)
        return _categorical(name, list(override.sweep_iterator()))
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise SweepSpaceError(f"{name}: {override.input_line} is an empty range")
        integral = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        contiguous = integral and abs(value.step) == 1 and not value.shuffle
        log = _check_tags(override, value.tags, log_ok=contiguous)
        if contiguous:
            low, high = min(values), max(values)
            if log and low <= 0:
                raise SweepSpaceError(f"{name}: tag(log, ...) needs a range above 0, got {override.input_line}")
            return IntDimension(name, low=low, high=high, log=log), None
        return _categorical(name, values)
    if isinstance(value, IntervalSweep):
        log = _check_tags(override, value.tags, log_ok=True)
        low, high = value.start, value.end
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise SweepSpaceError(f"{name}: {override.input_line} needs finite bounds with start < end")
        if log and low <= 0:
            raise SweepSpaceError(f"{name}: tag(log, ...) needs an interval above 0, got {override.input_line}")
        if isinstance(low, int) and isinstance(high, int):
            return IntDimension(name, low=low, high=high, log=log), None
        return RealDimension(name, low=float(low), high=float(high), log=log), None
    raise SweepSpaceError(f"{name}: the sweep {override.input_line} is not supported by the neuromosaic sweeper")  # pragma: no cover


def parse_sweep(arguments: Sequence[str], config_loader: Any = None) -> SweepSpace:
    """The search space of a sweep's overrides (``config_loader``: Hydra's, needed for ``glob``)."""
    parser = OverridesParser.create(config_loader=config_loader)
    dimensions: list[AnyDimension] = []
    fixed: list[str] = []
    texts: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    for override in parser.parse_overrides(list(arguments)):
        key = override.get_key_element()
        if key in seen:
            raise SweepSpaceError(f"{key} is given twice; give each key once")
        seen.add(key)
        if not override.is_sweep_override():
            fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
            continue
        dim, dim_texts = dimension_for(override)
        dimensions.append(dim)
        if dim_texts is not None:
            texts[dim.name] = dim_texts
    if not dimensions:
        raise SweepSpaceError("nothing to search: give at least one sweep, e.g. 'lr=tag(log,interval(1e-4,1e-1))' or 'depth=range(1,8)'")
    return SweepSpace(SearchSpace(dimensions), tuple(fixed), texts)
