"""Allocating validated cash-outs into the ledger (plain Python, no Dagster).

The ONE engine (:func:`dca_pipeline.domain.engine.allocate`) does every split; this module only
loads its inputs from the ledger, writes what it returns, and — for days already allocated —
recomputes and compares, never rewrites.

How a business-day range is processed (:func:`allocate_range`), day by day, in order:

1. The events of day D are its eligible validated cash-outs plus its fixed run (at the
   configured local run time). An event is *due* once ``settle_minutes`` have passed since its
   instant: a younger cash-out can still change (``dispense_confirmed`` arrives late), so it waits
   for a later run, and so does every event after it.
2. Events already in the ledger are recomputed from the ledger state before D together with the
   due new events, and compared line by line with what the ledger holds. Any difference is a
   ``mismatch`` issue: nothing is written for D or any later day of the run.
3. An eligible cash-out that is not allocated but sorts before the last allocated event would
   need history to be rewritten: it is a ``late`` issue and is not allocated. An allocated cash-out
   that is no longer eligible (Lamassu marked it errored, …) is a ``revoked`` issue; its lines
   stand, and it is recomputed from the amounts the ledger recorded.
4. New events and their lines are written in ONE transaction per day, after re-checking that no
   other writer moved the ledger meanwhile.

Issues are rows in ``allocation_issues``; the blocking asset checks fail while one is open. An
issue closes when a later recomputation no longer finds it, or when an operator acknowledges it
(:func:`acknowledge_issue`); lines are never changed either way.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dca_pipeline.domain.cash_out import CashOut
from dca_pipeline.domain.commission import (
    TOTAL_BASIS_POINTS,
    CommissionRecipient,
    CommissionVersion,
)
from dca_pipeline.domain.engine import (
    AllocationResult,
    ClientChange,
    Deposit,
    EngineState,
    EventAllocation,
    EventKey,
    allocate,
)
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.sequence import last_seq

CASH_OUT_RANK = 0
FIXED_RANK = 1
CLIENT_KINDS = ("flow", "fixed")
#: How many differences a mismatch report spells out (the count is always complete).
MAX_DIFF_LINES = 20

#: (line_no, kind, recipient_id, wallet_id, fiat_cents, sats): what "the same line" means.
LineTuple = tuple[int, str, str | None, str | None, int, int]
#: (source_id, *LineTuple): a line as stored, in the order lines are written.
FullLine = tuple[str, int, str, str | None, str | None, int, int]


class AllocationConflict(RuntimeError):
    """Another writer changed the ledger while this run was computing: nothing was written."""


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class LedgerInputs:
    """Everything the engine needs besides cash-outs, as the ledger holds it now."""

    clients: list[ClientChange]
    deposits: list[Deposit]
    commission_versions: list[CommissionVersion]
    client_wallets: dict[str, str]
    #: commission version effective_at (ISO, as the engine records it) → recipient → wallet
    recipient_wallets: dict[str, dict[str, str]]
    version_ids: dict[str, int]


def fixed_source_id(day: date) -> str:
    return f"fixed:{day.isoformat()}"


def load_inputs(c: sa.Connection) -> LedgerInputs:
    settings = c.execute(
        sa.select(s.client_settings).order_by(
            s.client_settings.c.effective_at, s.client_settings.c.client_id
        )
    ).all()
    clients = [
        ClientChange(r.client_id, r.effective_at, r.mode, r.status, r.daily_limit_cents)
        for r in settings
    ]
    deposit_rows = c.execute(
        sa.select(s.deposits).where(s.deposits.c.status == "confirmed")
    ).all()
    deposits = [
        Deposit(
            r.deposit_id,
            r.client_id,
            r.amount_cents,
            r.confirmed_at,
            correction=r.kind == "correction",
        )
        for r in deposit_rows
    ]
    wallets = dict(c.execute(sa.select(s.clients.c.client_id, s.clients.c.wallet_id)).all())
    by_version: dict[int, list[Any]] = defaultdict(list)
    for r in c.execute(sa.select(s.commission_recipients)).all():
        by_version[r.version_id].append(r)
    versions: list[CommissionVersion] = []
    recipient_wallets: dict[str, dict[str, str]] = {}
    version_ids: dict[str, int] = {}
    for v in c.execute(sa.select(s.commission_versions)).all():
        recipients = tuple(
            CommissionRecipient(r.recipient_id, r.wallet_id, r.basis_points)
            for r in by_version[v.version_id]
        )
        # CommissionVersion refuses a split that is not exactly 10 000 bp: the run fails loudly.
        version = CommissionVersion(v.effective_at, recipients)
        versions.append(version)
        key = version.effective_at.isoformat()
        recipient_wallets[key] = {r.recipient_id: r.wallet_id for r in recipients}
        version_ids[key] = v.version_id
    return LedgerInputs(clients, deposits, versions, wallets, recipient_wallets, version_ids)


@dataclass(frozen=True)
class LedgerEvent:
    source_id: str
    source_kind: str
    event_time: datetime
    business_day: date
    fiat_cents: int
    principal_sats: int
    commission_sats: int

    @property
    def key(self) -> EventKey:
        rank = CASH_OUT_RANK if self.source_kind == "cash_out" else FIXED_RANK
        return (self.event_time, rank, self.source_id)


def _event_order(table: sa.Table) -> tuple[Any, ...]:
    return (table.c.event_time, table.c.event_rank, table.c.source_id)


def last_event_key(c: sa.Connection, before_day: date | None = None) -> EventKey | None:
    """The ledger's last allocated event (optionally: the last one before ``before_day``)."""
    e = s.allocation_events
    query = sa.select(e.c.event_time, e.c.event_rank, e.c.source_id)
    if before_day is not None:
        query = query.where(e.c.business_day < before_day)
    row = c.execute(query.order_by(*(col.desc() for col in _event_order(e))).limit(1)).first()
    return (row.event_time, row.event_rank, row.source_id) if row else None


