"""``neuromosaic-plugin new``: every kind's generated package passes its own tests, declares its
entry point and metadata, and bad input is one line and exit status 2.

Fast on purpose: the generated packages run from their folders (PYTHONPATH) in one pytest
subprocess, and one is built into a wheel. ``nox -s template`` installs each one alone with the
core, as a user would, and runs its tests there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
import zipfile
from email.parser import Parser

import pytest

from neuromosaic_core import __version__, scaffold
from neuromosaic_core.hookspecs import REGISTRATION_HOOKS


def test_every_kind_generates_a_package_whose_tests_pass(tmp_path):
    # Not in the working directory: a folder named like the package inside it would shadow it.
    packages = {kind: scaffold.new(kind, f"my{kind.replace('_', '')}", tmp_path / "plugins") for kind in scaffold.KINDS}
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --import-mode=importlib -p no:cacheprovider\n")
    report = tmp_path / "report.xml"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in packages.values())
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", *(str(p / "tests") for p in packages.values())],
                          cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed: dict[str, int] = {}
    contract_tests: dict[str, int] = {}
    for case in ET.parse(report).iter("testcase"):
        assert not list(case), f"{case.get('classname')}.{case.get('name')} did not pass: {[c.tag for c in case]}"
        kind = next(k for k, p in packages.items() if p.name in case.get("classname", ""))
        passed[kind] = passed.get(kind, 0) + 1
        if case.get("classname", "").endswith("Contract"):
            contract_tests[kind] = contract_tests.get(kind, 0) + 1
    assert set(passed) == set(scaffold.KINDS), f"kinds whose tests did not run: {set(scaffold.KINDS) - set(passed)}"
    # The kinds with a suite in neuromosaic_core.testing run it.
    assert {"strategy", "encoder", "codegen", "storage", "scheduler", "tracker"} <= set(contract_tests), contract_tests


def test_the_wheel_declares_the_entry_point_the_core_range_and_the_pypi_metadata(tmp_path):
    package = scaffold.new("strategy", "mystrategy", tmp_path / "src")
    code = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "dist")], cwd=package, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / "dist" / proc.stdout.split()[-1]) as wheel:
        info = next(n.split("/")[0] for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        files = wheel.namelist()
    assert "[neuromosaic]\nmystrategy = neuromosaic_strategy_mystrategy" in entry_points
    assert meta["Name"] == "neuromosaic-strategy-mystrategy"
    assert any(r.startswith("neuromosaic-core") and "<0.4" in r and f">={__version__}" in r for r in meta.get_all("Requires-Dist"))
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert urls["Source"] == "https://github.com/neuromosaic/neuromosaic/tree/main/plugins/neuromosaic_strategy_mystrategy"
    assert set(urls) == {"Homepage", "Documentation", "Source", "Changelog"}
    assert meta.get_all("Classifier") and meta["Keywords"] and meta["Description-Content-Type"] == "text/markdown"
    assert "neuromosaic_strategy_mystrategy/search.py" in files


def test_the_layout_and_the_urls_of_a_plugin_in_its_own_repository(tmp_path):
    package = scaffold.new("task", "blobs", tmp_path, url="https://example.org/me/neuromosaic-task-blobs")
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    assert project["urls"]["Documentation"] == "https://example.org/me/neuromosaic-task-blobs/blob/main/docs/task-blobs.md"
    assert project["entry-points"]["neuromosaic"] == {"blobs": "neuromosaic_task_blobs"}
    assert project["dependencies"][0] == f"neuromosaic-core{scaffold.core_range()}"
    assert sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()) == [
        "CHANGELOG.md", "README.md", "docs/task-blobs.md", "neuromosaic_task_blobs/__init__.py",
        "neuromosaic_task_blobs/task.py", "pyproject.toml", "tests/test_blobs.py"]
    readme = (package / "README.md").read_text()
    assert "neuromosaic task=blobs" in readme and "$" not in readme.replace("$ ", "")  # every placeholder filled


@pytest.mark.parametrize(("version", "expected"), [("0.3.3", ">=0.3.3,<0.4"), ("1.2.0", ">=1.2.0,<2"), ("0.10.1rc1", ">=0.10.1,<0.11")])
def test_the_core_range(version, expected):
    assert scaffold.core_range(version) == expected


@pytest.mark.parametrize(("argv", "message"), [
    (["new", "optimizer", "x"], "unknown kind 'optimizer'; choose one of: strategy, encoder"),
    (["new", "strategy", "My-Search"], "invalid name 'My-Search'"),
    (["new", "strategy", "import"], "invalid name 'import'"),
    (["new", "strategy", "a" * 21], "at most 20 characters"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        scaffold.main([*argv, "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("neuromosaic-plugin: error: ") and message in err
    assert not any(tmp_path.iterdir())


def test_an_existing_target_is_left_alone(tmp_path, capsys):
    target = tmp_path / "neuromosaic_strategy_mine"
    target.mkdir()
    (target / "mine.py").write_text("# my work\n")
    with pytest.raises(SystemExit) as exit_info:
        scaffold.main(["new", "strategy", "mine", "-o", str(tmp_path)])
    assert exit_info.value.code == 2 and "exists already" in capsys.readouterr().err
    assert [p.name for p in target.iterdir()] == ["mine.py"]


def test_the_kinds_left_out_are_named():
    assert set(scaffold.KINDS) <= set(REGISTRATION_HOOKS)
    assert {"strategy", "encoder", "codegen", "runner", "storage", "visualizer", "task", "scheduler"} <= set(scaffold.KINDS)


def test_the_command_starts_without_plugins_or_torch():
    code = "import sys, neuromosaic_core.scaffold; print(sorted(m for m in ('torch', 'hydra', 'numpy', 'neuromosaic_core.plugins') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
