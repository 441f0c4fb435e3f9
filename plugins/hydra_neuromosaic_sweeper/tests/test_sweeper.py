"""Hydra finds the sweeper; the sweep grammar maps onto the search space and back (fast, no jobs)."""

from __future__ import annotations

import random

import pytest
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra_plugins.neuromosaic_sweeper._impl import NeuromosaicSweeperImpl, SweeperError, objective_metrics
from hydra_plugins.neuromosaic_sweeper._space import SweepSpaceError, parse_sweep

from neuromosaic_core.model import CategoricalDimension, IntDimension, RealDimension


def test_hydra_discovers_the_sweeper_and_its_config_node() -> None:
    assert "NeuromosaicSweeper" in [cls.__name__ for cls in Plugins.instance().discover(Sweeper)]
    assert "neuromosaic.yaml" in ConfigStore.instance().list("hydra/sweeper")


@pytest.mark.parametrize(("override", "expected"), [
    ("k=choice(relu,gelu)", CategoricalDimension("k", choices=["relu", "gelu"])),
    ("k=1,2,3", CategoricalDimension("k", choices=[1, 2, 3])),
    ("k=range(1,8)", IntDimension("k", low=1, high=7)),
    ("k=range(5,1,-1)", IntDimension("k", low=2, high=5)),
    ("k=tag(log,range(1,9))", IntDimension("k", low=1, high=8, log=True)),
    ("k=range(0,1,0.25)", CategoricalDimension("k", choices=[0.0, 0.25, 0.5, 0.75])),
    ("k=range(0,10,5)", CategoricalDimension("k", choices=[0, 5])),
    ("k=interval(0.1,1)", RealDimension("k", low=0.1, high=1.0)),
    ("k=tag(log,interval(1e-4,1e-1))", RealDimension("k", low=1e-4, high=1e-1, log=True)),
    ("k=int(interval(1,64))", IntDimension("k", low=1, high=64)),
    ("k=tag(log,int(interval(1,64)))", IntDimension("k", low=1, high=64, log=True)),
    ("+k=choice(1,1,2)", CategoricalDimension("+k", choices=[1, 2])),
])
def test_sweeps_map_onto_dimensions(override: str, expected: object) -> None:
    sweep = parse_sweep([override, "fixed=3"])
    assert sweep.space.dimensions == (expected,)
    assert sweep.fixed == ("fixed=3",)


def test_a_shuffled_range_is_a_set_of_choices() -> None:
    (dim,) = parse_sweep(["k=shuffle(range(4))"]).space.dimensions
    assert isinstance(dim, CategoricalDimension) and sorted(dim.choices) == [0, 1, 2, 3]


@pytest.mark.parametrize(("overrides", "message"), [
    (["k=glob(*)"], "glob() is not supported"),
    (["k=tag(foo,choice(1,2))"], "tag 'foo' is not understood"),
    (["k=tag(log,choice(1,2))"], "tag(log, ...) applies to interval()"),
    (["k=tag(log,range(0,10,2))"], "tag(log, ...) applies to interval()"),
    (["k=tag(log,interval(0,1))"], "needs an interval above 0"),
    (["k=tag(log,range(0,4))"], "needs a range above 0"),
    (["k=range(3,3)"], "is an empty range"),
    (["k=interval(2,1)"], "start < end"),
    (["k=choice(1,2)", "k=range(1,3)"], "k is given twice"),
    (["k=3"], "nothing to search"),
])
def test_unsupported_sweeps_are_refused_in_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(SweepSpaceError) as info:
        parse_sweep(overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_point_is_written_back_as_overrides_hydra_reads_as_the_same_values() -> None:
    sweep = parse_sweep(["act=choice(relu,true,'it\\'s',[1,2],2.5,'x y')", "lr=tag(log,interval(1e-6,1e-1))",
                         "depth=range(1,8)", "+width=tag(log,int(interval(8,512)))", "~dropout", "seed=7"])
    parser = OverridesParser.create()
    rng = random.Random(0)
    seen_act = set()
    for _ in range(60):
        vector = sweep.space.sample(rng)
        lines = sweep.overrides(vector)
        assert lines[:2] == ["~dropout", "seed=7"]
        parsed = {o.get_key_element(): o.value() for o in parser.parse_overrides(lines[2:])}
        assert parsed["lr"] == vector["lr"] and isinstance(parsed["lr"], float)
        assert parsed["depth"] == vector["depth"] and parsed["+width"] == vector["+width"]
        assert 1e-6 <= parsed["lr"] <= 1e-1 and 8 <= parsed["+width"] <= 512
        seen_act.add(repr(parsed["act"]))
    # Each choice reaches the job as the value the user typed: a bool, a list, quoted strings.
    assert seen_act == {repr("relu"), repr(True), repr("it's"), repr([1, 2]), repr(2.5), repr("x y")}


def test_the_objective_is_the_returned_number_or_one_key_of_a_returned_dict() -> None:
    assert objective_metrics(0.25, "objective") == {"objective": 0.25}
    assert objective_metrics({"loss": 1, "acc": 0.5}, "loss") == {"loss": 1.0, "acc": 0.5}
    with pytest.raises(ValueError, match="the app returned nothing"):
        objective_metrics(None, "objective")
    for bad, message in (("high", "must be a number"), (True, "must be a number"),
                         ({"acc": 0.5}, "without 'loss'")):
        with pytest.raises(ValueError, match=message):
            objective_metrics(bad, "loss")


@pytest.mark.parametrize(("settings", "message"), [
    ({"direction": "up"}, "hydra.sweeper.direction='up': expected minimize or maximize"),
    ({"n_trials": 0}, "hydra.sweeper.n_trials=0: must be at least 1"),
    ({"prescreen": 4}, "hydra.sweeper.prescreen=4 needs a meta-learner"),
])
def test_bad_settings_are_refused_in_one_line(settings: dict[str, object], message: str) -> None:
    with pytest.raises(SweeperError, match=message.replace("(", r"\(").replace(")", r"\)")):
        NeuromosaicSweeperImpl(**settings)._check_settings()  # type: ignore[arg-type]


def test_a_strategy_that_is_not_installed_is_named_with_the_installed_ones() -> None:
    sweeper = NeuromosaicSweeperImpl(strategy="bayes")
    with pytest.raises(SweeperError, match=r"^hydra.sweeper.strategy='bayes' is not an installed strategy; valid choices: "):
        sweeper._build("strategy", "bayes", {}, "strategy_settings", parse_sweep(["k=range(1,3)"]))
