"""Where a trial trains: ``runner.device`` resolved inside the trial (the orchestrator never imports torch).

``auto`` means ``cuda:0`` when torch sees a GPU in the trial's process, else ``cpu``; ``cuda:N``
asks for GPU N and fails the trial with a clear message when it is not there.
"""

from __future__ import annotations

import re
from typing import Any

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda:\d+")


class DeviceUnavailable(Exception):
    """The trial asked for a GPU this machine does not have."""


def resolve_device(name: str, torch: Any = None) -> str:
    """``auto``/``cpu``/``cuda:N`` to a concrete torch device name (``cpu`` or ``cuda:N``)."""
    if not DEVICE_PATTERN.fullmatch(name):
        raise DeviceUnavailable(f"unknown device {name!r}: expected auto, cpu or cuda:N")
    if name == "cpu":
        return "cpu"
    if torch is None:
        import torch
    available = torch.cuda.is_available()
    count = torch.cuda.device_count() if available else 0
    if name == "auto":
        return "cuda:0" if count else "cpu"
    index = int(name.split(":")[1])
    if index >= count:
        seen = f"{count} GPU(s)" if count else "no GPU"
        raise DeviceUnavailable(f"device {name} requested, but torch sees {seen} here (use runner.device=auto or cpu)")
    return name
