"""The event-ordered allocation engine (business-rules §4, §5, §6).

Source events — eligible cash-outs and the daily fixed runs — are processed one at a time in
the order (instant, cash-out before fixed run, id). Before each event the engine applies every
deposit confirmation and client mode/status change that is effective at or before its instant,
so the same engine serves live runs, backfills and the offline ``simulate`` audit.

State between runs is just "fiat allocated so far per client" plus the last processed event
(:class:`EngineState`); a client's remaining balance at any instant is derived from it and the
deposit list, never stored twice.

Hot loop: per cash-out the engine works on numpy int64 arrays indexed by client (clients kept in
``client_id`` order, so index order *is* the tie-break order). Whenever a product could exceed
63 bits it switches to exact Python ints for that split; both paths run the same arithmetic.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from itertools import accumulate
from typing import Literal

import numpy as np

from dca_pipeline.domain.apportion import (
    Int64Array,
    fits_int64,
    fits_int64_by_sum,
    largest_remainder,
    largest_remainder_np,
)
from dca_pipeline.domain.cash_out import CashOut
from dca_pipeline.domain.commission import CommissionVersion
from dca_pipeline.domain.rules import BusinessRules

Mode = Literal["flow", "fixed"]
Status = Literal["active", "paused"]
LineKind = Literal["flow", "fixed", "commission", "unallocated"]
SourceKind = Literal["cash_out", "fixed"]

#: Cash-outs sort before a fixed run at the same instant (§10).
_CASH_OUT_RANK = 0
_FIXED_RANK = 1
_REFERENCE_WINDOW = timedelta(hours=24)


class EngineError(ValueError):
    """Inputs the engine refuses: the allocation would not be well defined."""


class FixedRateUnavailable(EngineError):
    """A fixed run with clients to pay but no eligible cash-out ever before it (§5).

    :func:`allocate` does not raise it (such a run is skipped, :class:`SkippedFixedRun`); only
    :meth:`_ReferenceRates.rate_at` does, for callers that want a rate or an error.
    """


class OutOfOrderEvent(EngineError):
    """An event at or before the last event already allocated: history would change."""


@dataclass(frozen=True)
class ClientChange:
    """A client's settings from ``effective_at`` on (mode/status history, §4)."""

    client_id: str
    effective_at: datetime
    mode: Mode
    status: Status
    daily_limit_cents: int | None = None

    def __post_init__(self) -> None:
        if not self.client_id:
            raise EngineError("client_id is required")
        if self.effective_at.tzinfo is None:
            raise EngineError(
                f"client {self.client_id}: effective_at must be timezone-aware"
            )
        if self.mode not in ("flow", "fixed"):
            raise EngineError(f"client {self.client_id}: mode must be flow or fixed")
        if self.status not in ("active", "paused"):
            raise EngineError(
                f"client {self.client_id}: status must be active or paused"
            )
        if self.mode == "fixed" and (
            self.daily_limit_cents is None or self.daily_limit_cents <= 0
        ):
            raise EngineError(
                f"client {self.client_id}: a fixed client needs a positive limit"
            )


@dataclass(frozen=True)
class Deposit:
    """A confirmed deposit; it counts for events at or after ``confirmed_at``.

    ``correction``: a compensating entry for an earlier deposit (a confirmed deposit is never
    edited). Only a correction may be negative; a client whose corrected balance is at or
    below zero simply takes no part in later events.
    """

    deposit_id: str
    client_id: str
    amount_cents: int
    confirmed_at: datetime
    correction: bool = False

    def __post_init__(self) -> None:
        if self.correction and self.amount_cents == 0:
            raise EngineError(f"deposit {self.deposit_id}: a correction must not be zero")
        if not self.correction and self.amount_cents <= 0:
            raise EngineError(f"deposit {self.deposit_id}: amount must be positive")
        if self.confirmed_at.tzinfo is None:
            raise EngineError(
                f"deposit {self.deposit_id}: confirmed_at must be timezone-aware"
            )


@dataclass(frozen=True)
class AllocationLine:
    seq: int
    source_id: str
    kind: LineKind
    recipient_id: str | None
    fiat_cents: int
    sats: int


EventKey = tuple[datetime, int, str]


