"""In-flight payouts and net payouts (business-rules §7), on the real LNbits (FakeWallet).

Only what a real LNbits cannot be made to do on demand (a "pending" answer, a timeout after the
pay request was sent, a refusal) is injected, by :class:`FaultyLNbits` in front of the real
server; every money assertion is on LNbits wallet balances.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from dca_pipeline.alerts import AlertDispatcher, WebhookAlerts
from dca_pipeline.demo.lnbits import Wallet
from dca_pipeline.ledger import schema as s
from dca_pipeline.payouts.plan import payout_id_for
from dca_pipeline.payouts.procedure import PayoutOptions, RunStatus, run_payouts
from dca_pipeline.payouts.reconciliation import reconcile_period
from dca_pipeline_tests.payouts.conftest import STANDARD_TOTAL_SATS, PayoutWorld
from dca_pipeline_tests.payouts.faults import FaultyLNbits
from dca_pipeline_tests.payouts.seeding import (
    Line,
    add_compensation,
    add_event,
    count,
    payouts_by_status,
)
from harness.webhook_receiver import WebhookReceiver, running_webhook_receiver

pytestmark = pytest.mark.lnbits


def _run(world: PayoutWorld, run_id: str, faulty: FaultyLNbits | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
    overrides: dict[str, object] = {} if faulty is None else {"transport": faulty}
    with world.client(**overrides) as client:
        return run_payouts(world.engine, client, run_id=run_id, **kwargs)  # type: ignore[arg-type]


def _payout(world: PayoutWorld, wallet: Wallet, status: str | None = None) -> sa.Row:
    p = s.payouts.c
    query = sa.select(s.payouts).where(p.wallet_id == wallet.id).order_by(p.created_at)
    if status is not None:
        query = query.where(p.status == status)
    with world.engine.connect() as c:
        rows = c.execute(query).all()
    assert len(rows) == 1, rows
    return rows[0]


def _attempts(world: PayoutWorld, payout_id: str) -> list[tuple[int, str | None]]:
    a = s.payout_attempts.c
    with world.engine.connect() as c:
        rows = c.execute(
            sa.select(a.attempt_no, a.outcome)
            .where(a.payout_id == payout_id)
            .order_by(a.attempt_no)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def _reconciles(world: PayoutWorld) -> None:
    now = datetime.now(UTC)
    with world.client() as client:
        report = reconcile_period(
            world.engine, client, now - timedelta(days=1), now + timedelta(days=1)
        )
    assert report.ok, report.problems


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_webhook_receiver() as running:
        yield running


def _alerts(receiver: WebhookReceiver) -> AlertDispatcher:
    return AlertDispatcher({"webhook": WebhookAlerts(url=receiver.url("/ops"))})


# --------------------------------------------------------------------------- in flight
@pytest.mark.parametrize("fault", ["pending", "pending_unsent", "timeout", "timeout_unsent"])
def test_an_answer_that_is_not_definite_leaves_the_payout_in_flight_until_lnbits_settles_it(
    world: PayoutWorld, fault: str
) -> None:
    due = world.seed_standard()
    source_before = world.sats(world.source)
    bob = world.wallets["bob"]
    money_moved = fault in ("pending", "timeout")
    faulty = FaultyLNbits(world.source)
    faulty.arm(bob, fault)

    first = _run(world, "in-flight", faulty)

    [bob_payout] = first.in_flight
    assert first.status is RunStatus.COMPLETED and first.failed == []
    assert payouts_by_status(world.engine) == {"paid": 3, "in_flight": 1}
    assert world.sats(bob) == (due["bob"] if money_moved else 0)
    assert _payout(world, bob).payout_id == bob_payout

    # New lines for bob while his payout is in flight, and LNbits still says "pending".
    add_event(world.engine, "cashout-B", [Line("flow", "bob", bob.id, 500, 777)])
    payment_hash = _payout(world, bob).payment_hash
    faulty.pending_hashes.add(payment_hash)
    second = _run(world, "still-in-flight", faulty)

    assert second.in_flight == [bob_payout] and second.created == [] and second.paid == []
    assert second.deferred_wallets == [bob.id]  # nothing else planned or paid to that wallet
    assert payouts_by_status(world.engine) == {"paid": 3, "in_flight": 1}
    assert world.sats(bob) == (due["bob"] if money_moved else 0)
    # ...because it was asked about by payment hash, on the source wallet.
    assert faulty.requests_about(payment_hash)[0].method == "GET"

    faulty.pending_hashes.clear()  # LNbits settles it (paid, or definitely not paid)
    third = _run(world, "settled", faulty)

    assert third.status is RunStatus.COMPLETED and third.in_flight == []
    if money_moved:
        assert third.reconciled_paid == [bob_payout]
    else:
        # Not paid, invoice still open: the same invoice is paid now. Bob's payout was open
        # when this run planned, so his new lines wait for the next run.
        assert third.paid == [bob_payout] and third.deferred_wallets == [bob.id]
        assert _run(world, "next").paid_sats == 777
    assert _attempts(world, bob_payout) == [(1, "paid")]  # never re-invoiced
    assert faulty.invoices_created(bob_payout) == 1
    # The wallet's new lines are paid once the in-flight payout is settled.
    assert payouts_by_status(world.engine) == {"paid": 5}
    assert world.balances() == due | {"bob": due["bob"] + 777}
    assert world.sats(world.source) == source_before - STANDARD_TOTAL_SATS - 777
    _reconciles(world)


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_an_in_flight_payout_is_asked_about_before_its_wallet_gets_anything_else(
    world: PayoutWorld,
) -> None:
    world.seed_standard()
    bob = world.wallets["bob"]
    faulty = FaultyLNbits(world.source)
    faulty.arm(bob, "timeout")
    [bob_payout] = _run(world, "timeout", faulty).in_flight
    add_event(world.engine, "cashout-B", [Line("flow", "bob", bob.id, 500, 777)])
    payment_hash = _payout(world, bob).payment_hash
    faulty.seen.clear()

    rerun = _run(world, "rerun", faulty)

    assert rerun.reconciled_paid == [bob_payout] and len(rerun.paid) == 1
    # The first request of the run that concerns bob is the look-up by payment hash; the
    # invoice for his new lines comes after it.
    first_about_bob = next(
        i for i, seen in enumerate(faulty.seen) if payment_hash in seen.path or seen.out is False
    )
    assert faulty.seen[first_about_bob].method == "GET"
    assert faulty.seen[first_about_bob].path.endswith(payment_hash)
    assert world.sats(bob) == 25_880 + 777


# --------------------------------------------------------------------------- retry
@pytest.mark.parametrize("case", ["refused_after_paying", "refused", "planned_by_old_retry"])
def test_retry_of_a_failed_payout_asks_lnbits_before_any_new_invoice(
    world: PayoutWorld, case: str
) -> None:
    from dca_pipeline.cli import main as cli

    due = world.seed_standard()
    source_before = world.sats(world.source)
    bob = world.wallets["bob"]
    faulty = FaultyLNbits(world.source)
    faulty.arm(bob, "refused" if case == "planned_by_old_retry" else case)
    [failed] = _run(world, "refused", faulty).failed
    paid_already = case == "refused_after_paying"
    assert world.sats(bob) == (due["bob"] if paid_already else 0)
    assert _run(world, "still-failed").lnbits_payments == 0  # failed stays failed

    if case == "planned_by_old_retry":
        # What `payouts retry` did before: back to planned, the stored invoice forgotten.
        with world.engine.begin() as c:
            c.execute(
                s.payouts.update().where(s.payouts.c.payout_id == failed).values(status="planned")
            )
    else:
        assert cli(["payouts", "retry", failed, "--ledger-url", world.ledger_url]) == 0
    payment_hash = _payout(world, bob).payment_hash
    faulty.seen.clear()

    retried = _run(world, "retried", faulty)

    assert retried.status is RunStatus.COMPLETED and retried.failed == []
    assert faulty.invoices_created() == 0  # the old invoice was asked about, never replaced
    assert faulty.seen[0].method == "GET" and faulty.seen[0].path.endswith(payment_hash)
    if paid_already:
        assert retried.reconciled_paid == [failed] and retried.lnbits_payments == 0
    else:
        assert retried.paid == [failed] and retried.lnbits_payments == 1
    assert _attempts(world, failed) == [(1, "paid")]
    assert world.balances() == due
    assert world.sats(world.source) == source_before - STANDARD_TOTAL_SATS
    assert payouts_by_status(world.engine) == {"paid": 4}


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
@pytest.mark.slow
def test_retry_makes_a_new_invoice_only_once_lnbits_says_the_old_one_is_dead(
    world: PayoutWorld,
) -> None:
    from dca_pipeline.cli import main as cli

    due = world.seed_standard()
    bob = world.wallets["bob"]
    faulty = FaultyLNbits(world.source)
    faulty.arm(bob, "refused")
    [failed] = _run(world, "refused", faulty).failed
    world.server.restart()  # FakeWallet forgets the unpaid invoice: it is dead on LNbits
    assert cli(["payouts", "retry", failed, "--ledger-url", world.ledger_url]) == 0

    retried = _run(world, "retried")

    assert retried.paid == [failed]
    assert _attempts(world, failed) == [(1, "dead"), (2, "paid")]
    assert world.balances() == due


# --------------------------------------------------------------------------- net payouts
def test_a_paid_then_compensated_wallet_owes_and_is_paid_the_net_of_its_next_lines(
    world: PayoutWorld, receiver: WebhookReceiver
) -> None:
    w = world.wallets
    due = world.seed_standard()
    assert _run(world, "paid").lnbits_payments == 4
    source_after_first = world.sats(world.source)

    add_compensation(world.engine, "cashout-A")  # alice, bob, r1 and r2 (alice's wallet)
    owing = _run(world, "after-undo", alerts=_alerts(receiver))

    assert owing.status is RunStatus.COMPLETED
    assert owing.created == [] and owing.lnbits_payments == 0
    assert owing.owed == {w["alice"].id: 235_317, w["bob"].id: 25_880, w["r1"].id: 5_603}
    owed_alerts = {r.body["details"]["wallet_id"]: r.body for r in receiver.delivered}
    assert set(owed_alerts) == set(owing.owed)
    assert owed_alerts[w["bob"].id]["details"]["owed_sats"] == "25880"
    assert owed_alerts[w["bob"].id]["details"]["owed_fiat_cents"] == "20000"
    assert "owes 25,880 sats" in owed_alerts[w["bob"].id]["title"]
    # The same debt is not alerted again.
    assert _run(world, "again", alerts=_alerts(receiver)).owed == owing.owed
    assert len(receiver.delivered) == 3
    assert world.balances() == due and world.sats(world.source) == source_after_first

    # Later lines net against the debt: bob is paid exactly the net, alice still owes less.
    world.server.fund(world.source.id, 10_000)
    source_after_first += 10_000
    add_event(
        world.engine,
        "cashout-C",
        [
            Line("flow", "bob", w["bob"].id, 23_000, 30_000),
            Line("flow", "alice", w["alice"].id, 800, 1_000),
        ],
    )
    later = _run(world, "later", alerts=_alerts(receiver))

    assert later.paid_sats == 30_000 - 25_880 and len(later.paid) == 1
    assert later.owed == {w["alice"].id: 234_317, w["r1"].id: 5_603}
    assert world.balances() == due | {"bob": 30_000}
    assert world.sats(world.source) == source_after_first - 4_120
    [alert] = receiver.delivered[3:]  # one more: alice's debt changed amount, r1's did not
    assert alert.body["details"] == {
        "wallet_id": w["alice"].id,
        "recipient_id": "alice",
        "owed_sats": "234317",
        "owed_fiat_cents": "179200",
    }
    with world.engine.connect() as c:
        net = c.execute(
            sa.select(s.payouts).where(
                s.payouts.c.wallet_id == w["bob"].id, s.payouts.c.dagster_run_id == "later"
            )
        ).one()
        bob_lines = sorted(
            c.execute(
                sa.select(s.allocation_lines.c.line_id).where(
                    s.allocation_lines.c.wallet_id == w["bob"].id
                )
            ).scalars()
        )
        debts = {
            row.wallet_id: row.owed_sats for row in c.execute(sa.select(s.payout_wallet_debts))
        }
    # Its id: the wallet and the lines it nets (the compensation and the new line).
    assert net.payout_id == payout_id_for(w["bob"].id, bob_lines[1:])
    assert (net.sats, net.fiat_cents) == (4_120, 3_000)
    # GTQ 30.00 for 4,120 sats: 30.00 / 0.0000412 BTC = 728,155.33 GTQ/BTC.
    assert net.memo.startswith("DCA 4,120 sats for GTQ 30.00, avg 728,155.33 GTQ/BTC [po-")
    assert debts == later.owed
    _reconciles(world)


@pytest.mark.parametrize("state", ["planned", "invoiced"])
def test_an_unpaid_payout_whose_lines_are_compensated_is_voided_and_its_lines_netted(
    world: PayoutWorld, state: str
) -> None:
    w = world.wallets
    add_event(
        world.engine,
        "cashout-V",
        [
            Line("flow", "alice", w["alice"].id, 10_000, 12_000),
            Line("commission", "r2", w["alice"].id, 0, 300),  # r2 is paid to alice's wallet
            Line("flow", "bob", w["bob"].id, 5_000, 6_000),
        ],
    )
    source_before = world.sats(world.source)
    if state == "planned":  # a funding shortfall left both payouts planned
        world.server.fund(world.source.id, -(source_before - 1_000))
        assert _run(world, "short").status is RunStatus.UNDERFUNDED
        world.server.fund(world.source.id, source_before - 1_000)
    else:  # the run died with the first invoice stored, before paying it

        class Died(Exception):
            pass

        def die(step: str, payout_id: str) -> None:
            if step == "invoice_stored":
                raise Died

        with pytest.raises(Died):
            _run(world, "died", hook=die)
    expected = {"planned": 2} if state == "planned" else {"planned": 1, "invoiced": 1}
    assert payouts_by_status(world.engine) == expected
    with world.engine.connect() as c:
        unpaid = dict(
            c.execute(sa.select(s.payouts.c.payout_id, s.payouts.c.status)).tuples().all()
        )
    add_event(world.engine, "cashout-W", [Line("flow", "carol", w["carol"].id, 1_000, 1_500)])
    add_compensation(world.engine, "cashout-V")

    report = _run(world, "after-undo")

    assert report.status is RunStatus.COMPLETED
    assert sorted(report.voided) == sorted(unpaid) and report.owed == {}
    assert len(report.paid) == 1 and report.paid_sats == 1_500  # carol; nothing else
    assert world.balances() == {"alice": 0, "bob": 0, "carol": 1_500, "r1": 0}
    assert world.sats(world.source) == source_before - 1_500
    assert count(world.engine, s.payout_released_lines) == 3
    with world.engine.connect() as c:
        claimed = c.execute(
            sa.select(sa.func.count())
            .select_from(s.payout_lines)
            .where(s.payout_lines.c.payout_id.in_(sorted(unpaid)))
        ).scalar_one()
    assert claimed == 0  # every line of the void payouts is unclaimed again
    assert payouts_by_status(world.engine) == {"void": 2, "paid": 1}
    for payout_id, status in unpaid.items():
        # The invoice of the invoiced one was never sent to be paid: void, never paid.
        assert _attempts(world, payout_id) == ([(1, "void")] if status == "invoiced" else [])

    # The released lines and their compensations net to 0: bob's next line is paid alone,
    # by a payout whose id is the wallet and every line it nets.
    add_event(world.engine, "cashout-X", [Line("flow", "bob", w["bob"].id, 1_000, 1_234)])
    later = _run(world, "later")
    with world.engine.connect() as c:
        bob_lines = sorted(
            c.execute(
                sa.select(s.allocation_lines.c.line_id).where(
                    s.allocation_lines.c.wallet_id == w["bob"].id
                )
            ).scalars()
        )
    assert len(bob_lines) == 3 and later.paid == [payout_id_for(w["bob"].id, bob_lines)]
    assert later.paid_sats == 1_234 and world.sats(w["bob"]) == 1_234
    assert world.sats(w["alice"]) == 0  # alice's lines net to 0: nothing, and owing nothing
    _reconciles(world)


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
@pytest.mark.slow
def test_a_compensated_in_flight_payout_is_held_until_its_invoice_is_dead_then_voided(
    world: PayoutWorld,
) -> None:
    bob = world.wallets["bob"]
    world.seed_standard()
    faulty = FaultyLNbits(world.source)
    faulty.arm(bob, "pending_unsent")
    options = PayoutOptions(invoice_expiry_s=6)
    invoiced_at = time.monotonic()
    [bob_payout] = _run(world, "in-flight", faulty, options=options).in_flight
    add_compensation(world.engine, "cashout-A")

    held = _run(world, "held", options=options)
    # Sent to be paid, invoice still open: it might yet be paid, so neither paid nor voided.
    assert held.held == [bob_payout] and held.voided == [] and held.paid == []
    assert _payout(world, bob).status == "in_flight" and world.sats(bob) == 0

    time.sleep(max(0.0, invoiced_at + 7 - time.monotonic()))  # the invoice expires
    voided = _run(world, "voided", options=options)  # asking LNbits marks it failed: dead
    assert bob_payout in voided.voided and bob.id not in voided.owed
    assert _attempts(world, bob_payout) == [(1, "dead")]
    assert world.sats(bob) == 0 and voided.lnbits_payments == 0


# --------------------------------------------------------------------------- dry run
@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_dry_run_plans_the_same_net_as_the_real_run(world: PayoutWorld) -> None:
    w = world.wallets
    world.seed_standard()
    source_before = world.sats(world.source)
    world.server.fund(world.source.id, -(source_before - 1_000))
    assert _run(world, "short").status is RunStatus.UNDERFUNDED  # all four planned
    world.server.fund(world.source.id, source_before - 1_000)
    add_compensation(world.engine, "fixed:2026-11-24")  # carol's planned payout: void
    add_event(
        world.engine,
        "cashout-E",
        [
            Line("flow", "carol", w["carol"].id, 2_000, 3_000),
            Line("flow", "bob", w["bob"].id, 100, 100),  # bob's payout is open: deferred
        ],
    )

    dry = _run(world, "dry", options=PayoutOptions(dry_run=True))
    with world.engine.connect() as c:
        planned = {
            row.wallet_id: (row.payout_id is None, row.sats)
            for row in c.execute(sa.select(s.payout_dry_runs))
        }
    real = _run(world, "real")

    assert dry.voided == real.voided and len(real.voided) == 1
    assert dry.owed == real.owed == {}
    with world.engine.connect() as c:
        carol_new = c.execute(
            sa.select(s.payouts.c.sats).where(
                s.payouts.c.wallet_id == w["carol"].id, s.payouts.c.status == "paid"
            )
        ).scalar_one()
    assert planned[w["carol"].id] == (True, carol_new) and carol_new == 3_000
    assert {wallet: sats for wallet, (_, sats) in planned.items()} == {
        w["alice"].id: 235_317,
        w["bob"].id: 25_880,
        w["r1"].id: 5_603,
        w["carol"].id: 3_000,
    }
    assert world.balances() == {"alice": 235_317, "bob": 25_880, "carol": 3_000, "r1": 5_603}
