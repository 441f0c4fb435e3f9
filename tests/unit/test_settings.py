"""Settings are checked before any work: one line naming the key, the bad value and what is valid."""

import pytest

from neuromosaic_core.errors import ConfigError
from neuromosaic_core.settings import CoreSettings, RunnerSettings, structure_settings


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
