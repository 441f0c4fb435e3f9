"""Fixtures: podman, the trial image (built once per session if missing) and one podman service
shared by the tests; and what an isolated session (``nox -s plugin``) leaves out.

The tests need podman and root (rootful podman: the runner hands the trial directory to uid
65534). Where the machine lacks either they skip with the reason; CI installs podman, runc and
debootstrap and sets ``NEUROMOSAIC_STRICT_SKIPS=1``, so a skip fails there. Building the image takes
about a minute (debootstrap); once built it is reused (``neuromosaic-podman-image build --rootfs``
does nothing when it exists).

``test_cli.py`` runs the ``neuromosaic`` command, which also needs a strategy, encoder, storage,
task and code generator plugin. ``nox -s plugin`` installs this plugin alone with the core, where a
skip would fail under CI's strict mode, so there the module is not collected, and the session
header says why. With everything installed (the README's ``pytest``) it runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from neuromosaic_core.testing.plugins import leave_out_without

CLI_NEEDS = {"random": "strategy", "mlp_conv1d": "encoder", "sql": "storage", "digits": "task", "template": "codegen"}


collect_ignore, pytest_report_header = leave_out_without("neuromosaic-runner-podman", CLI_NEEDS)


def podman_missing() -> str | None:
    """Why podman trials cannot run here, or None."""
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install -y podman runc debootstrap)"
    if os.geteuid() != 0:
        return "the podman runner's tests need rootful podman (run them as root)"
    return None


@pytest.fixture(scope="session")
def trial_image() -> str:
    """The trial image's tag, built from a debootstrapped root file system if it is missing."""
    from neuromosaic_runner_podman import image  # here, not at the top: without the plugin the root conftest says what to install

    reason = podman_missing()
    if reason:
        pytest.skip(reason)
    if not image.image_is_current(image.DEFAULT_TAG):
        if shutil.which("debootstrap") is None:
            pytest.skip("the trial image is missing and debootstrap is not installed to build it")
        try:
            image.build(image.DEFAULT_TAG, rootfs=True)
        except image.ImageError as exc:
            pytest.fail(f"building the trial image failed: {exc}")
    return image.DEFAULT_TAG


@pytest.fixture(scope="session")
def podman_url(trial_image: str) -> Iterator[str]:
    """One private podman service for the session (a runner with an empty url starts its own)."""
    from neuromosaic_runner_podman.service import PodmanService

    service = PodmanService()
    url = service.start()
    yield url
    service.stop()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    from neuromosaic_core.testing.hostile import write_data

    return write_data(tmp_path / "data.npz")


@pytest.fixture
def containers() -> object:
    """``containers(experiment)``: names of this plugin's trial containers for that experiment."""
    return trial_containers


def trial_containers(label_value: str | None = None) -> list[str]:
    """Names of this plugin's trial containers that exist now (any state), through the CLI."""
    import subprocess

    from neuromosaic_runner_podman import image

    args = ["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", "label=io.neuromosaic.runner=podman"]
    if label_value:
        args += ["--filter", f"label=io.neuromosaic.experiment={label_value}"]
    out = subprocess.run(args, capture_output=True, text=True, env=image.podman_env(), check=True)
    return [line for line in out.stdout.splitlines() if line.strip()]
