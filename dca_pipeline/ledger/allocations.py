"""Allocating validated cash-outs into the ledger's sequence (plain Python, no Dagster).

One run over a business-day range (:func:`allocate_range`) is: **replay** the stored events of
the range (each recomputed from its stored inputs and the state before it must give its stored
lines exactly; a difference is a ``mismatch``, the only thing that stops allocation and
payouts) → **load** the end of the sequence and what has landed → **plan** with the pure
§4a planner (:func:`dca_pipeline.domain.sequence.plan_run`: compensations, late events,
in-order events) → **append** the plan (:mod:`dca_pipeline.ledger.allocation_store`) and record
its reports (late, revoked, changed, moved, skipped) as ``allocation_issues`` rows. Reports are
expected business: they never stop a run and need no acknowledgement.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dca_pipeline.domain.commission import TOTAL_BASIS_POINTS
from dca_pipeline.domain.engine import AllocationResult, CommissionTimeline
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.domain.sequence import (
    Report,
    RunPlan,
    fixed_source_id,
    judge,
    plan_run,
    replay,
)
from dca_pipeline.ledger import allocation_store as store
from dca_pipeline.ledger import balances, landing
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.allocation_store import AllocationConflict, LedgerInputs, load_inputs

__all__ = ["AllocationConflict", "LedgerInputs", "load_inputs", "fixed_source_id"]

#: How many differences a mismatch report spells out (the count is always complete).
MAX_DIFF_LINES = 20
#: Before any configured start: every landed day may be allocated.
EARLIEST_DAY = date(1970, 1, 1)


class AllocationRefused(RuntimeError):
    """The run would allocate out of order (an earlier day is due first): nothing was written."""


# --------------------------------------------------------------------------- outcome
@dataclass(frozen=True)
class Issue:
    source_id: str
    kind: str  # mismatch | late | revoked | changed | moved | skipped
    business_day: date
    detail: str


@dataclass
class RangeOutcome:
    first_day: date
    last_day: date
    events_written: int = 0
    events_verified: int = 0
    lines_written: int = 0
    #: Eligible cash-outs of the range younger than the settle time (a later run takes them).
    pending: int = 0
    reports: list[Report] = field(default_factory=list)
    #: Replay differences, in words; when any, nothing was written.
    mismatches: list[str] = field(default_factory=list)
    start_day: date | None = None
    #: What the run appended (or, for a dry run, would append).
    plan: RunPlan | None = None

    @property
    def issues(self) -> list[Issue]:
        found = [Issue(r.source_id, r.kind, r.business_day, r.detail) for r in self.reports]
        if self.mismatches:
            found.append(Issue(f"replay:{self.first_day}", "mismatch", self.first_day,
                               _mismatch_detail(self.first_day, self.last_day, self.mismatches)))
        return found

    @property
    def reproduced(self) -> bool:
        return not self.mismatches

    def reported(self, kind: str) -> list[Report]:
        return [r for r in self.reports if r.kind == kind]


def _mismatch_detail(first: date, last: date, diffs: Sequence[str]) -> str:
    shown = diffs[:MAX_DIFF_LINES]
    more = len(diffs) - len(shown)
    return (
        f"replaying {first}…{last} does not reproduce the ledger ({len(diffs)} difference(s)):\n"
        + "\n".join(shown) + (f"\n… and {more} more" if more else "")
    )


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# --------------------------------------------------------------------------- the run
def effective_start(c: sa.Connection, start_day: date | None) -> date | None:
    """The first day of the sequence: the configured start, or — when allocation began later
    (the first day with an allocation or an eligible cash-out) — that day; None: nothing yet."""
    configured = start_day or EARLIEST_DAY
    found = [d for d in (store.first_event_day(c), store.first_eligible_day(c, configured)) if d]
    return max(configured, min(found)) if found else None


def replay_range(
    engine: sa.Engine, inputs: LedgerInputs, first: date, last: date
) -> tuple[int, list[str]]:
    """(events replayed, differences) for the stored events of [first, last] (§4a)."""
    with engine.connect() as c:
        events = store.stored_events(c, first, last)
        if not events:
            return 0, []
        before = store.client_allocated(c, below_seq=events[0].seq)
    book = store.new_book(inputs, before)
    commission = CommissionTimeline(inputs.commission_versions)
    diffs, recomputed = replay(events, book, commission)
    for event, lines in zip(events, recomputed, strict=True):
        # The wallet each line is paid to is part of "the same line" too.
        diffs += _wallet_diffs(event, lines, inputs, commission)
    return len(events), diffs


def _wallet_diffs(
    event: Any, recomputed: Sequence[Any], inputs: LedgerInputs, commission: CommissionTimeline
) -> list[str]:
    if event.kind == "compensation":
        expected = [x.wallet_id for x in event.reversed_lines]
    else:
        version = commission.at(event.event_time)
        recipients = (
            inputs.recipient_wallets.get(version.effective_at.isoformat(), {}) if version else {}
        )
        expected = [
            None if recipient is None
            else recipients.get(recipient) if kind == "commission"
            else inputs.client_wallets.get(recipient)
            for kind, recipient, _fiat, _sats in recomputed
        ]
    stored = [x.wallet_id for x in event.lines]
    if len(stored) != len(expected) or stored == expected:
        return []
    return [f"event {event.seq} {event.event_id}: line wallets ledger {stored} != {expected}"]


def allocate_range(
    engine: sa.Engine,
    rules: BusinessRules,
    first_day: date,
    last_day: date,
    *,
    now: datetime,
    settle_minutes: int,
    run_id: str | None = None,
    start_day: date | None = None,
    landed_through: datetime | None = None,
    only_landed: bool = False,
    dry_run: bool = False,
) -> RangeOutcome:
    """Replay, then extend the sequence with everything due up to the end of ``last_day``.

    ``start_day``: nothing before it is ever allocated (default: allocation starts with the
    first allocated or eligible day). ``landed_through``: nothing after it is due (the end of
    the contiguous landed fetch windows; None: no bound). ``only_landed``: take that bound from
    the recorded fetch windows (``lamassu_fetches``; a ledger without any, seeded another way,
    has no bound). Raises :class:`AllocationRefused` (nothing written) when an earlier day than
    ``first_day`` has due in-order events, or when the run's days were never fetched.
    ``dry_run``: everything but the writing (§4a "Dry run"): the outcome's ``plan`` is what the
    run would append now.
    """
    if first_day > last_day:
        raise ValueError(f"empty range {first_day}..{last_day}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    outcome = RangeOutcome(first_day, last_day)
    with engine.connect() as c:
        inputs = load_inputs(c)
        start = effective_start(c, start_day)
        if only_landed:
            landed_through = _landed_bound(c, rules, start, first_day, landed_through)
    cutoff = now - timedelta(minutes=settle_minutes)
    if landed_through is not None:
        cutoff = min(cutoff, landed_through)
    outcome.events_verified, outcome.mismatches = replay_range(engine, inputs, first_day, last_day)
    if outcome.mismatches:
        if not dry_run:
            _sync_mismatch(engine, first_day, last_day, outcome, now, run_id)
        return outcome
    outcome.start_day = start
    with engine.connect() as c:
        # A run whose days all lie before the effective start still takes every pending
        # compensation and late event (§4a "One run"); only with no start at all (no sale,
        # no allocation ever) is there nothing to do.
        if start is None:
            outcome.plan = RunPlan()
            if not dry_run:
                _sync_mismatch(engine, first_day, last_day, outcome, now, run_id)
            return outcome
        end = store.sequence_end(c, (start, last_day))
        # Only what can have changed: a tick's cost follows new work, not the ledger's age.
        window = store.tick_window(c, end, (first_day, last_day))
        live, landed_live = store.differing_live_allocations(c, window)
        landed = store.unallocated_eligible(c, start, window) | landed_live
        end = store.SequenceEnd(
            end.last_seq, end.last_key, end.last_as_of,
            store.allocation_counts(c, landed), end.fixed_days,
        )
        missing_runs = [
            rules.fixed_run_at(d) for d in days_between(start, last_day)
            if d not in end.fixed_days and rules.fixed_run_at(d) <= cutoff
        ]
        history = (
            store.rate_history(c, min(missing_runs), max(missing_runs)) if missing_runs else []
        )
        book = store.new_book(inputs, store.client_allocated(c))
    plan = plan_run(
        end=end, live=live, landed=landed, book=book,
        commission=CommissionTimeline(inputs.commission_versions), rules=rules,
        rate_history=history, first_day=first_day, last_day=last_day, start_day=start,
        cutoff=cutoff,
    )
    if plan.refusal:
        raise AllocationRefused(plan.refusal)
    outcome.pending = plan.pending
    outcome.reports = plan.reports
    outcome.plan = plan
    if dry_run:
        return outcome
    outcome.lines_written = store.append_events(
        engine, plan.events, rules, inputs, expected_last_seq=end.last_seq, now=now,
        run_id=run_id,
    )
    outcome.events_written = len(plan.events)
    record_reports(engine, plan.reports, now, run_id)
    _sync_mismatch(engine, first_day, last_day, outcome, now, run_id)
    return outcome


def _landed_bound(
    c: sa.Connection, rules: BusinessRules, start: date | None, first_day: date,
    given: datetime | None,
) -> datetime | None:
    """Up to when every fetch since the start has landed (§4a "Due"); refuses unfetched days.

    ``start``: the sequence's effective start. Coverage is measured from it, or from the run's
    first day when that is earlier (days after the run's last day are not this run's
    business). Windows are never deleted, so coverage only grows: it is merged from the latest
    as-of already allocated (it was landed when it was allocated), not from the start — the
    cost follows the fetches since then, not the ledger's age.
    """
    if c.execute(sa.select(s.lamassu_fetches.c.fetch_id).limit(1)).first() is None:
        return given
    begin = rules.day_start_utc(min(start or first_day, first_day))
    allocated = c.execute(sa.select(sa.func.max(s.allocation_events.c.as_of))).scalar()
    anchor = max(begin, allocated) if allocated is not None else begin
    bound = landing.landed_through(c, anchor)
    if bound is None and anchor > begin:
        bound = anchor  # covered up to the last allocated instant, and nothing after it yet
    if bound is None:
        day = rules.business_day(begin)
        raise AllocationRefused(
            f"no fetch has landed {day} yet: ingest from {day} first (nothing was written)"
        )
    if rules.day_start_utc(first_day) >= bound:
        missing = rules.business_day(bound)
        raise AllocationRefused(
            f"{first_day} was never fetched (landed up to {bound.isoformat()}): ingest from "
            f"{missing} first (nothing was written)"
        )
    return bound if given is None else min(bound, given)


def _sync_mismatch(
    engine: sa.Engine, first: date, last: date, outcome: RangeOutcome, now: datetime,
    run_id: str | None,
) -> None:
    """Open a mismatch for a replay that differs; close the range's open ones when it does not."""
    i = s.allocation_issues
    with engine.begin() as c:
        if outcome.mismatches:
            detail = _mismatch_detail(first, last, outcome.mismatches)
            source_id = f"replay:{first}…{last}"
            exists = c.execute(
                sa.select(i.c.issue_id).where(
                    i.c.source_id == source_id, i.c.kind == "mismatch", i.c.detail == detail,
                    i.c.closed_at.is_(None),
                )
            ).first()
            if exists is None:
                c.execute(i.insert().values(
                    source_id=source_id, kind="mismatch", business_day=first, detail=detail,
                    detected_at=now, dagster_run_id=run_id,
                ))
            return
        c.execute(
            i.update()
            .where(i.c.kind == "mismatch", i.c.closed_at.is_(None),
                   i.c.business_day.between(first, last))
            .values(closed_at=now, resolution="a later replay reproduces the ledger")
        )


