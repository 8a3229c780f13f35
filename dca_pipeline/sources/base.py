"""The one interface every Lamassu data source implements, and its errors.

A source answers one question: "give me table T for window W as the CSV that
``COPY (SELECT <explicit columns> FROM T WHERE <W>) TO STDOUT WITH (FORMAT csv, HEADER)``
writes with ``TimeZone=UTC``". All sources return byte-identical exports, so the single parser
in ``dca_pipeline.lamassu`` reads them all. A source returns the complete export or raises a
:class:`SourceError`; it never returns a partial one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable


class LamassuTable(StrEnum):
    CASH_OUT_TXS = "cash_out_txs"
    CASH_OUT_ACTIONS = "cash_out_actions"
    CASH_IN_TXS = "cash_in_txs"


@dataclass(frozen=True)
class FetchWindow:
    """Half-open interval ``[start, end)`` of Lamassu ``created`` times, both aware UTC.

    Only aware datetimes are accepted because a naive one is ambiguous (the prior
    implementation mixed local and UTC times). Non-UTC offsets are refused rather than
    converted so that the value rendered into SQL is exactly the value the caller holds.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime):
                raise TypeError(f"FetchWindow.{name} must be a datetime, got {type(value)!r}")
            offset = value.utcoffset()
            if offset is None:
                raise ValueError(f"FetchWindow.{name} must be timezone-aware (UTC), got naive")
            if offset != timedelta(0):
                raise ValueError(f"FetchWindow.{name} must be in UTC, got offset {offset}")
        if not self.start < self.end:
            raise ValueError(f"FetchWindow needs start < end, got {self.start} .. {self.end}")

    @classmethod
    def covering(cls, start: datetime, end: datetime) -> FetchWindow:
        """Window from any two aware datetimes, converted to UTC."""
        return cls(start.astimezone(UTC), end.astimezone(UTC))


class SourceError(Exception):
    """A Lamassu export could not be obtained. Messages never contain secrets."""


class HostKeyError(SourceError):
    """The SSH server's host key is unknown or differs from the pinned one."""


class AuthenticationError(SourceError):
    """The credentials were refused (or the private key could not be loaded)."""


class RemoteCommandError(SourceError):
    """The export command ran but failed (non-zero exit, SQL error, missing database)."""


class TransferError(SourceError):
    """The connection failed or dropped before a complete export arrived."""


@runtime_checkable
class LamassuSource(Protocol):
    """What the ingestion assets depend on; implemented by the SSH, Postgres and folder sources."""

    def fetch_csv(self, table: LamassuTable, window: FetchWindow) -> bytes:
        """The complete ``COPY ... TO STDOUT WITH (FORMAT csv, HEADER)`` output, or raise."""
        ...


def fetch_tables(
    source: LamassuSource,
    window: FetchWindow,
    tables: Iterable[LamassuTable] = tuple(LamassuTable),
) -> dict[LamassuTable, bytes]:
    """Fetch several tables for one window (each one complete, or a :class:`SourceError`).

    A source with ``fetch_many`` fetches them over one connection (SSH: one handshake for
    the three tables; Postgres: one REPEATABLE READ snapshot). Otherwise the tables are
    separate statements, not one snapshot: a cash-out created between two fetches can have
    actions without its row (or the reverse). The look-back overlap of the next fetch
    (business rules §2) reconciles that, so readers must tolerate orphan actions.
    """
    tables = tuple(LamassuTable(t) for t in tables)
    fetch_many = getattr(source, "fetch_many", None)
    if fetch_many is not None:
        return fetch_many(tables, window)
    return {table: source.fetch_csv(table, window) for table in tables}


class SecretMaskingMixin:
    """Masks the named pydantic fields in ``repr()``/``str()`` of a Dagster resource."""

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():  # type: ignore[misc]
            if name in self.SECRET_FIELDS and value is not None:
                yield name, "***"
            else:
                yield name, value
