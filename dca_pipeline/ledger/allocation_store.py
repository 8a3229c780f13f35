"""The allocation store: loads what the §4a planner needs, and appends what it planned.

Plain SQLAlchemy, no Dagster. Nothing here decides what to allocate
(:mod:`dca_pipeline.domain.sequence` does); it reads the stored sequence and the landed
cash-outs, and writes planned events and their lines in sequence order, one writer at a time.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

import sqlalchemy as sa

from dca_pipeline.domain.cash_out import CashOut
from dca_pipeline.domain.commission import CommissionRecipient, CommissionVersion
from dca_pipeline.domain.engine import ClientBook, ClientChange, Deposit
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.domain.sequence import (
    CLIENT_KINDS,
    LandedCashOut,
    LiveAllocation,
    PlannedEvent,
    SequenceEnd,
    StoredEvent,
    StoredLine,
)
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.sequence import last_seq

#: A run writes its events in transactions of about this many lines (each a valid prefix).
LINES_PER_TRANSACTION = 250_000
_IN_CHUNK = 500


class AllocationConflict(RuntimeError):
    """Another writer appended to the sequence while this run was computing: nothing written."""


# --------------------------------------------------------------------------- admin inputs
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
        Deposit(r.deposit_id, r.client_id, r.amount_cents, r.confirmed_at,
                correction=r.kind == "correction")
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


def new_book(inputs: LedgerInputs, allocated: Mapping[str, int]) -> ClientBook:
    return ClientBook(inputs.clients, inputs.deposits, allocated)


# --------------------------------------------------------------------------- the sequence
_e = s.allocation_events
_l = s.allocation_lines
_v = s.validated_cash_outs


def _live_condition(e: sa.Table = _e) -> Any:
    """A cash-out allocation that no compensation has reversed."""
    k = _e.alias("k")
    return sa.and_(
        e.c.source_kind == "cash_out",
        ~sa.exists().where(k.c.compensates_source_id == e.c.source_id),
    )


def client_allocated(c: sa.Connection, *, below_seq: int | None = None) -> dict[str, int]:
    """Σ flow + fixed fiat per client over the sequence (or its events numbered below a seq).

    From the running totals (``client_allocated_totals``, kept by the database with every
    line), minus the lines from ``below_seq`` on: the cost follows the tail asked for, never
    the ledger's age.
    """
    totals = s.client_allocated_totals
    out = {cid: int(total) for cid, total in c.execute(
        sa.select(totals.c.client_id, totals.c.allocated_cents)
    ).all()}
    if below_seq is not None:
        # The tail's events by their seq index, then their lines by event: never a join that
        # a planner could drive from allocation_lines (a scan of the whole ledger).
        tail = c.execute(sa.select(_e.c.source_id).where(_e.c.seq >= below_seq)).scalars().all()
        for i in range(0, len(tail), _IN_CHUNK):
            for cid, total in c.execute(
                sa.select(_l.c.recipient_id, sa.func.sum(_l.c.fiat_cents))
                .where(_l.c.kind.in_(CLIENT_KINDS),
                       _l.c.source_id.in_(tail[i : i + _IN_CHUNK]))
                .group_by(_l.c.recipient_id)
            ).all():
                out[cid] = out.get(cid, 0) - int(total)
    return out


def client_fiat_of_events(c: sa.Connection, event_ids: Sequence[str]) -> dict[str, int]:
    """Σ flow + fixed fiat per client over the lines of these events (one aggregate a chunk)."""
    out: dict[str, int] = {}
    for i in range(0, len(event_ids), _IN_CHUNK):
        for cid, total in c.execute(
            sa.select(_l.c.recipient_id, sa.func.sum(_l.c.fiat_cents))
            .where(_l.c.kind.in_(CLIENT_KINDS), _l.c.source_id.in_(event_ids[i : i + _IN_CHUNK]))
            .group_by(_l.c.recipient_id)
        ).all():
            out[cid] = out.get(cid, 0) + int(total)
    return out


def client_allocated_from_lines(c: sa.Connection) -> dict[str, int]:
    """The same Σ re-added from every line: what the running totals must equal (off-path)."""
    rows = c.execute(
        sa.select(_l.c.recipient_id, sa.func.sum(_l.c.fiat_cents))
        .where(_l.c.kind.in_(CLIENT_KINDS)).group_by(_l.c.recipient_id)
    ).all()
    return {cid: int(total) for cid, total in rows}


def sequence_end(c: sa.Connection, days: tuple[date, date] | None) -> SequenceEnd:
    """The end of the stored sequence, and the fixed runs it holds for ``days`` (inclusive)."""
    top = c.execute(sa.select(sa.func.max(_e.c.seq), sa.func.max(_e.c.as_of))).one()
    if top[0] is None:
        return SequenceEnd()
    in_order = _e.c.source_kind != "compensation"
    latest = c.execute(sa.select(sa.func.max(_e.c.event_time)).where(in_order)).scalar()
    last_key = None
    if latest is not None:
        # Several events may share the latest instant: the key is the largest of them.
        keys = c.execute(
            sa.select(_e.c.event_rank, sa.func.coalesce(_e.c.cash_out_id, _e.c.source_id))
            .where(in_order, _e.c.event_time == latest)
        ).all()
        rank, key_id = max((int(r), str(i)) for r, i in keys)
        last_key = (latest, rank, key_id)
    fixed: frozenset[date] = frozenset()
    if days is not None:
        fixed = frozenset(
            c.execute(
                sa.select(_e.c.business_day).where(
                    _e.c.source_kind.in_(("fixed", "fixed_skipped")),
                    _e.c.business_day.between(*days),
                )
            ).scalars()
        )
    return SequenceEnd(int(top[0]), last_key, top[1], {}, fixed)


#: How far before the last append a tick still looks for changed rows: any ingest
#: transaction or clock skew shorter than this is covered (correctness never depends on it
#: being small; only the tick's cost does).
CHANGE_MARGIN = timedelta(hours=24)


@dataclass(frozen=True)
class Window:
    """What a tick must look at so its cost follows new work, not the ledger's age.

    ``changed_since``: validated rows (and quarantine rows) changed since then — every row that
    can make an allocated cash-out revoked, changed or moved, or a late cash-out due;
    ``after``: every cash-out after the end of the sequence (in-order candidates);
    ``days``: every allocation of the run's own days (re-running a day re-judges them all).
    None everywhere: look at everything (an empty sequence, or a caller that wants it).
    """

    changed_since: datetime | None = None
    after: datetime | None = None
    days: tuple[date, date] | None = None


def tick_window(c: sa.Connection, end: SequenceEnd, days: tuple[date, date]) -> Window:
    last_append = c.execute(sa.select(sa.func.max(_e.c.allocated_at))).scalar()
    if last_append is None or end.last_key is None:
        return Window()
    return Window(last_append - CHANGE_MARGIN, end.last_key[0] - CHANGE_MARGIN, days)


def allocation_counts(c: sa.Connection, cash_out_ids: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    ids = sorted(set(cash_out_ids))
    for i in range(0, len(ids), _IN_CHUNK):
        rows = c.execute(
            sa.select(_e.c.cash_out_id, sa.func.count())
            .where(_e.c.source_kind == "cash_out", _e.c.cash_out_id.in_(ids[i : i + _IN_CHUNK]))
            .group_by(_e.c.cash_out_id)
        ).all()
        out |= {cid: int(n) for cid, n in rows}
    return out


def _quarantined() -> Any:
    q = s.quarantine
    return sa.exists().where(
        q.c.source_table == "cash_out_txs", q.c.source_id == _v.c.id, q.c.resolved_at.is_(None)
    )


def _landed(row: Any) -> LandedCashOut:
    return LandedCashOut(
        id=row.id, event_time=row.event_time, business_day=row.business_day,
        eligible=bool(row.eligible), fiat_cents=row.fiat_cents, crypto_atoms=row.crypto_atoms,
        principal_sats=row.principal_sats, commission_sats=row.commission_sats,
        commission_percentage=row.commission_percentage, discount=row.discount,
        status=row.status, fiat_code=row.fiat_code, crypto_code=row.crypto_code,
        dispense=bool(row.dispense), dispense_confirmed=bool(row.dispense_confirmed),
        has_error=row.error is not None, ineligible_reason=row.ineligible_reason,
        quarantined=bool(row.quarantined), revision=row.revision,
    )


def _landed_columns() -> list[Any]:
    r = s.lamassu_raw_rows
    revision = (
        sa.select(r.c.revision)
        .where(r.c.source_table == "cash_out_txs", r.c.id == _v.c.id)
        .scalar_subquery()
    )
    return [*_v.c, _quarantined().label("quarantined"), revision.label("revision")]


def unallocated_eligible(
    c: sa.Connection, start_day: date, window: Window | None = None
) -> dict[str, LandedCashOut]:
    """Eligible landed cash-outs from ``start_day`` on that have no live allocation.

    With a ``window``: only those after the end of the sequence, validated (changed) recently,
    or on the run's days — the only ones that can be unallocated (an older one was allocated in
    order when it was due, or its change moved ``validated_at``).
    """
    live = _e.alias("live")
    has_live = sa.exists().where(live.c.cash_out_id == _v.c.id, _live_condition(live))
    where = [_v.c.eligible.is_(True), _v.c.business_day >= start_day, ~has_live]
    if window is None or window.changed_since is None:
        rows = c.execute(sa.select(*_landed_columns()).where(*where)).all()
        return {r.id: _landed(r) for r in rows}
    # Each condition on its own index (an OR of them would scan the table), then the rows.
    recent = [_v.c.validated_at >= window.changed_since, _v.c.event_time >= window.after]
    if window.days is not None:
        recent.append(_v.c.business_day.between(*window.days))
    ids: set[str] = set()
    for condition in recent:
        ids |= set(c.execute(sa.select(_v.c.id).where(condition)).scalars())
    wanted = sorted(ids)
    out: dict[str, LandedCashOut] = {}
    for i in range(0, len(wanted), _IN_CHUNK):
        rows = c.execute(sa.select(*_landed_columns()).where(
            *where, _v.c.id.in_(wanted[i : i + _IN_CHUNK]))).all()
        out |= {r.id: _landed(r) for r in rows}
    return out


def _changed_ids(c: sa.Connection, window: Window) -> list[str]:
    """Cash-out ids whose validated row or quarantine changed since the window, or that have an
    allocation on the run's days."""
    q = s.quarantine
    ids = set(c.execute(
        sa.select(_v.c.id).where(_v.c.validated_at >= window.changed_since)
    ).scalars())
    ids |= set(c.execute(
        sa.select(q.c.source_id).where(q.c.source_table == "cash_out_txs",
                                       q.c.last_seen_at >= window.changed_since)
    ).scalars())
    if window.days is not None:
        ids |= set(c.execute(
            sa.select(_e.c.cash_out_id).where(
                _e.c.source_kind == "cash_out", _e.c.business_day.between(*window.days)
            )
        ).scalars())
    return sorted(ids)