def record_reports(
    engine: sa.Engine, reports: Sequence[Report], now: datetime, run_id: str | None
) -> int:
    """Store each report once (same source, kind and detail are never stored twice)."""
    if not reports:
        return 0
    i = s.allocation_issues
    with engine.begin() as c:
        known = set()
        ids = sorted({r.source_id for r in reports})
        for k in range(0, len(ids), 500):
            known |= {
                tuple(row) for row in c.execute(
                    sa.select(i.c.source_id, i.c.kind, i.c.detail)
                    .where(i.c.source_id.in_(ids[k : k + 500]))
                ).all()
            }
        new = [r for r in reports if (r.source_id, r.kind, r.detail) not in known]
        if new:
            c.execute(i.insert(), [
                {"source_id": r.source_id, "kind": r.kind, "business_day": r.business_day,
                 "detail": r.detail, "detected_at": now, "dagster_run_id": run_id}
                for r in new
            ])
    return len(new)


def plan_preview(
    engine: sa.Engine, rules: BusinessRules, first_day: date, last_day: date, *,
    now: datetime, settle_minutes: int, start_day: date | None = None,
    only_landed: bool = False,
) -> RunPlan:
    """What :func:`allocate_range` would append now, nothing written (§4a "Dry run").

    Raises :class:`AllocationRefused` as the run would; an empty plan when the replay differs
    (the run would write nothing) or allocation has not begun.
    """
    outcome = allocate_range(
        engine, rules, first_day, last_day, now=now, settle_minutes=settle_minutes,
        start_day=start_day, only_landed=only_landed, dry_run=True,
    )
    return outcome.plan or RunPlan()


