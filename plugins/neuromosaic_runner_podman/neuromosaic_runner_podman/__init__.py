"""Neuromosaic plugin: the ``podman`` runner (each trial in a locked-down container).

Cheap to import: the podman client and the runner module load only when the runner is built.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from neuromosaic_core import hookimpl
from neuromosaic_core.settings import RunnerSettings

__version__ = "0.1.3"

_SIZE = re.compile(r"^\d+[kmg]?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size_in_bytes(text: str) -> int:
    """``'2g'`` -> 2147483648; the size syntax podman uses (``b`` omitted, ``k``, ``m``, ``g``)."""
    text = text.strip().lower()
    unit = text[-1] if text[-1:] in ("k", "m", "g") else ""
    return int(text[: len(text) - len(unit)]) * _UNITS[unit]


@attrs.frozen
class PodmanRunnerSettings(RunnerSettings):
    """Each trial runs in a podman container with no network, as ``nobody``, with a read-only root,
    no capabilities, ``no-new-privileges`` and memory, CPU, process and file-size limits.

    ``url``: a podman service (``unix:///run/podman/podman.sock``); empty starts a private one.
    ``image``: the trial image (``neuromosaic-podman-image build --rootfs`` makes it).
    ``host_python``: mount this process's interpreter, its virtual environment and
    ``neuromosaic_core`` read-only at the same paths (the rootfs image has no Python of its own);
    false for an image with its own (the Containerfile image, with ``python=python3``).
    ``python``: the interpreter run in the container; empty means this process's own.
    ``memory``: memory limit, swap included (``2g``, ``512m``); ``cpus``: CPUs per trial;
    ``pids_limit``: processes and threads per trial; ``tmp_size``: the tmpfs at /tmp;
    ``max_file_size``: the largest file a trial may write (RLIMIT_FSIZE);
    ``max_output_mb``: more output than this stops the trial (``too much output``);
    ``podman``: the podman executable that starts the private service;
    ``containers_conf``: the containers.conf for that service (empty: the one shipped with the
    plugin, runc and settable ulimits)."""

    url: str = ""
    image: str = "localhost/neuromosaic-trial:latest"
    host_python: bool = True
    python: str = ""
    memory: str = "2g"
    cpus: float = 1.0
    pids_limit: int = 256
    tmp_size: str = "256m"
    max_file_size: str = "512m"
    max_output_mb: int = 16
    podman: str = "podman"
    containers_conf: str = ""

    def __attrs_post_init__(self) -> None:
        for name in ("memory", "tmp_size", "max_file_size"):
            if not _SIZE.match(getattr(self, name).strip()):
                raise ValueError(f"{name} must be a size such as 512m or 2g, got {getattr(self, name)!r}")
        if size_in_bytes(self.memory) < 64 * 1024**2:
            raise ValueError(f"memory must be at least 64m (torch alone needs more), got {self.memory!r}")
        if self.cpus <= 0:
            raise ValueError(f"cpus must be above 0, got {self.cpus}")
        if self.pids_limit < 16:
            raise ValueError(f"pids_limit must be at least 16, got {self.pids_limit}")
        if self.max_output_mb < 1:
            raise ValueError(f"max_output_mb must be at least 1, got {self.max_output_mb}")
        if self.url and not self.url.startswith(("unix://", "http://", "tcp://", "ssh://")):
            raise ValueError(f"url must start with unix://, tcp://, http:// or ssh://, got {self.url!r}")


def _factory(settings: PodmanRunnerSettings) -> Any:
    from neuromosaic_runner_podman.runner import PodmanRunner

    runner = PodmanRunner(settings)
    runner.preflight()
    return runner


@hookimpl
def register_runners(register: Any) -> None:
    register("podman", _factory, settings=PodmanRunnerSettings,
             description="each trial in a podman container: no network, non-root, read-only, resource limits")
