"""Strategies and encoders by registered name, without Hydra: the ask/tell loop a benchmark harness runs."""

import pytest

from neuromosaic_core.errors import ConfigError, UnknownComponentError
from neuromosaic_core.library import create_encoder, create_strategy
from neuromosaic_core.model import TrialResult


def test_ask_tell_loop_on_the_installed_encoder_space():
    encoder = create_encoder("mlp_conv1d")
    space = encoder.search_space()
    strategy = create_strategy("random", space, seed=3)
    seen = set()
    for _ in range(5):
        batch = strategy.suggest_architectures(4)
        assert len({v.key() for v in batch}) == 4 and all(space.contains(v) for v in batch)
        seen |= {v.key() for v in batch}
        strategy.update_with_results([(v, TrialResult({"val_accuracy": 0.5})) for v in batch])
        assert all(encoder.decode(v).family in ("mlp", "conv1d") for v in batch)
    assert len(seen) == 20
    again = create_strategy("random", space, seed=3).suggest_architectures(4)
    assert [v.key() for v in again] == [v.key() for v in create_strategy("random", space, seed=3).suggest_architectures(4)]


def test_settings_are_checked_as_on_the_command_line():
    space = create_encoder("mlp_conv1d").search_space()
    with pytest.raises(ConfigError, match="strategy.bogus: unknown key"):
        create_strategy("random", space, bogus=1)
    with pytest.raises(UnknownComponentError, match="valid choices"):
        create_strategy("nope", space)
