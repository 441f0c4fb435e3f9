"""Contract tests for :class:`~neuromosaic_core.interfaces.ArchitectureEncoder` plugins.

Subclass :class:`EncoderContract` in a class whose name starts with ``Test`` and implement
:meth:`EncoderContract.make_encoder`::

    from neuromosaic_core.testing.encoder import EncoderContract

    class TestMyEncoder(EncoderContract):
        def make_encoder(self):
            return MyEncoder(MySettings())

The properties are checked with hypothesis over the whole search space; :func:`vectors` and
:func:`invalid_vectors` are the strategies used, exported so encoder authors can reuse them.
This module imports pytest and hypothesis (test dependencies); ``neuromosaic_core`` itself does not.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuromosaic_core.interfaces import ArchitectureEncoder
from neuromosaic_core.layers import ACTIVATIONS, LAYER_TYPES, LayerError, analyse
from neuromosaic_core.model import (
    AnyDimension,
    ArchitectureSpec,
    ArchitectureVector,
    CategoricalDimension,
    IntDimension,
    Layer,
    RealDimension,
    SearchSpace,
    converter,
    to_json,
)

__all__ = ["EncoderContract", "dimension_values", "invalid_vectors", "vectors"]


def dimension_values(dim: AnyDimension) -> st.SearchStrategy[Any]:
    """Any value inside one dimension's domain."""
    if isinstance(dim, CategoricalDimension):
        return st.sampled_from(dim.choices)
    if isinstance(dim, IntDimension):
        return st.integers(min_value=dim.low, max_value=dim.high)
    if isinstance(dim, RealDimension):
        return st.floats(min_value=dim.low, max_value=dim.high, allow_nan=False, allow_infinity=False)
    raise TypeError(f"unknown dimension type {type(dim).__name__}")


def vectors(space: SearchSpace, canonical: bool = False) -> st.SearchStrategy[ArchitectureVector]:
    """Vectors of ``space``: every dimension drawn from its domain, so every vector is contained.

    Inactive dimensions hold arbitrary in-domain values (an encoder must ignore them) unless
    ``canonical``, in which case the vectors are passed through :meth:`SearchSpace.canonicalize`.
    """
    strategy = st.fixed_dictionaries({dim.name: dimension_values(dim) for dim in space}).map(ArchitectureVector)
    if canonical:
        strategy = strategy.map(space.canonicalize)
    return strategy


_NOT_A_VALUE = "__not_a_value__"


def _outside(dim: AnyDimension) -> list[Any]:
    """Values outside one dimension's domain."""
    if isinstance(dim, CategoricalDimension):
        return [v for v in (_NOT_A_VALUE, -987654321, True, None) if not dim.contains(v)]
    out: list[Any] = [_NOT_A_VALUE, None, True]
    if isinstance(dim, IntDimension):
        out += [dim.low - 1, dim.high + 1, float(dim.low)]
    else:
        out += [dim.low - 1.0, dim.high + 1.0, math.nan]
    return out


@st.composite
def invalid_vectors(draw: st.DrawFn, space: SearchSpace) -> ArchitectureVector:
    """Vectors that are *not* points of ``space``: an active dimension out of its domain or
    missing, or an unknown dimension added."""
    vector = draw(vectors(space))
    values = dict(vector.values)
    active = space.active_dimensions(values)
    how = draw(st.sampled_from(("outside", "missing", "unknown")))
    if how == "unknown" or not active:
        values[draw(st.sampled_from(("__unknown__", "zz_not_a_dimension")))] = 1
    else:
        dim = draw(st.sampled_from(active))
        if how == "missing":
            del values[dim.name]
        else:
            values[dim.name] = draw(st.sampled_from(_outside(dim)))
    return ArchitectureVector(values)


