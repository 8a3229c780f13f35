from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dca_pipeline.domain.apportion import (
    fits_int64,
    largest_remainder,
    largest_remainder_np,
)

weights_st = st.lists(st.integers(0, 10**12), min_size=1, max_size=30)


@given(st.integers(0, 10**15), weights_st)
def test_sums_exactly_and_stays_within_one_unit_of_exact(
    total: int, weights: list[int]
) -> None:
    if sum(weights) == 0:
        return
    shares = largest_remainder(total, weights)
    assert sum(shares) == total
    for share, weight in zip(shares, weights, strict=True):
        exact = Fraction(total * weight, sum(weights))
        assert exact - 1 < share < exact + 1
        assert share >= 0


@given(st.integers(0, 10**6), st.lists(st.integers(0, 10**9), min_size=1, max_size=30))
def test_numpy_twin_agrees_with_reference(total: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        return
    assert fits_int64(total, max(weights), sum(weights))
    fast = largest_remainder_np(total, np.array(weights, dtype=np.int64))
    assert fast.tolist() == largest_remainder(total, weights)


def test_ties_go_to_the_lower_index() -> None:
    assert largest_remainder(1, [1, 1]) == [1, 0]
    assert largest_remainder(2, [1, 1, 1]) == [1, 1, 0]
    assert largest_remainder_np(2, np.array([1, 1, 1], dtype=np.int64)).tolist() == [
        1,
        1,
        0,
    ]


def test_refuses_impossible_splits() -> None:
    with pytest.raises(ValueError):
        largest_remainder(1, [0, 0])
    with pytest.raises(ValueError):
        largest_remainder(-1, [1])
    with pytest.raises(ValueError):
        largest_remainder(1, [1, -1])
