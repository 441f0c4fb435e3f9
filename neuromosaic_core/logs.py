"""Logging through loguru: readable lines for people, JSON for machines (``log.json=true``).

Every line of a search carries the experiment name, and every trial line its trial number, bound
with ``logger.bind`` (correlation ids). The run directory gets a full log file either way.
"""

from __future__ import annotations

import sys
from pathlib import Path

from loguru import logger

_HUMAN = "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> <cyan>{extra[experiment]}</cyan>{extra[trial_tag]} {message}"


def _tag(record: dict) -> bool:
    trial = record["extra"].get("trial")
    record["extra"]["trial_tag"] = f" trial {trial}" if trial is not None else ""
    record["extra"].setdefault("experiment", "-")
    return True


def configure_logging(level: str = "INFO", json: bool = False, log_file: Path | None = None) -> None:
    """Replace loguru's default sink: stderr (human or JSON) plus an optional JSON-lines file."""
    logger.remove()
    # Look sys.stderr up per message: the live progress display swaps it while it runs.
    logger.add(lambda m: sys.stderr.write(m), level=level.upper(), format=_HUMAN, filter=_tag,
               serialize=json, colorize=not json and sys.stderr.isatty())
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        logger.add(log_file, level="DEBUG", serialize=True, filter=_tag)
