"""The plain-Python allocation writer: one engine, recompute-and-compare, issues, never rewrite."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from dca_pipeline.domain.cash_out import CashOut
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
    return al.allocate_range(engine, RULES, first, last, now=now, settle_minutes=settle,
                             start_day=date(2025, 1, 1))


def _engine_in_one_call(engine, first: date, last: date):  # type: ignore[no-untyped-def]
    """The same inputs straight into the engine, in one call (what `simulate` does)."""
    with engine.connect() as c:
        inputs = al.load_inputs(c)
        v = s.validated_cash_outs
        every = [CashOut(*r) for r in c.execute(sa.select(
            v.c.id, v.c.event_time, v.c.fiat_cents, v.c.crypto_atoms, v.c.principal_sats,
            v.c.commission_sats).where(v.c.eligible.is_(True))).all()]
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
    assert first.events_written == 8 * 6 + 8 + 1 and first.events_verified == 0

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
            "commission_version_id", "as_of", "rules"} <= set(cash_out)
    assert {"run_at", "rate_sats_per_cent", "rate_source", "rate_cash_out_ids", "rules"} <= set(
        fixed)


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


def _events(c: sa.Connection) -> list[tuple[int, str, str, str | None]]:
    e = s.allocation_events
    return [tuple(r) for r in c.execute(  # type: ignore[misc]
        sa.select(e.c.seq, e.c.source_id, e.c.source_kind, e.c.cash_out_id).order_by(e.c.seq)
    ).all()]


def _net(c: sa.Connection, cash_out_id: str) -> tuple[int, int]:
    e, line = s.allocation_events, s.allocation_lines
    fiat, sats = c.execute(
        sa.select(sa.func.coalesce(sa.func.sum(line.c.fiat_cents), 0),
                  sa.func.coalesce(sa.func.sum(line.c.sats), 0))
        .select_from(line.join(e, e.c.source_id == line.c.source_id))
        .where(e.c.cash_out_id == cash_out_id)
    ).one()
    return int(fiat), int(sats)


def test_late_cash_out_is_appended_as_of_the_last_event_and_reported_once(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        _two_clients(c)
        add_cash_outs(c, [cash_out_row("first", T - timedelta(hours=1), 10_000, 1_300_000)])
    day = RULES.business_day(T)
    _run(engine, day, day)
    with engine.begin() as c:  # it became eligible only now, but happened before "first"
        add_cash_outs(c, [cash_out_row("late", T - timedelta(hours=2), 10_000, 1_300_000)])
    out = _run(engine, day, day)
    assert [(r.kind, r.source_id) for r in out.reports] == [("late", "late")]
    assert out.reproduced and out.events_written == 1
    with engine.connect() as c:
        row = c.execute(sa.select(s.allocation_events).where(
            s.allocation_events.c.source_id == "late")).one()
        first_at = c.execute(sa.select(s.allocation_events.c.event_time).where(
            s.allocation_events.c.source_id == "first")).scalar_one()
        check = al.check_open_reports(c, "late")
    # Its own event time and day for reports; computed as of the latest allocated instant.
    assert row.event_time == T - timedelta(hours=2) and row.as_of == first_at
    assert row.seq == max(r[0] for r in _events(engine.connect())) and row.business_day == day
    assert not check.passed and check.metadata["ids"] == "late"
    assert check.metadata["fiat_cents"] == 10_000
    again = _run(engine, day, day)  # nothing new; the report is not stored twice
    assert again.reproduced and again.events_written == 0 and not again.reports
    with engine.connect() as c:
        (issue,) = al.open_issues(c)
    with pytest.raises(ValueError, match="needs a note"):
        al.acknowledge_issue(engine, issue.issue_id, note=" ", now=LATER)
    al.acknowledge_issue(engine, issue.issue_id, note="seen", now=LATER)
    _run(engine, day, day)
    with engine.connect() as c:  # acknowledged stays acknowledged (it was re-opened before)
        assert al.check_open_reports(c, "late").passed and al.open_issues(c) == []


def test_revoked_cash_out_is_compensated_and_re_allocated_when_eligible_again(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        _two_clients(c)
        add_cash_outs(c, [
            cash_out_row("tx1", T - timedelta(hours=1), 10_000, 1_300_000),
            cash_out_row("tx2", T - timedelta(minutes=40), 20_000, 2_600_000),
        ])
    day = RULES.business_day(T)
    _run(engine, day, day)
    with engine.connect() as c:
        allocated = _net(c, "tx1")
        balances_before = {b[0]: b[3] for b in al.client_balances(c)}
    with engine.begin() as c:
        c.execute(
            s.validated_cash_outs.update()
            .where(s.validated_cash_outs.c.id == "tx1")
            .values(eligible=False, error="Lamassu: dispense failed", ineligible_reason="has error")
        )
    out = _run(engine, day, day)
    assert [(r.kind, r.source_id) for r in out.reports] == [("revoked", "undo:tx1")]
    assert out.reproduced and out.events_written == 1
    with engine.connect() as c:
        assert _net(c, "tx1") == (0, 0)
        comp = c.execute(sa.select(s.allocation_lines).where(
            s.allocation_lines.c.source_id == "undo:tx1").order_by(s.allocation_lines.c.line_no)
        ).all()
        orig = c.execute(sa.select(s.allocation_lines).where(
            s.allocation_lines.c.source_id == "tx1").order_by(s.allocation_lines.c.line_no)
        ).all()
        balances = {b[0]: b[3] for b in al.client_balances(c)}
    assert [(x.kind, x.recipient_id, x.wallet_id, -x.fiat_cents, -x.sats, x.business_day)
            for x in comp] == [(x.kind, x.recipient_id, x.wallet_id, x.fiat_cents, x.sats,
                                x.business_day) for x in orig]
    assert [x.compensates_line_id for x in comp] == [x.line_id for x in orig]
    fiat_back = {x.recipient_id: x.fiat_cents for x in orig if x.kind == "flow"}
    assert balances == {k: v + fiat_back.get(k, 0) for k, v in balances_before.items()}
    assert allocated[0] == 10_000
    assert not _run(engine, day, day).events_written  # compensated once
    with engine.begin() as c:  # Lamassu flips it back: allocated again, as a late one
        c.execute(
            s.validated_cash_outs.update()
            .where(s.validated_cash_outs.c.id == "tx1")
            .values(eligible=True, error=None, ineligible_reason=None)
        )
    out = _run(engine, day, day)
    assert [(r.kind, r.source_id) for r in out.reports] == [("late", "tx1~2")]
    with engine.connect() as c:
        assert [e[1] for e in _events(c)][-2:] == ["undo:tx1", "tx1~2"]
        assert _net(c, "tx1")[0] == 10_000
    assert _run(engine, day, day).reproduced


def test_changed_cash_out_is_reversed_and_allocated_again_later_days_go_on(engine) -> None:  # type: ignore[no-untyped-def]
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
        fiat = c.execute(sa.select(s.validated_cash_outs.c.fiat_cents).where(
            s.validated_cash_outs.c.id == target)).scalar_one()
    out = _run(engine)  # the whole period: days 4-8 are new, and day 2 changed
    assert out.reproduced
    kinds = [(r.kind, r.source_id) for r in out.reports]
    assert kinds == [("changed", f"undo:{target}"), ("late", f"{target}~2")]
    assert "fiat" in out.reports[0].detail
    with engine.connect() as c:
        assert _net(c, target)[0] == fiat
        days = {r.business_day for r in c.execute(sa.select(s.allocation_events)).all()}
        assert max(days) == SCENARIO.last_day
        assert al.open_issues(c, ["mismatch"]) == []
    assert _run(engine).reproduced  # the replay of compensations and re-allocations is exact


def test_tampered_line_is_a_mismatch_that_writes_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    _run(engine, SCENARIO.first_day, date(2025, 3, 3))
    with engine.begin() as c:  # an extra line slipped into an allocated event
        victim = c.execute(sa.select(s.allocation_events.c.source_id).where(
            s.allocation_events.c.business_day == date(2025, 3, 2),
            s.allocation_events.c.source_kind == "cash_out").limit(1)).scalar_one()
        c.execute(s.allocation_lines.insert().values(
            source_id=victim, line_no=99, kind="flow", recipient_id="flow-0001",
            wallet_id="wallet-flow-0001", business_day=date(2025, 3, 2), fiat_cents=1, sats=1,
            created_at=T,
        ))
        before = _count(c, s.allocation_events)
    out = _run(engine)
    assert not out.reproduced and out.events_written == 0
    assert any(victim in d for d in out.mismatches)
    with engine.connect() as c:
        assert _count(c, s.allocation_events) == before
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


def test_fixed_run_without_any_rate_is_a_recorded_skip_and_flow_goes_on(engine) -> None:  # type: ignore[no-untyped-def]
    # §5: fixed clients registered before the first cash-out ever. The fixed run of that day
    # (09:00, before the first sale) is skipped and recorded; the flow cash-out is allocated.
    with engine.begin() as c:
        add_client(c, "F", mode="fixed", daily_limit_cents=15_000)
        deposit(c, "dF", "F", 10_000)
        _two_clients(c)
        add_cash_outs(c, [cash_out_row("sale", T, 10_000, 1_300_000)])
    day = RULES.business_day(T)
    out = _run(engine, day, day, now=T + timedelta(hours=1))
    assert [(r.kind, r.source_id) for r in out.reports] == [("skipped", f"fixed:{day}")]
    with engine.connect() as c:
        kinds = {e[1]: e[2] for e in _events(c)}
        assert kinds == {f"fixed:{day}": "fixed_skipped", "sale": "cash_out"}
        assert _net(c, "sale")[0] == 10_000
        assert {b[0]: b[3] for b in al.client_balances(c)}["F"] == 10_000
        assert not al.check_open_reports(c, "skipped").passed
    # Not retried; the next day's run has a rate (the sale) and pays F.
    nxt = day + timedelta(days=1)
    out = _run(engine, nxt, nxt, now=RULES.fixed_run_at(nxt) + timedelta(hours=1))
    assert out.reproduced and not out.reports
    with engine.connect() as c:
        assert {b[0]: b[3] for b in al.client_balances(c)}["F"] == 0


def test_due_range_follows_settled_cash_outs_and_the_fixed_run(engine) -> None:  # type: ignore[no-untyped-def]
    day = RULES.business_day(T)
    start = day - timedelta(days=1)
    run_at = RULES.fixed_run_at(day)

    def due(now: datetime):  # type: ignore[no-untyped-def]
        return al.due_range(engine, RULES, now=now, settle_minutes=15, start_day=start)

    def run(now: datetime):  # type: ignore[no-untyped-def]
        return al.allocate_range(engine, RULES, start, day, now=now, settle_minutes=15,
                                 start_day=start)

    with engine.begin() as c:
        _two_clients(c)
    assert due(run_at) is None  # no sale ever: allocation has not begun
    with engine.begin() as c:
        add_cash_outs(c, [cash_out_row("eve", run_at - timedelta(hours=20), 10_000, 1_300_000)])
    assert due(run_at - timedelta(hours=2)) == (start, day)
    run(run_at - timedelta(hours=2))
    assert due(run_at - timedelta(hours=1)) is None
    assert due(run_at + timedelta(minutes=14)) is None  # not settled yet
    assert due(run_at + timedelta(minutes=15)) == (start, day)
    run(run_at + timedelta(minutes=15))
    with engine.begin() as c:
        add_cash_outs(c, [cash_out_row("tx", run_at + timedelta(hours=1), 10_000, 1_300_000)])
    assert due(run_at + timedelta(hours=1, minutes=5)) is None
    assert due(run_at + timedelta(hours=1, minutes=15)) == (start, day)
    later = run_at + timedelta(hours=2)
    run(later)
    assert due(later) is None
    with engine.begin() as c:  # Lamassu marks the allocated cash-out errored (overlap window)
        c.execute(s.validated_cash_outs.update().where(s.validated_cash_outs.c.id == "tx")
                  .values(eligible=False, error="dispense failed"))
    assert due(later) == (start, day)  # to be compensated
    run(later)
    assert due(later) is None  # compensated once; nothing holds the payouts


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


def test_a_later_day_alone_is_refused_while_an_earlier_day_is_due(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    with pytest.raises(al.AllocationRefused, match="materialize from 2025-03-01"):
        _run(engine, date(2025, 3, 3), date(2025, 3, 5))
    with engine.connect() as c:
        assert _count(c, s.allocation_events) == 0
    _run(engine, SCENARIO.first_day, date(2025, 3, 2))
    with pytest.raises(al.AllocationRefused, match="materialize from 2025-03-03"):
        _run(engine, date(2025, 3, 5), date(2025, 3, 5))
    out = _run(engine, date(2025, 3, 3), date(2025, 3, 5))
    assert out.reproduced and not out.reports
    # An earlier, allocated day again: replayed, nothing appended.
    again = _run(engine, SCENARIO.first_day, SCENARIO.first_day)
    assert again.reproduced and again.events_written == 0 and again.events_verified > 0


def test_running_totals_follow_every_line_and_the_off_path_check_catches_a_drift(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    _run(engine, SCENARIO.first_day, date(2025, 3, 4))
    with engine.connect() as c:
        assert al.check_running_totals(c).passed
        assert al.store.client_allocated(c) == al.store.client_allocated_from_lines(c)
        day_seq = c.execute(sa.select(sa.func.min(s.allocation_events.c.seq)).where(
            s.allocation_events.c.business_day == date(2025, 3, 3))).scalar_one()
        below = al.store.client_allocated(c, below_seq=day_seq)
        line = s.allocation_lines
        by_lines = dict(c.execute(
            sa.select(line.c.recipient_id, sa.func.sum(line.c.fiat_cents))
            .select_from(s.allocation_lines.join(
                s.allocation_events,
                s.allocation_events.c.source_id == s.allocation_lines.c.source_id))
            .where(s.allocation_lines.c.kind.in_(("flow", "fixed")),
                   s.allocation_events.c.seq < day_seq)
            .group_by(s.allocation_lines.c.recipient_id)).all())
    assert {k: v for k, v in below.items() if v} == {k: int(v) for k, v in by_lines.items()}
    with engine.begin() as c:  # a line written by hand (any writer) moves the totals too
        victim = c.execute(sa.select(s.allocation_events.c.source_id).where(
            s.allocation_events.c.source_kind == "cash_out").limit(1)).scalar_one()
        c.execute(s.allocation_lines.insert().values(
            source_id=victim, line_no=77, kind="flow", recipient_id="flow-0002",
            wallet_id="wallet-flow-0002", business_day=date(2025, 3, 1), fiat_cents=5, sats=5,
            created_at=T,
        ))
    with engine.connect() as c:
        assert al.check_running_totals(c).passed
    with engine.begin() as c:  # the totals edited behind the ledger's back
        c.execute(s.client_allocated_totals.update()
                  .where(s.client_allocated_totals.c.client_id == "flow-0002")
                  .values(allocated_cents=s.client_allocated_totals.c.allocated_cents + 1))
    with engine.connect() as c:
        drift = al.check_running_totals(c)
    assert not drift.passed and "flow-0002: running total" in drift.description
