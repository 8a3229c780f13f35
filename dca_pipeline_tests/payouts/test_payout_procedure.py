"""The exactly-once payout procedure against the real LNbits (FakeWallet), on SQLite and PG.

Every money assertion is on LNbits wallet balances (what people actually received), not only
on the ledger's own view of itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from dca_pipeline.alerts import AlertDispatcher, WebhookAlerts
from dca_pipeline.ledger import schema as s
from dca_pipeline.payouts import LNbitsClient
from dca_pipeline.payouts.lease import LeaseLost, PayoutLease
from dca_pipeline.payouts.procedure import (
    PAUSE_ENV,
    PayoutOptions,
    RunStatus,
    run_payouts,
    set_paused,
)
from dca_pipeline_tests.payouts.conftest import STANDARD_TOTAL_SATS, PayoutWorld
from dca_pipeline_tests.payouts.seeding import (
    Line,
    add_compensation,
    add_event,
    count,
    payouts_by_status,
)
from harness.webhook_receiver import running_webhook_receiver

pytestmark = pytest.mark.lnbits
# Tests whose behaviour does not depend on the database run on SQLite only (time budget);
# ``sqlite_only`` overrides the root ``ledger_url`` parametrization.
ROOT = Path(__file__).resolve().parents[2]


def _run(world: PayoutWorld, run_id: str, **kwargs: object):  # type: ignore[no-untyped-def]
    with world.client() as client:
        return run_payouts(world.engine, client, run_id=run_id, **kwargs)  # type: ignore[arg-type]


def _assert_everything_paid_once(world: PayoutWorld, due: dict[str, int], source_before: int):
    assert world.balances() == due
    assert world.sats(world.source) == source_before - sum(due.values())
    assert payouts_by_status(world.engine) == {"paid": len(due)}


def test_happy_path_pays_each_wallet_once_and_a_rerun_pays_nothing(world: PayoutWorld) -> None:
    due = world.seed_standard()
    source_before = world.sats(world.source)

    report = _run(world, "run-1")

    assert report.status is RunStatus.COMPLETED
    assert report.lnbits_payments == len(report.created) == len(report.paid) == 4
    assert report.paid_sats == STANDARD_TOTAL_SATS and report.pending == []
    _assert_everything_paid_once(world, due, source_before)
    with world.engine.connect() as c:
        memo = c.execute(
            sa.select(s.payouts.c.memo).where(s.payouts.c.wallet_id == world.wallets["bob"].id)
        ).scalar_one()
        paid_hashes = c.execute(sa.select(s.payouts.c.payment_hash)).scalars().all()
    # 20,000 centavos for 25,880 sats: 200.00 / 0.0002588 BTC = 772,797.52 GTQ/BTC.
    assert memo.startswith("DCA 25,880 sats for GTQ 200.00, avg 772,797.52 GTQ/BTC [po-")
    assert all(paid_hashes)
    # Every allocated (non-unallocated) line is assigned to exactly one payout.
    assert count(world.engine, s.payout_lines) == 5

    # Backfill/re-run over already-paid lines: 0 new payments.
    again = _run(world, "run-2")
    assert again.status is RunStatus.COMPLETED
    assert again.lnbits_payments == 0 and again.created == []
    _assert_everything_paid_once(world, due, source_before)

    # New lines are paid on their own, once.
    add_event(world.engine, "cashout-B", [Line("flow", "bob", world.wallets["bob"].id, 100, 777)])
    third = _run(world, "run-3")
    assert third.lnbits_payments == 1 and third.paid_sats == 777
    assert world.sats(world.wallets["bob"]) == due["bob"] + 777


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_zero_and_negative_wallet_totals_are_not_sent(world: PayoutWorld) -> None:
    w = world.wallets
    add_event(world.engine, "cashout-Z", [Line("flow", "bob", w["bob"].id, 100, 500)])
    add_compensation(world.engine, "cashout-Z")  # nets to 0: no payout, no debt
    add_event(world.engine, "cashout-zero", [Line("fixed", "carol", w["carol"].id, 1, 0)])

    report = _run(world, "run-zero")

    assert report.created == [] and report.lnbits_payments == 0
    assert count(world.engine, s.payouts) == 0
    assert count(world.engine, s.payout_lines) == 0  # still unclaimed, nothing lost
    assert report.owed == {} and count(world.engine, s.payout_wallet_debts) == 0
    assert world.sats(w["bob"]) == 0 and world.sats(w["carol"]) == 0


CRASH_STEPS = [
    "before_invoice",
    "after_invoice",
    "invoice_stored",
    "before_pay",  # marked in flight, pay request not sent: the next run pays that same invoice
    "after_pay",
    "after_record",
]


@pytest.mark.slow
@pytest.mark.parametrize("step", CRASH_STEPS)
def test_sigkill_at_each_step_then_rerun_pays_exactly_once(world: PayoutWorld, step: str) -> None:
    due = world.seed_standard()
    source_before = world.sats(world.source)
    env = os.environ | {
        "DCA_LNBITS_SOURCE_ADMIN_KEY": world.source.adminkey,
        "DCA_LNBITS_SOURCE_INVOICE_KEY": world.source.inkey,
    }
    # Die in the middle: at the 2nd payout, so one payout is fully done before the crash.
    child = subprocess.run(
        [sys.executable, "-m", "dca_pipeline_tests.payouts.crash_child"]
        + [world.ledger_url, world.server.url, step, "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    crashed_paid = sum(world.balances().values())
    assert 0 < crashed_paid <= STANDARD_TOTAL_SATS

    report = _run(world, "rerun")  # the dead child's lease is taken over (its pid is gone)

    assert report.status is RunStatus.COMPLETED, report.detail
    _assert_everything_paid_once(world, due, source_before)
    # At most one LNbits payment per wallet across both runs: none was paid twice.
    assert report.lnbits_payments + len(report.reconciled_paid) <= 4 - 1


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
@pytest.mark.slow
def test_lnbits_restart_between_invoice_and_pay(world: PayoutWorld) -> None:
    due = world.seed_standard()
    source_before = world.sats(world.source)
    restarted: list[str] = []

    def restart_once(step: str, payout_id: str) -> None:
        if step == "invoice_stored" and not restarted:
            restarted.append(payout_id)
            world.server.restart()  # FakeWallet forgets the unpaid invoice

    report = _run(world, "restart", hook=restart_once)

    assert report.status is RunStatus.COMPLETED, report.detail
    _assert_everything_paid_once(world, due, source_before)
    with world.engine.connect() as c:
        outcomes = c.execute(
            sa.select(s.payout_attempts.c.attempt_no, s.payout_attempts.c.outcome)
            .where(s.payout_attempts.c.payout_id == restarted[0])
            .order_by(s.payout_attempts.c.attempt_no)
        ).all()
    assert [tuple(row) for row in outcomes] == [(1, "dead"), (2, "paid")]


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_insufficient_funds_pays_nothing_alerts_and_pays_after_funding(
    world: PayoutWorld,
) -> None:
    due = world.seed_standard()
    world.server.fund(world.source.id, -(world.sats(world.source) - 1_000))  # leave 1,000 sats
    with running_webhook_receiver() as receiver:
        alerts = AlertDispatcher({"webhook": WebhookAlerts(url=receiver.url("/ops/t0k3n"))})
        report = _run(world, "short", alerts=alerts)

        assert report.status is RunStatus.UNDERFUNDED
        assert report.lnbits_payments == 0 and report.due_sats == STANDARD_TOTAL_SATS
        assert sum(world.balances().values()) == 0 and world.sats(world.source) == 1_000
        assert payouts_by_status(world.engine) == {"planned": 4}
        [alert] = receiver.delivered
        assert alert.body["kind"] == "funding_shortfall"
        assert alert.body["details"] == {
            "due_sats": str(STANDARD_TOTAL_SATS),
            "available_sats": "1000",
        }

    world.server.fund(world.source.id, STANDARD_TOTAL_SATS)
    paid = _run(world, "funded")
    assert paid.status is RunStatus.COMPLETED and paid.lnbits_payments == 4
    _assert_everything_paid_once(world, due, STANDARD_TOTAL_SATS + 1_000)


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_lnbits_unreachable_pays_nothing_then_recovers(
    world: PayoutWorld, closed_port: int
) -> None:
    due = world.seed_standard()
    source_before = world.sats(world.source)
    with world.client(url=f"http://127.0.0.1:{closed_port}", max_attempts=2) as down:
        report = run_payouts(world.engine, down, run_id="down")
    assert report.status is RunStatus.LNBITS_UNAVAILABLE
    assert sum(world.balances().values()) == 0

    assert _run(world, "up").status is RunStatus.COMPLETED
    _assert_everything_paid_once(world, due, source_before)


def test_two_runs_at_once_only_one_pays(world: PayoutWorld) -> None:
    due = world.seed_standard()
    source_before = world.sats(world.source)
    first_holds_lease = threading.Event()
    second_done = threading.Event()
    reports = {}

    def hold(step: str, payout_id: str) -> None:
        if step == "before_invoice" and not first_holds_lease.is_set():
            first_holds_lease.set()
            assert second_done.wait(60)

    def first() -> None:
        reports["first"] = _run(world, "first", hook=hold)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_holds_lease.wait(60)
    reports["second"] = _run(world, "second")
    second_done.set()
    thread.join(120)

    assert reports["second"].status is RunStatus.BUSY
    assert reports["second"].lnbits_payments == 0
    assert reports["first"].status is RunStatus.COMPLETED
    _assert_everything_paid_once(world, due, source_before)


@pytest.mark.slow
def test_two_payout_processes_started_together_pay_each_wallet_once(world: PayoutWorld) -> None:
    due = world.seed_standard()
    source_before = world.sats(world.source)
    env = os.environ | {
        "DCA_LNBITS_SOURCE_ADMIN_KEY": world.source.adminkey,
        "DCA_LNBITS_SOURCE_INVOICE_KEY": world.source.inkey,
    }
    command = [sys.executable, "-m", "dca_pipeline_tests.payouts.crash_child"]
    children = [
        subprocess.Popen(
            [*command, world.ledger_url, world.server.url, "never", "1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    results = sorted(out.split() for out, _ in outputs)  # "<status> <payouts paid>"
    # Either one held the lease while the other tried (busy), or one ran after the other had
    # paid everything (completed, 0 paid): never both paying.
    assert sum(int(paid) for _, paid in results) == 4, results
    _assert_everything_paid_once(world, due, source_before)


def test_lease_is_exclusive_expires_and_is_taken_from_a_dead_process(ledger) -> None:  # type: ignore[no-untyped-def]
    engine = ledger.engine()
    first, second = PayoutLease(engine, seconds=60), PayoutLease(engine, seconds=60)
    assert first.acquire() and not second.acquire()
    first.release()
    assert second.acquire()
    # A holder of this host whose process is gone (SIGKILL): taken over at once.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with engine.begin() as c:
        c.execute(s.payout_lease.update().values(holder=f"{os.uname().nodename}:{dead.pid}:x"))
    assert first.acquire()
    # A live holder elsewhere, but its lease expired: taken over too.
    with engine.begin() as c:
        c.execute(
            s.payout_lease.update().values(
                holder="otherhost:1:x", expires_at=datetime(2020, 1, 1, tzinfo=UTC)
            )
        )
    assert second.acquire()
    # ...and the writer that lost it notices before paying anything more.
    with pytest.raises(LeaseLost):
        first.renew()


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_dry_run_records_the_plan_and_pays_nothing(world: PayoutWorld) -> None:
    due = world.seed_standard()
    source_before = world.sats(world.source)

    report = _run(world, "dry", options=PayoutOptions(dry_run=True))

    assert report.status is RunStatus.DRY_RUN and report.dry_run_rows == 4
    assert report.due_sats == STANDARD_TOTAL_SATS and report.lnbits_payments == 0
    assert count(world.engine, s.payouts) == 0 and count(world.engine, s.payout_lines) == 0
    with world.engine.connect() as c:
        rows = c.execute(sa.select(s.payout_dry_runs)).mappings().all()
    assert sorted(row["sats"] for row in rows) == sorted(due.values())
    assert all(row["funded"] is True and row["plan_id"] == "dry" for row in rows)
    assert sum(world.balances().values()) == 0

    assert _run(world, "real").lnbits_payments == 4
    _assert_everything_paid_once(world, due, source_before)


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_pause_switch_env_and_ledger(world: PayoutWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    due = world.seed_standard()
    source_before = world.sats(world.source)

    monkeypatch.setenv(PAUSE_ENV, "true")
    assert _run(world, "env-paused").status is RunStatus.PAUSED
    monkeypatch.delenv(PAUSE_ENV)
    set_paused(world.engine, True, "maintenance")
    paused = _run(world, "ledger-paused")
    assert paused.status is RunStatus.PAUSED and "maintenance" in paused.detail
    assert count(world.engine, s.payouts) == 0 and sum(world.balances().values()) == 0

    set_paused(world.engine, False)
    assert _run(world, "resumed").lnbits_payments == 4
    _assert_everything_paid_once(world, due, source_before)


@pytest.fixture
def closed_port() -> int:
    from dca_pipeline.demo.processes import free_loopback_port

    return free_loopback_port()


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_an_invoice_key_of_another_wallet_is_never_paid_and_can_be_retried(
    world: PayoutWorld,
) -> None:
    from dca_pipeline.cli import main as cli
    from dca_pipeline_tests.payouts.seeding import NOW

    bob, dave = world.wallets["bob"], world.server.new_wallet("dave")
    source_before = world.sats(world.source)
    with world.engine.begin() as c:  # dave's row carries bob's invoice key: a config mistake
        c.execute(
            s.clients.insert().values(
                client_id="dave",
                lnbits_user_id=dave.user_id,
                wallet_id=dave.id,
                invoice_key=bob.inkey,
                created_at=NOW,
            )
        )
    add_event(world.engine, "cashout-D", [Line("flow", "dave", dave.id, 100, 900)])
    with running_webhook_receiver() as receiver:
        alerts = AlertDispatcher({"webhook": WebhookAlerts(url=receiver.url("/x"))})
        report = _run(world, "wrong-key", alerts=alerts)
        [failed] = report.failed
        assert [r.body["kind"] for r in receiver.delivered] == ["payout_failed"]
        assert bob.inkey not in str(receiver.delivered[0].body)
    assert report.lnbits_payments == 0
    assert world.sats(dave) == 0 and world.sats(bob) == 0
    assert world.sats(world.source) == source_before
    assert _run(world, "still-failed").lnbits_payments == 0  # failed stays failed

    # The operator fixes the key and re-queues the payout: paid once, to the right wallet.
    with world.engine.begin() as c:
        c.execute(
            s.clients.update().where(s.clients.c.client_id == "dave").values(invoice_key=dave.inkey)
        )
    assert cli(["payouts", "retry", failed, "--ledger-url", world.ledger_url]) == 0
    assert cli(["payouts", "retry", failed, "--ledger-url", world.ledger_url]) == 1
    assert _run(world, "retried").paid == [failed]
    assert world.sats(dave) == 900 and world.sats(bob) == 0


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_cli_pause_resume_status(world: PayoutWorld, capsys: pytest.CaptureFixture[str]) -> None:
    from dca_pipeline.cli import main as cli

    world.seed_standard()
    url = ["--ledger-url", world.ledger_url]
    assert cli(["payouts", "pause", "--reason", "audit", *url]) == 0
    assert _run(world, "paused").status is RunStatus.PAUSED
    cli(["payouts", "status", *url])
    assert "PAUSED (ledger pause switch: audit)" in capsys.readouterr().out
    assert cli(["payouts", "resume", *url]) == 0
    assert _run(world, "resumed").lnbits_payments == 4
    cli(["payouts", "status", *url])
    assert f"paid      4 payouts, {STANDARD_TOTAL_SATS:,} sats" in capsys.readouterr().out


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_wrong_source_admin_key_stops_the_run_and_alerts(world: PayoutWorld) -> None:
    due = world.seed_standard()
    source_before = world.sats(world.source)
    with (
        running_webhook_receiver() as receiver,
        LNbitsClient(world.server.url, "0" * 32, world.source.inkey, max_attempts=1) as wrong,
    ):
        alerts = AlertDispatcher({"webhook": WebhookAlerts(url=receiver.url("/x"))})
        report = run_payouts(world.engine, wrong, run_id="wrong-admin", alerts=alerts)
        assert report.status is RunStatus.LNBITS_ERROR
        assert [r.body["kind"] for r in receiver.delivered] == ["payout_failed"]
        assert "0" * 32 not in str(receiver.delivered[0].body)
    assert sum(world.balances().values()) == 0
    assert _run(world, "right-key").lnbits_payments == 4
    _assert_everything_paid_once(world, due, source_before)