# --------------------------------------------------------------------------- live
def live_range(
    engine: sa.Engine,
    rules: BusinessRules,
    *,
    now: datetime,
    start_day: date,
    recheck_days: int = 2,
) -> tuple[date, date] | None:
    """The range a live run covers now: [day of the last in-order event, today], at least the
    last ``recheck_days`` days (replayed each tick); None before the first business day."""
    today = rules.business_day(now)
    if today < start_day:
        return None
    with engine.connect() as c:
        end = store.sequence_end(c, None)
        start = effective_start(c, start_day) or today
    first = today - timedelta(days=recheck_days)
    if end.last_key is not None:
        first = min(first, rules.business_day(end.last_key[0]))
    first = max(first, start)
    return (min(first, today), today)


def due_range(
    engine: sa.Engine,
    rules: BusinessRules,
    *,
    now: datetime,
    settle_minutes: int,
    start_day: date,
    recheck_days: int = 2,
) -> tuple[date, date] | None:
    """The live range (:func:`live_range`) when something is due now, else None.

    Due: a settled eligible cash-out without a live allocation; a live allocation whose
    cash-out was revoked or changed (or moved, not reported yet); a fixed run whose time plus
    the settle time has passed and that the sequence does not hold yet.
    """
    span = live_range(engine, rules, now=now, start_day=start_day, recheck_days=recheck_days)
    if span is None:
        return None
    cutoff = now - timedelta(minutes=settle_minutes)
    with engine.connect() as c:
        start = effective_start(c, start_day)
        if start is None:
            return None
        window = store.tick_window(c, store.sequence_end(c, None), span)
        unallocated = store.unallocated_eligible(c, start, window)
        if any(x.event_time <= cutoff for x in unallocated.values()):
            return span
        live, landed = store.differing_live_allocations(c, window)
        moved_reported = set(
            c.execute(
                sa.select(s.allocation_issues.c.source_id).where(
                    s.allocation_issues.c.kind == "moved"
                )
            ).scalars()
        )
        for cash_out_id, allocation in live.items():
            verdict = judge(allocation, landed.get(cash_out_id))
            if verdict is None:
                continue
            if verdict[0] != "moved" or allocation.event_id not in moved_reported:
                return span  # a compensation to append, or a move not reported yet
        end = store.sequence_end(c, (start, span[1]))
    for day in days_between(start, span[1]):
        run_at = rules.fixed_run_at(day)
        if day not in end.fixed_days and run_at <= cutoff:
            return span
    return None


