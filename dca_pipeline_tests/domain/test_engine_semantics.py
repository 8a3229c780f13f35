"""Ordering, history and extremes: the parts of §4–§6 a property test might under-sample."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import numpy as np
import pytest

from dca_pipeline.domain.cash_out import CashOut
from dca_pipeline.domain.engine import (
    ClientChange,
    Deposit,
    EngineError,
    EngineState,
    FixedRateUnavailable,
    SkippedFixedRun,
    _ReferenceRates,
    _split_flow,
    allocate,
)
from dca_pipeline.domain.money import MAX_SATS
from dca_pipeline.domain.rules import BusinessRules
from harness.naive_allocation import naive_flow_split

T0 = datetime(2025, 6, 1, tzinfo=UTC)
RULES = BusinessRules()


def cash_out(
    id: str, at: datetime, fiat: int = 100_000, atoms: int = 130_000
) -> CashOut:
    return CashOut.from_lamassu(
        id=id,
        event_time=at,
        fiat_cents=fiat,
        crypto_atoms=atoms,
        commission_percentage=Fraction(0),
        discount=0,
    )


def lines(**kwargs):
    return [
        (x.source_id, x.kind, x.recipient_id, x.fiat_cents, x.sats)
        for x in allocate(
            rules=RULES, **{"fixed_days": [], "commission_versions": [], **kwargs}
        ).lines()
    ]


def test_cash_out_before_fixed_run_at_the_same_instant_and_cash_outs_by_id() -> None:
    run_at = RULES.fixed_run_at(date(2025, 6, 2))
    got = allocate(
        cash_outs=[cash_out("b", run_at), cash_out("a", run_at), cash_out("early", T0)],
        fixed_days=[date(2025, 6, 2)],
        clients=[],
        deposits=[],
        commission_versions=[],
        rules=RULES,
    )
    assert [e.source_id for e in got.events] == ["early", "a", "b", "fixed:2025-06-02"]


def test_cash_outs_are_processed_oldest_first_so_balances_deplete_in_time_order() -> (
    None
):
    # Prior art processed newest first; here the earlier cash-out takes the whole balance.
    got = lines(
        cash_outs=[
            cash_out("late", T0 + timedelta(hours=2)),
            cash_out("early", T0 + timedelta(hours=1)),
        ],
        clients=[ClientChange("A", T0, "flow", "active")],
        deposits=[Deposit("d", "A", 100_000, T0)],
    )
    assert got[0][:3] == ("early", "flow", "A") and got[0][3] == 100_000
    assert got[1] == ("late", "unallocated", None, 100_000, 130_000)


def test_mode_and_status_are_taken_at_the_event_time() -> None:
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=3)
    got = lines(
        cash_outs=[
            cash_out("while-paused", t1 + timedelta(minutes=30)),
            cash_out("after-resume", t2),
        ],
        clients=[
            ClientChange("A", T0, "flow", "active"),
            ClientChange("A", t1, "flow", "paused"),
            ClientChange(
                "A", t2, "flow", "active"
            ),  # effective exactly at the cash-out: counts
        ],
        deposits=[Deposit("d", "A", 1_000_000, T0)],
    )
    assert [g[:3] for g in got] == [
        ("while-paused", "unallocated", None),
        ("after-resume", "flow", "A"),
    ]


def test_deposit_counts_only_from_its_confirmation_time() -> None:
    at = T0 + timedelta(hours=1)
    got = lines(
        cash_outs=[cash_out("x", at)],
        clients=[
            ClientChange("A", T0, "flow", "active"),
            ClientChange("B", T0, "flow", "active"),
        ],
        deposits=[
            Deposit("a", "A", 100_000, at),
            Deposit("b", "B", 100_000, at + timedelta(seconds=1)),
        ],
    )
    assert [g[:3] for g in got] == [("x", "flow", "A")]


def test_fixed_client_gets_min_of_limit_balance_and_system_max() -> None:
    rules = BusinessRules(max_daily_cents=50_000)
    got = allocate(
        cash_outs=[],
        fixed_days=[date(2025, 6, 2)],
        clients=[
            ClientChange("lim", T0, "fixed", "active", daily_limit_cents=10_000),
            ClientChange("max", T0, "fixed", "active", daily_limit_cents=900_000),
            ClientChange("bal", T0, "fixed", "active", daily_limit_cents=40_000),
        ],
        deposits=[
            Deposit("1", "lim", 10**8, T0),
            Deposit("2", "max", 10**8, T0),
            Deposit("3", "bal", 7, T0),
        ],
        commission_versions=[],
        rules=rules,
        rate_history=[cash_out("r", T0, 100, 130)],
    )
    assert {x.recipient_id: (x.fiat_cents, x.sats) for x in got.lines()} == {
        "bal": (7, 9),
        "lim": (10_000, 13_000),
        "max": (50_000, 65_000),
    }


def test_fixed_rate_falls_back_to_the_latest_earlier_cash_out() -> None:
    day = date(2025, 6, 5)
    old = [
        cash_out("old", T0, 100, 130),
        cash_out("older", T0 - timedelta(days=1), 100, 999),
    ]
    got = allocate(
        cash_outs=[],
        fixed_days=[day],
        clients=[ClientChange("F", T0, "fixed", "active", 1_000)],
        deposits=[Deposit("d", "F", 10**6, T0)],
        commission_versions=[],
        rules=RULES,
        rate_history=old,
    )
    assert got.events[0].inputs["rate_source"] == "latest:old"
    assert [x.sats for x in got.lines()] == [1_300]


def test_fixed_run_without_any_rate_is_skipped_only_if_there_is_something_to_pay() -> None:
    day = date(2025, 6, 5)
    run_at = RULES.fixed_run_at(day)
    kwargs = dict(
        cash_outs=[],
        fixed_days=[day],
        deposits=[Deposit("d", "F", 10**6, T0)],
        commission_versions=[],
        rules=RULES,
    )
    got = allocate(clients=[ClientChange("F", T0, "fixed", "active", 1_000)], **kwargs)
    assert got.events == [] and list(got.lines()) == []
    assert got.skipped == [
        SkippedFixedRun(
            "fixed:2025-06-05",
            day,
            run_at,
            f"no reference rate: no eligible cash-out before {run_at.isoformat()}",
        )
    ]
    assert got.balances(kwargs["deposits"]) == {"F": 10**6}
    # Processed, so a later call never runs it again.
    assert got.state.last_event == (run_at, 1, "fixed:2025-06-05")
    # Nobody to pay: no rate needed, an event without lines as before, nothing skipped.
    quiet = allocate(clients=[ClientChange("F", T0, "flow", "active")], **kwargs)
    assert [e.source_id for e in quiet.events] == ["fixed:2025-06-05"]
    assert list(quiet.lines()) == [] and quiet.skipped == []


def test_fixed_clients_before_the_first_cash_out_ever_skip_that_run_and_nothing_else() -> None:
    """§5: the fixed run of a day with no rate is skipped; flow cash-outs of that day and later
    days are allocated exactly as without the fixed client; the next run with a rate pays."""
    day1, day2 = date(2025, 6, 2), date(2025, 6, 3)
    run1, run2 = RULES.fixed_run_at(day1), RULES.fixed_run_at(day2)
    cash_outs = [
        cash_out("c1", run1 + timedelta(hours=1), 100_000, 130_000),
        cash_out("c2", run1 + timedelta(hours=5), 250_000, 310_000),
        cash_out("c3", run2 + timedelta(hours=2), 80_000, 99_000),
    ]
    flow_clients = [
        ClientChange("A", T0, "flow", "active"),
        ClientChange("B", T0, "flow", "active"),
    ]
    flow_deposits = [Deposit("dA", "A", 300_000, T0), Deposit("dB", "B", 120_000, T0)]
    fixed = ClientChange("F", T0, "fixed", "active", daily_limit_cents=15_000)
    fixed_deposit = Deposit("dF", "F", 100_000, T0)

    with_fixed = allocate(
        cash_outs=cash_outs,
        fixed_days=[day1, day2],
        clients=[*flow_clients, fixed],
        deposits=[*flow_deposits, fixed_deposit],
        commission_versions=[],
        rules=RULES,
    )
    without_fixed = allocate(
        cash_outs=cash_outs,
        fixed_days=[],
        clients=flow_clients,
        deposits=flow_deposits,
        commission_versions=[],
        rules=RULES,
    )
    assert [(s.source_id, s.business_day, s.run_at) for s in with_fixed.skipped] == [
        ("fixed:2025-06-02", day1, run1)
    ]
    assert "no reference rate" in with_fixed.skipped[0].reason
    assert run1.isoformat() in with_fixed.skipped[0].reason

    def rows(result, kind):  # type: ignore[no-untyped-def]
        return [
            (x.source_id, x.kind, x.recipient_id, x.fiat_cents, x.sats)
            for x in result.lines()
            if x.kind == kind
        ]

    assert rows(with_fixed, "flow") == rows(without_fixed, "flow")
    assert rows(with_fixed, "unallocated") == rows(without_fixed, "unallocated")
    assert [e.source_id for e in with_fixed.events] == ["c1", "c2", "fixed:2025-06-03", "c3"]
    # Day 2's run has the 24 h window [run2 − 24 h, run2): c1 and c2.
    fixed_event = with_fixed.events[2]
    assert fixed_event.inputs["rate_source"] == "window:2"
    assert fixed_event.inputs["rate_sats_per_cent"] == "44/35"  # 440,000 / 350,000
    assert rows(with_fixed, "fixed") == [
        ("fixed:2025-06-03", "fixed", "F", 15_000, 15_000 * 440_000 // 350_000)
    ]
    balances = with_fixed.balances([*flow_deposits, fixed_deposit])
    assert balances["F"] == 85_000
    assert {k: v for k, v in balances.items() if k != "F"} == without_fixed.balances(
        flow_deposits
    )


def test_a_skipped_run_is_not_retried_by_a_later_call() -> None:
    day = date(2025, 6, 2)
    run_at = RULES.fixed_run_at(day)
    kwargs = dict(
        clients=[ClientChange("F", T0, "fixed", "active", 1_000)],
        deposits=[Deposit("d", "F", 10**6, T0)],
        commission_versions=[],
        rules=RULES,
    )
    first = allocate(cash_outs=[], fixed_days=[day], **kwargs)
    assert [s.source_id for s in first.skipped] == ["fixed:2025-06-02"]
    later = cash_out("later", run_at + timedelta(hours=1))
    second = allocate(cash_outs=[later], fixed_days=[], state=first.state, **kwargs)
    assert [e.source_id for e in second.events] == ["later"] and second.skipped == []
    with pytest.raises(EngineError, match="not after"):
        allocate(
            cash_outs=[],
            fixed_days=[day],
            state=EngineState(first.state.allocated_cents, first.state.last_event),
            rate_history=[cash_out("early", run_at - timedelta(hours=1))],
            **kwargs,
        )


def test_reference_rates_try_rate_at_gives_the_rate_its_source_and_ids() -> None:
    run_at = RULES.fixed_run_at(date(2025, 6, 5))
    window = [
        cash_out("w2", run_at - timedelta(hours=1), 100, 130),
        cash_out("w1", run_at - timedelta(hours=23), 300, 330),
    ]
    old = cash_out("old", run_at - timedelta(days=3), 100, 99)
    at_run = cash_out("at-run", run_at, 100, 1)  # not before the run: never used
    rates = _ReferenceRates([*window, old, at_run])
    assert rates.try_rate_at(run_at) == (Fraction(460, 400), "window:2", ("w1", "w2"))
    assert rates.rate_at(run_at, run_at.date()) == (Fraction(460, 400), "window:2")
    assert _ReferenceRates([old, at_run]).try_rate_at(run_at) == (
        Fraction(99, 100),
        "latest:old",
        ("old",),
    )
    empty = _ReferenceRates([at_run])
    assert empty.try_rate_at(run_at) is None
    with pytest.raises(FixedRateUnavailable, match="2025-06-05"):
        empty.rate_at(run_at, date(2025, 6, 5))


def test_engine_refuses_inconsistent_inputs() -> None:
    with pytest.raises(EngineError, match="unknown clients"):
        allocate(
            cash_outs=[],
            fixed_days=[],
            clients=[],
            deposits=[Deposit("d", "ghost", 1, T0)],
            commission_versions=[],
            rules=RULES,
        )
    with pytest.raises(EngineError, match="twice"):
        allocate(
            cash_outs=[cash_out("x", T0), cash_out("x", T0)],
            fixed_days=[],
            clients=[],
            deposits=[],
            commission_versions=[],
            rules=RULES,
        )
    with pytest.raises(EngineError, match="positive limit"):
        ClientChange("F", T0, "fixed", "active")
    with pytest.raises(EngineError, match="positive"):
        Deposit("d", "A", 0, T0)
    with pytest.raises(ValueError, match="aware"):
        RULES.business_day(datetime(2025, 6, 1))


def test_realistic_extremes_are_exact() -> None:
    """10 000 clients from 0.01 to 10 000 000 GTQ, a 10 000 000 GTQ cash-out, up to 21 M BTC."""
    rnd = random.Random(7)
    balances = [1, 10**9] + [rnd.randint(1, 10**9) for _ in range(9_998)]
    ids = [f"c{i:05d}" for i in range(len(balances))]
    remaining = np.array(balances, dtype=np.int64)
    for fiat, principal in [
        (10**9, 2_000_000_000),
        (10**9, MAX_SATS),
        (123_457, MAX_SATS - 1),
    ]:
        fiat_np, un_fiat, sats_np, un_sats = _split_flow(fiat, principal, remaining)
        assert int(fiat_np.sum()) + un_fiat == fiat
        assert int(sats_np.sum()) + un_sats == principal
        assert (fiat_np <= remaining).all()
        want_fiat, want_un, want_sats, want_un_sats = naive_flow_split(
            fiat, principal, dict(zip(ids, balances, strict=True))
        )
        assert fiat_np.tolist() == [want_fiat[i] for i in ids]
        assert sats_np.tolist() == [want_sats[i] for i in ids]
        assert (un_fiat, un_sats) == (want_un, want_un_sats)


def test_a_cash_out_above_every_balance_caps_everybody() -> None:
    remaining = np.array([1, 10**9, 5], dtype=np.int64)
    fiat, un_fiat, sats, un_sats = _split_flow(10**10, MAX_SATS, remaining)
    assert fiat.tolist() == [1, 10**9, 5] and un_fiat == 10**10 - 10**9 - 6
    assert int(sats.sum()) + un_sats == MAX_SATS
