"""Seed the ledger directly through the schema tables (allocation is another stage's job)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa

from dca_pipeline.demo.lnbits import Wallet
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.sequence import next_seq

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
DAY = date(2026, 11, 24)


@dataclass(frozen=True)
class Line:
    kind: str  # flow | fixed | commission | unallocated
    recipient_id: str | None
    wallet_id: str | None
    fiat_cents: int
    sats: int
    compensates_line_id: int | None = None


def add_client(engine: sa.Engine, client_id: str, wallet: Wallet) -> None:
    with engine.begin() as c:
        c.execute(
            s.clients.insert().values(
                client_id=client_id,
                lnbits_user_id=wallet.user_id,
                wallet_id=wallet.id,
                invoice_key=wallet.inkey,
                created_at=NOW,
            )
        )


def add_commission_recipients(engine: sa.Engine, recipients: dict[str, Wallet]) -> None:
    with engine.begin() as c:
        version_id = c.execute(
            s.commission_versions.insert()
            .values(effective_at=NOW, recorded_at=NOW)
            .returning(s.commission_versions.c.version_id)
        ).scalar_one()
        share = 10_000 // len(recipients)
        for index, (recipient_id, wallet) in enumerate(sorted(recipients.items())):
            c.execute(
                s.commission_recipients.insert().values(
                    version_id=version_id,
                    recipient_id=recipient_id,
                    wallet_id=wallet.id,
                    invoice_key=wallet.inkey,
                    basis_points=share + (10_000 - share * len(recipients) if index == 0 else 0),
                )
            )


def add_event(
    engine: sa.Engine, source_id: str, lines: Iterable[Line], day: date = DAY
) -> list[int]:
    """One allocation event with its lines; returns the new line ids."""
    with engine.begin() as c:
        return _insert_event(c, source_id, list(lines), day=day, cash_out_id=source_id)


def add_compensation(engine: sa.Engine, reversed_source_id: str) -> list[int]:
    """The compensating event of ``reversed_source_id`` (business-rules §4a): ``undo:<id>``, one
    line per line of it, same kind, recipient and wallet, fiat and sats negated, naming the
    line it reverses, on the business day of the event it reverses. Returns the new line ids."""
    e, line = s.allocation_events.c, s.allocation_lines.c
    with engine.begin() as c:
        event = c.execute(
            sa.select(e.cash_out_id, e.business_day).where(e.source_id == reversed_source_id)
        ).one()
        reversed_lines = c.execute(
            sa.select(s.allocation_lines)
            .where(line.source_id == reversed_source_id)
            .order_by(line.line_no)
        ).all()
        lines = [
            Line(
                row.kind,
                row.recipient_id,
                row.wallet_id,
                -row.fiat_cents,
                -row.sats,
                compensates_line_id=row.line_id,
            )
            for row in reversed_lines
        ]
        return _insert_event(
            c,
            f"undo:{reversed_source_id}",
            lines,
            day=event.business_day,
            cash_out_id=event.cash_out_id,
            compensates_source_id=reversed_source_id,
        )


def append_line(engine: sa.Engine, source_id: str, line_no: int, line: Line, day: date) -> int:
    """A line added to an existing event (a tampered ledger, for the money checks)."""
    with engine.begin() as c:
        return _insert_lines(c, source_id, [line], day=day, first_line_no=line_no)[0]


def _insert_event(
    c: sa.Connection,
    source_id: str,
    lines: list[Line],
    *,
    day: date,
    cash_out_id: str | None,
    compensates_source_id: str | None = None,
) -> list[int]:
    """THE one place tests insert allocation events (the ledger's sequence: seq = max + 1)."""
    c.execute(
        s.allocation_events.insert().values(
            source_id=source_id,
            seq=next_seq(),
            source_kind="compensation" if compensates_source_id else "cash_out",
            cash_out_id=cash_out_id,
            event_time=NOW,
            event_rank=0,
            as_of=NOW,
            business_day=day,
            fiat_cents=sum(line.fiat_cents for line in lines),
            principal_sats=sum(line.sats for line in lines if line.kind != "commission"),
            commission_sats=sum(line.sats for line in lines if line.kind == "commission"),
            compensates_source_id=compensates_source_id,
            inputs_json="{}",
            allocated_at=NOW,
        )
    )
    return _insert_lines(c, source_id, lines, day=day)


def _insert_lines(
    c: sa.Connection, source_id: str, lines: list[Line], *, day: date, first_line_no: int = 1
) -> list[int]:
    """THE one place tests insert allocation lines."""
    ids = []
    for number, line in enumerate(lines, start=first_line_no):
        ids.append(
            c.execute(
                s.allocation_lines.insert()
                .values(
                    source_id=source_id,
                    line_no=number,
                    kind=line.kind,
                    recipient_id=line.recipient_id,
                    wallet_id=line.wallet_id,
                    business_day=day,
                    fiat_cents=line.fiat_cents,
                    sats=line.sats,
                    compensates_line_id=line.compensates_line_id,
                    created_at=NOW,
                )
                .returning(s.allocation_lines.c.line_id)
            ).scalar_one()
        )
    return ids


def payouts_by_status(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as c:
        rows = c.execute(
            sa.select(s.payouts.c.status, sa.func.count()).group_by(s.payouts.c.status)
        )
        return {row[0]: row[1] for row in rows}


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