# --------------------------------------------------------------------------- issues
def _issue_rows(found: Sequence[Issue], now: datetime, run_id: str | None) -> list[dict]:
    return [
        {
            "source_id": x.source_id,
            "kind": x.kind,
            "business_day": x.business_day,
            "detail": x.detail,
            "detected_at": now,
            "dagster_run_id": run_id,
        }
        for x in found
    ]


def _open_keys(c: sa.Connection, condition: Any) -> dict[tuple[str, str, str], int]:
    i = s.allocation_issues
    rows = c.execute(
        sa.select(i.c.issue_id, i.c.source_id, i.c.kind, i.c.detail).where(
            condition, i.c.closed_at.is_(None)
        )
    ).all()
    return {(r.source_id, r.kind, r.detail): r.issue_id for r in rows}


def record_issues(
    engine: sa.Engine, found: Sequence[Issue], now: datetime, run_id: str | None
) -> None:
    """Open the issues not already open (same source, kind and detail)."""
    i = s.allocation_issues
    with engine.begin() as c:
        open_keys = _open_keys(c, i.c.source_id.in_({x.source_id for x in found}))
        new = [x for x in found if (x.source_id, x.kind, x.detail) not in open_keys]
        if new:
            c.execute(i.insert(), _issue_rows(new, now, run_id))


