"""Allocate → pay → revoke → a new cash-out → pay, through the real allocation code (§4a) and a
real LNbits (FakeWallet): every wallet ends up holding exactly the net of its lines.

A paid cash-out that Lamassu later revokes is compensated by the allocation run; the clients'
next payouts are the net (the revoked amount recovered from them), and a wallet whose net is
≤ 0 is not paid until its later lines bring it above zero — proven on LNbits balances.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import schema as s
from dca_pipeline.payouts.procedure import run_payouts
from dca_pipeline_tests.allocate.seeding import add_cash_outs, cash_out_row, change, deposit
from dca_pipeline_tests.payouts.conftest import PayoutWorld

pytestmark = pytest.mark.lnbits

RULES = BusinessRules()
T = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 10:00 in Guatemala
DAY = RULES.business_day(T)


def _pay(world: PayoutWorld, run_id: str):  # type: ignore[no-untyped-def]
    with world.client() as client:
        return run_payouts(world.engine, client, run_id=run_id)


def _allocate(world: PayoutWorld, now: datetime) -> al.RangeOutcome:
    return al.allocate_range(world.engine, RULES, DAY, RULES.business_day(now), now=now,
                             settle_minutes=15, start_day=DAY)


def _net_by_wallet(world: PayoutWorld) -> dict[str, int]:
    line = s.allocation_lines
    with world.engine.connect() as c:
        rows = c.execute(
            sa.select(line.c.wallet_id, sa.func.sum(line.c.sats))
            .where(line.c.wallet_id.is_not(None)).group_by(line.c.wallet_id)
        ).all()
    return {wallet: int(sats) for wallet, sats in rows}


def test_revoked_paid_cash_out_is_recovered_from_the_next_payouts(world: PayoutWorld) -> None:
    w = world.wallets
    world.server.fund(world.source.id, 1_000_000)
    with world.engine.begin() as c:
        for name in ("alice", "bob"):
            change(c, name, mode="flow", status="active", effective_at=T - timedelta(days=30))
        deposit(c, "d-alice", "alice", 900_000, T - timedelta(days=30))
        deposit(c, "d-bob", "bob", 100_000, T - timedelta(days=30))
        add_cash_outs(c, [cash_out_row("tx1", T, 200_000, 266_800)])  # business-rules ex. A

    first = _allocate(world, T + timedelta(hours=1))
    assert first.reproduced and first.events_written == 2  # tx1 and the day's fixed run
    paid = _pay(world, "pay-1")
    assert paid.lnbits_payments == 3  # alice, bob, r1 (r2's commission goes to alice's wallet)
    after_first = world.balances()
    # Example A; the commission 8,004 sats split 50/50, r2's half to alice's wallet.
    assert after_first["alice"] == 232_916 + 4_002 and after_first["bob"] == 25_880

    # Lamassu sets an error on tx1 after it was paid: the allocation run compensates it.
    with world.engine.begin() as c:
        c.execute(s.validated_cash_outs.update().where(s.validated_cash_outs.c.id == "tx1")
                  .values(eligible=False, error="dispense failed", ineligible_reason="has error"))
    undo = _allocate(world, T + timedelta(hours=2))
    assert [(r.kind, r.source_id) for r in undo.reports] == [("revoked", "undo:tx1")]
    nothing = _pay(world, "pay-2")
    assert nothing.lnbits_payments == 0  # every wallet nets ≤ 0 now: nobody is paid
    assert world.balances() == after_first

    # A new, bigger cash-out: the clients' next payouts are exactly the net.
    with world.engine.begin() as c:
        add_cash_outs(c, [cash_out_row("tx2", T + timedelta(hours=3), 400_000, 533_600)])
    more = _allocate(world, T + timedelta(hours=4))
    assert more.reproduced and more.events_written == 1
    _pay(world, "pay-3")
    net = _net_by_wallet(world)
    received = world.balances()
    assert received["alice"] == net[w["alice"].id]
    assert received["bob"] == net[w["bob"].id]
    assert received["r1"] == net[w["r1"].id]
    # The net is tx2's split alone (tx1 is reversed), and it was really moved on LNbits.
    with world.engine.connect() as c:
        tx2 = dict(c.execute(
            sa.select(s.allocation_lines.c.wallet_id, sa.func.sum(s.allocation_lines.c.sats))
            .where(s.allocation_lines.c.source_id == "tx2", s.allocation_lines.c.wallet_id
                   .is_not(None))
            .group_by(s.allocation_lines.c.wallet_id)
        ).all())
    assert received["alice"] == tx2[w["alice"].id] and received["bob"] == tx2[w["bob"].id]
    assert received["alice"] > after_first["alice"]  # paid the difference, not tx2 twice

    # Nothing is paid twice: another run pays nothing.
    assert _pay(world, "pay-4").lnbits_payments == 0
    assert world.balances() == received


def test_wallet_at_net_below_zero_waits_and_is_paid_the_right_net_later(
    world: PayoutWorld,
) -> None:
    w = world.wallets
    world.server.fund(world.source.id, 1_000_000)
    with world.engine.begin() as c:
        change(c, "bob", mode="flow", status="active", effective_at=T - timedelta(days=30))
        deposit(c, "d-bob", "bob", 5_000_000, T - timedelta(days=30))
        add_cash_outs(c, [cash_out_row("big", T, 300_000, 400_000)])
    _allocate(world, T + timedelta(hours=1))
    _pay(world, "pay-1")
    paid_bob = world.balances()["bob"]
    with world.engine.begin() as c:
        c.execute(s.validated_cash_outs.update().where(s.validated_cash_outs.c.id == "big")
                  .values(eligible=False, error="dispense failed", ineligible_reason="has error"))
        add_cash_outs(c, [cash_out_row("small", T + timedelta(hours=2), 50_000, 66_000)])
    _allocate(world, T + timedelta(hours=3))
    assert _pay(world, "pay-2").lnbits_payments == 0  # small < big: bob still owes
    assert world.balances()["bob"] == paid_bob
    with world.engine.begin() as c:
        add_cash_outs(c, [cash_out_row("large", T + timedelta(hours=4), 400_000, 540_000)])
    _allocate(world, T + timedelta(hours=5))
    _pay(world, "pay-3")
    assert world.balances()["bob"] == _net_by_wallet(world)[w["bob"].id]
    assert world.balances()["bob"] > paid_bob
