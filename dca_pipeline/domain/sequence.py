"""The allocation sequence (business-rules §4a): what one run appends, and the exact replay.

Pure: no Dagster, no database. The ledger layer loads what is stored and what has landed, calls
:func:`plan_run`, and writes the planned events as they are; it decides nothing itself.

A run appends, in this order:

1. **compensations** — one per live allocation whose cash-out is now *revoked* (its latest
   landed version is no longer eligible under the rules stored with the allocation, or it is
   quarantined) or *changed* (still eligible, other fiat / crypto_atoms / commission / discount);
   each reverses its allocation line for line;
2. **late events** — due cash-outs (and fixed runs) that sort before the last event already in
   the sequence, re-allocations of changed cash-outs and re-eligible revoked ones included, in
   (event time, rank, id) order, computed *as of* the latest event time already allocated;
3. **in-order events** — due events after the last one, up to the end of the run's last day.

Every event is computed by the one engine (:mod:`dca_pipeline.domain.engine`) on a
:class:`~dca_pipeline.domain.engine.ClientBook` advanced to its as-of instant, so a cash-out that
arrives in order is allocated exactly as ``simulate`` allocates it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Literal

from dca_pipeline.domain.cash_out import (
    DISPENSE_NOT_CONFIRMED,
    HAS_ERROR,
    NO_CRYPTO,
    NO_FIAT,
    NOT_DISPENSED,
    OTHER_COIN,
    STATUS_NOT_ELIGIBLE,
    CashOut,
    ineligibility_reasons,
)
from dca_pipeline.domain.engine import (
    ClientBook,
    CommissionTimeline,
    EventAllocation,
    EventKey,
    _ReferenceRates,
    allocate_cash_out,
    allocate_fixed_run,
    no_rate_reason,
)
from dca_pipeline.domain.rules import BusinessRules

CASH_OUT_RANK = 0
FIXED_RANK = 1
CLIENT_KINDS = ("flow", "fixed")

#: The §2 predicate's own reasons (validation computes them with the rules in force today).
PREDICATE_REASONS = frozenset({
    NOT_DISPENSED, DISPENSE_NOT_CONFIRMED, HAS_ERROR, STATUS_NOT_ELIGIBLE, NO_FIAT, NO_CRYPTO,
    OTHER_COIN,
})

EventKind = Literal["cash_out", "fixed", "fixed_skipped", "compensation"]
ReportKind = Literal["late", "revoked", "changed", "moved", "skipped"]


def fixed_source_id(day: date) -> str:
    return f"fixed:{day.isoformat()}"


def allocation_event_id(cash_out_id: str, number: int) -> str:
    """The id of a cash-out's ``number``-th allocation: its own id first, then ``id~2`` …"""
    return cash_out_id if number == 1 else f"{cash_out_id}~{number}"


def compensation_event_id(event_id: str) -> str:
    return f"undo:{event_id}"


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class LandedCashOut:
    """The latest landed (validated) version of a Lamassu cash-out, eligible or not."""

    id: str
    event_time: datetime
    business_day: date
    eligible: bool  # under the rules in force now (validation)
    fiat_cents: int
    crypto_atoms: int
    principal_sats: int
    commission_sats: int
    commission_percentage: str | None
    discount: int | None
    status: str
    fiat_code: str
    crypto_code: str
    dispense: bool
    dispense_confirmed: bool
    has_error: bool
    ineligible_reason: str | None = None
    #: An open quarantine row for this id (e.g. the same id twice with different content).
    quarantined: bool = False
    revision: int | None = None

    @property
    def key(self) -> EventKey:
        return (self.event_time, CASH_OUT_RANK, self.id)

    def cash_out(self) -> CashOut:
        return CashOut(
            self.id, self.event_time, self.fiat_cents, self.crypto_atoms,
            self.principal_sats, self.commission_sats,
        )

    def ineligible_under(self, confirmed_only: bool, currency: str) -> str | None:
        """Why this version is not eligible under the given rules (§2), or None if it is."""
        if self.quarantined:
            return "quarantined"
        if self.fiat_code != currency:
            return f"fiat_code {self.fiat_code} is not {currency}"
        reason = ineligibility_reasons(
            status=[self.status],
            dispense=[self.dispense],
            dispense_confirmed=[self.dispense_confirmed],
            has_error=[self.has_error],
            fiat_cents=[self.fiat_cents],
            crypto_atoms=[self.crypto_atoms],
            crypto_code=[self.crypto_code],
            confirmed_only=confirmed_only,
        )[0]
        if (
            reason is None
            and not self.eligible
            and self.ineligible_reason
            and self.ineligible_reason not in PREDICATE_REASONS
        ):
            # Validation knows more than the §2 predicate (a quarantined duplicate): trust it.
            # Its predicate reasons are not trusted: they follow today's rules, not the stored.
            return self.ineligible_reason
        return reason


