"""Architecture vectors as numbers: the one encoding that plots, importance and surrogate models share.

Numpy only (no matplotlib, no scikit-learn), so anything may import it.

Each dimension becomes one or more columns in ``[0, 1]``:

* an ``int`` or ``real`` dimension: one column, min-max scaled over its range (on a log scale when
  the dimension is ``log``), named after the dimension;
* a ``categorical`` dimension: one-hot, one column per choice, named ``<dimension>=<choice>``
  (choices are unordered: an ordinal code would invent distances between them). A two-choice
  dimension still gets both columns, so a column always means "this choice".

An inactive conditional dimension holds its canonical default in a stored vector
(:meth:`~neuromosaic_core.model.SearchSpace.canonicalize`) and is encoded as that value. A value
outside the space (a vector of an older space replayed from storage) gives ``nan`` in its columns
rather than an error; callers drop or impute such rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from neuromosaic_core.model import ArchitectureVector, CategoricalDimension, SearchSpace


def feature_names(space: SearchSpace) -> list[str]:
    """The column names :func:`vectors_to_matrix` gives for ``space``, in column order."""
    names: list[str] = []
    for dim in space:
        if isinstance(dim, CategoricalDimension):
            names.extend(f"{dim.name}={choice}" for choice in dim.choices)
        else:
            names.append(dim.name)
    return names


def feature_dimensions(space: SearchSpace) -> list[str]:
    """For each column of :func:`vectors_to_matrix`, the dimension it comes from (to sum one-hot
    columns back into one importance per dimension, say)."""
    owners: list[str] = []
    for dim in space:
        owners.extend([dim.name] * (len(dim.choices) if isinstance(dim, CategoricalDimension) else 1))
    return owners


def _scaled(value: Any, low: float, high: float, log: bool) -> float:
    # The range check runs on the values as given: an int bound above 2**53 turned float first
    # would round below the int values it bounds.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        return math.nan
    if high == low:
        return 0.0
    if log:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return float(value - low) / float(high - low)


def vectors_to_matrix(space: SearchSpace, vectors: Sequence[ArchitectureVector]) -> tuple[np.ndarray, list[str]]:
    """``(matrix, column_names)``: one row per vector, float64, see the module docstring."""
    names = feature_names(space)
    matrix = np.zeros((len(vectors), len(names)), dtype=np.float64)
    for row, vector in enumerate(vectors):
        column = 0
        for dim in space:
            value = vector.values.get(dim.name)
            if isinstance(dim, CategoricalDimension):
                width = len(dim.choices)
                hits = [i for i, c in enumerate(dim.choices) if value == c and type(value) is type(c)]
                if hits:
                    matrix[row, column + hits[0]] = 1.0
                else:
                    matrix[row, column:column + width] = np.nan
                column += width
            else:
                matrix[row, column] = _scaled(value, dim.low, dim.high, dim.log)
                column += 1
    return matrix, names
