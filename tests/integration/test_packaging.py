"""Every first-party plugin is a complete, installable package and is in the README's install file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())
#: Plugins of another framework: Hydra finds its sweeper in the hydra_plugins namespace, not through
#: our entry points, and only when installed as a wheel (an editable install hides it, hydra#2359).
HYDRA = {"hydra_neuromosaic_sweeper": "hydra_plugins/neuromosaic_sweeper"}


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugin_package_is_complete(plugin: Path):
    project = tomllib.loads((plugin / "pyproject.toml").read_text())["project"]
    assert project["name"] == plugin.name.replace("_", "-")
    major, minor, patch = project["version"].split(".")  # semantic version
    assert any(dep.startswith("neuromosaic-core") for dep in project["dependencies"])
    if plugin.name in HYDRA:
        assert not (plugin / "hydra_plugins" / "__init__.py").exists(), "hydra_plugins is a namespace package"
        assert (plugin / HYDRA[plugin.name] / "__init__.py").is_file()
    else:
        entry_points = project["entry-points"]["neuromosaic"]
        assert all(target == plugin.name for target in entry_points.values())
        assert (plugin / plugin.name / "__init__.py").is_file()
    assert (plugin / "README.md").is_file() and (plugin / "CHANGELOG.md").is_file()
    assert project["version"] in (plugin / "CHANGELOG.md").read_text()
    assert list((plugin / "tests").glob("test_*.py")), "each plugin carries its own tests"


#: Heavy plugins: out of the README's install file (llama-cpp-python compiles for ~10 minutes),
#: installed by .ci/run from requirements-ci.txt and documented with their one-line install.
#: Plugins kept out of requirements.txt: a compiled dependency, a ~250 MB one, or a service the
#: machine must have (podman). requirements-ci.txt installs them and the README says how.
HEAVY = {"neuromosaic_api", "neuromosaic_codegen_llamacpp", "neuromosaic_runner_podman", "neuromosaic_runner_ray",
         "neuromosaic_tracker_mlflow", "neuromosaic_tracker_tensorboard", "neuromosaic_export"}


def _installed_by(name: str) -> set[str]:
    return {line.split("[")[0].strip() for line in (ROOT / name).read_text().splitlines()}


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugin_is_installed_by_the_readme_install_file_or_by_ci(plugin: Path):
    if plugin.name in HYDRA:
        assert f"./plugins/{plugin.name}" in _installed_by("requirements.txt")
    elif plugin.name in HEAVY:
        assert f"-e plugins/{plugin.name}" in _installed_by("requirements-ci.txt")
        assert f"pip install -e plugins/{plugin.name}" in (ROOT / "README.md").read_text()
    else:
        assert f"-e plugins/{plugin.name}" in _installed_by("requirements.txt")


def test_core_version_is_in_its_changelog():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"## {version}" in (ROOT / "CHANGELOG.md").read_text()