@dataclass(frozen=True)
class EventAllocation:
    """Everything one source event allocated, plus the inputs it used (for audit).

    Client shares are kept as arrays (indices into ``client_ids``) so that 10⁷ client×cash-out
    pairs don't turn into 10⁷ Python objects unless somebody asks for :meth:`lines`.
    """

    source_id: str
    source_kind: SourceKind
    event_time: datetime
    business_day: date
    client_ids: np.ndarray = field(repr=False)
    client_index: Int64Array = field(repr=False)
    client_fiat_cents: Int64Array = field(repr=False)
    client_sats: Int64Array = field(repr=False)
    unallocated_fiat_cents: int
    unallocated_sats: int
    commission: tuple[tuple[str, int], ...]
    inputs: Mapping[str, str]

    @property
    def key(self) -> EventKey:
        rank = _CASH_OUT_RANK if self.source_kind == "cash_out" else _FIXED_RANK
        return (self.event_time, rank, self.source_id)

    @property
    def total_fiat_cents(self) -> int:
        return int(self.client_fiat_cents.sum()) + self.unallocated_fiat_cents

    @property
    def total_client_sats(self) -> int:
        return int(self.client_sats.sum())

    @property
    def total_commission_sats(self) -> int:
        return sum(s for _, s in self.commission)

    def lines(self, first_seq: int) -> list[AllocationLine]:
        """Ledger lines in a fixed order: clients (by id), unallocated, commission (by id).

        A line exists only when it carries fiat or sats (§10).
        """
        return [
            AllocationLine(first_seq + i, self.source_id, kind, recipient, fiat, sats)
            for i, (kind, recipient, fiat, sats) in enumerate(self.line_tuples())
        ]

    def line_tuples(self) -> list[tuple[LineKind, str | None, int, int]]:
        """The lines of :meth:`lines` as plain (kind, recipient_id, fiat_cents, sats) tuples.

        The ledger writer needs 10⁵–10⁶ of them per day: no per-line objects, the zero-line
        filter done on the arrays.
        """
        kind: LineKind = "flow" if self.source_kind == "cash_out" else "fixed"
        fiat, sats = self.client_fiat_cents, self.client_sats
        keep = (fiat != 0) | (sats != 0)
        ids = self.client_ids[self.client_index[keep]].tolist()
        out: list[tuple[LineKind, str | None, int, int]] = [
            (kind, client_id, f, s)
            for client_id, f, s in zip(
                ids, fiat[keep].tolist(), sats[keep].tolist(), strict=True
            )
        ]
        if self.unallocated_fiat_cents or self.unallocated_sats:
            out.append(
                ("unallocated", None, self.unallocated_fiat_cents, self.unallocated_sats)
            )
        out += [
            ("commission", recipient_id, 0, s) for recipient_id, s in self.commission if s
        ]
        return out


@dataclass(frozen=True)
class SkippedFixedRun:
    """A fixed run with clients to pay but no reference rate (§5): no lines, nothing allocated.

    It is not retried: later events, days and payouts go on as if the run had paid nobody.
    """

    source_id: str
    business_day: date
    run_at: datetime
    reason: str


@dataclass(frozen=True)
class EngineState:
    """What the engine needs to continue after an earlier run: nothing else is carried."""

    allocated_cents: Mapping[str, int] = field(default_factory=dict)
    last_event: EventKey | None = None


@dataclass(frozen=True)
class AllocationResult:
    events: list[EventAllocation]
    state: EngineState
    #: Fixed runs skipped for want of a reference rate, in processing order (§5).
    skipped: list[SkippedFixedRun] = field(default_factory=list)

    def lines(self) -> Iterator[AllocationLine]:
        seq = 1
        for event in self.events:
            event_lines = event.lines(seq)
            seq += len(event_lines)
            yield from event_lines

    def balances(self, deposits: Sequence[Deposit]) -> dict[str, int]:
        """Remaining balance per client: every given deposit minus everything allocated."""
        totals: dict[str, int] = dict.fromkeys(self.state.allocated_cents, 0)
        for deposit in deposits:
            totals[deposit.client_id] = (
                totals.get(deposit.client_id, 0) + deposit.amount_cents
            )
        return {
            client_id: totals[client_id] - self.state.allocated_cents.get(client_id, 0)
            for client_id in sorted(totals)
        }