def open_issues(c: sa.Connection, kinds: Sequence[str] | None = None) -> list[Any]:
    i = s.allocation_issues
    query = sa.select(i).where(i.c.closed_at.is_(None))
    if kinds:
        query = query.where(i.c.kind.in_(kinds))
    return list(c.execute(query.order_by(i.c.business_day, i.c.issue_id)).all())


def acknowledge_issue(engine: sa.Engine, issue_id: int, *, note: str, now: datetime) -> None:
    """An operator's decision on an issue: it stops blocking; the allocation lines stand."""
    if not note.strip():
        raise ValueError("an acknowledgement needs a note saying what was decided")
    i = s.allocation_issues
    with engine.begin() as c:
        updated = c.execute(
            i.update()
            .where(i.c.issue_id == issue_id, i.c.closed_at.is_(None))
            .values(closed_at=now, resolution=f"acknowledged: {note.strip()}")
        ).rowcount
    if updated != 1:
        raise ValueError(f"no open allocation issue {issue_id}")


# --------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, Any]


def line_sums(c: sa.Connection, days: Sequence[date]) -> list[tuple[Any, ...]]:
    """Per event of ``days``: its totals and Σ fiat / Σ sats of its lines per kind (one scan)."""
    e, line = s.allocation_events, s.allocation_lines
    first, last = min(days), max(days)
    sums = (
        sa.select(
            line.c.source_id,
            line.c.kind,
            sa.func.sum(line.c.fiat_cents).label("fiat"),
            sa.func.sum(line.c.sats).label("sats"),
        )
        .where(line.c.business_day.between(first, last))
        .group_by(line.c.source_id, line.c.kind)
        .subquery()
    )
    return list(
        c.execute(
            sa.select(
                e.c.source_id, e.c.source_kind, e.c.fiat_cents, e.c.principal_sats,
                e.c.commission_sats, e.c.inputs_json, sums.c.kind, sums.c.fiat, sums.c.sats,
            )
            .select_from(e.outerjoin(sums, sums.c.source_id == e.c.source_id))
            .where(e.c.business_day.between(first, last))
        ).all()
    )