def differing_live_allocations(
    c: sa.Connection, window: Window | None = None
) -> tuple[dict[str, LiveAllocation], dict[str, LandedCashOut]]:
    """Live allocations whose cash-out's latest landed version is not what they allocated.

    Only those can be revoked, changed or moved (§4a); the rest need no look. With a
    ``window``: only the cash-outs that changed since it, or are allocated on its days.
    """
    if window is not None and window.changed_since is not None:
        ids = _changed_ids(c, window)
        live: dict[str, LiveAllocation] = {}
        landed: dict[str, LandedCashOut] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            part_live, part_landed = _differing(c, _e.c.cash_out_id.in_(ids[i : i + _IN_CHUNK]))
            live |= part_live
            landed |= part_landed
        return live, landed
    return _differing(c, sa.true())


def _differing(
    c: sa.Connection, restrict: Any
) -> tuple[dict[str, LiveAllocation], dict[str, LandedCashOut]]:
    e = _e
    differs = sa.or_(
        _v.c.id.is_(None),
        _v.c.eligible.is_(False),
        _v.c.fiat_cents != e.c.fiat_cents,
        _v.c.principal_sats != e.c.principal_sats,
        _v.c.commission_sats != e.c.commission_sats,
        _v.c.event_time != e.c.event_time,
        sa.and_(
            e.c.commission_percentage.is_not(None),
            sa.or_(
                _v.c.commission_percentage.is_distinct_from(e.c.commission_percentage),
                _v.c.discount.is_distinct_from(e.c.discount),
            ),
        ),
        _quarantined(),
    )
    rows = c.execute(
        sa.select(
            e.c.source_id.label("event_id"), e.c.cash_out_id.label("cash_out"), e.c.seq,
            e.c.event_time.label("allocated_time"), e.c.business_day.label("allocated_day"),
            e.c.fiat_cents.label("a_fiat"), e.c.principal_sats.label("a_principal"),
            e.c.commission_sats.label("a_commission"),
            e.c.commission_percentage.label("a_pct"), e.c.discount.label("a_discount"),
            e.c.inputs_json, *_landed_columns(),
        )
        .select_from(e.outerjoin(_v, _v.c.id == e.c.cash_out_id))
        .where(_live_condition(e), differs, restrict)
    ).all()
    live: dict[str, LiveAllocation] = {}
    landed: dict[str, LandedCashOut] = {}
    rules_of: dict[str, dict[str, Any]] = {}
    for r in rows:
        stored_rules = json.loads(r.inputs_json).get("rules", {})
        rules_of[r.event_id] = stored_rules
        if r.id is not None:
            landed[r.cash_out] = _landed(r)
        live[r.cash_out] = LiveAllocation(
            event_id=r.event_id, cash_out_id=r.cash_out, seq=int(r.seq),
            event_time=r.allocated_time, business_day=r.allocated_day,
            fiat_cents=r.a_fiat, principal_sats=r.a_principal, commission_sats=r.a_commission,
            commission_percentage=r.a_pct, discount=r.a_discount,
            confirmed_only=bool(stored_rules.get("confirmed_only", False)),
            currency=str(stored_rules.get("currency", "GTQ")),
        )
    lines = lines_of(c, [x.event_id for x in live.values()])
    live = {
        cid: replace(x, lines=tuple(lines.get(x.event_id, ())))
        for cid, x in live.items()
    }
    return live, landed


