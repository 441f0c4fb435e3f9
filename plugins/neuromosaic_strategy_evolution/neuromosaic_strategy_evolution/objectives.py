"""Parsing and checking the evolution strategy's settings (cheap to import: no DEAP).

Used by the settings class (so a bad value fails when the configuration is checked, before any
work starts) and by :class:`~neuromosaic_strategy_evolution.search.EvolutionSearch` (so the library
API checks the same rules).
"""

from __future__ import annotations

#: One objective: a metric name and whether it is maximised.
Objective = tuple[str, bool]

MODES = ("aging", "nsga2")
_DIRECTIONS = {"max": True, "min": False}


def parse_objectives(text: str) -> tuple[Objective, ...]:
    """``"val_accuracy:max,params:min"`` -> ``(("val_accuracy", True), ("params", False))``.

    An empty (or blank) string gives no objectives. Raises ``ValueError`` naming the bad part.
    """
    if not text.strip():
        return ()
    objectives: list[Objective] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            raise ValueError(f"objectives {text!r}: empty entry (a stray comma?); expected 'metric:max' or 'metric:min' entries")
        name, sep, direction = (s.strip() for s in item.rpartition(":"))
        if not sep:
            raise ValueError(f"objectives {text!r}: {item!r} has no direction; write '{item}:max' or '{item}:min'")
        if not name:
            raise ValueError(f"objectives {text!r}: {item!r} has no metric name before ':'")
        if direction.lower() not in _DIRECTIONS:
            raise ValueError(f"objectives {text!r}: {item!r} has direction {direction!r}; expected 'max' or 'min'")
        if any(name == seen for seen, _ in objectives):
            raise ValueError(f"objectives {text!r}: metric {name!r} appears twice")
        objectives.append((name, _DIRECTIONS[direction.lower()]))
    return tuple(objectives)


def check_settings(mode: str, population: int, sample_size: int, objectives: str, max_retries: int) -> tuple[Objective, ...]:
    """Check the evolution settings together; return the parsed objectives. Raises ``ValueError``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    for name, value in (("population", population), ("sample_size", sample_size), ("max_retries", max_retries)):
        if value < 1:
            raise ValueError(f"expected {name} >= 1, got {value}")
    if mode == "aging" and sample_size > population:  # nsga2 runs binary tournaments: sample_size is unused
        raise ValueError(f"sample_size ({sample_size}) must not exceed population ({population})")
    parsed = parse_objectives(objectives)
    if mode == "nsga2" and len(parsed) < 2:
        raise ValueError(
            f"mode nsga2 needs at least two objectives, got {objectives!r}; e.g. objectives='val_accuracy:max,params:min' "
            """(on the command line quote the value: 'strategy.objectives="val_accuracy:max,params:min"')"""
        )
    if mode == "aging" and len(parsed) > 1:
        raise ValueError(f"mode aging optimises one objective, got {len(parsed)} ({objectives!r}); use mode=nsga2 for several")
    return parsed
