"""A private ``podman system service`` on a unix socket, for a runner with no ``runner.url``.

The service runs with ``CONTAINERS_CONF`` pointing at the plugin's containers.conf (runc, ulimits
that can be set), so nothing under /etc needs editing. It lives in a directory of its own (mode
0700) and dies with the process that started it (``PR_SET_PDEATHSIG``): a killed orchestrator leaves
no service behind. Containers it started are removed by the runner; the ones a SIGKILLed
orchestrator could not remove stop at their own ``timeout`` (podman's ``--timeout``).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from neuromosaic_core.errors import NeuromosaicError
from neuromosaic_runner_podman.image import podman_env

PR_SET_PDEATHSIG = 1


class PodmanUnavailable(NeuromosaicError):
    """podman, its service or the trial image is missing; the message says what to do."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def remove_stale_directories() -> None:
    """Remove the service and input directories (``neuromosaic-podman-<pid>-*``,
    ``neuromosaic-input-<pid>-*`` in the temporary directory) of processes that are gone: what an
    orchestrator killed with SIGKILL could not clean up."""
    for prefix in ("neuromosaic-podman-", "neuromosaic-input-"):
        for path in Path(tempfile.gettempdir()).glob(prefix + "*"):
            pid = path.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)


class PodmanService:
    """``start()`` returns the service's URL; ``stop()`` ends it and removes its directory."""

    def __init__(self, podman: str = "podman", containers_conf: str = "", start_timeout: float = 30.0) -> None:
        self.podman = podman
        self.containers_conf = containers_conf
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.directory: Path | None = None

    @property
    def socket(self) -> Path:
        assert self.directory is not None
        return self.directory / "podman.sock"

    def start(self) -> str:
        executable = shutil.which(self.podman)
        if executable is None:
            raise PodmanUnavailable(f"runner=podman: '{self.podman}' is not installed (apt-get install -y podman runc), "
                                    "or set runner.url to a running podman service")
        remove_stale_directories()
        self.directory = Path(tempfile.mkdtemp(prefix=f"neuromosaic-podman-{os.getpid()}-"))
        log = (self.directory / "service.log").open("wb")
        self.proc = subprocess.Popen(
            [executable, "system", "service", "--time", "0", f"unix://{self.socket}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=self.directory,  # conmon writes an `oom` file into its working directory after an OOM kill
            env=podman_env(self.containers_conf or None), start_new_session=True, preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.directory / "service.log").read_text(errors="replace").strip()[-500:]
                self.stop()
                raise PodmanUnavailable(f"runner=podman: 'podman system service' did not start: {tail or 'no output'}")
            time.sleep(0.05)
        return f"unix://{self.socket}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