def lines_of(c: sa.Connection, event_ids: Sequence[str]) -> dict[str, list[StoredLine]]:
    """The lines of these events, each event's in line_no order.

    Looked up by event id (the (source_id, line_no) index), a chunk at a time, as plain driver
    tuples: a join from a seq range may be planned as a scan of every line, and building
    10⁵–10⁶ SQLAlchemy rows costs seconds.
    """
    out: dict[str, list[StoredLine]] = defaultdict(list)
    ids = sorted(set(event_ids))
    days: dict[Any, date] = {}
    for i in range(0, len(ids), _IN_CHUNK):
        chunk = ids[i : i + _IN_CHUNK]
        rows = _raw_rows(
            c,
            "SELECT source_id, line_id, line_no, kind, recipient_id, wallet_id, fiat_cents, "
            f"sats, business_day FROM allocation_lines WHERE source_id IN "
            f"({', '.join('?' for _ in chunk)}) ORDER BY source_id, line_no",
            chunk,
        )
        for r in rows:
            day = days.get(r[8])
            if day is None:
                day = days[r[8]] = r[8] if isinstance(r[8], date) else date.fromisoformat(r[8])
            out[r[0]].append(StoredLine(r[1], r[2], r[3], r[4], r[5], r[6], r[7], day))
    return out


