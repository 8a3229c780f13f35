"""Column types that behave the same on SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa


class UtcDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC instant: ``timestamptz`` on PostgreSQL, ISO text on SQLite.

    Naive datetimes are refused on the way in (the prior art mixed local and UTC times), and
    values always come back aware, in UTC, whichever database stored them.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime refused by the ledger: {value!r}")
        value = value.astimezone(UTC)
        # SQLite has no time zones: store the UTC wall clock, re-attach UTC when reading.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: Integer money (sats, centavos) and surrogate keys: 64-bit everywhere.
Money = sa.BigInteger
#: Autoincrement primary keys: SQLite only autoincrements a plain INTEGER PRIMARY KEY.
SurrogateKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
