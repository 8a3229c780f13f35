"""Seed the ledger directly through the schema tables (allocation is another stage's job)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa

from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.sequence import next_seq
from dca_pipeline.testing.lnbits_server import Wallet

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
    lines = list(lines)
    with engine.begin() as c:
        c.execute(
            s.allocation_events.insert().values(
                source_id=source_id,
                source_kind="cash_out",
                event_time=NOW,
                event_rank=0,
                business_day=day,
                fiat_cents=sum(line.fiat_cents for line in lines),
                principal_sats=sum(line.sats for line in lines if line.kind != "commission"),
                commission_sats=sum(line.sats for line in lines if line.kind == "commission"),
                inputs_json="{}",
                seq=next_seq(),
                cash_out_id=source_id,
                as_of=NOW,
                allocated_at=NOW,
            )
        )
        ids = []
        for number, line in enumerate(lines, start=1):
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
