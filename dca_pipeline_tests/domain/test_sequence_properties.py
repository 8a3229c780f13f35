"""The §4a planner, pure: an in-memory ledger ticked run by run.

In order, the planner appends exactly what the engine computes in one call (what ``simulate``
does); split into any number of runs it appends the same; a replay of what it appended
reproduces it; with late arrivals and revocations every cash-out nets to exactly its final
amounts, nothing is allocated twice, and no balance goes negative.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from dca_pipeline.domain.cash_out import CashOut
from dca_pipeline.domain.engine import ClientBook, CommissionTimeline, allocate
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.domain.sequence import (
    LandedCashOut,
    LiveAllocation,
    PlannedEvent,
    SequenceEnd,
    StoredEvent,
    StoredLine,
    plan_run,
    replay,
)
from dca_pipeline_tests.domain.strategies import DAYS, T0, Scenario, any_scenario

RULES = BusinessRules()
FAR = T0 + timedelta(days=DAYS + 30)
FIRST, LAST = T0.date(), T0.date() + timedelta(days=DAYS - 1)


def landed(
    c: CashOut, *, eligible: bool = True, event_time: datetime | None = None
) -> LandedCashOut:
    at = event_time or c.event_time
    return LandedCashOut(
        id=c.id, event_time=at, business_day=RULES.business_day(at), eligible=eligible,
        fiat_cents=c.fiat_cents, crypto_atoms=c.crypto_atoms, principal_sats=c.principal_sats,
        commission_sats=c.commission_sats, commission_percentage=None, discount=None,
        status="confirmed", fiat_code="GTQ", crypto_code="BTC", dispense=True,
        dispense_confirmed=True, has_error=not eligible,
    )


@dataclass
class MemoryLedger:
    """The ledger's sequence in memory: what the ledger layer loads and writes, nothing more."""

    s: Scenario
    events: list[PlannedEvent] = field(default_factory=list)
    lines: dict[str, list[StoredLine]] = field(default_factory=dict)
    next_line_id: int = 1

    def tick(self, visible: dict[str, LandedCashOut], now: datetime,
             first: date = FIRST, last: date = LAST) -> None:
        live: dict[str, LiveAllocation] = {}
        compensated = {e.compensates.event_id for e in self.events if e.compensates}
        counts: dict[str, int] = defaultdict(int)
        for e in self.events:
            if e.kind == "cash_out":
                counts[e.cash_out_id] += 1
                if e.event_id not in compensated:
                    f, p, c = e.totals()
                    live[e.cash_out_id] = LiveAllocation(
                        e.event_id, e.cash_out_id, e.seq, e.event_time, e.business_day, f, p, c,
                        None, None, False, "GTQ", tuple(self.lines[e.event_id]),
                    )
        landed_now = {k: v for k, v in visible.items() if k in live or v.eligible}
        keys = [(e.event_time, e.rank, e.cash_out_id or e.event_id)
                for e in self.events if e.kind != "compensation"]
        end = SequenceEnd(
            last_seq=len(self.events), last_key=max(keys) if keys else None,
            last_as_of=max((e.as_of for e in self.events), default=None),
            allocation_counts=dict(counts),
            fixed_days=frozenset(e.business_day for e in self.events
                                 if e.kind in ("fixed", "fixed_skipped")),
        )
        book = ClientBook(self.s.clients, self.s.deposits, self.allocated())
        history = [v.cash_out() for v in visible.values() if v.eligible]
        plan = plan_run(
            end=end, live=live, landed=landed_now, book=book,
            commission=CommissionTimeline(self.s.commission_versions), rules=RULES,
            rate_history=history, first_day=first, last_day=last, start_day=FIRST,
            cutoff=now,
        )
        assert plan.refusal is None, plan.refusal
        for event in plan.events:
            assert event.seq == len(self.events) + 1  # no gaps
            self.events.append(event)
            out = []
            if event.compensates is not None:
                for x in event.compensates.lines:
                    out.append(replace(x, line_id=self._id(), fiat_cents=-x.fiat_cents,
                                       sats=-x.sats))
            else:
                for n, (kind, rec, fiat, sats) in enumerate(event.line_tuples(), 1):
                    out.append(StoredLine(self._id(), n, kind, rec, None, fiat, sats,
                                          event.business_day))
            self.lines[event.event_id] = out

    def _id(self) -> int:
        self.next_line_id += 1
        return self.next_line_id

    def allocated(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for event_lines in self.lines.values():
            for x in event_lines:
                if x.kind in ("flow", "fixed") and x.recipient_id:
                    out[x.recipient_id] += x.fiat_cents
        return dict(out)

    def in_order_lines(self) -> list[tuple[str, str, str | None, int, int]]:
        return [(e.event_id, x.kind, x.recipient_id, x.fiat_cents, x.sats)
                for e in self.events for x in self.lines[e.event_id]]

    def net(self, cash_out_id: str) -> tuple[int, int, int]:
        fiat = principal = commission = 0
        for e in self.events:
            if e.cash_out_id == cash_out_id:
                f, p, c = e.totals()
                fiat, principal, commission = fiat + f, principal + p, commission + c
        return fiat, principal, commission

    def stored(self) -> list[StoredEvent]:
        by_id = {e.event_id: e for e in self.events}
        out = []
        for e in self.events:
            f, p, c = e.totals()
            out.append(StoredEvent(
                e.seq, e.event_id, e.kind, e.cash_out_id, e.event_time, e.as_of, e.business_day,
                f, p, c, tuple(self.lines[e.event_id]),
                rate=e.rate[0] if e.rate else None, max_daily_cents=RULES.max_daily_cents,
                reversed_lines=tuple(self.lines[e.compensates.event_id])
                if e.compensates and e.compensates.event_id in by_id else (),
            ))
        return out


def _engine_lines(s: Scenario) -> tuple[list[tuple[str, str, str | None, int, int]], list[str]]:
    days = [FIRST + timedelta(days=i) for i in range(DAYS)]
    result = allocate(cash_outs=s.cash_outs, fixed_days=days, clients=s.clients,
                      deposits=s.deposits, commission_versions=s.commission_versions,
                      rules=RULES, rate_history=s.cash_outs)
    lines = [(x.source_id, x.kind, x.recipient_id, x.fiat_cents, x.sats) for x in result.lines()]
    return lines, [x.source_id for x in result.skipped]


def _in_days(s: Scenario) -> Scenario:
    return replace(s, cash_outs=[c for c in s.cash_outs
                                 if FIRST <= RULES.business_day(c.event_time) <= LAST])


@given(any_scenario)
def test_in_order_the_planner_appends_what_the_engine_computes(s: Scenario) -> None:
    s = _in_days(s)
    ledger = MemoryLedger(s)
    ledger.tick({c.id: landed(c) for c in s.cash_outs}, FAR)
    expected, skipped = _engine_lines(s)
    assert ledger.in_order_lines() == expected
    assert [e.event_id for e in ledger.events if e.kind == "fixed_skipped"] == skipped
    assert all(not e.late for e in ledger.events)


@given(any_scenario, st.lists(st.integers(0, DAYS * 24), max_size=5))
def test_any_number_of_runs_appends_the_same_and_replays_exactly(
    s: Scenario, hours: list[int]
) -> None:
    s = _in_days(s)
    ledger = MemoryLedger(s)
    for h in sorted(hours):
        now = T0 + timedelta(hours=h)
        # Each run sees what has happened by then (everything lands on time).
        ledger.tick({c.id: landed(c) for c in s.cash_outs if c.event_time <= now}, now,
                    last=RULES.business_day(now))
    ledger.tick({c.id: landed(c) for c in s.cash_outs}, FAR)
    assert ledger.in_order_lines() == _engine_lines(s)[0]
    book = ClientBook(s.clients, s.deposits, {})
    diffs, _ = replay(ledger.stored(), book, CommissionTimeline(s.commission_versions))
    assert diffs == []


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[Scenario, dict[str, int], set[str], set[str]]:
    """A scenario, when each cash-out lands (hours after T0), which are revoked, which come back."""
    s = _in_days(draw(any_scenario))
    ids = [c.id for c in s.cash_outs]
    lands = {cid: draw(st.integers(0, DAYS * 24 + 12)) for cid in ids}
    revoked = set(draw(st.lists(st.sampled_from(ids), unique=True))) if ids else set()
    back = set(draw(st.lists(st.sampled_from(sorted(revoked)), unique=True))) if revoked else set()
    return s, lands, revoked, back


@given(arrivals(), st.lists(st.integers(0, DAYS * 24 + 24), min_size=1, max_size=6))
def test_late_and_revoked_cash_outs_net_exactly_and_nothing_goes_negative(
    case: tuple[Scenario, dict[str, int], set[str], set[str]], hours: list[int]
) -> None:
    s, lands, revoked, back = case
    by_id = {c.id: c for c in s.cash_outs}
    ledger = MemoryLedger(s)
    final_hour = DAYS * 24 + 48

    def visible(hour: int) -> dict[str, LandedCashOut]:
        out = {}
        for cid, c in by_id.items():
            if T0 + timedelta(hours=lands[cid]) > T0 + timedelta(hours=hour):
                continue
            # Revoked a day after landing; the "back" ones become eligible again at the end.
            gone = cid in revoked and hour >= lands[cid] + 24 and not (
                cid in back and hour >= final_hour)
            out[cid] = landed(c, eligible=not gone)
        return out

    for h in sorted(hours) + [final_hour]:
        ledger.tick(visible(h), T0 + timedelta(hours=h))
        allocated = ledger.allocated()
        deposited: dict[str, int] = defaultdict(int)
        for d in s.deposits:
            deposited[d.client_id] += d.amount_cents
        assert all(allocated.get(cid, 0) <= deposited[cid] for cid in allocated)
    final = visible(final_hour)
    for cid, c in by_id.items():
        fiat, principal, commission = ledger.net(cid)
        if final[cid].eligible:
            assert (fiat, principal, commission) == (
                c.fiat_cents, c.principal_sats, c.commission_sats)
        else:
            assert (fiat, principal, commission) == (0, 0, 0)
        live = [e for e in ledger.events if e.cash_out_id == cid and e.kind == "cash_out"]
        undone = [e for e in ledger.events if e.cash_out_id == cid and e.kind == "compensation"]
        assert len(live) - len(undone) == (1 if final[cid].eligible else 0)
    # Σ client + unallocated sats of the cash-outs = Σ principal of the eligible ones.
    client_sats = sum(x.sats for e in ledger.events if e.cash_out_id
                      for x in ledger.lines[e.event_id] if x.kind != "commission")
    assert client_sats == sum(c.principal_sats for cid, c in by_id.items() if final[cid].eligible)
    book = ClientBook(s.clients, s.deposits, {})
    diffs, _ = replay(ledger.stored(), book, CommissionTimeline(s.commission_versions))
    assert diffs == []
