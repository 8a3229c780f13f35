"""The spec's invariants as properties, and agreement with the naive Fraction oracle."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dca_pipeline.domain.engine import EngineState, allocate
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline_tests.domain.strategies import Scenario, any_scenario
from harness.naive_allocation import naive_allocate_with_skips

RULES = BusinessRules()


def run(s: Scenario, **extra):
    return allocate(**s.kwargs(), rules=RULES, **extra)


@given(any_scenario)
def test_engine_matches_naive_oracle(s: Scenario) -> None:
    expected_lines, expected_allocated, expected_skipped = naive_allocate_with_skips(
        **s.kwargs(), rules=RULES
    )
    result = run(s)
    assert list(result.lines()) == expected_lines
    assert dict(result.state.allocated_cents) == expected_allocated
    # §5: a fixed run with clients to pay and no rate is skipped, never an error.
    assert [skip.source_id for skip in result.skipped] == expected_skipped
    skipped_ids = set(expected_skipped)
    assert not any(e.source_id in skipped_ids for e in result.events)


@given(any_scenario)
def test_every_split_adds_up_exactly(s: Scenario) -> None:
    result = run(s)
    by_id = {c.id: c for c in s.cash_outs}
    for event in result.events:
        if event.source_kind != "cash_out":
            continue
        cash_out = by_id[event.source_id]
        assert event.total_fiat_cents == cash_out.fiat_cents
        assert (
            event.total_client_sats + event.unallocated_sats == cash_out.principal_sats
        )
        if event.commission:
            assert event.total_commission_sats == cash_out.commission_sats
        assert (event.client_fiat_cents >= 0).all() and (event.client_sats >= 0).all()
        assert event.unallocated_fiat_cents >= 0 and event.unallocated_sats >= 0


@given(any_scenario)
def test_no_balance_negative_and_no_client_above_its_balance(s: Scenario) -> None:
    result = run(s)
    allocated: dict[str, int] = defaultdict(int)
    for event in result.events:
        deposited: dict[str, int] = defaultdict(int)
        for d in s.deposits:
            if d.confirmed_at <= event.event_time:
                deposited[d.client_id] += d.amount_cents
        ids = event.client_ids[event.client_index].tolist()
        for client_id, fiat in zip(ids, event.client_fiat_cents.tolist(), strict=True):
            assert fiat <= deposited[client_id] - allocated[client_id]
            allocated[client_id] += fiat
    for balance in result.balances(s.deposits).values():
        assert balance >= 0


@given(any_scenario, st.randoms(use_true_random=False))
def test_result_does_not_depend_on_input_order(s: Scenario, rnd: random.Random) -> None:
    baseline = run(s)
    shuffled = Scenario(
        *(
            rnd.sample(list(x), len(x))
            for x in (
                s.cash_outs,
                s.fixed_days,
                s.clients,
                s.deposits,
                s.commission_versions,
            )
        )
    )
    again = run(shuffled)
    assert list(again.lines()) == list(baseline.lines())
    assert again.skipped == baseline.skipped


@given(any_scenario, st.integers(0, 100))
def test_two_runs_with_state_equal_one_run(s: Scenario, cut_percent: int) -> None:
    """Live operation allocates in pieces; the pieces must equal one whole run."""
    whole = run(s)
    if not whole.events:
        return
    cut = (
        whole.events[len(whole.events) * cut_percent // 100 - 1].key
        if cut_percent
        else None
    )
    if cut is None:
        return
    first = Scenario(
        [c for c in s.cash_outs if (c.event_time, 0, c.id) <= cut],
        [
            d
            for d in s.fixed_days
            if (RULES.fixed_run_at(d), 1, f"fixed:{d.isoformat()}") <= cut
        ],
        s.clients,
        s.deposits,
        s.commission_versions,
    )
    second = Scenario(
        [c for c in s.cash_outs if (c.event_time, 0, c.id) > cut],
        [
            d
            for d in s.fixed_days
            if (RULES.fixed_run_at(d), 1, f"fixed:{d.isoformat()}") > cut
        ],
        s.clients,
        s.deposits,
        s.commission_versions,
    )
    part1 = run(first, rate_history=s.cash_outs)
    part2 = run(second, rate_history=s.cash_outs, state=part1.state)
    pieces = [
        (line.source_id, line.kind, line.recipient_id, line.fiat_cents, line.sats)
        for part in (part1, part2)
        for line in part.lines()
    ]
    assert pieces == [
        (line.source_id, line.kind, line.recipient_id, line.fiat_cents, line.sats)
        for line in whole.lines()
    ]
    assert part2.state.allocated_cents == whole.state.allocated_cents
    assert part1.skipped + part2.skipped == whole.skipped


def test_state_refuses_to_rewrite_history() -> None:
    from dca_pipeline.domain.engine import OutOfOrderEvent
    from dca_pipeline_tests.domain.test_worked_examples import T1, example_a_cash_out

    state = EngineState(allocated_cents={}, last_event=(T1, 0, "tx-zzz"))
    with pytest.raises(OutOfOrderEvent):
        allocate(
            cash_outs=[example_a_cash_out()],
            fixed_days=[],
            clients=[],
            deposits=[],
            commission_versions=[],
            rules=RULES,
            state=state,
        )