def check_lines_sum(
    c: sa.Connection, days: Sequence[date], kinds: str,
    sums: Sequence[tuple[Any, ...]] | None = None,
) -> CheckOutcome:
    """Σ lines per event == the event's fiat / principal / commission, exactly.

    ``kinds``: "flow" (flow + unallocated vs fiat and principal of each cash-out), "fixed"
    (fixed lines vs the fixed event's totals), "commission" (commission lines vs commission_sats
    when a commission version was in force, else none). ``sums``: :func:`line_sums`, if known.
    """
    if not days:
        return CheckOutcome(True, "nothing to check", {"events_checked": 0})
    rows = line_sums(c, days) if sums is None else sums
    source_kinds = ("fixed",) if kinds == "fixed" else ("cash_out", "compensation")
    line_kinds = {"flow": ("flow", "unallocated"), "fixed": ("fixed",),
                  "commission": ("commission",)}[kinds]
    events: dict[str, list[Any]] = {}
    for r in rows:
        if r.source_kind not in source_kinds:
            continue
        entry = events.setdefault(r.source_id, [r, 0, 0])
        if r.kind in line_kinds:
            entry[1] += int(r.fiat or 0)
            entry[2] += int(r.sats or 0)
    bad = []
    for source_id, (r, fiat, sats) in events.items():
        if kinds in ("flow", "fixed"):
            ok = (fiat, sats) == (r.fiat_cents, r.principal_sats)
            want = f"fiat {r.fiat_cents}, sats {r.principal_sats}"
        else:
            has_version = bool(json.loads(r.inputs_json).get("commission_version"))
            expected = r.commission_sats if has_version else 0
            ok = (fiat, sats) == (0, expected)
            want = f"fiat 0, sats {expected}"
        if not ok:
            bad.append(f"{source_id}: lines sum to fiat {fiat}, sats {sats}; event says {want}")
    return CheckOutcome(
        not bad,
        "every event's lines add up exactly" if not bad else "\n".join(bad[:MAX_DIFF_LINES]),
        {"events_checked": len(events), "events_wrong": len(bad)},
    )


def _deposit_timeline(c: sa.Connection) -> dict[str, tuple[list[datetime], list[int]]]:
    d = s.deposits
    rows = c.execute(
        sa.select(d.c.client_id, d.c.confirmed_at, d.c.amount_cents)
        .where(d.c.status == "confirmed")
        .order_by(d.c.client_id, d.c.confirmed_at, d.c.deposit_id)
    ).all()
    out: dict[str, tuple[list[datetime], list[int]]] = {}
    for client_id, at, amount in rows:
        times, totals = out.setdefault(client_id, ([], []))
        times.append(at)
        totals.append((totals[-1] if totals else 0) + amount)
    return out


def check_no_client_above_remaining(c: sa.Connection, days: Sequence[date]) -> CheckOutcome:
    """In sequence order, no client's allocations so far exceed its deposits as of each event.

    The events checked are those from the first to the last event of ``days`` in the sequence
    (late events of other days included), starting from the running totals before them.
    Deposits count at an event's as-of instant, and as-of instants never decrease along the
    sequence, so between two deposit instants a client's deposits are constant: checking just
    before each deposit instant inside the span, just before each compensation, and at the end
    checks every event. The cost follows the span, never the ledger's age.
    """
    if not days:
        return CheckOutcome(True, "nothing to check", {"events_checked": 0})
    first, last = min(days), max(days)
    e = s.allocation_events
    seqs = c.execute(
        sa.select(sa.func.min(e.c.seq), sa.func.max(e.c.seq))
        .where(e.c.business_day.between(first, last))
    ).one()
    if seqs[0] is None:
        return CheckOutcome(True, "no event in the range", {"events_checked": 0})
    lo, hi = int(seqs[0]), int(seqs[1])
    events = c.execute(
        sa.select(e.c.seq, e.c.source_id, e.c.source_kind, e.c.as_of)
        .where(e.c.seq.between(lo, hi)).order_by(e.c.seq)
    ).all()
    running = store.client_allocated(c, below_seq=lo)
    deposits = _deposit_timeline(c)
    deposit_instants = sorted({t for times, _ in deposits.values() for t in times})

    def deposited(client_id: str, instant: datetime) -> int:
        times, totals = deposits.get(client_id, ([], []))
        i = bisect.bisect_right(times, instant)
        return totals[i - 1] if i else 0

    # Segments of consecutive events within which no deposit instant falls and no
    # compensation lowers an allocation: checking at each segment's end checks every event.
    segments: list[list[Any]] = [[]]
    for n, ev in enumerate(events):
        if ev.source_kind == "compensation" and segments[-1]:
            segments.append([])
        segments[-1].append(ev)
        following = events[n + 1].as_of if n + 1 < len(events) else None
        k = bisect.bisect_right(deposit_instants, ev.as_of)
        if following is not None and k < len(deposit_instants) and (
            deposit_instants[k] <= following
        ):
            segments.append([])
    bad: list[str] = []
    for segment in (seg for seg in segments if seg):
        touched = store.client_fiat_of_events(c, [ev.source_id for ev in segment])
        instant, last_seq = segment[-1].as_of, segment[-1].seq
        for client_id in sorted(touched):
            running[client_id] = running.get(client_id, 0) + touched[client_id]
            limit = deposited(client_id, instant)
            if running[client_id] > limit:
                bad.append(f"{client_id}: {running[client_id]} allocated by event {last_seq}, "
                           f"above the {limit} deposited by {instant.isoformat()}")
    return CheckOutcome(
        not bad,
        "no client received more than its remaining balance" if not bad
        else "\n".join(bad[:MAX_DIFF_LINES]),
        {"events_checked": len(events), "violations": len(bad)},
    )