def state_before(c: sa.Connection, day: date) -> EngineState:
    """The engine state before ``day``: fiat allocated per client, and the last event key."""
    line = s.allocation_lines
    rows = c.execute(
        sa.select(line.c.recipient_id, sa.func.sum(line.c.fiat_cents))
        .where(line.c.kind.in_(CLIENT_KINDS), line.c.business_day < day)
        .group_by(line.c.recipient_id)
    ).all()
    return EngineState(
        allocated_cents={cid: int(total) for cid, total in rows},
        last_event=last_event_key(c, before_day=day),
    )


def _ledger_events(c: sa.Connection, first: date, last: date) -> list[LedgerEvent]:
    e = s.allocation_events
    rows = c.execute(
        sa.select(
            e.c.source_id,
            e.c.source_kind,
            e.c.event_time,
            e.c.business_day,
            e.c.fiat_cents,
            e.c.principal_sats,
            e.c.commission_sats,
        )
        .where(e.c.business_day.between(first, last))
        .order_by(*_event_order(e))
    ).all()
    return [LedgerEvent(*r) for r in rows]


def _raw_rows(c: sa.Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Plain DB-API tuples: building 10⁵–10⁶ SQLAlchemy Row objects costs seconds."""
    if c.dialect.name != "sqlite":
        sql = sql.replace("?", "%s")
    cursor = c.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, tuple(params))
        return cursor.fetchall()
    finally:
        cursor.close()


def _day_param(c: sa.Connection, day: date) -> Any:
    return day.isoformat() if c.dialect.name == "sqlite" else day


def _ledger_lines(
    c: sa.Connection, first: date, last: date
) -> tuple[dict[date, list[FullLine]], dict[date, dict[str, int]]]:
    """Original lines per day in writing order (line_id), and compensating client fiat."""
    rows = _raw_rows(
        c,
        "SELECT source_id, line_no, kind, recipient_id, wallet_id, fiat_cents, sats, "
        "compensates_line_id, business_day FROM allocation_lines "
        "WHERE business_day BETWEEN ? AND ? ORDER BY line_id",
        (_day_param(c, first), _day_param(c, last)),
    )
    lines: dict[date, list[FullLine]] = defaultdict(list)
    compensation: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    days: dict[Any, date] = {}
    for r in rows:
        day = days.get(r[8])
        if day is None:
            day = days[r[8]] = r[8] if isinstance(r[8], date) else date.fromisoformat(r[8])
        if r[7] is not None:
            # A correction is a new line, not part of the recomputation: it only moves state.
            if r[2] in CLIENT_KINDS:
                compensation[day][r[3]] += r[5]
            continue
        lines[day].append(r[:7])
    return lines, compensation


@dataclass(frozen=True)
class ValidatedRow:
    cash_out: CashOut
    business_day: date
    validated_at: datetime


def _validated(c: sa.Connection, first: date, last: date) -> list[ValidatedRow]:
    """Eligible validated cash-outs of [first, last] (ineligible ones allocate nothing)."""
    v = s.validated_cash_outs
    rows = c.execute(
        sa.select(
            v.c.id,
            v.c.event_time,
            v.c.business_day,
            v.c.fiat_cents,
            v.c.crypto_atoms,
            v.c.principal_sats,
            v.c.commission_sats,
            v.c.validated_at,
        ).where(v.c.business_day.between(first, last), v.c.eligible.is_(True))
    ).all()
    return [
        ValidatedRow(
            CashOut(r.id, r.event_time, r.fiat_cents, r.crypto_atoms, r.principal_sats,
                    r.commission_sats),
            r.business_day,
            r.validated_at,
        )
        for r in rows
    ]


def _rate_fallback(c: sa.Connection, before_day: date) -> CashOut | None:
    """The latest eligible cash-out before ``before_day`` (§5's fallback reference rate)."""
    v = s.validated_cash_outs
    r = c.execute(
        sa.select(v)
        .where(v.c.eligible.is_(True), v.c.business_day < before_day)
        .order_by(v.c.event_time.desc(), v.c.id.desc())
        .limit(1)
    ).first()
    if r is None:
        return None
    return CashOut(r.id, r.event_time, r.fiat_cents, r.crypto_atoms, r.principal_sats,
                   r.commission_sats)


# --------------------------------------------------------------------------- outcome
@dataclass(frozen=True)
class Issue:
    source_id: str
    kind: str  # mismatch | late | revoked
    business_day: date
    detail: str


@dataclass
class DayOutcome:
    day: date
    events_verified: int = 0
    events_written: int = 0
    lines_written: int = 0
    pending: int = 0  # due later (younger than settle_minutes, or after one that is)
    skipped: bool = False  # an earlier day of the run differs: not processed
    #: Before the ledger's first allocated day: allocation started later, nothing to do.
    before_ledger: bool = False
    issues: list[Issue] = field(default_factory=list)

    @property
    def mismatches(self) -> list[Issue]:
        return [i for i in self.issues if i.kind == "mismatch"]


@dataclass
class RangeOutcome:
    first_day: date
    last_day: date
    days: list[DayOutcome] = field(default_factory=list)

    @property
    def events_written(self) -> int:
        return sum(d.events_written for d in self.days)

    @property
    def events_verified(self) -> int:
        return sum(d.events_verified for d in self.days)

    @property
    def lines_written(self) -> int:
        return sum(d.lines_written for d in self.days)

    @property
    def pending(self) -> int:
        return sum(d.pending for d in self.days)

    @property
    def issues(self) -> list[Issue]:
        return [i for d in self.days for i in d.issues]

    @property
    def reproduced(self) -> bool:
        return not any(d.mismatches for d in self.days) and not any(d.skipped for d in self.days)


# --------------------------------------------------------------------------- lines
def _line_rows(event: EventAllocation, inputs: LedgerInputs) -> list[FullLine]:
    """The engine's lines for one event (its order and zero-line rule), with payout wallets."""
    version = event.inputs.get("commission_version", "")
    recipients = inputs.recipient_wallets.get(version, {})
    wallets = inputs.client_wallets
    source_id = event.source_id
    out: list[FullLine] = []
    for seq, (kind, recipient, fiat, sats) in enumerate(event.line_tuples(), start=1):
        if recipient is None:
            wallet = None
        elif kind == "commission":
            wallet = recipients[recipient]
        else:
            wallet = wallets[recipient]
        out.append((source_id, seq, kind, recipient, wallet, fiat, sats))
    return out


def _event_totals(event: EventAllocation, cash_out: CashOut | None) -> tuple[int, int, int]:
    if cash_out is not None:
        return cash_out.fiat_cents, cash_out.principal_sats, cash_out.commission_sats
    return event.total_fiat_cents, event.total_client_sats, 0


def _describe(line: LineTuple | None) -> str:
    if line is None:
        return "(none)"
    no, kind, recipient, wallet, fiat, sats = line
    return f"#{no} {kind} {recipient or '-'} wallet={wallet or '-'} fiat={fiat} sats={sats}"


def _diff_event(
    stored: LedgerEvent,
    stored_lines: Sequence[LineTuple],
    event: EventAllocation,
    totals: tuple[int, int, int],
    lines: Sequence[LineTuple],
) -> list[str]:
    diffs = []
    stored_totals = (stored.fiat_cents, stored.principal_sats, stored.commission_sats)
    if stored.event_time != event.event_time:
        diffs.append(
            f"{stored.source_id}: event time ledger {stored.event_time.isoformat()} != "
            f"recomputed {event.event_time.isoformat()}"
        )
    if stored_totals != totals:
        diffs.append(
            f"{stored.source_id}: totals (fiat, principal, commission) ledger {stored_totals} "
            f"!= recomputed {totals}"
        )
    for i in range(max(len(stored_lines), len(lines))):
        mine = stored_lines[i] if i < len(stored_lines) else None
        theirs = lines[i] if i < len(lines) else None
        if mine != theirs:
            diffs.append(
                f"{stored.source_id}: ledger {_describe(mine)} != recomputed {_describe(theirs)}"
            )
    return diffs


def _diff_day(
    stored_day: Sequence[FullLine],
    verified: Sequence[tuple[LedgerEvent, EventAllocation, tuple[int, int, int], list[FullLine]]],
) -> list[str]:
    by_source: dict[str, list[LineTuple]] = defaultdict(list)
    for line in stored_day:
        by_source[line[0]].append(line[1:])  # type: ignore[arg-type]
    diffs: list[str] = []
    for ledger_event, event, totals, lines in verified:
        diffs += _diff_event(
            ledger_event,
            by_source.pop(event.source_id, []),
            event,
            totals,
            [line[1:] for line in lines],  # type: ignore[misc]
        )
    for source_id, orphans in by_source.items():
        diffs += [f"{source_id}: ledger {_describe(x)} belongs to no event of this day"
                  for x in orphans]
    return diffs or ["lines are in a different order than they were allocated"]


# --------------------------------------------------------------------------- the range
def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _inputs_json(
    event: EventAllocation, cash_out: CashOut | None, rules: BusinessRules,
    inputs: LedgerInputs, validated_at: datetime | None,
) -> str:
    record: dict[str, Any] = dict(event.inputs)
    version = event.inputs.get("commission_version", "")
    if version:
        record["commission_version_id"] = inputs.version_ids.get(version)
    if validated_at is not None:
        record["validated_at"] = validated_at.isoformat()
    record["rules"] = {
        "timezone": rules.timezone,
        "currency": rules.currency,
        "fixed_run_time": rules.fixed_run_time.isoformat(),
        "max_daily_cents": rules.max_daily_cents,
        "confirmed_only": rules.confirmed_only,
    }
    if cash_out is None and event.source_kind == "fixed":
        record["clients"] = len(event.client_index)
    return json.dumps(record, sort_keys=True)


def allocate_range(
    engine: sa.Engine,
    rules: BusinessRules,
    first_day: date,
    last_day: date,
    *,
    now: datetime,
    settle_minutes: int,
    run_id: str | None = None,
) -> RangeOutcome:
    """Allocate (or recompute and compare) every business day of [first_day, last_day]."""
    if first_day > last_day:
        raise ValueError(f"empty range {first_day}..{last_day}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    cutoff = now - timedelta(minutes=settle_minutes)
    outcome = RangeOutcome(first_day, last_day)

    with engine.connect() as c:
        inputs = load_inputs(c)
        state = state_before(c, first_day)
        ledger_last = last_event_key(c)
        ledger_first_day = c.execute(
            sa.select(sa.func.min(s.allocation_events.c.business_day))
        ).scalar()
        stored_events = _ledger_events(c, first_day, last_day)
        stored_lines, compensation = _ledger_lines(c, first_day, last_day)
        window_start = first_day - timedelta(days=1)
        validated = _validated(c, window_start, last_day)
        fallback = _rate_fallback(c, window_start)
        # Ledger amounts of allocated cash-outs of the day before the range (rate window).
        previous_events = _ledger_events(c, window_start, window_start)

    events_by_day: dict[date, list[LedgerEvent]] = defaultdict(list)
    for ev in stored_events:
        events_by_day[ev.business_day].append(ev)
    eligible_by_day: dict[date, dict[str, ValidatedRow]] = defaultdict(dict)
    for row in validated:
        eligible_by_day[row.business_day][row.cash_out.id] = row

    def is_late(cash_out: CashOut) -> bool:
        key = (cash_out.event_time, CASH_OUT_RANK, cash_out.id)
        return ledger_last is not None and key < ledger_last

    # The reference rate uses every eligible cash-out, allocated or not (as `simulate` does),
    # and revoked ones at their ledger amounts: a row that changes inside a fixed run's window
    # after the run is allocated then shows up as a difference, never as a silent rewrite.
    rate_history: list[CashOut] = [fallback] if fallback else []
    rate_history += [row.cash_out for rows in eligible_by_day.values() for row in rows.values()]
    for ev in previous_events + stored_events:
        if ev.source_kind == "cash_out" and ev.source_id not in eligible_by_day[ev.business_day]:
            rate_history.append(_ledger_cash_out(ev))
    rate_history.sort(key=lambda co: (co.event_time, co.id))
    rate_times = [co.event_time for co in rate_history]

    def rate_history_for(day: date) -> list[CashOut]:
        # What the engine's §5 rate can use for this day's run: the 24 h window before it and
        # the latest cash-out before that (the fallback). Slicing keeps a long backfill linear.
        run_at = rules.fixed_run_at(day)
        lo = bisect.bisect_left(rate_times, run_at - timedelta(hours=24))
        hi = bisect.bisect_left(rate_times, run_at)
        return rate_history[max(lo - 1, 0) : hi]

    open_issues_by_day = _open_issue_keys(engine, first_day, last_day)

    stop = False
    for day in days_between(first_day, last_day):
        result = DayOutcome(day)
        outcome.days.append(result)
        if stop:
            result.skipped = True
            continue
        if ledger_first_day is not None and day < ledger_first_day:
            # Allocation began later (a go-live or a first backfill): these days are not late,
            # and allocating them now would be out of order.
            result.before_ledger = True
            continue
        stored = events_by_day.get(day, [])
        stored_ids = {ev.source_id for ev in stored}
        eligible = eligible_by_day.get(day, {})
        cash_outs: list[CashOut] = []
        validated_at: dict[str, datetime] = {}
        for ev in stored:
            if ev.source_kind != "cash_out":
                continue
            row = eligible.get(ev.source_id)
            if row is None:
                result.issues.append(
                    Issue(ev.source_id, "revoked", day,
                          f"cash-out {ev.source_id} was allocated but is no longer eligible "
                          "(errored, not dispensed or gone in Lamassu); its lines stand until "
                          "an operator decides")
                )
                cash_outs.append(_ledger_cash_out(ev))
            else:
                cash_outs.append(row.cash_out)
                validated_at[ev.source_id] = row.validated_at
        candidates: list[tuple[EventKey, CashOut | None]] = []
        for cash_out_id, row in eligible.items():
            if cash_out_id in stored_ids:
                continue
            if is_late(row.cash_out):
                result.issues.append(
                    Issue(cash_out_id, "late", day,
                          f"eligible cash-out {cash_out_id} at "
                          f"{row.cash_out.event_time.isoformat()} is before the last allocated "
                          f"event {ledger_last[2]} and was not allocated"  # type: ignore[index]
                          " (allocating it would rewrite history)")
                )
                continue
            candidates.append(((row.cash_out.event_time, CASH_OUT_RANK, cash_out_id),
                               row.cash_out))
            validated_at[cash_out_id] = row.validated_at
        fixed_id = fixed_source_id(day)
        fixed_days: list[date] = []
        if fixed_id in stored_ids:
            fixed_days.append(day)
        else:
            run_at = rules.fixed_run_at(day)
            key = (run_at, FIXED_RANK, fixed_id)
            if ledger_last is not None and key < ledger_last:
                result.issues.append(
                    Issue(fixed_id, "late", day,
                          f"the fixed run of {day} ({run_at.isoformat()}) is before the last "
                          f"allocated event {ledger_last[2]} and was not allocated")
                )
            else:
                candidates.append((key, None))
        # Due: events up to the first one younger than the settle time (order is kept).
        candidates.sort(key=lambda item: item[0])
        for position, (key, cash_out) in enumerate(candidates):
            if key[0] > cutoff:
                result.pending = sum(1 for _, co in candidates[position:] if co is not None)
                break
            if cash_out is None:
                fixed_days.append(day)
            else:
                cash_outs.append(cash_out)

        computed = allocate(
            cash_outs=cash_outs,
            fixed_days=fixed_days,
            clients=inputs.clients,
            deposits=inputs.deposits,
            commission_versions=inputs.commission_versions,
            rules=rules,
            rate_history=rate_history_for(day) if fixed_days else [],
            state=state,
        )
        by_id = {co.id: co for co in cash_outs}
        new_events: list[tuple[EventAllocation, list[FullLine]]] = []
        stored_by_id = {ev.source_id: ev for ev in stored}
        recomputed: list[FullLine] = []
        totals_differ = False
        verified: list[tuple[LedgerEvent, EventAllocation, tuple[int, int, int], list[FullLine]]]
        verified = []
        for event in computed.events:
            lines = _line_rows(event, inputs)
            ledger_event = stored_by_id.get(event.source_id)
            if ledger_event is None:
                new_events.append((event, lines))
                continue
            totals = _event_totals(event, by_id.get(event.source_id))
            verified.append((ledger_event, event, totals, lines))
            recomputed += lines
            totals_differ |= ledger_event.event_time != event.event_time or totals != (
                ledger_event.fiat_cents, ledger_event.principal_sats, ledger_event.commission_sats
            )
        result.events_verified = len(verified)
        stored_day = stored_lines.get(day, [])
        diffs: list[str] = []
        # Fast path: one list comparison; the readable per-event diff only when it differs.
        if totals_differ or stored_day != recomputed:
            diffs = _diff_day(stored_day, verified)
        if diffs:
            shown = diffs[:MAX_DIFF_LINES]
            more = len(diffs) - len(shown)
            detail = "\n".join(shown) + (f"\n… and {more} more" if more else "")
            result.issues.append(
                Issue(f"day:{day.isoformat()}", "mismatch", day,
                      f"recomputing {day} does not reproduce the ledger "
                      f"({len(diffs)} difference(s)):\n{detail}")
            )
            _write_day(engine, day, [], by_id, validated_at, rules, inputs,
                       expected_last=None, now=now, run_id=run_id, issues=result.issues,
                       open_issues=open_issues_by_day.get(day, {}))
            stop = True  # later days build on this one: compute nothing more
            continue
        if new_events:
            result.events_written = len(new_events)
            result.lines_written = sum(len(lines) for _, lines in new_events)
        _write_day(
            engine, day, new_events, by_id, validated_at, rules, inputs,
            expected_last=ledger_last, now=now, run_id=run_id, issues=result.issues,
            open_issues=open_issues_by_day.get(day, {}),
        )
        if new_events:
            ledger_last = computed.state.last_event
        allocated = dict(computed.state.allocated_cents)
        for client_id, cents in compensation.get(day, {}).items():
            allocated[client_id] = allocated.get(client_id, 0) + cents
        state = EngineState(allocated_cents=allocated, last_event=computed.state.last_event)
    return outcome


def _ledger_cash_out(ev: LedgerEvent) -> CashOut:
    return CashOut(
        id=ev.source_id,
        event_time=ev.event_time,
        fiat_cents=ev.fiat_cents,
        crypto_atoms=ev.principal_sats + ev.commission_sats,
        principal_sats=ev.principal_sats,
        commission_sats=ev.commission_sats,
    )


def _write_day(
    engine: sa.Engine,
    day: date,
    new_events: Sequence[tuple[EventAllocation, list[FullLine]]],
    cash_outs: Mapping[str, CashOut],
    validated_at: Mapping[str, datetime],
    rules: BusinessRules,
    inputs: LedgerInputs,
    *,
    expected_last: EventKey | None,
    now: datetime,
    run_id: str | None,
    issues: Sequence[Issue],
    open_issues: Mapping[tuple[str, str, str], int],
) -> None:
    """One transaction: the day's new events and lines, and its issues opened/closed."""
    found = {(x.source_id, x.kind, x.detail) for x in issues}
    if not new_events and found == set(open_issues):
        return  # nothing changes: no transaction at all
    event_rows = []
    for event, _ in new_events:
        cash_out = cash_outs.get(event.source_id) if event.source_kind == "cash_out" else None
        fiat, principal, commission = _event_totals(event, cash_out)
        event_rows.append(
            {
                "source_id": event.source_id,
                "source_kind": event.source_kind,
                "event_time": event.event_time,
                "event_rank": CASH_OUT_RANK if event.source_kind == "cash_out" else FIXED_RANK,
                "business_day": event.business_day,
                "fiat_cents": fiat,
                "principal_sats": principal,
                "commission_sats": commission,
                "inputs_json": _inputs_json(
                    event, cash_out, rules, inputs, validated_at.get(event.source_id)
                ),
                "allocated_at": now,
                "dagster_run_id": run_id,
                "as_of": event.event_time,
                "cash_out_id": event.source_id if event.source_kind == "cash_out" else None,
            }
        )
    with engine.begin() as c:
        if event_rows:
            if c.dialect.name == "postgresql":
                # One allocation writer at a time; released at commit.
                c.execute(sa.text("SELECT pg_advisory_xact_lock(7300)"))
            if last_event_key(c) != expected_last:
                raise AllocationConflict(
                    f"the ledger changed while {day} was being computed (another allocation "
                    "run?); nothing was written, run it again"
                )
            first_seq = last_seq(c) + 1
            for offset, row in enumerate(event_rows):
                row["seq"] = first_seq + offset
            c.execute(s.allocation_events.insert(), event_rows)
            _insert_lines(c, new_events, now)
        _sync_issues(c, issues, open_issues, now, run_id)


_LINE_COLUMNS = (
    "source_id", "line_no", "kind", "recipient_id", "wallet_id", "business_day",
    "fiat_cents", "sats", "created_at",
)


class _CsvField(dict):
    """Text → its CSV field (quoted only when needed, None → empty), computed once per text."""

    def __missing__(self, value: str | None) -> str:
        if value is None or not any(ch in value for ch in ',"\r\n'):
            field = "" if value is None else value
        else:
            field = '"' + value.replace('"', '""') + '"'
        self[value] = field
        return field


class _CsvStream:
    """A file-like object for ``copy_expert``: the CSV of the lines, some events per read.

    The rows ``csv.writer`` would write, formatted directly (ids quoted only when needed;
    money and line numbers are ints) and only produced when the driver asks for more.
    """

    def __init__(
        self, new_events: Sequence[tuple[EventAllocation, list[FullLine]]], created_at: str
    ) -> None:
        self._events = iter(new_events)
        self._at = created_at
        self._field = _CsvField()

    def read(self, size: int = -1) -> str:
        field, at = self._field, self._at
        parts: list[str] = []
        length = 0
        for event, lines in self._events:
            day = event.business_day.isoformat()
            text = "".join(
                [
                    f"{field[sid]},{no},{kind},{field[rec]},{field[wal]},{day},{fiat},{sats},{at}\n"
                    for sid, no, kind, rec, wal, fiat, sats in lines
                ]
            )
            parts.append(text)
            length += len(text)
            if length >= max(size, 1 << 16):
                break
        return "".join(parts)

    def readline(self, size: int = -1) -> str:  # part of the file protocol psycopg2 checks
        return self.read(size)


def _insert_lines(
    c: sa.Connection,
    new_events: Sequence[tuple[EventAllocation, list[FullLine]]],
    created_at: datetime,
) -> None:
    """Bulk insert through the driver (COPY on PostgreSQL): 10⁵ lines must take < 1 s."""
    columns = ", ".join(_LINE_COLUMNS)
    if c.dialect.name == "postgresql":
        cursor = c.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            # Streamed: the server checks and indexes the rows already sent (its FK check per
            # line is most of the cost) while this process formats the next events.
            cursor.copy_expert(
                f"COPY allocation_lines ({columns}) FROM STDIN WITH (FORMAT csv)",
                _CsvStream(new_events, created_at.isoformat()),
            )
        finally:
            cursor.close()
        return
    if c.dialect.name != "sqlite":
        c.execute(
            s.allocation_lines.insert(),
            [
                dict(zip(_LINE_COLUMNS, (*x[:5], event.business_day, x[5], x[6], created_at),
                         strict=True))
                for event, lines in new_events
                for x in lines
            ],
        )
        return
    # SQLite: bind the date/instant once per batch with the columns' own type processors.
    table = s.allocation_lines
    day_of = table.c.business_day.type.dialect_impl(c.dialect).bind_processor(c.dialect)
    at_of = table.c.created_at.type.dialect_impl(c.dialect).bind_processor(c.dialect)
    created = at_of(created_at) if at_of else created_at
    values: list[tuple[Any, ...]] = []
    for event, lines in new_events:
        day = day_of(event.business_day) if day_of else event.business_day
        values += [(*x[:5], day, x[5], x[6], created) for x in lines]
    if values:
        placeholders = ", ".join("?" for _ in _LINE_COLUMNS)
        c.exec_driver_sql(
            f"INSERT INTO allocation_lines ({columns}) VALUES ({placeholders})", values
        )


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


def _open_issue_keys(
    engine: sa.Engine, first: date, last: date
) -> dict[date, dict[tuple[str, str, str], int]]:
    i = s.allocation_issues
    with engine.connect() as c:
        rows = c.execute(
            sa.select(i.c.issue_id, i.c.source_id, i.c.kind, i.c.detail, i.c.business_day).where(
                i.c.business_day.between(first, last), i.c.closed_at.is_(None)
            )
        ).all()
    out: dict[date, dict[tuple[str, str, str], int]] = defaultdict(dict)
    for r in rows:
        out[r.business_day][(r.source_id, r.kind, r.detail)] = r.issue_id
    return out


def _sync_issues(
    c: sa.Connection,
    found: Sequence[Issue],
    open_keys: Mapping[tuple[str, str, str], int],
    now: datetime,
    run_id: str | None,
) -> None:
    """Open a day's newly found issues; close its open issues a recomputation no longer finds."""
    i = s.allocation_issues
    found_keys = {(x.source_id, x.kind, x.detail) for x in found}
    gone = [issue_id for key, issue_id in open_keys.items() if key not in found_keys]
    if gone:
        c.execute(
            i.update()
            .where(i.c.issue_id.in_(gone))
            .values(closed_at=now, resolution="no longer found by a recomputation")
        )
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


# --------------------------------------------------------------------------- live
def _live_first_day(
    c: sa.Connection,
    rules: BusinessRules,
    last: EventKey | None,
    today: date,
    start_day: date,
    recheck_days: int,
) -> date:
    first = today - timedelta(days=recheck_days)
    if last is not None:
        first = min(first, rules.business_day(last[0]))
    first = max(first, start_day) if last is not None else start_day
    ledger_first_day = c.execute(
        sa.select(sa.func.min(s.allocation_events.c.business_day))
    ).scalar()
    if ledger_first_day is not None:
        first = max(first, ledger_first_day)
    return first


def live_range(
    engine: sa.Engine,
    rules: BusinessRules,
    *,
    now: datetime,
    start_day: date,
    recheck_days: int = 2,
) -> tuple[date, date] | None:
    """The range a live allocation run covers now (what :func:`due_range` returns when something
    is due), whether or not anything is due; None before the first business day."""
    today = rules.business_day(now)
    with engine.connect() as c:
        first = _live_first_day(c, rules, last_event_key(c), today, start_day, recheck_days)
    return None if first > today else (first, today)


def due_range(
    engine: sa.Engine,
    rules: BusinessRules,
    *,
    now: datetime,
    settle_minutes: int,
    start_day: date,
    recheck_days: int = 2,
) -> tuple[date, date] | None:
    """The business days a live run must process now, or None when nothing is due.

    Due: an eligible, unallocated cash-out older than the settle time that sorts after the last
    allocated event; a fixed run whose time plus the settle time has passed; or, within the
    last ``recheck_days`` days (the ingest's overlap window, where Lamassu rows still change), a
    late or revoked cash-out not reported yet. The range starts at the earlier of the day of
    the last allocated event and ``today - recheck_days`` (so such changes are recompared and
    reported, and a cash-out that settles after midnight is allocated with its own day), and
    ends today.
    """
    cutoff = now - timedelta(minutes=settle_minutes)
    today = rules.business_day(now)
    v, e, i = s.validated_cash_outs, s.allocation_events, s.allocation_issues
    with engine.connect() as c:
        last = last_event_key(c)
        first = _live_first_day(c, rules, last, today, start_day, recheck_days)
        if first > today:
            return None
        unallocated = c.execute(
            sa.select(v.c.event_time, v.c.id)
            .select_from(v.outerjoin(e, e.c.source_id == v.c.id))
            .where(
                v.c.eligible.is_(True),
                e.c.source_id.is_(None),
                v.c.event_time <= cutoff,
                v.c.business_day.between(first, today),
            )
        ).all()
        reported = {
            source_id
            for source_id in c.execute(
                sa.select(i.c.source_id).where(i.c.business_day.between(first, today))
            ).scalars()
        }
        # Allocated cash-outs whose validated row is no longer eligible (or gone).
        revoked = c.execute(
            sa.select(e.c.source_id)
            .select_from(e.outerjoin(v, v.c.id == e.c.source_id))
            .where(
                e.c.source_kind == "cash_out",
                e.c.business_day.between(first, today),
                sa.or_(v.c.id.is_(None), v.c.eligible.is_(False)),
            )
        ).scalars().all()
    for t, cash_out_id in unallocated:
        if last is None or (t, CASH_OUT_RANK, cash_out_id) > last:
            return first, today  # new work
        if cash_out_id not in reported:
            return first, today  # late: to be reported
    if any(source_id not in reported for source_id in revoked):
        return first, today
    for day in days_between(first, today):
        run_at = rules.fixed_run_at(day)
        if run_at <= cutoff and (last is None or (run_at, FIXED_RANK, fixed_source_id(day)) > last):
            return first, today
    return None


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
    source_kind = "fixed" if kinds == "fixed" else "cash_out"
    line_kinds = {"flow": ("flow", "unallocated"), "fixed": ("fixed",),
                  "commission": ("commission",)}[kinds]
    events: dict[str, list[Any]] = {}
    for r in rows:
        if r.source_kind != source_kind:
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
    """At every event of ``days``, no client's allocations so far exceed its deposits by then.

    Between two deposit instants a client's deposits are constant and its allocations only
    grow, so checking just before each deposit instant (and at the end) checks every event:
    one aggregate query per deposit instant inside the range instead of a pass over every line.
    """
    if not days:
        return CheckOutcome(True, "nothing to check", {"events_checked": 0})
    first, last = min(days), max(days)
    e, line = s.allocation_events, s.allocation_lines
    span = c.execute(
        sa.select(sa.func.count(), sa.func.min(e.c.event_time), sa.func.max(e.c.event_time))
        .where(e.c.business_day.between(first, last))
    ).one()
    events, earliest, latest = span
    if not events:
        return CheckOutcome(True, "no event in the range", {"events_checked": 0})
    base = dict(state_before(c, first).allocated_cents)
    deposits = _deposit_timeline(c)
    compensated = c.execute(
        sa.select(sa.distinct(e.c.event_time))
        .select_from(line.join(e, e.c.source_id == line.c.source_id))
        .where(line.c.business_day.between(first, last), line.c.compensates_line_id.isnot(None))
    ).scalars()
    inside = {t for times, _ in deposits.values() for t in times if earliest < t <= latest}
    # A compensating line can lower an allocation: check just before and just after it too.
    inside |= {t for t in compensated} | {t + timedelta(microseconds=1) for t in compensated}
    boundaries: list[datetime | None] = [*sorted(inside), None]

    def deposited(client_id: str, before: datetime | None) -> int:
        times, totals = deposits.get(client_id, ([], []))
        i = bisect.bisect_left(times, before) if before else bisect.bisect_right(times, latest)
        return totals[i - 1] if i else 0

    bad: list[str] = []
    previous: dict[str, int] = {}
    for boundary in boundaries:
        query = (
            sa.select(line.c.recipient_id, sa.func.sum(line.c.fiat_cents))
            .select_from(line.join(e, e.c.source_id == line.c.source_id))
            .where(line.c.kind.in_(CLIENT_KINDS), line.c.business_day.between(first, last))
            .group_by(line.c.recipient_id)
        )
        if boundary is not None:
            query = query.where(e.c.event_time < boundary)
        sums = {cid: int(total) for cid, total in c.execute(query).all()}
        for client_id, total in sums.items():
            if total == previous.get(client_id, 0):
                continue  # nothing allocated to this client since the last boundary
            allocated = base.get(client_id, 0) + total
            limit = deposited(client_id, boundary)
            if allocated > limit:
                when = f"before {boundary.isoformat()}" if boundary else "by the end of the range"
                bad.append(
                    f"{client_id}: {allocated} allocated {when}, above the {limit} deposited"
                )
        previous = sums
    return CheckOutcome(
        not bad,
        "no client received more than its remaining balance" if not bad
        else "\n".join(bad[:MAX_DIFF_LINES]),
        {"events_checked": int(events), "violations": len(bad)},
    )


def client_balances(c: sa.Connection) -> list[tuple[str, int, int, int]]:
    """(client_id, confirmed deposits incl. corrections, allocated flow+fixed, remaining) now."""
    d, line = s.deposits, s.allocation_lines
    deposited = dict(
        c.execute(
            sa.select(d.c.client_id, sa.func.sum(d.c.amount_cents))
            .where(d.c.status == "confirmed")
            .group_by(d.c.client_id)
        ).all()
    )
    allocated = dict(
        c.execute(
            sa.select(line.c.recipient_id, sa.func.sum(line.c.fiat_cents))
            .where(line.c.kind.in_(CLIENT_KINDS))
            .group_by(line.c.recipient_id)
        ).all()
    )
    ids = sorted(set(c.execute(sa.select(s.clients.c.client_id)).scalars()))
    out = []
    for client_id in ids:
        dep, alloc = int(deposited.get(client_id) or 0), int(allocated.get(client_id) or 0)
        out.append((client_id, dep, alloc, dep - alloc))
    return out


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


def check_open_issues(c: sa.Connection, kinds: Sequence[str], what: str) -> CheckOutcome:
    rows = open_issues(c, kinds)
    return CheckOutcome(
        not rows,
        f"no open {what}" if not rows else "\n".join(
            f"issue {r.issue_id} ({r.kind}, {r.business_day}): {r.detail}"
            for r in rows[:MAX_DIFF_LINES]
        ),
        {"open_issues": len(rows)},
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
        .order_by(*_event_order(e), line.c.line_no)
    ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]