class _ReferenceRates:
    """Σ principal / Σ fiat over [run − 24 h, run), else the latest earlier cash-out (§5)."""

    def __init__(self, history: Sequence[CashOut]) -> None:
        ordered = sorted(history, key=lambda c: (c.event_time, c.id))
        self._ordered = ordered
        self._times = [c.event_time for c in ordered]
        self._principal = [0, *accumulate(c.principal_sats for c in ordered)]
        self._fiat = [0, *accumulate(c.fiat_cents for c in ordered)]

    def try_rate_at(
        self, run_at: datetime
    ) -> tuple[Fraction, str, tuple[str, ...]] | None:
        """(rate, its source description, ids of the cash-outs it used), or None if there
        was never an eligible cash-out before ``run_at``."""
        lo = bisect.bisect_left(self._times, run_at - _REFERENCE_WINDOW)
        hi = bisect.bisect_left(self._times, run_at)
        if hi > lo:
            principal = self._principal[hi] - self._principal[lo]
            fiat = self._fiat[hi] - self._fiat[lo]
            used = tuple(c.id for c in self._ordered[lo:hi])
            return Fraction(principal, fiat), f"window:{hi - lo}", used
        if hi > 0:
            latest = self._ordered[hi - 1]
            return (
                Fraction(latest.principal_sats, latest.fiat_cents),
                f"latest:{latest.id}",
                (latest.id,),
            )
        return None

    def rate_at(self, run_at: datetime, day: date) -> tuple[Fraction, str]:
        """:meth:`try_rate_at` without the ids; raises FixedRateUnavailable when there is none."""
        found = self.try_rate_at(run_at)
        if found is None:
            raise FixedRateUnavailable(
                f"fixed run {day.isoformat()}: {no_rate_reason(run_at)}"
            )
        return found[0], found[1]


def no_rate_reason(run_at: datetime) -> str:
    """Why a fixed run at ``run_at`` has no reference rate (§5), in one line."""
    return f"no reference rate: no eligible cash-out before {run_at.isoformat()}"


class _Clients:
    """Per-client arrays in client_id order, advanced through time by the change history."""

    def __init__(
        self,
        changes: Sequence[ClientChange],
        deposits: Sequence[Deposit],
        allocated: Mapping[str, int],
    ) -> None:
        ids = sorted({c.client_id for c in changes})
        unknown = {d.client_id for d in deposits} - set(ids)
        unknown |= set(allocated) - set(ids)
        if unknown:
            raise EngineError(
                f"deposits or allocations for unknown clients: {sorted(unknown)}"
            )
        self.ids = np.array(ids, dtype=object)
        self.index = {client_id: i for i, client_id in enumerate(ids)}
        n = len(ids)
        self.deposited = np.zeros(n, dtype=np.int64)
        self.allocated = np.array([allocated.get(i, 0) for i in ids], dtype=np.int64)
        self.flow_active = np.zeros(n, dtype=bool)
        self.fixed_active = np.zeros(n, dtype=bool)
        self.daily_limit = np.zeros(n, dtype=np.int64)
        self.all_index = np.arange(n, dtype=np.int64)
        self._changes = sorted(changes, key=lambda c: (c.effective_at, c.client_id))
        self._deposits = sorted(deposits, key=lambda d: (d.confirmed_at, d.deposit_id))
        self._next_change = 0
        self._next_deposit = 0

    def advance_to(self, instant: datetime) -> None:
        """Apply every change and deposit effective at or before ``instant``."""
        changes, deposits = self._changes, self._deposits
        while self._next_change < len(changes) and changes[
            self._next_change
        ].effective_at <= (instant):
            change = changes[self._next_change]
            i = self.index[change.client_id]
            active = change.status == "active"
            self.flow_active[i] = active and change.mode == "flow"
            self.fixed_active[i] = active and change.mode == "fixed"
            self.daily_limit[i] = change.daily_limit_cents or 0
            self._next_change += 1
        while self._next_deposit < len(deposits) and deposits[
            self._next_deposit
        ].confirmed_at <= (instant):
            deposit = deposits[self._next_deposit]
            self.deposited[self.index[deposit.client_id]] += deposit.amount_cents
            self._next_deposit += 1

    def remaining(self) -> Int64Array:
        # Allocations are capped at the remaining balance, so only a negative correction can
        # make this negative; every split selects clients with remaining > 0.
        return self.deposited - self.allocated