def client_balances(c: sa.Connection) -> list[tuple[str, int, int, int]]:
    """(client_id, confirmed deposits incl. corrections, allocated flow+fixed, remaining) now:
    the one balance query (:func:`dca_pipeline.ledger.balances.client_balances`)."""
    return [
        (b.client_id, b.confirmed_cents, b.allocated_cents, b.remaining_cents)
        for b in balances.client_balances(c)
    ]


def check_running_totals(c: sa.Connection) -> CheckOutcome:
    """The running per-client totals equal every line re-added (the full re-aggregation that
    live ticks no longer do; it runs off the hot path)."""
    running = store.client_allocated(c)
    lines = store.client_allocated_from_lines(c)
    bad = [
        f"{cid}: running total {running.get(cid, 0)} != lines {lines.get(cid, 0)}"
        for cid in sorted(set(running) | set(lines))
        if running.get(cid, 0) != lines.get(cid, 0)
    ]
    return CheckOutcome(
        not bad,
        "the running totals equal the lines" if not bad else "\n".join(bad[:MAX_DIFF_LINES]),
        {"clients": len(set(running) | set(lines)), "differences": len(bad)},
    )


def check_no_negative_balance(
    c: sa.Connection, balances: list[tuple[str, int, int, int]] | None = None
) -> CheckOutcome:
    balances = client_balances(c) if balances is None else balances
    negative = [b for b in balances if b[3] < 0]
    return CheckOutcome(
        not negative,
        "no client balance is negative" if not negative else "\n".join(
            f"{cid}: deposited {dep}, allocated {alloc}, balance {rem}"
            for cid, dep, alloc, rem in negative[:MAX_DIFF_LINES]
        ),
        {"clients": len(balances), "negative": len(negative)},
    )


def check_commission_basis_points(c: sa.Connection) -> CheckOutcome:
    r = s.commission_recipients
    rows = c.execute(
        sa.select(s.commission_versions.c.version_id, sa.func.sum(r.c.basis_points))
        .select_from(s.commission_versions.outerjoin(r))
        .group_by(s.commission_versions.c.version_id)
    ).all()
    bad = [(vid, int(total or 0)) for vid, total in rows if int(total or 0) != TOTAL_BASIS_POINTS]
    return CheckOutcome(
        not bad,
        "every commission version sums to exactly 10000 bp" if not bad else "; ".join(
            f"version {vid} sums to {total} bp" for vid, total in bad
        ),
        {"versions": len(rows), "wrong": len(bad)},
    )


_REPORT_WORDS = {
    "late": "late event", "revoked": "revoked cash-out", "changed": "changed cash-out",
    "moved": "moved cash-out", "skipped": "skipped fixed run",
}