def rate_history(c: sa.Connection, first_run: datetime, last_run: datetime) -> list[CashOut]:
    """Eligible landed cash-outs a fixed run in [first_run, last_run] may take its rate from:
    the 24 h before each, and the latest one before that (§5)."""
    window = _v.c.event_time.between(first_run - timedelta(hours=24), last_run)
    columns = (_v.c.id, _v.c.event_time, _v.c.fiat_cents, _v.c.crypto_atoms,
               _v.c.principal_sats, _v.c.commission_sats)
    rows = list(c.execute(sa.select(*columns).where(_v.c.eligible.is_(True), window)).all())
    before = c.execute(
        sa.select(*columns)
        .where(_v.c.eligible.is_(True), _v.c.event_time < first_run - timedelta(hours=24))
        .order_by(_v.c.event_time.desc(), _v.c.id.desc())
        .limit(1)
    ).first()
    if before is not None:
        rows.append(before)
    return [CashOut(*r) for r in rows if r.fiat_cents > 0 and r.crypto_atoms > 0]


def first_event_day(c: sa.Connection) -> date | None:
    return c.execute(sa.select(sa.func.min(_e.c.business_day))).scalar()


def first_eligible_day(c: sa.Connection, start_day: date) -> date | None:
    return c.execute(
        sa.select(sa.func.min(_v.c.business_day)).where(
            _v.c.eligible.is_(True), _v.c.business_day >= start_day
        )
    ).scalar()