def _split_flow(
    fiat_cents: int, principal_sats: int, remaining: Int64Array, weight_sum: int | None = None
) -> tuple[Int64Array, int, Int64Array, int]:
    """§4 for one cash-out over the eligible clients' remaining balances.

    Returns (client fiat, unallocated fiat, client sats, unallocated sats).
    """
    if weight_sum is None:
        weight_sum = int(remaining.sum())
    if fiat_cents >= weight_sum:
        client_fiat = remaining.copy()
        unallocated_fiat = fiat_cents - weight_sum
    elif fits_int64_by_sum(fiat_cents, weight_sum) or fits_int64(
        fiat_cents, int(remaining.max()), weight_sum
    ):
        client_fiat = largest_remainder_np(fiat_cents, remaining)
        unallocated_fiat = 0
    else:
        client_fiat = np.array(
            largest_remainder(fiat_cents, remaining.tolist()), dtype=np.int64
        )
        unallocated_fiat = 0
    # Sats follow the fiat shares; the unallocated weight goes last so it loses every tie.
    weights = np.append(client_fiat, np.int64(unallocated_fiat))
    if fits_int64_by_sum(principal_sats, fiat_cents) or fits_int64(
        principal_sats, int(weights.max()), fiat_cents
    ):
        sats = largest_remainder_np(principal_sats, weights)
    else:
        sats = np.array(
            largest_remainder(principal_sats, weights.tolist()), dtype=np.int64
        )
    return client_fiat, unallocated_fiat, sats[:-1], int(sats[-1])


def allocate(
    *,
    cash_outs: Sequence[CashOut],
    fixed_days: Sequence[date],
    clients: Sequence[ClientChange],
    deposits: Sequence[Deposit],
    commission_versions: Sequence[CommissionVersion],
    rules: BusinessRules,
    rate_history: Sequence[CashOut] | None = None,
    state: EngineState | None = None,
) -> AllocationResult:
    """Allocate ``cash_outs`` and the fixed runs of ``fixed_days`` in contract order.

    ``rate_history``: eligible cash-outs the fixed reference rate may use (default: the
    cash-outs being allocated). ``state``: the result of the previous run; every event here must
    come strictly after its last event, so history is never rewritten.

    A fixed run with clients to pay and no reference rate (§5) is skipped: it produces no event
    and no lines, changes no balance, and is listed in ``AllocationResult.skipped``; everything
    after it goes on. A fixed run with nobody to pay needs no rate: an event without lines.
    """
    state = state or EngineState()
    ids = [c.id for c in cash_outs]
    if len(set(ids)) != len(ids):
        raise EngineError("the same cash-out id appears twice")
    if len(set(fixed_days)) != len(fixed_days):
        raise EngineError("the same fixed-run day appears twice")

    events: list[tuple[EventKey, CashOut | date]] = [
        ((c.event_time, _CASH_OUT_RANK, c.id), c) for c in cash_outs
    ]
    for day in fixed_days:
        run_at = rules.fixed_run_at(day)
        events.append(((run_at, _FIXED_RANK, f"fixed:{day.isoformat()}"), day))
    events.sort(key=lambda e: e[0])
    if events and state.last_event is not None and events[0][0] <= state.last_event:
        raise OutOfOrderEvent(
            f"event {events[0][0][2]} at {events[0][0][0].isoformat()} is not after the last "
            f"allocated event {state.last_event[2]}"
        )

    book = _Clients(clients, deposits, state.allocated_cents)
    rates = _ReferenceRates(cash_outs if rate_history is None else rate_history)
    versions = CommissionTimeline(commission_versions)
    out: list[EventAllocation] = []
    skipped: list[SkippedFixedRun] = []

    for key, payload in events:
        instant = key[0]
        book.advance_to(instant)
        if isinstance(payload, CashOut):
            out.append(
                allocate_cash_out(
                    book, payload, versions.at(instant), rules.business_day(instant)
                )
            )
            continue
        run_at = instant
        allocation = allocate_fixed_run(
            book, key[2], payload, run_at, rules.max_daily_cents,
            lambda run_at=run_at: rates.try_rate_at(run_at),
        )
        if allocation is None:
            # §5: skipped, not retried; nothing is allocated and the rest goes on.
            skipped.append(SkippedFixedRun(key[2], payload, run_at, no_rate_reason(run_at)))
        else:
            out.append(allocation)

    allocated = {
        str(cid): int(a)
        for cid, a in zip(book.ids.tolist(), book.allocated.tolist(), strict=True)
    }
    # A skipped fixed run is processed too: it is never run again by a later call.
    last = events[-1][0] if events else state.last_event
    return AllocationResult(
        events=out,
        state=EngineState(allocated_cents=allocated, last_event=last),
        skipped=skipped,
    )


