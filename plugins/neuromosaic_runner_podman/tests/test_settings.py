"""Settings, registration and start-up checks that need no podman."""

from __future__ import annotations

import subprocess
import sys

import pytest
from neuromosaic_runner_podman import PodmanRunnerSettings, size_in_bytes
from neuromosaic_runner_podman.runner import PodmanRunner
from neuromosaic_runner_podman.service import PodmanService, PodmanUnavailable

from neuromosaic_core.plugins import PluginSystem


def test_the_plugin_registers_the_podman_runner_with_its_settings():
    system = PluginSystem.load()
    component = system.get("runner", "podman")
    assert component.settings is PodmanRunnerSettings
    assert "container" in component.description


def test_importing_the_plugin_does_not_import_torch_or_the_podman_client():
    code = ("import sys, neuromosaic_runner_podman\n"
            "print(sorted(m for m in ('torch', 'podman', 'neuromosaic_runner_podman.runner') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"memory": "lots"}, "memory must be a size such as 512m or 2g, got 'lots'"),
        ({"memory": "10m"}, "memory must be at least 64m"),
        ({"cpus": 0.0}, "cpus must be above 0"),
        ({"pids_limit": 4}, "pids_limit must be at least 16"),
        ({"max_output_mb": 0}, "max_output_mb must be at least 1"),
        ({"tmp_size": "1x"}, "tmp_size must be a size"),
        ({"max_file_size": "big"}, "max_file_size must be a size"),
        ({"url": "/run/podman.sock"}, "url must start with unix://"),
        ({"timeout": 0.0}, "timeout must be above 0"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        PodmanRunnerSettings(**settings)


def test_sizes_read_like_podman_sizes():
    assert size_in_bytes("512m") == 512 * 2**20
    assert size_in_bytes("2G") == 2 * 2**30
    assert size_in_bytes("4096") == 4096


def test_a_missing_podman_is_one_clear_error_before_any_trial(tmp_path):
    with pytest.raises(PodmanUnavailable, match=r"'/nonexistent/podman' is not installed \(apt-get install -y podman runc\)"):
        PodmanRunner(PodmanRunnerSettings(podman="/nonexistent/podman")).preflight()
    with pytest.raises(PodmanUnavailable, match="is not installed"):
        PodmanService(podman="/nonexistent/podman").start()


def test_a_service_that_cannot_start_says_why(tmp_path):
    fake = tmp_path / "podman"
    fake.write_text("#!/bin/sh\necho 'cannot set up the runtime' >&2\nexit 125\n")
    fake.chmod(0o755)
    with pytest.raises(PodmanUnavailable, match="did not start: cannot set up the runtime"):
        PodmanService(podman=str(fake), start_timeout=10).start()


def test_the_image_command_without_podman_says_what_to_install():
    proc = subprocess.run([sys.executable, "-m", "neuromosaic_runner_podman.image", "build", "--rootfs",
                           "--podman", "/nonexistent/podman"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("neuromosaic-podman-image: '/nonexistent/podman' is not installed "
                                   "(apt-get install -y podman runc)")
