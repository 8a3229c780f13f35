"""The plain-Python allocation writer: one engine, recompute-and-compare, issues, never rewrite."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from dca_pipeline.domain.engine import (
    Deposit,
    EngineError,
    allocate,
)
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import schema as s
from dca_pipeline_tests.allocate.conftest import LATER
from dca_pipeline_tests.allocate.seeding import (
    Scenario,
    add_cash_outs,
    add_client,
    cash_out_row,
    deposit,
    seed_scenario,
)

RULES = BusinessRules()
SCENARIO = Scenario(date(2025, 3, 1), date(2025, 3, 8), flow_clients=12, fixed_clients=3,
                    cash_outs_per_day=6)


def _count(c: sa.Connection, table: sa.Table) -> int:
    return c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _run(engine, first=SCENARIO.first_day, last=SCENARIO.last_day, now=LATER, settle=15):  # type: ignore[no-untyped-def]
    return al.allocate_range(engine, RULES, first, last, now=now, settle_minutes=settle)


def _engine_in_one_call(engine, first: date, last: date):  # type: ignore[no-untyped-def]
    """The same inputs straight into the engine, in one call (what `simulate` does)."""
    with engine.connect() as c:
        inputs = al.load_inputs(c)
        every = [r.cash_out for r in al._validated(c, date(2000, 1, 1), date(2100, 1, 1))]
    in_range = [co for co in every if first <= RULES.business_day(co.event_time) <= last]
    return allocate(
        cash_outs=in_range,
        fixed_days=al.days_between(first, last),
        clients=inputs.clients,
        deposits=inputs.deposits,
        commission_versions=inputs.commission_versions,
        rules=RULES,
        rate_history=every,
    )


def test_range_equals_one_engine_call_and_rerun_changes_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    first = _run(engine)
    assert first.reproduced and not first.issues
    assert first.events_written == 8 * 6 + 8 and first.events_verified == 0

    expected = _engine_in_one_call(engine, SCENARIO.first_day, SCENARIO.last_day)
    with engine.connect() as c:
        assert al.ledger_lines_in_order(c, SCENARIO.first_day, SCENARIO.last_day) == (
            al.simulate_like_lines(expected)
        )
        wallets = c.execute(
            sa.select(s.allocation_lines.c.recipient_id, s.allocation_lines.c.wallet_id).where(
                s.allocation_lines.c.kind != "unallocated"
            )
        ).all()
        before = {t.name: _count(c, t) for t in (s.allocation_events, s.allocation_lines)}
    assert wallets and all(w == f"wallet-{r}" for r, w in wallets)

    again = _run(engine)
    assert again.reproduced and not again.issues
    assert (again.events_written, again.events_verified) == (0, first.events_written)
    with engine.connect() as c:
        assert {t.name: _count(c, t) for t in (s.allocation_events, s.allocation_lines)} == before
        assert al.open_issues(c) == []


def test_day_by_day_equals_one_range(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    for day in al.days_between(SCENARIO.first_day, SCENARIO.last_day):
        assert _run(engine, day, day).reproduced
    expected = _engine_in_one_call(engine, SCENARIO.first_day, SCENARIO.last_day)
    with engine.connect() as c:
        assert al.ledger_lines_in_order(c, SCENARIO.first_day, SCENARIO.last_day) == (
            al.simulate_like_lines(expected)
        )


def test_inputs_json_records_what_the_event_used(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    _run(engine, SCENARIO.first_day, SCENARIO.first_day)
    with engine.connect() as c:
        events = s.allocation_events
        rows = dict(c.execute(sa.select(events.c.source_kind, events.c.inputs_json)).all())
    cash_out, fixed = json.loads(rows["cash_out"]), json.loads(rows["fixed"])
    assert {"fiat_cents", "principal_sats", "eligible_balance_cents", "commission_version",
            "commission_version_id", "validated_at", "rules"} <= set(cash_out)
    assert {"run_at", "rate_sats_per_cent", "rate_source", "rules"} <= set(fixed)


# --------------------------------------------------------------------------- live semantics
T = datetime(2025, 6, 9, 16, 0, tzinfo=UTC)  # 10:00 in Guatemala, after the 09:00 fixed run


def _two_clients(c: sa.Connection) -> None:
    add_client(c, "A")
    add_client(c, "B")
    deposit(c, "dA", "A", 900_000)
    deposit(c, "dB", "B", 100_000)


def test_young_cash_outs_wait_for_the_settle_time_and_keep_order(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        _two_clients(c)
        add_cash_outs(c, [
            cash_out_row("old", T - timedelta(minutes=30), 10_000, 1_300_000),
            cash_out_row("young", T - timedelta(minutes=5), 10_000, 1_300_000),
            cash_out_row("older-than-young", T - timedelta(minutes=20), 10_000, 1_300_000),
        ])
    day = RULES.business_day(T)
    out = _run(engine, day, day, now=T, settle=15)
    assert out.pending == 1
    with engine.connect() as c:
        ids = c.execute(
            sa.select(s.allocation_events.c.source_id).order_by(s.allocation_events.c.event_time)
        ).scalars().all()
    assert ids == [f"fixed:{day}", "old", "older-than-young"]
    out = _run(engine, day, day, now=T + timedelta(minutes=11), settle=15)
    assert (out.events_written, out.events_verified, out.pending) == (1, 3, 0)


def test_late_cash_out_is_flagged_never_allocated_and_can_be_acknowledged(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        _two_clients(c)
        add_cash_outs(c, [cash_out_row("first", T - timedelta(hours=1), 10_000, 1_300_000)])
    day = RULES.business_day(T)
    _run(engine, day, day)
    with engine.begin() as c:  # it became eligible only now, but happened before "first"
        add_cash_outs(c, [cash_out_row("late", T - timedelta(hours=2), 10_000, 1_300_000)])
        lines_before = _count(c, s.allocation_lines)
    out = _run(engine, day, day)
    assert [(i.kind, i.source_id) for i in out.issues] == [("late", "late")]
    assert out.reproduced  # the allocated part still reproduces
    with engine.connect() as c:
        assert _count(c, s.allocation_lines) == lines_before
        assert "late" not in c.execute(sa.select(s.allocation_events.c.source_id)).scalars().all()
        check = al.check_open_issues(c, ["late"], "late cash-out")
        issue_id = al.open_issues(c)[0].issue_id
    assert not check.passed and "before the last allocated event" in check.description
    _run(engine, day, day)  # found again: still one open issue, not two
    with engine.connect() as c:
        assert len(al.open_issues(c)) == 1
    with pytest.raises(ValueError, match="needs a note"):
        al.acknowledge_issue(engine, issue_id, note=" ", now=LATER)
    al.acknowledge_issue(engine, issue_id, note="refunded outside the pipeline", now=LATER)
    with engine.connect() as c:
        assert al.check_open_issues(c, ["late"], "late cash-out").passed


def test_revoked_cash_out_is_flagged_and_its_lines_stand(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        _two_clients(c)
        add_cash_outs(c, [
            cash_out_row("tx1", T - timedelta(hours=1), 10_000, 1_300_000),
            cash_out_row("tx2", T - timedelta(minutes=40), 20_000, 2_600_000),
        ])
    day = RULES.business_day(T)
    _run(engine, day, day)
    with engine.begin() as c:
        before = c.execute(sa.select(s.allocation_lines)).all()
        c.execute(
            s.validated_cash_outs.update()
            .where(s.validated_cash_outs.c.id == "tx1")
            .values(eligible=False, error="Lamassu: dispense failed", ineligible_reason="has error")
        )
    out = _run(engine, day, day)
    assert [(i.kind, i.source_id) for i in out.issues] == [("revoked", "tx1")]
    assert out.reproduced  # recomputed from the ledger's own amounts: tx2 is unchanged
    with engine.connect() as c:
        assert c.execute(sa.select(s.allocation_lines)).all() == before
    with engine.begin() as c:  # Lamassu flips it back: the issue closes by itself
        c.execute(
            s.validated_cash_outs.update()
            .where(s.validated_cash_outs.c.id == "tx1")
            .values(eligible=True, error=None, ineligible_reason=None)
        )
    assert not _run(engine, day, day).issues
    with engine.connect() as c:
        assert al.open_issues(c) == []


def test_changed_input_is_a_readable_mismatch_and_stops_later_days(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    _run(engine, SCENARIO.first_day, date(2025, 3, 3))
    with engine.begin() as c:
        target = c.execute(
            sa.select(s.validated_cash_outs.c.id).where(
                s.validated_cash_outs.c.business_day == date(2025, 3, 2)
            ).order_by(s.validated_cash_outs.c.id).limit(1)
        ).scalar_one()
        c.execute(
            s.validated_cash_outs.update().where(s.validated_cash_outs.c.id == target).values(
                fiat_cents=s.validated_cash_outs.c.fiat_cents + 100
            )
        )
        before = c.execute(sa.select(s.allocation_lines)).all()
    out = _run(engine)  # the whole period: days 4-8 are new, but day 2 differs
    assert not out.reproduced
    (mismatch,) = [i for i in out.issues if i.kind == "mismatch"]
    assert mismatch.business_day == date(2025, 3, 2)
    assert f"{target}: totals (fiat, principal, commission) ledger" in mismatch.detail
    assert [d.day for d in out.days if d.skipped] == al.days_between(date(2025, 3, 3),
                                                                     SCENARIO.last_day)
    assert out.events_written == 0
    with engine.connect() as c:
        assert c.execute(sa.select(s.allocation_lines)).all() == before
        assert [r.kind for r in al.open_issues(c)] == ["mismatch"]


def test_negative_correction_lowers_the_balance(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        _two_clients(c)
        deposit(c, "fix-A", "A", -800_000, T - timedelta(days=1), corrects="dA")
        add_cash_outs(c, [cash_out_row("tx", T - timedelta(hours=1), 200_000, 26_680_000)])
    day = RULES.business_day(T)
    _run(engine, day, day)
    with engine.connect() as c:
        flow = dict(c.execute(
            sa.select(s.allocation_lines.c.recipient_id, s.allocation_lines.c.fiat_cents).where(
                s.allocation_lines.c.kind == "flow")
        ).all())
        balances = {b[0]: b[3] for b in al.client_balances(c)}
    assert flow == {"A": 100_000, "B": 100_000}  # A had 9000.00 − 8000.00 left
    assert balances == {"A": 0, "B": 0}


def test_deposit_sign_rules() -> None:
    with pytest.raises(EngineError, match="positive"):
        Deposit("d", "A", -1, T)
    with pytest.raises(EngineError, match="zero"):
        Deposit("d", "A", 0, T, correction=True)
    assert Deposit("d", "A", -5, T, correction=True).amount_cents == -5


def test_fixed_run_without_any_rate_allocates_nothing_and_does_not_stop_the_run(engine) -> None:  # type: ignore[no-untyped-def]
    # §5: skipped, not an error (the engine no longer raises). Recording the skip in the
    # ledger (§4a "skipped event", WARN check, alert) is not asserted here yet.
    with engine.begin() as c:
        add_client(c, "F", mode="fixed", daily_limit_cents=15_000)
        deposit(c, "dF", "F", 10_000)
    day = RULES.business_day(T)
    _run(engine, day, day)
    with engine.connect() as c:
        assert _count(c, s.allocation_lines) == 0
        assert {b[0]: b[3] for b in al.client_balances(c)} == {"F": 10_000}


def test_due_range_follows_settled_cash_outs_and_the_fixed_run(engine) -> None:  # type: ignore[no-untyped-def]
    day = RULES.business_day(T)
    start = day - timedelta(days=1)
    run_at = RULES.fixed_run_at(day)

    def due(now: datetime):  # type: ignore[no-untyped-def]
        return al.due_range(engine, RULES, now=now, settle_minutes=15, start_day=start)

    with engine.begin() as c:
        _two_clients(c)
    # Nothing allocated yet: yesterday's fixed run is due, so the range starts at start_day.
    assert due(run_at - timedelta(hours=2)) == (start, day)
    _run(engine, start, day, now=run_at - timedelta(hours=2))
    assert due(run_at - timedelta(hours=1)) is None
    assert due(run_at + timedelta(minutes=14)) is None  # not settled yet
    assert due(run_at + timedelta(minutes=15)) == (start, day)
    _run(engine, day, day, now=run_at + timedelta(minutes=15))
    with engine.begin() as c:
        add_cash_outs(c, [cash_out_row("tx", run_at + timedelta(hours=1), 10_000, 1_300_000)])
    assert due(run_at + timedelta(hours=1, minutes=5)) is None
    assert due(run_at + timedelta(hours=1, minutes=15)) == (start, day)
    later = run_at + timedelta(hours=2)
    _run(engine, start, day, now=later)
    assert due(later) is None
    with engine.begin() as c:  # Lamassu marks the allocated cash-out errored (overlap window)
        c.execute(s.validated_cash_outs.update().where(s.validated_cash_outs.c.id == "tx")
                  .values(eligible=False, error="dispense failed"))
    assert due(later) == (start, day)  # to be re-compared and reported
    _run(engine, start, day, now=later)
    assert due(later) is None  # reported once; the open issue holds the payouts


# --------------------------------------------------------------------------- the checks can fail
def test_checks_catch_overallocation_negative_balance_and_bad_basis_points(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        _two_clients(c)
        add_cash_outs(c, [
            cash_out_row("tx1", T - timedelta(hours=2), 10_000, 1_300_000),
            cash_out_row("tx2", T - timedelta(hours=1), 10_000, 1_300_000),
        ])
    day = RULES.business_day(T)
    _run(engine, day, day)
    days = [day]
    with engine.connect() as c:
        assert al.check_no_client_above_remaining(c, days).passed
        assert al.check_no_negative_balance(c).passed
        assert all(al.check_lines_sum(c, days, k).passed for k in ("flow", "fixed", "commission"))
    with engine.begin() as c:  # B is given 5000.00 more than its 1000.00 at tx1
        c.execute(s.allocation_lines.insert().values(
            source_id="tx1", line_no=50, kind="flow", recipient_id="B", wallet_id="wallet-B",
            business_day=day, fiat_cents=500_000, sats=1, created_at=T,
        ))
    with engine.connect() as c:
        above = al.check_no_client_above_remaining(c, days)
        negative = al.check_no_negative_balance(c)
        flow_sum = al.check_lines_sum(c, days, "flow")
    assert not above.passed and "B:" in above.description
    assert not negative.passed and "B: deposited 100000" in negative.description
    assert not flow_sum.passed and "tx1: lines sum to fiat" in flow_sum.description

    with engine.begin() as c:
        version = c.execute(
            s.commission_versions.insert().values(effective_at=T, recorded_at=T)
            .returning(s.commission_versions.c.version_id)
        ).scalar_one()
        c.execute(s.commission_recipients.insert().values(
            version_id=version, recipient_id="r", wallet_id="w", invoice_key="k" * 16,
            basis_points=9_000,
        ))
    with engine.connect() as c:
        bp = al.check_commission_basis_points(c)
    assert not bp.passed and "sums to 9000 bp" in bp.description


def test_cli_lists_and_acknowledges_issues(engine, capsys) -> None:  # type: ignore[no-untyped-def]
    from dca_pipeline.cli import main

    with engine.begin() as c:
        _two_clients(c)
        add_cash_outs(c, [cash_out_row("first", T - timedelta(hours=1), 10_000, 1_300_000)])
    day = RULES.business_day(T)
    _run(engine, day, day)
    with engine.begin() as c:
        add_cash_outs(c, [cash_out_row("late", T - timedelta(hours=2), 10_000, 1_300_000)])
    _run(engine, day, day)
    url = engine.url.render_as_string(hide_password=False)
    assert main(["allocations", "issues", "--json", "--ledger-url", url]) == 0
    (issue,) = json.loads(capsys.readouterr().out)
    assert (issue["kind"], issue["source_id"]) == ("late", "late")
    assert main(["allocations", "acknowledge", str(issue["issue_id"]), "--note", " ",
                 "--ledger-url", url]) == 2
    assert "needs a note" in capsys.readouterr().err
    assert main(["allocations", "acknowledge", str(issue["issue_id"]), "--note",
                 "refunded by the operator", "--ledger-url", url]) == 0
    assert main(["allocations", "issues", "--ledger-url", url]) == 0
    assert "no open allocation issues" in capsys.readouterr().out


def test_days_before_the_ledgers_first_day_are_not_late_and_not_allocated(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    _run(engine, date(2025, 3, 3), date(2025, 3, 5))
    out = _run(engine, SCENARIO.first_day, date(2025, 3, 5))
    assert out.reproduced and not out.issues and out.events_written == 0
    assert [d.day for d in out.days if d.before_ledger] == [date(2025, 3, 1), date(2025, 3, 2)]
