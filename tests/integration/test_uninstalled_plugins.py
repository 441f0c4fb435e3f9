"""The README's ``pytest`` after ``pip install -r requirements.txt``: a plugin folder whose
distribution is not installed is one skipped test that says how to install it (not an import error),
and under ``NEUROMOSAIC_STRICT_SKIPS=1`` that skip fails, as CI requires."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\ntestpaths = plugins\naddopts = --import-mode=importlib -ra\n")
    plugin = tmp_path / "plugins" / "neuromosaic_runner_nowhere"
    (plugin / "tests").mkdir(parents=True)
    (plugin / "pyproject.toml").write_text('[project]\nname = "neuromosaic-runner-nowhere"\nversion = "0.1"\n')
    (plugin / "tests" / "conftest.py").write_text("import neuromosaic_runner_nowhere  # noqa: F401\n")
    (plugin / "tests" / "test_it.py").write_text("import neuromosaic_runner_nowhere\n\ndef test_x():\n    pass\n")
    installed = tmp_path / "plugins" / "neuromosaic_installed"  # pluggy stands in for an installed distribution
    (installed / "tests").mkdir(parents=True)
    (installed / "pyproject.toml").write_text('[project]\nname = "pluggy"\nversion = "0.1"\n')
    (installed / "tests" / "test_runs.py").write_text("def test_runs():\n    pass\n")
    return tmp_path


def _pytest(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("NEUROMOSAIC_", "PYTEST_ADDOPTS", "COV_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], cwd=cwd, capture_output=True, text=True, timeout=120, env=environment | env
    )


def test_an_uninstalled_plugin_is_one_skip_naming_its_install(tmp_path: Path) -> None:
    result = _pytest(_project(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout
    assert "neuromosaic-runner-nowhere is not installed: pip install -e plugins/neuromosaic_runner_nowhere[test]" in result.stdout
    assert "ModuleNotFoundError" not in result.stdout


def test_strict_skips_turn_it_into_a_failure(tmp_path: Path) -> None:
    result = _pytest(_project(tmp_path), NEUROMOSAIC_STRICT_SKIPS="1")
    assert result.returncode == 1
    assert "1 failed, 1 passed" in result.stdout


def test_skips_are_recorded_for_the_full_environment_to_rerun(tmp_path: Path) -> None:
    record = tmp_path / "skipped.txt"
    result = _pytest(_project(tmp_path), NEUROMOSAIC_SKIPPED_FILE=str(record))
    assert result.returncode == 0, result.stdout + result.stderr
    assert record.read_text().splitlines() == ["plugins/neuromosaic_runner_nowhere"]