class EncoderContract:
    """The encoder contract as tests. Subclass it (in a ``Test*`` class) and implement
    :meth:`make_encoder`. Class attributes tune the checks."""

    #: hypothesis examples per property
    max_examples: int = 200
    #: the task shape used to check that decoded specs are analysable (or fail with LayerError only)
    input_shape: tuple[int, ...] = (40,)
    num_classes: int = 10

    def make_encoder(self) -> ArchitectureEncoder:
        raise NotImplementedError("implement make_encoder() to return the encoder under test")

    # -- helpers --------------------------------------------------------------------------

    def _settings(self) -> settings:
        return settings(max_examples=self.max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])

    def _space(self) -> tuple[ArchitectureEncoder, SearchSpace]:
        encoder = self.make_encoder()
        return encoder, encoder.search_space()

    # -- the contract ---------------------------------------------------------------------

    def test_is_an_encoder(self) -> None:
        encoder, space = self._space()
        assert isinstance(encoder, ArchitectureEncoder)
        assert isinstance(space, SearchSpace)
        assert len(space) > 0
        assert encoder.search_space() == space, "search_space() must be stable"

    def test_encode_decode_round_trip(self) -> None:
        """encode(decode(v)) == space.canonicalize(v) for every v of the space."""
        encoder, space = self._space()

        @self._settings()
        @given(vectors(space))
        def check(vector: ArchitectureVector) -> None:
            encoded = encoder.encode(encoder.decode(vector))
            assert encoded == space.canonicalize(vector)
            assert space.contains(encoded)

        check()

    def test_decode_encode_round_trip(self) -> None:
        """decode(encode(spec)) == spec for every decoded spec."""
        encoder, space = self._space()

        @self._settings()
        @given(vectors(space))
        def check(vector: ArchitectureVector) -> None:
            spec = encoder.decode(vector)
            assert encoder.decode(encoder.encode(spec)) == spec

        check()

    def test_decode_is_deterministic_and_ignores_inactive_dimensions(self) -> None:
        encoder, space = self._space()

        @self._settings()
        @given(vectors(space))
        def check(vector: ArchitectureVector) -> None:
            spec = encoder.decode(vector)
            assert encoder.decode(vector) == spec
            assert encoder.decode(space.canonicalize(vector)) == spec

        check()

    def test_decoded_specs_use_the_layer_vocabulary(self) -> None:
        """Only known layer types and activations, and specs survive JSON and cattrs round trips."""
        encoder, space = self._space()

        @self._settings()
        @given(vectors(space))
        def check(vector: ArchitectureVector) -> None:
            spec = encoder.decode(vector)
            assert isinstance(spec, ArchitectureSpec)
            assert isinstance(spec.family, str) and spec.family
            for layer in spec.layers:
                assert isinstance(layer, Layer)
                assert layer.type in LAYER_TYPES, f"unknown layer type {layer.type!r}"
                if layer.type == "activation":
                    assert layer.params.get("fn") in ACTIVATIONS
            assert converter.structure(json.loads(to_json(spec)), ArchitectureSpec) == spec

        check()

    def test_decoded_specs_are_analysable(self) -> None:
        """analyse() infers shapes or raises LayerError (e.g. shape collapse), never anything else;
        a graph's wiring is always valid (a wiring error is the encoder's bug, not a shape that
        happens not to fit), and its canonical hash and one-line description exist."""
        encoder, space = self._space()

        @self._settings()
        @given(vectors(space))
        def check(vector: ArchitectureVector) -> None:
            spec = encoder.decode(vector)
            spec.graph()  # raises SpecError, naming the node, for inputs that do not resolve or dead nodes
            assert len(spec.canonical_hash()) == 16
            assert "\n" not in spec.describe()
            try:
                analysis = analyse(spec, self.input_shape, self.num_classes)
            except LayerError:
                return
            assert analysis.params > 0

        check()

    def test_validate_agrees_with_contains(self) -> None:
        encoder, space = self._space()

        @self._settings()
        @given(st.one_of(vectors(space), invalid_vectors(space)))
        def check(vector: ArchitectureVector) -> None:
            assert encoder.validate(vector) == space.contains(vector)

        check()

    def test_decode_rejects_vectors_outside_the_space(self) -> None:
        encoder, space = self._space()

        @self._settings()
        @given(invalid_vectors(space))
        def check(vector: ArchitectureVector) -> None:
            assert not space.contains(vector)
            try:
                encoder.decode(vector)
            except ValueError:
                return
            raise AssertionError(f"decode accepted a vector outside the space: {vector.values}")

        check()

    def test_space_samples_decode(self) -> None:
        """Vectors drawn by SearchSpace.sample (what strategies use) are contained and decode."""
        encoder, space = self._space()
        rng = random.Random(0)
        for _ in range(50):
            vector = space.sample(rng)
            assert space.contains(vector), space.violations(vector)
            spec = encoder.decode(vector)
            assert encoder.encode(spec) == space.canonicalize(vector)

    def test_encode_rejects_a_foreign_spec(self) -> None:
        encoder, _ = self._space()
        foreign = ArchitectureSpec("__no_such_family__", (Layer("linear", {"out_features": 7}),))
        try:
            encoder.encode(foreign)
        except ValueError:
            return
        raise AssertionError("encode accepted a spec of an unknown family")