# --------------------------------------------------------------------------- replay inputs
def stored_events(c: sa.Connection, first: date, last: date) -> list[StoredEvent]:
    """Every event from the first one of [first, last] (by business day) to its last, in
    sequence order, with the inputs a replay needs."""
    span = c.execute(
        sa.select(sa.func.min(_e.c.seq), sa.func.max(_e.c.seq)).where(
            _e.c.business_day.between(first, last)
        )
    ).one()
    if span[0] is None:
        return []
    rows = c.execute(
        sa.select(_e).where(_e.c.seq.between(span[0], span[1])).order_by(_e.c.seq)
    ).all()
    lines = lines_of(c, [r.source_id for r in rows])
    reversed_ids = [r.compensates_source_id for r in rows if r.compensates_source_id]
    reversed_lines = lines_of(c, reversed_ids)
    out = []
    for r in rows:
        inputs = json.loads(r.inputs_json)
        rate = None
        if "rate_sats_per_cent" in inputs:
            num, den = inputs["rate_sats_per_cent"].split("/")
            rate = Fraction(int(num), int(den))
        out.append(StoredEvent(
            seq=int(r.seq), event_id=r.source_id, kind=r.source_kind, cash_out_id=r.cash_out_id,
            event_time=r.event_time, as_of=r.as_of, business_day=r.business_day,
            fiat_cents=r.fiat_cents, principal_sats=r.principal_sats,
            commission_sats=r.commission_sats, lines=tuple(lines.get(r.source_id, ())),
            rate=rate, max_daily_cents=inputs.get("rules", {}).get("max_daily_cents"),
            reversed_lines=tuple(reversed_lines.get(r.compensates_source_id or "", ())),
        ))
    return out


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


# --------------------------------------------------------------------------- writing
#: (source_id, line_no, kind, recipient_id, wallet_id, business_day, fiat, sats, compensates)
LineRow = tuple[str, int, str, "str | None", "str | None", date, int, int, "int | None"]


def line_rows(event: PlannedEvent, inputs: LedgerInputs) -> list[LineRow]:
    """The event's ledger lines with the wallets they are paid to."""
    if event.compensates is not None:
        return [
            (event.event_id, x.line_no, x.kind, x.recipient_id, x.wallet_id, x.business_day,
             -x.fiat_cents, -x.sats, x.line_id)
            for x in event.compensates.lines
        ]
    if event.allocation is None:
        return []
    version = event.allocation.inputs.get("commission_version", "")
    recipients = inputs.recipient_wallets.get(version, {})
    wallets = inputs.client_wallets
    out: list[LineRow] = []
    day = event.business_day
    for number, (kind, recipient, fiat, sats) in enumerate(event.allocation.line_tuples(), 1):
        if recipient is None:
            wallet = None
        elif kind == "commission":
            wallet = recipients[recipient]
        else:
            wallet = wallets[recipient]
        out.append((event.event_id, number, kind, recipient, wallet, day, fiat, sats, None))
    return out