def check_open_reports(c: sa.Connection, kind: str) -> CheckOutcome:
    """The reports of ``kind`` nobody acknowledged yet, with the ids, fiat and sats involved."""
    i, e = s.allocation_issues, s.allocation_events
    rows = c.execute(
        sa.select(i.c.issue_id, i.c.source_id, i.c.business_day, i.c.detail,
                  e.c.cash_out_id, e.c.fiat_cents, e.c.principal_sats)
        .select_from(i.outerjoin(e, e.c.source_id == i.c.source_id))
        .where(i.c.kind == kind, i.c.closed_at.is_(None))
        .order_by(i.c.issue_id)
    ).all()
    what = _REPORT_WORDS[kind]
    fiat = sum(abs(int(r.fiat_cents or 0)) for r in rows)
    sats = sum(abs(int(r.principal_sats or 0)) for r in rows)
    return CheckOutcome(
        not rows,
        f"no unacknowledged {what}" if not rows else "\n".join(
            f"issue {r.issue_id} ({r.business_day}): {r.detail}" for r in rows[:MAX_DIFF_LINES]
        ),
        {
            "reports": len(rows),
            "ids": ", ".join(sorted({r.cash_out_id or r.source_id for r in rows}))[:2000],
            "fiat_cents": fiat,
            "sats": sats,
        },
    )


# --------------------------------------------------------------------------- summaries
def range_summary(c: sa.Connection, first: date, last: date) -> dict[str, Any]:
    """Per-kind totals of the range's lines, and per-recipient totals for previews."""
    line = s.allocation_lines
    rows = c.execute(
        sa.select(
            line.c.kind,
            line.c.recipient_id,
            sa.func.count(),
            sa.func.sum(line.c.fiat_cents),
            sa.func.sum(line.c.sats),
        )
        .where(line.c.business_day.between(first, last))
        .group_by(line.c.kind, line.c.recipient_id)
    ).all()
    kinds: dict[str, dict[str, Any]] = {}
    for kind, recipient, count, fiat, sats in rows:
        entry = kinds.setdefault(kind, {"lines": 0, "fiat_cents": 0, "sats": 0, "recipients": {}})
        entry["lines"] += int(count)
        entry["fiat_cents"] += int(fiat or 0)
        entry["sats"] += int(sats or 0)
        if recipient is not None:
            entry["recipients"][recipient] = (int(fiat or 0), int(sats or 0))
    e = s.allocation_events
    fixed_inputs = c.execute(
        sa.select(e.c.business_day, e.c.inputs_json)
        .where(e.c.source_kind == "fixed", e.c.business_day.between(first, last))
        .order_by(e.c.business_day)
    ).all()
    return {
        "kinds": kinds,
        "fixed_runs": [(day, json.loads(raw)) for day, raw in fixed_inputs],
        "cash_outs": c.execute(
            sa.select(sa.func.count()).where(
                e.c.source_kind == "cash_out", e.c.business_day.between(first, last)
            )
        ).scalar_one(),
    }


def simulate_like_lines(result: AllocationResult) -> list[tuple[str, str, str | None, int, int]]:
    """(source_id, kind, recipient, fiat, sats) in processing order: the simulate CSV's content."""
    return [(x.source_id, x.kind, x.recipient_id, x.fiat_cents, x.sats) for x in result.lines()]


def ledger_lines_in_order(
    c: sa.Connection, first: date, last: date
) -> list[tuple[str, str, str | None, int, int]]:
    """The ledger's lines of a range in processing order, in :func:`simulate_like_lines` shape."""
    e, line = s.allocation_events, s.allocation_lines
    rows = c.execute(
        sa.select(line.c.source_id, line.c.kind, line.c.recipient_id, line.c.fiat_cents,
                  line.c.sats)
        .select_from(line.join(e, e.c.source_id == line.c.source_id))
        .where(e.c.business_day.between(first, last), line.c.compensates_line_id.is_(None))
        .order_by(e.c.seq, line.c.line_no)
    ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]