@dataclass(frozen=True)
class StoredLine:
    line_id: int
    line_no: int
    kind: str
    recipient_id: str | None
    wallet_id: str | None
    fiat_cents: int
    sats: int
    business_day: date


@dataclass(frozen=True)
class LiveAllocation:
    """A cash-out allocation in the sequence that no compensation has reversed yet."""

    event_id: str
    cash_out_id: str
    seq: int
    event_time: datetime
    business_day: date
    fiat_cents: int
    principal_sats: int
    commission_sats: int
    commission_percentage: str | None
    discount: int | None
    #: The rules stored with the allocation: an allocated cash-out is judged by them (§4a).
    confirmed_only: bool
    currency: str
    lines: tuple[StoredLine, ...] = ()

    @property
    def crypto_atoms(self) -> int:
        return self.principal_sats + self.commission_sats


@dataclass(frozen=True)
class SequenceEnd:
    """What the planner needs of the stored sequence (the ledger summarizes, never the planner)."""

    last_seq: int = 0
    #: The largest (event time, rank, id) of the cash-out allocations and fixed runs in it.
    last_key: EventKey | None = None
    #: The latest as-of instant in it (never behind the latest event time allocated).
    last_as_of: datetime | None = None
    #: cash_out_id → allocations it has had (names the next one), for the ids planned here.
    allocation_counts: Mapping[str, int] = field(default_factory=dict)
    #: Business days whose fixed run (allocated or skipped) is in the sequence.
    fixed_days: frozenset[date] = frozenset()


# --------------------------------------------------------------------------- outputs
@dataclass(frozen=True)
class PlannedEvent:
    seq: int
    event_id: str
    kind: EventKind
    cash_out_id: str | None
    event_time: datetime
    as_of: datetime
    business_day: date
    late: bool = False
    #: The engine's result (cash-out allocation or fixed run); None for skips/compensations.
    allocation: EventAllocation | None = None
    landed: LandedCashOut | None = None
    compensates: LiveAllocation | None = None
    #: Fixed runs: (rate, its source, the ids it used); skipped runs: None.
    rate: tuple[Fraction, str, tuple[str, ...]] | None = None
    reason: str | None = None

    @property
    def rank(self) -> int:
        return FIXED_RANK if self.kind in ("fixed", "fixed_skipped") else CASH_OUT_RANK

    def totals(self) -> tuple[int, int, int]:
        """(fiat, principal, commission) of the event; negated for a compensation."""
        if self.compensates is not None:
            c = self.compensates
            return -c.fiat_cents, -c.principal_sats, -c.commission_sats
        if self.landed is not None:
            x = self.landed
            return x.fiat_cents, x.principal_sats, x.commission_sats
        if self.allocation is not None:
            return self.allocation.total_fiat_cents, self.allocation.total_client_sats, 0
        return 0, 0, 0

    def line_tuples(self) -> list[tuple[str, str | None, int, int]]:
        """(kind, recipient_id, fiat, sats) in line_no order (wallets are the ledger's)."""
        if self.compensates is not None:
            return [(x.kind, x.recipient_id, -x.fiat_cents, -x.sats)
                    for x in self.compensates.lines]
        return self.allocation.line_tuples() if self.allocation is not None else []


@dataclass(frozen=True)
class Report:
    """Expected business worth an operator's eye (WARN check + one alert), never a stop."""

    kind: ReportKind
    source_id: str
    business_day: date
    detail: str
    fiat_cents: int = 0
    sats: int = 0
    cash_out_id: str | None = None


@dataclass
class RunPlan:
    events: list[PlannedEvent] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    #: One line naming the day to materialize first; when set, nothing may be written.
    refusal: str | None = None
    #: Eligible cash-outs of the run's days still younger than the settle time.
    pending: int = 0


