"""The one balance query: per client, confirmed deposits, what was allocated, what remains.

remaining = confirmed deposits incl. corrections − Σ fiat of the client's flow + fixed lines
(business-rules §4), that Σ read from the running totals (``client_allocated_totals``).
Pending deposits are reported, never counted. The admin API, the money checks and the CLI all
read it from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dca_pipeline.ledger import schema as s

#: Line kinds that spend a client's deposits.
CLIENT_LINE_KINDS = ("flow", "fixed")


@dataclass(frozen=True)
class ClientBalance:
    client_id: str
    deposited_cents: int  # confirmed kind='deposit'
    corrections_cents: int  # confirmed kind='correction' (signed)
    pending_cents: int  # not counted until confirmed
    allocated_cents: int  # Σ fiat of its flow + fixed lines
    allocated_sats: int

    @property
    def confirmed_cents(self) -> int:
        """Confirmed deposits including corrections."""
        return self.deposited_cents + self.corrections_cents

    @property
    def remaining_cents(self) -> int:
        return self.confirmed_cents - self.allocated_cents


def _sum_by_client(c: sa.Connection, query: sa.Select[Any]) -> dict[str, tuple[int, int]]:
    # PostgreSQL's sum(bigint) is numeric (Decimal): int() keeps it exact.
    return {row[0]: (int(row[1] or 0), int(row[2] or 0)) for row in c.execute(query)}


def client_balances(
    c: sa.Connection, client_ids: Sequence[str] | None = None, *, at: datetime | None = None
) -> list[ClientBalance]:
    """One balance per client, in ``client_ids`` order (default: every client, by id).

    With ``at``: deposits confirmed, and events allocated, at or before it.
    """
    d = s.deposits.c
    if client_ids is None:
        client_ids = (
            c.execute(sa.select(s.clients.c.client_id).order_by(s.clients.c.client_id))
            .scalars()
            .all()
        )
    confirmed = d.status == "confirmed"
    if at is not None:
        confirmed = sa.and_(confirmed, d.confirmed_at <= at)
    deposits = _sum_by_client(
        c,
        sa.select(
            d.client_id,
            sa.func.sum(
                sa.case((sa.and_(confirmed, d.kind == "deposit"), d.amount_cents), else_=0)
            ),
            sa.func.sum(
                sa.case((sa.and_(confirmed, d.kind == "correction"), d.amount_cents), else_=0)
            ),
        ).group_by(d.client_id),
    )
    pending = _sum_by_client(
        c,
        sa.select(d.client_id, sa.func.sum(d.amount_cents), sa.literal(0))
        .where(d.status == "pending")
        .group_by(d.client_id),
    )
    lines = s.allocation_lines.c
    totals = s.client_allocated_totals.c
    # Now: the running totals the database keeps with every line (never a pass over the
    # ledger); at an instant: the lines of the events up to it.
    allocated_query = sa.select(totals.client_id, totals.allocated_cents, totals.allocated_sats)
    if at is not None:
        allocated_query = (
            sa.select(lines.recipient_id, sa.func.sum(lines.fiat_cents), sa.func.sum(lines.sats))
            .where(lines.kind.in_(CLIENT_LINE_KINDS))
            .group_by(lines.recipient_id)
        )
        events = s.allocation_events.c
        allocated_query = allocated_query.join_from(
            s.allocation_lines, s.allocation_events, lines.source_id == events.source_id
        ).where(events.event_time <= at)
    allocated = _sum_by_client(c, allocated_query)
    result = []
    for client_id in client_ids:
        deposited, corrections = deposits.get(client_id, (0, 0))
        fiat, sats = allocated.get(client_id, (0, 0))
        result.append(
            ClientBalance(
                client_id=client_id,
                deposited_cents=deposited,
                corrections_cents=corrections,
                pending_cents=pending.get(client_id, (0, 0))[0],
                allocated_cents=fiat,
                allocated_sats=sats,
            )
        )
    return result
