import math

import numpy as np

from neuromosaic_core.features import feature_dimensions, vectors_to_matrix
from neuromosaic_core.model import ArchitectureVector, CategoricalDimension, IntDimension, RealDimension, SearchSpace

SPACE = SearchSpace([
    IntDimension("layers", low=1, high=5),
    RealDimension("lr", low=1e-4, high=1e-1, log=True),
    CategoricalDimension("act", choices=("relu", "gelu", "silu")),
])


def test_numbers_are_scaled_to_the_unit_interval_and_choices_are_one_hot():
    matrix, names = vectors_to_matrix(SPACE, [
        ArchitectureVector({"layers": 1, "lr": 1e-4, "act": "relu"}),
        ArchitectureVector({"layers": 5, "lr": 1e-1, "act": "silu"}),
        ArchitectureVector({"layers": 3, "lr": 10 ** -2.5, "act": "gelu"}),
    ])
    assert names == ["layers", "lr", "act=relu", "act=gelu", "act=silu"]
    assert feature_dimensions(SPACE) == ["layers", "lr", "act", "act", "act"]
    np.testing.assert_allclose(matrix, [
        [0.0, 0.0, 1, 0, 0],
        [1.0, 1.0, 0, 0, 1],
        [0.5, 0.5, 0, 1, 0],
    ])


def test_values_outside_the_space_become_nan_not_errors():
    matrix, _ = vectors_to_matrix(SPACE, [ArchitectureVector({"layers": 9, "lr": "x", "act": "tanh"})])
    assert all(math.isnan(v) for v in matrix[0])
    assert vectors_to_matrix(SPACE, [])[0].shape == (0, 5)


def test_ints_beyond_float_precision_stay_in_range():
    space = SearchSpace([IntDimension("big", low=0, high=2**54)])
    matrix, _ = vectors_to_matrix(space, [ArchitectureVector({"big": 2**53 + 1}), ArchitectureVector({"big": 2**54})])
    np.testing.assert_allclose(matrix[:, 0], [0.5, 1.0])