# --------------------------------------------------------------------------- planning
def changed_fields(live: LiveAllocation, landed: LandedCashOut) -> list[str]:
    differences = []
    if landed.fiat_cents != live.fiat_cents:
        differences.append(f"fiat {live.fiat_cents} → {landed.fiat_cents}")
    if landed.crypto_atoms != live.crypto_atoms:
        differences.append(f"crypto_atoms {live.crypto_atoms} → {landed.crypto_atoms}")
    if (landed.principal_sats, landed.commission_sats) != (
        live.principal_sats, live.commission_sats
    ) or (
        live.commission_percentage is not None
        and (landed.commission_percentage, landed.discount)
        != (live.commission_percentage, live.discount)
    ):
        differences.append(
            f"commission {live.commission_percentage}/{live.discount} → "
            f"{landed.commission_percentage}/{landed.discount}"
        )
    return differences


def judge(
    allocation: LiveAllocation, version: LandedCashOut | None
) -> tuple[ReportKind, str] | None:
    """What §4a makes of a live allocation given its cash-out's latest landed version:
    revoked or changed (compensate it), moved (report only), or None (it stands as it is)."""
    if version is None:
        return "revoked", "no landed version any more"
    if reason := version.ineligible_under(allocation.confirmed_only, allocation.currency):
        return "revoked", f"no longer eligible: {reason}"
    if differences := changed_fields(allocation, version):
        return "changed", "; ".join(differences)
    if version.event_time != allocation.event_time:
        return "moved", "event time moved"
    return None


def _client_sats(lines: Sequence[StoredLine]) -> int:
    return sum(x.sats for x in lines if x.kind in CLIENT_KINDS)