def _rules_record(rules: BusinessRules) -> dict[str, Any]:
    return {
        "timezone": rules.timezone,
        "currency": rules.currency,
        "fixed_run_time": rules.fixed_run_time.isoformat(),
        "max_daily_cents": rules.max_daily_cents,
        "confirmed_only": rules.confirmed_only,
    }


def event_row(
    event: PlannedEvent, rules: BusinessRules, inputs: LedgerInputs, *, now: datetime,
    run_id: str | None, reversed_inputs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if event.allocation is not None:
        record |= dict(event.allocation.inputs)
    version = record.get("commission_version", "")
    if event.compensates is not None:
        record["compensates"] = event.compensates.event_id
        record["reason"] = event.reason
        if reversed_inputs and reversed_inputs.get("commission_version"):
            record["commission_version"] = reversed_inputs["commission_version"]
    if version:
        record["commission_version_id"] = inputs.version_ids.get(version)
    if event.kind == "fixed":
        record["clients"] = len(event.allocation.client_index) if event.allocation else 0
        if event.rate is not None:
            record["rate_cash_out_ids"] = list(event.rate[2])
    if event.kind == "fixed_skipped":
        record |= {"run_at": event.event_time.isoformat(), "reason": event.reason}
    if event.late:
        record["late"] = True
    record["as_of"] = event.as_of.isoformat()
    record["rules"] = _rules_record(rules)
    fiat, principal, commission = event.totals()
    landed = event.landed
    return {
        "source_id": event.event_id,
        "seq": event.seq,
        "source_kind": event.kind,
        "cash_out_id": event.cash_out_id,
        "event_time": event.event_time,
        "event_rank": event.rank,
        "as_of": event.as_of,
        "business_day": event.business_day,
        "fiat_cents": fiat,
        "principal_sats": principal,
        "commission_sats": commission,
        "commission_percentage": landed.commission_percentage if landed else None,
        "discount": landed.discount if landed else None,
        "landed_revision": landed.revision if landed else None,
        "compensates_source_id": event.compensates.event_id if event.compensates else None,
        "inputs_json": json.dumps(record, sort_keys=True),
        "allocated_at": now,
        "dagster_run_id": run_id,
    }


def _chunks(events: Sequence[PlannedEvent], lines: Sequence[list[LineRow]]) -> Iterator[range]:
    start, size = 0, 0
    for i, event_lines in enumerate(lines):
        size += len(event_lines) + 1
        if size >= LINES_PER_TRANSACTION:
            yield range(start, i + 1)
            start, size = i + 1, 0
    if start < len(events):
        yield range(start, len(events))


def append_events(
    engine: sa.Engine,
    events: Sequence[PlannedEvent],
    rules: BusinessRules,
    inputs: LedgerInputs,
    *,
    expected_last_seq: int,
    now: datetime,
    run_id: str | None,
) -> int:
    """Append planned events and their lines; returns the number of lines written.

    Each transaction appends a run of consecutive events after re-checking that the sequence
    still ends where the plan started (one writer at a time; PostgreSQL also takes a lock).
    """
    if not events:
        return 0
    lines = [line_rows(event, inputs) for event in events]
    reversed_ids = [e.compensates.event_id for e in events if e.compensates is not None]
    with engine.connect() as c:
        reversed_inputs = _inputs_of(c, reversed_ids)
    written = 0
    expected = expected_last_seq
    for chunk in _chunks(events, lines):
        rows = [
            event_row(events[i], rules, inputs, now=now, run_id=run_id,
                      reversed_inputs=reversed_inputs.get(
                          events[i].compensates.event_id if events[i].compensates else ""))
            for i in chunk
        ]
        with engine.begin() as c:
            if c.dialect.name == "postgresql":
                # One allocation writer at a time; released at commit.
                c.execute(sa.text("SELECT pg_advisory_xact_lock(7300)"))
            found = last_seq(c)
            if found != expected:
                raise AllocationConflict(
                    f"the allocation sequence ends at {found}, not {expected}: another "
                    "allocation run appended meanwhile; nothing more was written, run it again"
                )
            c.execute(s.allocation_events.insert(), rows)
            insert_lines(c, [line for i in chunk for line in lines[i]], now)
        written += sum(len(lines[i]) for i in chunk)
        expected = events[chunk[-1]].seq
    return written


def _inputs_of(c: sa.Connection, event_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    ids = sorted(set(event_ids))
    for i in range(0, len(ids), _IN_CHUNK):
        rows = c.execute(
            sa.select(_e.c.source_id, _e.c.inputs_json).where(
                _e.c.source_id.in_(ids[i : i + _IN_CHUNK])
            )
        ).all()
        out |= {sid: json.loads(raw) for sid, raw in rows}
    return out


# --------------------------------------------------------------------------- bulk lines
_LINE_COLUMNS = (
    "source_id", "line_no", "kind", "recipient_id", "wallet_id", "business_day",
    "fiat_cents", "sats", "compensates_line_id", "created_at",
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
    """A file-like object for ``copy_expert``: the CSV of the lines, produced as the driver
    reads (ids quoted only when needed; money and line numbers are ints)."""

    def __init__(self, lines: Sequence[LineRow], created_at: str) -> None:
        self._lines = lines
        self._next = 0
        self._at = created_at
        self._field = _CsvField()
        self._days: dict[date, str] = {}

    def read(self, size: int = -1) -> str:
        field, at, days = self._field, self._at, self._days
        end = min(len(self._lines), self._next + 2048)
        parts = []
        for sid, no, kind, rec, wal, day, fiat, sats, comp in self._lines[self._next : end]:
            d = days.get(day)
            if d is None:
                d = days[day] = day.isoformat()
            parts.append(
                f"{field[sid]},{no},{kind},{field[rec]},{field[wal]},{d},{fiat},{sats},"
                f"{'' if comp is None else comp},{at}\n"
            )
        self._next = end
        return "".join(parts)

    def readline(self, size: int = -1) -> str:  # part of the file protocol psycopg2 checks
        return self.read(size)


def insert_lines(c: sa.Connection, lines: Sequence[LineRow], created_at: datetime) -> None:
    """Bulk insert through the driver (COPY on PostgreSQL): 10⁵ lines must take < 1 s."""
    if not lines:
        return
    columns = ", ".join(_LINE_COLUMNS)
    if c.dialect.name == "postgresql":
        cursor = c.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.copy_expert(
                f"COPY allocation_lines ({columns}) FROM STDIN WITH (FORMAT csv)",
                _CsvStream(lines, created_at.isoformat()),
            )
        finally:
            cursor.close()
        return
    table = s.allocation_lines
    if c.dialect.name != "sqlite":
        c.execute(table.insert(), [dict(zip(_LINE_COLUMNS, (*x, created_at), strict=True))
                                   for x in lines])
        return
    # SQLite: bind the dates/instant once with the columns' own type processors.
    day_of = table.c.business_day.type.dialect_impl(c.dialect).bind_processor(c.dialect)
    at_of = table.c.created_at.type.dialect_impl(c.dialect).bind_processor(c.dialect)
    created = at_of(created_at) if at_of else created_at
    days: dict[date, Any] = {}
    values = []
    for x in lines:
        day = days.get(x[5])
        if day is None:
            day = days[x[5]] = day_of(x[5]) if day_of else x[5]
        values.append((*x[:5], day, x[6], x[7], x[8], created))
    placeholders = ", ".join("?" for _ in _LINE_COLUMNS)
    c.exec_driver_sql(f"INSERT INTO allocation_lines ({columns}) VALUES ({placeholders})", values)
