"""Entry-point discovery against plugins installed for the test (a dist-info on sys.path)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from neuromosaic_core import hookimpl
from neuromosaic_core.errors import DuplicateComponentError, UnknownComponentError
from neuromosaic_core.plugins import PluginSystem


def install_fake_plugin(site: Path, dist: str, ep_name: str, module: str, body: str) -> None:
    """Write a module and a minimal .dist-info so importlib.metadata sees an installed plugin."""
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[neuromosaic]\n{ep_name} = {module}\n")


GOOD = """
    import attrs
    from neuromosaic_core import hookimpl

    @attrs.frozen
    class Settings:
        depth: int = 3

    @hookimpl
    def register_search_strategies(register):
        register("toy", lambda **kw: None, settings=Settings, description="a toy")
        register("toy2", lambda **kw: None)
"""


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_fake_plugin(site, "neuromosaic-toy", "toy", "nm_toy_plugin", GOOD)
    return site


def run_listing(site: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    code = "from neuromosaic_core.cli import plugins_main; plugins_main(['--json'])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=60)


def by_name(listing):
    return {p["name"]: p for p in listing}


def test_installed_plugin_is_listed_with_distribution_version_hooks_and_components(site):
    proc = run_listing(site)
    assert proc.returncode == 0, proc.stderr
    toy = by_name(json.loads(proc.stdout))["toy"]
    assert toy["distribution"] == "neuromosaic-toy" and toy["version"] == "1.2.3"
    assert toy["hooks"] == ["register_search_strategies"]
    assert toy["components"] == {"strategy": ["toy", "toy2"]}
    assert toy["error"] is None


def test_allow_list_and_deny_list(site):
    only = json.loads(run_listing(site, NEUROMOSAIC_LOAD_PLUGINS="toy").stdout)
    assert [p["name"] for p in only] == ["toy"]
    none = json.loads(run_listing(site, NEUROMOSAIC_LOAD_PLUGINS="").stdout)
    assert none == []
    denied = json.loads(run_listing(site, NEUROMOSAIC_DISABLE_PLUGINS="toy").stdout)
    assert "toy" not in by_name(denied)


def test_a_broken_plugin_is_listed_with_its_error_and_exit_code_1(site):
    install_fake_plugin(site, "neuromosaic-broken", "broken", "nm_broken_plugin", "raise ImportError('no such thing')\n")
    proc = run_listing(site)
    assert proc.returncode == 1
    listing = by_name(json.loads(proc.stdout))
    assert listing["broken"]["error"] == "ImportError: no such thing"
    assert listing["toy"]["error"] is None  # the others still load


def test_a_misspelled_hook_fails_check_pending(site):
    install_fake_plugin(site, "neuromosaic-typo", "typo", "nm_typo_plugin", """
        from neuromosaic_core import hookimpl
        @hookimpl
        def register_strategys(register):
            pass
    """)
    proc = run_listing(site)
    assert proc.returncode == 1
    assert "register_strategys" in by_name(json.loads(proc.stdout))["typo"]["error"]


class _A:
    @hookimpl
    def register_tasks(self, register):
        register("same", lambda **kw: None)


class _B:
    @hookimpl
    def register_tasks(self, register):
        register("same", lambda **kw: None)


def test_duplicate_names_are_an_error_naming_both_plugins():
    with pytest.raises(DuplicateComponentError, match=r"task 'same' is registered twice: by plugin '(a|b)' and by plugin '(a|b)'"):
        PluginSystem.load([("a", _A()), ("b", _B())], entry_points=False)


def test_unknown_component_lists_the_choices():
    system = PluginSystem.load([("a", _A())], entry_points=False)
    with pytest.raises(UnknownComponentError, match=r"task='nope' is not an installed task; valid choices: same"):
        system.get("task", "nope")


def test_plugin_listing_does_not_import_torch(site):
    code = "import sys; from neuromosaic_core.plugins import PluginSystem; PluginSystem.load(); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr
