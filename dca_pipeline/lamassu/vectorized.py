"""Vectorized readers for the canonical text PostgreSQL writes in a ``COPY ... CSV`` export.

Each reader answers two things per row: is the text in the *canonical* form the export always
produces (``2000.00000``, ``266800``, ``t``, ``2025-06-09 19:12:42.040933+00``, a lower/upper
hex UUID), and if so, its exact value as an int64 (or a UTC instant). Anything else is "not
canonical", never guessed: those rows go to the exact row-wise parser in
:mod:`dca_pipeline.lamassu.validation`, which decides (valid, or quarantined with a reason).

Exactness: numbers are assembled from their digits in int64 with a bound on the digit count, so
no value can overflow or be rounded; timestamps are checked character by character before
pandas converts them, so pandas never sees a form it could interpret differently from
:func:`datetime.fromisoformat`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

_ZERO, _NINE, _DOT, _DASH, _COLON, _SPACE, _PLUS = (ord(c) for c in "09.-: +")
_POW10 = np.array([10**k for k in range(19)], dtype=np.int64)
#: Longer texts are never canonical for the columns read here; cutting them off first keeps
#: the character matrix small even if a row holds a huge garbage value.
MAX_TEXT = 40

EARLIEST = pd.Timestamp("1970-01-01", tz="UTC")

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


class TextColumn:
    """A column of ``str | None`` as a (rows × width) matrix of code points, plus lengths."""

    def __init__(self, values: npt.NDArray[np.object_], present: BoolArray | None = None) -> None:
        self.values = values
        self.present: BoolArray = ~pd.isna(values) if present is None else present
        self._codes: npt.NDArray[np.unsignedinteger] | None = None

    def _build(self) -> None:
        # Built on first use: columns only compared as whole strings never pay for it.
        n = len(self.values)
        filled = np.where(self.present, self.values, "")
        lengths = np.fromiter(map(len, filled), dtype=np.int64, count=n)
        self._too_long = lengths > MAX_TEXT
        if self._too_long.any():
            filled = np.where(self._too_long, "", filled)
            lengths = np.where(self._too_long, 0, lengths)
        self._lengths = lengths
        width = max(int(lengths.max(initial=0)), 1)
        try:  # ASCII (every canonical value): one byte per character
            self._codes = np.array(filled, dtype=f"S{width}").view(np.uint8).reshape(n, width)
        except UnicodeEncodeError:  # some other text: code points (never canonical anyway)
            self._codes = np.array(filled, dtype=f"U{width}").view(np.uint32).reshape(n, width)

    @property
    def codes(self) -> npt.NDArray[np.unsignedinteger]:
        if self._codes is None:
            self._build()
        return self._codes  # type: ignore[return-value]

    @property
    def lengths(self) -> IntArray:
        if self._codes is None:
            self._build()
        return self._lengths

    @property
    def too_long(self) -> BoolArray:
        if self._codes is None:
            self._build()
        return self._too_long

    @property
    def width(self) -> int:
        return int(self.codes.shape[1])

    def inside(self) -> BoolArray:
        """(rows × width) mask of the positions that hold a character."""
        return np.arange(self.width)[None, :] < self.lengths[:, None]

    def char_at(self, position: IntArray | int) -> npt.NDArray[np.unsignedinteger]:
        """The code point at ``position`` of each row (0 where the row is shorter)."""
        pos = np.broadcast_to(np.asarray(position, dtype=np.int64), self.lengths.shape)
        safe = np.clip(pos, 0, self.width - 1)
        got = self.codes[np.arange(len(self.lengths)), safe]
        return np.where((pos >= 0) & (pos < self.lengths), got, 0)


def fixed_point(column: TextColumn, scale: int, max_int_digits: int) -> tuple[BoolArray, IntArray]:
    """``digits[.digits]`` with at most ``scale`` decimals → value × 10**scale (exact, int64).

    Canonical: present, no sign, 1..max_int_digits integer digits, at most one dot followed by
    at most ``scale`` digits. ``max_int_digits + scale`` must stay below 19 (int64), so a
    canonical value never overflows (a non-canonical row may wrap; its value is not used).
    """
    assert max_int_digits + scale <= 18
    n = len(column.lengths)
    value = np.zeros(n, dtype=np.int64)
    int_digits = np.zeros(n, dtype=np.int64)
    decimals = np.zeros(n, dtype=np.int64)
    dots = np.zeros(n, dtype=np.int64)
    other = np.zeros(n, dtype=bool)
    # Horner's rule one character position at a time: width steps of whole-column operations.
    for j in range(column.width):
        c = column.codes[:, j].astype(np.int64)
        inside = j < column.lengths
        digit = (c >= _ZERO) & (c <= _NINE) & inside
        dot = (c == _DOT) & inside
        other |= inside & ~digit & ~dot
        after_dot = dots > 0
        decimals += digit & after_dot
        int_digits += digit & ~after_dot
        dots += dot
        value = np.where(digit, value * 10 + (c - _ZERO), value)
    ok = (
        column.present
        & ~column.too_long
        & ~other
        & (dots <= 1)
        & (int_digits >= 1)
        & (int_digits <= max_int_digits)
        & (decimals <= scale)
    )
    return ok, np.where(ok, value * _POW10[np.clip(scale - decimals, 0, 18)], 0)


def flag(column: TextColumn) -> tuple[BoolArray, BoolArray, BoolArray]:
    """PostgreSQL booleans: (is ``t``, is ``f``, is NULL); anything else is neither."""
    values = column.values
    return values == "t", values == "f", ~column.present


_HEX = np.zeros(256, dtype=bool)
_HEX[[ord(c) for c in "0123456789abcdefABCDEF"]] = True
_DASHES = np.zeros(36, dtype=bool)
_DASHES[[8, 13, 18, 23]] = True


def uuid_text(column: TextColumn) -> BoolArray:
    """8-4-4-4-12 hex digits with dashes, either case (what ``uuid`` prints, and more)."""
    if column.width < 36 or column.codes.dtype != np.uint8:
        return np.zeros(len(column.values), dtype=bool)
    codes = column.codes[:, :36]
    shape_ok = np.where(_DASHES[None, :], codes == _DASH, _HEX[codes]).all(axis=1)
    return column.present & (column.lengths == 36) & shape_ok


def utc_timestamp(column: TextColumn) -> tuple[BoolArray, pd.DatetimeIndex]:
    """``YYYY-MM-DD HH:MM:SS[.f{1,6}]+00`` (PostgreSQL with TimeZone=UTC) → UTC instants.

    Canonical rows whose digits do not form a real date/time (month 13, 24:00) come back not
    canonical, like every other form, and go to the row-wise parser.
    """
    length = column.lengths
    ok = column.present & ~column.too_long & (length >= 22) & (length <= 29) & (length != 23)
    if column.width >= 22:
        codes = column.codes
        digit = (codes >= _ZERO) & (codes <= _NINE)
        fixed = {4: _DASH, 7: _DASH, 10: _SPACE, 13: _COLON, 16: _COLON}
        for position in range(19):
            expected = fixed.get(position)
            ok &= (codes[:, position] == expected) if expected else digit[:, position]
        # Optional fraction: ".d…" from position 19 up to the "+00" suffix.
        has_fraction = length > 22
        ok &= ~has_fraction | (codes[:, 19] == _DOT)
        j = np.arange(column.width)[None, :]
        fraction_digits = (j >= 20) & (j < (length - 3)[:, None])
        ok &= (digit | ~fraction_digits).all(axis=1)
        ok &= column.char_at(length - 3) == _PLUS
        ok &= (column.char_at(length - 2) == _ZERO) & (column.char_at(length - 1) == _ZERO)
    else:
        ok &= False
    texts = pd.Series(np.where(ok, column.values, None), dtype=object)
    parsed = pd.to_datetime(texts, format="ISO8601", utc=True, errors="coerce")
    # Before 1970 is no Lamassu time (and the row-wise reader refuses it too).
    ok &= (parsed >= EARLIEST).to_numpy()
    return ok, pd.DatetimeIndex(parsed)
