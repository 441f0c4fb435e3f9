"""Settings are checked before any work: one line naming the key, the bad value and what is valid."""

import attrs
import pytest

from neuromosaic_core.errors import ConfigError
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import CoreSettings, RunnerSettings, Workers, structure_settings


def check(data, cls=CoreSettings, path=""):
    with pytest.raises(ConfigError) as info:
        structure_settings(data, cls, path)
    return str(info.value)


BASE = {"experiment": {"name": "x"}}


def test_defaults_fill_everything_but_the_name():
    s = structure_settings(BASE, CoreSettings, "")
    assert s.search.trials == 40 and s.training.optimizer == "adamw" and s.harness.keep_weights == "all"


def test_wrong_type_names_key_and_value():
    assert check({**BASE, "search": {"trials": "abc"}}) == "search.trials: expected an integer, got 'abc'"
    assert check({**BASE, "log": {"json": "maybe"}}) == "log.json: expected true or false, got 'maybe'"
    assert check({**BASE, "training": {"learning_rate": "fast"}}) == "training.learning_rate: expected a number, got 'fast'"


def test_unknown_key_lists_the_valid_keys():
    msg = check({**BASE, "search": {"trails": 3}})
    assert msg.startswith("search.trails: unknown key 'trails'")
    assert "trials" in msg and "max_failures" in msg


def test_workers_accepts_auto_or_an_integer():
    assert structure_settings({"workers": "auto"}, RunnerSettings, "runner").resolved_workers() >= 1
    assert structure_settings({"workers": 3}, RunnerSettings, "runner").resolved_workers() == 3
    assert check({"workers": "many"}, RunnerSettings, "runner") == "runner.workers: expected an integer or 'auto', got 'many'"


def test_range_checks_are_reported():
    assert check({**BASE, "search": {"trials": 0}}) == "search: trials must be at least 1, got 0"
    assert check({**BASE, "training": {"optimizer": "lbfgs"}}) == "training.optimizer: expected one of adamw, adam, sgd, got 'lbfgs'"
    assert check({**BASE, "training": {"val_fraction": 2}}) == "training: val_fraction must be in (0, 1), got 2.0"


@attrs.frozen
class RedeclaringSettings(RunnerSettings):
    """A runner plugin's settings that redeclare the base fields (as the tabular runner does with
    ``workers = 1``), which drops the base class's field validators."""

    workers: Workers = 1
    timeout: float = 60.0


_SYSTEM = PluginSystem.load()
#: The base, a redeclaring subclass, and every installed runner plugin's settings (local, tabular,
#: and podman and ray where installed).
RUNNER_SETTINGS = [RunnerSettings, RedeclaringSettings, *(_SYSTEM.get("runner", n).settings for n in _SYSTEM.names("runner"))]


@pytest.mark.parametrize("cls", RUNNER_SETTINGS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"workers": 0}, "runner.workers: must be at least 1 or 'auto', got 0"),
        ({"workers": -2}, "runner.workers: must be at least 1 or 'auto', got -2"),
        ({"timeout": -1}, "runner.timeout: must be above 0 seconds, got -1.0"),
        ({"timeout": 0}, "runner.timeout: must be above 0 seconds, got 0.0"),
        ({"timeout": "nan"}, "runner.timeout: must be a finite number of seconds, got nan"),
    ],
)
def test_every_runners_workers_and_timeout_are_range_checked_by_the_core(cls, data, expected):
    assert check(data, cls, "runner") == expected


@pytest.mark.parametrize("cls", RUNNER_SETTINGS, ids=lambda c: c.__name__)
def test_every_runner_accepts_sensible_workers_and_timeouts(cls):
    settings = structure_settings({"workers": 1, "timeout": 0.5}, cls, "runner")
    assert settings.resolved_workers() == 1 and settings.timeout == 0.5
    assert structure_settings({"workers": "auto"}, cls, "runner").resolved_workers() >= 1


def test_runner_settings_built_in_code_are_checked_too():
    with pytest.raises(ValueError, match="workers must be at least 1 or 'auto', got 0"):
        RunnerSettings(workers=0)
    with pytest.raises(ValueError, match="timeout must be above 0 seconds, got -1"):
        RunnerSettings(timeout=-1)