def plan_run(
    *,
    end: SequenceEnd,
    live: Mapping[str, LiveAllocation],
    landed: Mapping[str, LandedCashOut],
    book: ClientBook,
    commission: CommissionTimeline,
    rules: BusinessRules,
    rate_history: Sequence[CashOut],
    first_day: date,
    last_day: date,
    start_day: date,
    cutoff: datetime,
) -> RunPlan:
    """What one run over [first_day, last_day] appends to the sequence (§4a), computed.

    ``live``: live allocations worth re-judging (at least those whose cash-out's landed version
    differs from them), by cash-out id. ``landed``: the latest landed version of every cash-out
    in ``live`` and of every eligible cash-out without a live allocation (from ``start_day``).
    ``book``: the clients as the whole stored sequence leaves them (mutated here). ``cutoff``:
    nothing later is due (now − settle time, bounded by what has landed). ``rate_history``: the
    eligible landed cash-outs the fixed runs' reference rates may use.
    """
    plan = RunPlan()
    seq = end.last_seq
    as_of = end.last_as_of
    counts = dict(end.allocation_counts)
    rates = _ReferenceRates(rate_history)

    def next_as_of(event_time: datetime) -> datetime:
        return event_time if as_of is None or event_time > as_of else as_of

    # 1. compensations (and moves, which change nothing)
    compensated: set[str] = set()
    for cash_out_id, allocation in sorted(live.items(), key=lambda kv: kv[1].seq):
        version = landed.get(cash_out_id)
        verdict = judge(allocation, version)
        if verdict is None or verdict[0] == "moved":
            if verdict is not None and version is not None:
                plan.reports.append(Report(
                    "moved", allocation.event_id, allocation.business_day,
                    f"cash-out {cash_out_id}: event time moved from "
                    f"{allocation.event_time.isoformat()} to {version.event_time.isoformat()}"
                    f" (business day {version.business_day}); the allocation stands",
                    allocation.fiat_cents, _client_sats(allocation.lines), cash_out_id,
                ))
            continue
        kind, why = verdict
        seq += 1
        when = next_as_of(allocation.event_time)
        as_of = when
        event = PlannedEvent(
            seq, compensation_event_id(allocation.event_id), "compensation", cash_out_id,
            allocation.event_time, when, allocation.business_day,
            compensates=allocation, reason=f"{kind}: {why}",
        )
        for line in allocation.lines:
            if line.kind in CLIENT_KINDS and line.recipient_id is not None:
                book.allocated[book.index[line.recipient_id]] -= line.fiat_cents
        plan.events.append(event)
        compensated.add(cash_out_id)
        plan.reports.append(Report(
            kind, event.event_id, allocation.business_day,
            f"cash-out {cash_out_id} {kind} ({why}): allocation {allocation.event_id} "
            f"(fiat {allocation.fiat_cents}, principal {allocation.principal_sats} sats) "
            "reversed by a compensating event",
            allocation.fiat_cents, _client_sats(allocation.lines), cash_out_id,
        ))

    # 2./3. candidates: eligible cash-outs without a live allocation, and missing fixed runs
    candidates: list[tuple[EventKey, LandedCashOut | date]] = []
    for cash_out_id, version in landed.items():
        if cash_out_id in live and cash_out_id not in compensated:
            continue
        if version.business_day < start_day or version.ineligible_under(
            rules.confirmed_only, rules.currency
        ):
            continue
        if version.event_time > cutoff:
            if first_day <= version.business_day <= last_day:
                plan.pending += 1
            continue
        candidates.append((version.key, version))
    day = start_day
    while day <= last_day:
        run_at = rules.fixed_run_at(day)
        if day not in end.fixed_days and run_at <= cutoff:
            candidates.append(((run_at, FIXED_RANK, fixed_source_id(day)), day))
        day += timedelta(days=1)
    candidates.sort(key=lambda c: c[0])

    last_key = end.last_key
    late = [c for c in candidates if last_key is not None and c[0] <= last_key]
    in_order = [c for c in candidates if last_key is None or c[0] > last_key]
    in_order = [c for c in in_order if _day_of(c[1]) <= last_day]
    before = [_day_of(c[1]) for c in in_order if _day_of(c[1]) < first_day]
    if before:
        plan.refusal = (
            f"{min(before)} has due events that are not allocated yet: materialize from "
            f"{min(before)} (allocation goes in order; nothing was written)"
        )
        plan.events, plan.reports = [], []
        return plan

    for (key, payload), is_late in [(c, True) for c in late] + [(c, False) for c in in_order]:
        seq += 1
        when = next_as_of(key[0])
        as_of = when
        book.advance_to(when)
        if isinstance(payload, LandedCashOut):
            number = counts.get(payload.id, 0) + 1
            counts[payload.id] = number
            allocation = allocate_cash_out(
                book, payload.cash_out(), commission.at(payload.event_time), payload.business_day
            )
            event_id = allocation_event_id(payload.id, number)
            event = PlannedEvent(
                seq, event_id, "cash_out", payload.id, payload.event_time, when,
                payload.business_day, late=is_late,
                allocation=_renamed(allocation, event_id), landed=payload,
            )
        else:
            run_at, source_id = key[0], key[2]
            found = rates.try_rate_at(run_at)
            fixed = allocate_fixed_run(
                book, source_id, payload, run_at, rules.max_daily_cents, lambda f=found: f
            )
            if fixed is None:
                event = PlannedEvent(
                    seq, source_id, "fixed_skipped", None, run_at, when, payload,
                    late=is_late, reason=no_rate_reason(run_at),
                )
                plan.reports.append(Report(
                    "skipped", source_id, payload,
                    f"fixed run of {payload} skipped: {no_rate_reason(run_at)}; fixed clients "
                    "get nothing for that day, everything else goes on",
                ))
            else:
                event = PlannedEvent(
                    seq, source_id, "fixed", None, run_at, when, payload, late=is_late,
                    allocation=fixed, rate=found,
                )
        plan.events.append(event)
        if is_late:
            fiat, _, _ = event.totals()
            plan.reports.append(Report(
                "late", event.event_id, event.business_day,
                f"{event.event_id} ({event.event_time.isoformat()}) arrived after a later "
                f"event was allocated: appended as event {seq}, computed as of "
                f"{when.isoformat()}",
                fiat, event.allocation.total_client_sats if event.allocation else 0,
                event.cash_out_id,
            ))
    return plan


def _day_of(payload: LandedCashOut | date) -> date:
    return payload.business_day if isinstance(payload, LandedCashOut) else payload


def _renamed(allocation: EventAllocation, event_id: str) -> EventAllocation:
    if allocation.source_id == event_id:
        return allocation
    return replace(allocation, source_id=event_id)