class CommissionTimeline:
    """Commission versions by the instant they take effect: the one in force at a sale (§6)."""

    def __init__(self, versions: Sequence[CommissionVersion]) -> None:
        self._versions = sorted(versions, key=lambda v: v.effective_at)
        self._times = [v.effective_at for v in self._versions]

    def at(self, instant: datetime) -> CommissionVersion | None:
        i = bisect.bisect_right(self._times, instant) - 1
        return self._versions[i] if i >= 0 else None


_EMPTY_INDEX = np.zeros(0, dtype=np.int64)
RateLookup = Callable[[], "tuple[Fraction, str, tuple[str, ...]] | None"]


def allocate_cash_out(
    book: _Clients,
    cash_out: CashOut,
    version: CommissionVersion | None,
    business_day: date,
) -> EventAllocation:
    """§4 + §6 for one cash-out over the book as it stands (advanced to the as-of instant).

    The book's allocations grow by the client shares. ``version``: the commission version in
    force at the cash-out's own event time (None: no commission lines).
    """
    remaining = book.remaining()
    mask = book.flow_active & (remaining > 0)
    everyone = bool(mask.all())
    eligible = book.all_index if everyone else np.flatnonzero(mask)
    eligible_balance = 0
    if len(eligible):
        # Everyone eligible (the usual case): whole arrays, no fancy-index copies.
        balances = remaining if everyone else remaining[eligible]
        eligible_balance = int(balances.sum())
        client_fiat, unalloc_fiat, client_sats, unalloc_sats = _split_flow(
            cash_out.fiat_cents, cash_out.principal_sats, balances, eligible_balance
        )
        if everyone:
            book.allocated += client_fiat
        else:
            book.allocated[eligible] += client_fiat
    else:
        client_fiat = client_sats = _EMPTY_INDEX
        unalloc_fiat, unalloc_sats = cash_out.fiat_cents, cash_out.principal_sats
    commission: tuple[tuple[str, int], ...] = ()
    if version is not None:
        commission = tuple(
            (r.recipient_id, s) for r, s in version.split(cash_out.commission_sats)
        )
    return EventAllocation(
        source_id=cash_out.id,
        source_kind="cash_out",
        event_time=cash_out.event_time,
        business_day=business_day,
        client_ids=book.ids,
        client_index=eligible,
        client_fiat_cents=client_fiat,
        client_sats=client_sats,
        unallocated_fiat_cents=unalloc_fiat,
        unallocated_sats=unalloc_sats,
        commission=commission,
        inputs={
            "fiat_cents": str(cash_out.fiat_cents),
            "crypto_atoms": str(cash_out.crypto_atoms),
            "principal_sats": str(cash_out.principal_sats),
            "commission_sats": str(cash_out.commission_sats),
            "eligible_clients": str(len(eligible)),
            "eligible_balance_cents": str(eligible_balance),
            "commission_version": version.effective_at.isoformat() if version else "",
        },
    )


def allocate_fixed_run(
    book: _Clients,
    source_id: str,
    day: date,
    run_at: datetime,
    max_daily_cents: int,
    rate: RateLookup,
) -> EventAllocation | None:
    """§5 for the fixed run of ``day`` over the book as it stands (advanced to the as-of instant).

    ``rate`` is asked only when somebody is to be paid; None from it means no reference rate:
    the run is skipped (returns None) and the book is unchanged.
    """
    remaining = book.remaining()
    limits = np.minimum(book.daily_limit, max_daily_cents)
    eligible = np.flatnonzero(book.fixed_active & (remaining > 0))
    client_fiat = np.minimum(limits[eligible], remaining[eligible])
    inputs = {"run_at": run_at.isoformat()}
    client_sats = _EMPTY_INDEX
    if len(eligible):
        found = rate()
        if found is None:
            return None
        value, rate_source, used = found
        client_sats = np.array(
            [f * value.numerator // value.denominator for f in client_fiat.tolist()],
            dtype=np.int64,
        )
        book.allocated[eligible] += client_fiat
        inputs |= {
            "rate_sats_per_cent": f"{value.numerator}/{value.denominator}",
            "rate_source": rate_source,
        }
    return EventAllocation(
        source_id=source_id,
        source_kind="fixed",
        event_time=run_at,
        business_day=day,
        client_ids=book.ids,
        client_index=eligible,
        client_fiat_cents=client_fiat,
        client_sats=client_sats,
        unallocated_fiat_cents=0,
        unallocated_sats=0,
        commission=(),
        inputs=inputs,
    )


#: The per-client book the event functions work on (public name for the sequence module).
ClientBook = _Clients
