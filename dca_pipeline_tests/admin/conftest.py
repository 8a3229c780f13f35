"""Admin tests: a seeded ledger, an in-process CLI runner, and a dump of every admin table."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from dca_pipeline.cli import main
from dca_pipeline.ledger import admin
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.sequence import next_seq

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
#: The one allocated event of the seeded ledger.
ALLOCATED_AT = datetime(2025, 6, 1, 15, 0, tzinfo=UTC)
ALICE_KEY = "alice-invoice-key-0123456789abcdef"
BOB_KEY = "bob-invoice-key-fedcba9876543210"
R1_KEY = "r1-invoice-key-aaaaaaaaaaaaaaaa"
R2_KEY = "r2-invoice-key-bbbbbbbbbbbbbbbb"
SECRETS = (ALICE_KEY, BOB_KEY, R1_KEY, R2_KEY)

ADMIN_TABLES = {
    "clients": "client_id",
    "client_settings": "change_id",
    "deposits": "deposit_id",
    "commission_versions": "version_id",
    "commission_recipients": "version_id, recipient_id",
    "allocation_events": "source_id",
    "allocation_lines": "line_id",
}


def dump(ledger) -> dict[str, list[tuple[object, ...]]]:  # type: ignore[no-untyped-def]
    """Every admin table exactly as the database returns it (raw SQL, no type processing)."""
    with ledger.engine().connect() as c:
        return {
            table: [
                tuple(row) for row in c.execute(sa.text(f"SELECT * FROM {table} ORDER BY {key}"))
            ]
            for table, key in ADMIN_TABLES.items()
        }


def add_allocation(
    ledger,  # type: ignore[no-untyped-def]
    *,
    source_id: str = "co-1",
    at: datetime = ALLOCATED_AT,
    lines: tuple[tuple[str, str | None, str | None, int, int], ...] = (
        ("flow", "alice", "w-alice", 180_000, 232_916),
    ),
) -> None:
    """An allocated cash-out written through the schema, as the allocation assets would."""
    with ledger.begin() as c:
        c.execute(
            s.allocation_events.insert().values(
                source_id=source_id,
                source_kind="cash_out",
                event_time=at,
                event_rank=0,
                business_day=date(at.year, at.month, at.day),
                fiat_cents=sum(line[3] for line in lines),
                principal_sats=sum(line[4] for line in lines),
                commission_sats=0,
                inputs_json="{}",
                seq=next_seq(),
                cash_out_id=source_id,
                as_of=at,
                allocated_at=at,
            )
        )
        for number, (kind, recipient, wallet, fiat, sats) in enumerate(lines, start=1):
            c.execute(
                s.allocation_lines.insert().values(
                    source_id=source_id,
                    line_no=number,
                    kind=kind,
                    recipient_id=recipient,
                    wallet_id=wallet,
                    business_day=date(at.year, at.month, at.day),
                    fiat_cents=fiat,
                    sats=sats,
                    created_at=at,
                )
            )


def seed(ledger) -> None:  # type: ignore[no-untyped-def]
    """alice (flow, 9000.00 confirmed − 10.00 correction, 100.00 pending), bob (fixed 150.00),
    a 7000/3000 commission, and one allocated cash-out (1800.00 to alice)."""
    admin.add_client(
        ledger,
        client_id="alice",
        lnbits_user_id="u-alice",
        wallet_id="w-alice",
        invoice_key=ALICE_KEY,
        display_name="Alice",
        now=T0,
    )
    admin.add_client(
        ledger,
        client_id="bob",
        lnbits_user_id="u-bob",
        wallet_id="w-bob",
        invoice_key=BOB_KEY,
        mode="fixed",
        daily_limit_cents=15_000,
        now=T0,
    )
    admin.add_deposit(ledger, client_id="alice", amount_cents=900_000, deposit_id="d1", now=T0)
    admin.confirm_deposit(ledger, deposit_id="d1", now=T0 + timedelta(hours=1))
    admin.correct_deposit(
        ledger,
        deposit_id="d1",
        amount_cents=-1_000,
        note="counted twice",
        correction_id="d1-c1",
        now=T0 + timedelta(hours=2),
    )
    admin.add_deposit(ledger, client_id="alice", amount_cents=10_000, deposit_id="d2", now=T0)
    admin.set_commission(
        ledger,
        recipients=[
            admin.RecipientSpec("r1", "w-r1", 7000, R1_KEY),
            admin.RecipientSpec("r2", "w-r2", 3000, R2_KEY),
        ],
        now=T0,
    )
    add_allocation(ledger)


@pytest.fixture
def seeded(ledger):  # type: ignore[no-untyped-def]
    seed(ledger)
    return ledger


GROUPS_ALONE = {("clients",), ("deposits",), ("commission",)}


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(
    ledger, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:  # type: ignore[no-untyped-def]
    """Run `dca-pipeline ARGS --ledger-url <the test ledger>` in-process."""
    monkeypatch.delenv("DCA_LEDGER_URL", raising=False)
    monkeypatch.delenv("DCA_MAX_DAILY_GTQ", raising=False)

    def run(*args: str, stdin: str = "") -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            # A leaf command names the test ledger; a bare group ("commission") cannot take it.
            code = main(list(args) if args in GROUPS_ALONE else [*args, "--ledger-url", ledger.url])
        except SystemExit as exc:  # argparse refusals
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