# --------------------------------------------------------------------------- replay
@dataclass(frozen=True)
class StoredEvent:
    """An event as stored, with the inputs a replay recomputes it from (§4a "Stored")."""

    seq: int
    event_id: str
    kind: EventKind
    cash_out_id: str | None
    event_time: datetime
    as_of: datetime
    business_day: date
    fiat_cents: int
    principal_sats: int
    commission_sats: int
    lines: tuple[StoredLine, ...]
    #: fixed runs: the stored rate and the stored system maximum
    rate: Fraction | None = None
    max_daily_cents: int | None = None
    #: compensations: the lines they reverse, in line_no order
    reversed_lines: tuple[StoredLine, ...] = ()


def replay(
    events: Sequence[StoredEvent], book: ClientBook, commission: CommissionTimeline,
) -> tuple[list[str], list[list[tuple[str, str | None, int, int]]]]:
    """Recompute every stored event from its stored inputs and the state before it.

    ``events``: consecutive events in sequence order; ``book``: the clients as the events before
    the first one left them (mutated). Returns (differences in words, recomputed lines per
    event as (kind, recipient_id, fiat, sats)). The book follows the STORED lines, so one
    tampered event is reported once, not again in every event after it.
    """
    diffs: list[str] = []
    recomputed: list[list[tuple[str, str | None, int, int]]] = []
    for ev in events:
        book.advance_to(ev.as_of)
        expected: list[tuple[str, str | None, int, int]]
        if ev.kind == "compensation":
            expected = [(x.kind, x.recipient_id, -x.fiat_cents, -x.sats)
                        for x in ev.reversed_lines]
        elif ev.kind == "fixed_skipped":
            expected = []
        elif ev.kind == "fixed":
            rate = ev.rate
            allocation = allocate_fixed_run(
                _Scratch.of(book), ev.event_id, ev.business_day, ev.event_time,
                ev.max_daily_cents or 0,
                lambda r=rate: None if r is None else (r, "stored", ()),
            )
            expected = allocation.line_tuples() if allocation is not None else []
        else:
            try:
                cash_out = CashOut(
                    ev.cash_out_id or ev.event_id, ev.event_time, ev.fiat_cents,
                    ev.principal_sats + ev.commission_sats, ev.principal_sats,
                    ev.commission_sats,
                )
            except ValueError as exc:
                diffs.append(f"event {ev.seq} {ev.event_id}: stored amounts are invalid ({exc})")
                recomputed.append([])
                _apply(book, ev.lines)
                continue
            allocation = allocate_cash_out(
                _Scratch.of(book), cash_out, commission.at(ev.event_time), ev.business_day
            )
            expected = allocation.line_tuples()
        stored = [(x.kind, x.recipient_id, x.fiat_cents, x.sats) for x in ev.lines]
        if stored != expected:
            diffs += _describe(ev, stored, expected)
        recomputed.append(expected)
        _apply(book, ev.lines)
    return diffs, recomputed


class _Scratch:
    """A throw-away copy of a book's allocations, so a recomputation never moves the book."""

    @staticmethod
    def of(book: ClientBook) -> ClientBook:
        copy = object.__new__(ClientBook)
        copy.__dict__.update(book.__dict__)
        copy.allocated = book.allocated.copy()
        return copy


def _apply(book: ClientBook, lines: Sequence[StoredLine]) -> None:
    for x in lines:
        if x.kind in CLIENT_KINDS and x.recipient_id in book.index:
            book.allocated[book.index[x.recipient_id]] += x.fiat_cents


def _describe(
    ev: StoredEvent,
    stored: Sequence[tuple[str, str | None, int, int]],
    expected: Sequence[tuple[str, str | None, int, int]],
) -> list[str]:
    out = []
    for i in range(max(len(stored), len(expected))):
        mine = stored[i] if i < len(stored) else None
        theirs = expected[i] if i < len(expected) else None
        if mine != theirs:
            out.append(
                f"event {ev.seq} {ev.event_id}: line {i + 1} ledger {_fmt(mine)} != "
                f"recomputed {_fmt(theirs)}"
            )
    return out


def _fmt(line: tuple[str, str | None, int, int] | None) -> str:
    if line is None:
        return "(none)"
    kind, recipient, fiat, sats = line
    return f"{kind} {recipient or '-'} fiat={fiat} sats={sats}"
