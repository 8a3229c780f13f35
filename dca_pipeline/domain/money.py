"""Units and exact parsing of money.

Sats and centavos are plain ``int``. Text amounts (Lamassu's ``numeric`` columns, admin input
in GTQ) are parsed exactly with :class:`decimal.Decimal`; a value that is not a whole number of
the target unit is an error, never rounded.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

SATS_PER_BTC = 100_000_000
CENTS_PER_UNIT = 100
#: No cash-out can carry more bitcoin than will ever exist.
MAX_SATS = 21_000_000 * SATS_PER_BTC

# A plain decimal as PostgreSQL prints numerics and admins type amounts: no exponent, no
# thousands separators, no "NaN"/"Infinity" (Decimal would accept those).
_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_INTEGER_TEXT = re.compile(r"[+-]?\d+")


class MoneyParseError(ValueError):
    """A text value is not an exact amount of the expected unit."""


def parse_decimal(text: str) -> Decimal:
    """Parse a plain decimal (``"2000.00000"``, ``"0.055"``) exactly."""
    stripped = text.strip()
    if not _DECIMAL_TEXT.fullmatch(stripped):
        raise MoneyParseError(f"not a decimal number: {text!r}")
    try:
        return Decimal(stripped)
    except (
        InvalidOperation
    ) as exc:  # pragma: no cover - the regex already excludes these
        raise MoneyParseError(f"not a decimal number: {text!r}") from exc


def parse_integer(text: str) -> int:
    """Parse an integer that may carry a zero fractional part (``"266800"``, ``"266800.000"``).

    A non-zero fractional part is an error: sats are whole.
    """
    stripped = text.strip()
    if _INTEGER_TEXT.fullmatch(stripped):
        return int(stripped)
    value = parse_decimal(stripped)
    if value != value.to_integral_value():
        raise MoneyParseError(f"not a whole number: {text!r}")
    return int(value)


def decimal_to_cents(value: Decimal) -> int:
    """GTQ as a Decimal → integer centavos; refuses fractions of a centavo."""
    scaled = value * CENTS_PER_UNIT
    if scaled != scaled.to_integral_value():
        raise MoneyParseError(f"not a whole number of centavos: {value}")
    return int(scaled)


def parse_cents(text: str) -> int:
    """GTQ text (``"2000.00000"``, ``"150.5"``) → integer centavos, exactly."""
    return decimal_to_cents(parse_decimal(text))


def format_cents(cents: int) -> str:
    """Integer centavos → ``"2000.00"`` (the GTQ text used in CSV output and memos)."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), CENTS_PER_UNIT)
    return f"{sign}{whole}.{frac:02d}"


def fraction_from_decimal_text(text: str) -> Fraction:
    """A decimal text as an exact rational (``"0.05500"`` → 11/200)."""
    return Fraction(parse_decimal(text))


def format_fraction(value: Fraction, places: int) -> str:
    """Render an exact rational with ``places`` decimals, truncated toward zero (for display)."""
    scale = 10**places
    scaled = abs(value.numerator) * scale // value.denominator
    sign = "-" if value < 0 and scaled else ""
    whole, frac = divmod(scaled, scale)
    return f"{sign}{whole}.{frac:0{places}d}" if places else f"{sign}{whole}"
