"""The shared one-dimension mutation and SearchSpace.member."""

import random

from neuromosaic_core.model import ArchitectureVector, CategoricalDimension, IntDimension, RealDimension, SearchSpace
from neuromosaic_core.mutation import mutate

SPACE = SearchSpace(
    [
        CategoricalDimension("family", choices=["mlp", "cnn"]),
        IntDimension("depth", low=1, high=8),
        IntDimension("kernel", low=1, high=9, active_if={"family": ["cnn"]}),
        RealDimension("lr", low=1e-4, high=1e-1, log=True),
    ]
)


def active_diff(a, b):
    names = {d.name for d in SPACE.active_dimensions(a.values)} & {d.name for d in SPACE.active_dimensions(b.values)}
    return [n for n in names if a[n] != b[n]]


def test_a_child_is_in_the_space_and_differs_in_one_shared_active_dimension():
    rng = random.Random(0)
    for _ in range(300):
        parent = SPACE.sample(rng)
        child = mutate(SPACE, parent, rng)
        assert SPACE.contains(child) and child != parent
        assert len(active_diff(parent, child)) <= 1  # a family flip changes the active set instead


def test_nothing_to_mutate_gives_none():
    single = SearchSpace([CategoricalDimension("only", choices=["x"])])
    assert mutate(single, ArchitectureVector({"only": "x"}), random.Random(0)) is None


def test_member_canonicalises_and_rejects_foreign_vectors():
    v = SPACE.member({"family": "mlp", "depth": 3, "kernel": 7, "lr": 0.01})
    assert v == ArchitectureVector({"family": "mlp", "depth": 3, "kernel": 1, "lr": 0.01})
    assert SPACE.member({"family": "rnn", "depth": 3, "kernel": 1, "lr": 0.01}) is None
    assert SPACE.member({"width": 3}) is None
