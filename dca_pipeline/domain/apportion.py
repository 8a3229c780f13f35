"""Largest-remainder (Hamilton) apportionment of an integer total.

Used for every split in the contract: flow fiat, flow sats, commission shares. The result always
sums to the total exactly. Leftover units go one each to the largest fractional parts; ties go to
the party that comes first in the given order (callers pass parties sorted by their tie rule).

Two implementations of the same arithmetic: :func:`largest_remainder` (plain Python ints, any
size, the reference) and :func:`largest_remainder_np` (numpy int64, used by the engine's hot
loop only when the products provably fit in 63 bits). Property tests prove they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
INT64_LIMIT = 2**63 - 1


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to non-negative integer ``weights``.

    Each share is floor(total × w / Σw) plus at most one leftover unit; leftover units go to
    the largest remainders, ties to the lower index. Σ shares == total exactly.
    """
    if total < 0:
        raise ValueError("cannot apportion a negative total")
    if any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative")
    weight_sum = sum(weights)
    if weight_sum == 0:
        if total:
            raise ValueError("cannot apportion a positive total over zero weights")
        return [0] * len(weights)
    shares: list[int] = []
    remainders: list[int] = []
    for weight in weights:
        quotient, remainder = divmod(total * weight, weight_sum)
        shares.append(quotient)
        remainders.append(remainder)
    leftover = total - sum(shares)
    if leftover:
        # sorted() is stable: equal remainders keep index order, so ties go to the lower index.
        by_remainder = sorted(range(len(weights)), key=lambda i: -remainders[i])
        for index in by_remainder[:leftover]:
            shares[index] += 1
    return shares


def fits_int64(total: int, max_weight: int, weight_sum: int) -> bool:
    """True when ``total × weight`` and the weight sum cannot overflow int64."""
    return total * max_weight <= INT64_LIMIT and weight_sum <= INT64_LIMIT


def fits_int64_by_sum(total: int, weight_sum: int) -> bool:
    """Cheaper sufficient test (every weight ≤ their sum), so no max() pass is needed."""
    return total * weight_sum <= INT64_LIMIT


def largest_remainder_np(total: int, weights: Int64Array) -> Int64Array:
    """numpy twin of :func:`largest_remainder`; caller guarantees :func:`fits_int64`."""
    weight_sum = int(weights.sum())
    if weight_sum == 0:
        if total:
            raise ValueError("cannot apportion a positive total over zero weights")
        return np.zeros_like(weights)
    shares, remainders = np.divmod(weights * total, weight_sum)
    leftover = total - int(shares.sum())
    if leftover:
        n = len(weights)
        if weight_sum * n <= INT64_LIMIT:
            # One unique key per party: remainder first, then the lower index wins the tie.
            # The `leftover` largest keys are exactly the winners; no sort, no index arrays.
            keys = remainders * n + _reversed_index(n)
            threshold = np.partition(keys, n - leftover)[n - leftover]
            shares += keys >= threshold
        else:
            shares[_top_indices(remainders, leftover)] += 1
    return shares


@lru_cache(maxsize=64)
def _reversed_index(n: int) -> Int64Array:
    """(n-1, …, 0), built once per party count on first use (read-only: shared between calls)."""
    index = np.arange(n - 1, -1, -1, dtype=np.int64)
    index.flags.writeable = False
    return index


def _top_indices(values: Int64Array, k: int) -> Int64Array:
    """Indices of the ``k`` largest values, ties to the lower index — in O(n), no full sort.

    The k-th largest value is the threshold: everything above it wins, and the remaining places
    go to the lowest indices holding exactly the threshold.
    """
    n = len(values)
    threshold = np.partition(values, n - k)[n - k]
    above = np.flatnonzero(values > threshold)
    at_threshold = np.flatnonzero(values == threshold)[: k - len(above)]
    return np.concatenate((above, at_threshold))
