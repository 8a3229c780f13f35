"""Every SQL statement on the payout tables (payouts, payout_lines, payout_attempts,
payout_lease, payout_control, payout_dry_runs, payout_released_lines, payout_wallet_debts).

Plain functions taking a :class:`sqlalchemy.Connection`: the caller owns the transaction (the
payout procedure in :mod:`dca_pipeline.payouts` decides what happens and when; this module only
reads and writes rows). No Dagster, no LNbits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dca_pipeline.ledger import schema as s

#: Longest ``last_error`` / ``outcome_detail`` stored.
DETAIL_MAX = 500


# --------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class UnpaidLine:
    """An allocation line as the payout planner sees it."""

    line_id: int
    kind: str
    recipient_id: str
    wallet_id: str
    fiat_cents: int
    sats: int


@dataclass(frozen=True)
class PayoutRow:
    payout_id: str
    wallet_id: str
    recipient_kind: str
    recipient_id: str
    sats: int
    fiat_cents: int
    memo: str
    status: str
    bolt11: str | None
    payment_hash: str | None
    attempts: int


@dataclass(frozen=True)
class AttemptRow:
    attempt_no: int
    payment_hash: str
    bolt11: str
    outcome: str | None
    pay_sent_at: datetime | None


# --------------------------------------------------------------------------- lines to pay
def _line_columns() -> tuple[sa.ColumnElement[Any], ...]:
    line = s.allocation_lines.c
    return (line.line_id, line.kind, line.recipient_id, line.wallet_id, line.fiat_cents, line.sats)


def _unpaid(rows: Iterable[sa.Row[Any]]) -> list[UnpaidLine]:
    return [
        UnpaidLine(r.line_id, r.kind, r.recipient_id, r.wallet_id, r.fiat_cents, r.sats)
        for r in rows
    ]


def unclaimed_lines(c: sa.Connection) -> list[UnpaidLine]:
    """Allocation lines not assigned to any payout, except ``unallocated`` (operator's sats)."""
    line = s.allocation_lines.c
    claimed = s.payout_lines.c
    return _unpaid(
        c.execute(
            sa.select(*_line_columns())
            .select_from(
                s.allocation_lines.outerjoin(s.payout_lines, claimed.line_id == line.line_id)
            )
            .where(
                claimed.line_id.is_(None), line.kind != "unallocated", line.wallet_id.is_not(None)
            )
            .order_by(line.line_id)
        )
    )


def lines_claimed_by(c: sa.Connection, payout_ids: Iterable[str]) -> list[UnpaidLine]:
    """The lines these payouts claim (what voiding them would release)."""
    ids = sorted(payout_ids)
    if not ids:
        return []
    line = s.allocation_lines.c
    return _unpaid(
        c.execute(
            sa.select(*_line_columns())
            .join(s.payout_lines, s.payout_lines.c.line_id == line.line_id)
            .where(s.payout_lines.c.payout_id.in_(ids))
            .order_by(line.line_id)
        )
    )


def payouts_with_compensated_lines(c: sa.Connection, statuses: Iterable[str]) -> set[str]:
    """Payouts in ``statuses`` with a claimed line that an UNCLAIMED line compensates (a
    compensation claimed by a payout was netted there already)."""
    claimed = s.payout_lines.alias("claimed")
    compensation = s.allocation_lines.alias("compensation")
    compensation_claim = s.payout_lines.alias("compensation_claim")
    p = s.payouts.c
    rows = c.execute(
        sa.select(claimed.c.payout_id)
        .distinct()
        .select_from(
            claimed.join(s.payouts, p.payout_id == claimed.c.payout_id)
            .join(compensation, compensation.c.compensates_line_id == claimed.c.line_id)
            .outerjoin(compensation_claim, compensation_claim.c.line_id == compensation.c.line_id)
        )
        .where(p.status.in_(list(statuses)), compensation_claim.c.line_id.is_(None))
    )
    return set(rows.scalars())


def invoice_keys_by_wallet(c: sa.Connection) -> dict[str, str]:
    """wallet_id → an invoice key of that wallet (SECRET: never log the values).

    Clients first; a commission recipient's newest version for wallets that are no client's.
    """
    keys: dict[str, str] = {}
    recipients = s.commission_recipients.c
    for row in c.execute(
        sa.select(recipients.wallet_id, recipients.invoice_key).order_by(recipients.version_id)
    ):
        keys[row.wallet_id] = row.invoice_key  # later versions win
    for row in c.execute(sa.select(s.clients.c.wallet_id, s.clients.c.invoice_key)):
        keys[row.wallet_id] = row.invoice_key
    return keys


# --------------------------------------------------------------------------- lease
def ensure_lease_row(c: sa.Connection, name: str) -> None:
    """The migration inserts it; recreate it if an operator deleted it."""
    exists = c.execute(
        sa.select(s.payout_lease.c.name).where(s.payout_lease.c.name == name)
    ).first()
    if exists is None:
        c.execute(s.payout_lease.insert().values(name=name))


def _take_lease(
    c: sa.Connection,
    name: str,
    condition: sa.ColumnElement[bool],
    holder: str,
    now: datetime,
    expires_at: datetime,
) -> bool:
    result = c.execute(
        s.payout_lease.update()
        .where(s.payout_lease.c.name == name, condition)
        .values(holder=holder, acquired_at=now, expires_at=expires_at)
    )
    return result.rowcount == 1


def take_free_lease(
    c: sa.Connection, name: str, holder: str, now: datetime, expires_at: datetime
) -> bool:
    """Take the lease if nobody holds it or it expired before ``now`` (one atomic UPDATE)."""
    lease = s.payout_lease.c
    condition = sa.or_(lease.holder.is_(None), lease.expires_at < now)
    return _take_lease(c, name, condition, holder, now, expires_at)


def take_lease_from(
    c: sa.Connection,
    name: str,
    previous_holder: str,
    holder: str,
    now: datetime,
    expires_at: datetime,
) -> bool:
    """Take the lease over from ``previous_holder`` if it still holds it (one atomic UPDATE)."""
    condition = s.payout_lease.c.holder == previous_holder
    return _take_lease(c, name, condition, holder, now, expires_at)


def lease_holder(c: sa.Connection, name: str) -> tuple[str | None, datetime | None]:
    """(holder, expires_at) of the lease; (None, None) without its row."""
    lease = s.payout_lease.c
    row = c.execute(sa.select(lease.holder, lease.expires_at).where(lease.name == name)).first()
    return (row.holder, row.expires_at) if row else (None, None)


def renew_lease(c: sa.Connection, name: str, holder: str, expires_at: datetime) -> bool:
    """Extend the lease if ``holder`` still holds it; False if it does not."""
    lease = s.payout_lease.c
    result = c.execute(
        s.payout_lease.update()
        .where(lease.name == name, lease.holder == holder)
        .values(expires_at=expires_at)
    )
    return result.rowcount == 1


def release_lease(c: sa.Connection, name: str, holder: str) -> None:
    lease = s.payout_lease.c
    c.execute(
        s.payout_lease.update()
        .where(lease.name == name, lease.holder == holder)
        .values(holder=None, acquired_at=None, expires_at=None)
    )


# --------------------------------------------------------------------------- pause switch
def pause_state(c: sa.Connection, name: str) -> tuple[bool, str | None]:
    """(paused, reason) of the ledger pause switch."""
    control = s.payout_control.c
    row = c.execute(sa.select(control.paused, control.reason).where(control.name == name)).first()
    return (bool(row.paused), row.reason) if row else (False, None)


def set_pause(c: sa.Connection, name: str, paused: bool, reason: str | None, now: datetime) -> None:
    """Flip the ledger pause switch (idempotent; recreates its row if missing)."""
    values = {"paused": paused, "reason": reason, "updated_at": now}
    updated = c.execute(
        s.payout_control.update().where(s.payout_control.c.name == name).values(values)
    )
    if updated.rowcount == 0:
        c.execute(s.payout_control.insert().values(name=name, **values))


# --------------------------------------------------------------------------- payouts: reads
def payouts_with_status(c: sa.Connection, statuses: Sequence[str]) -> list[PayoutRow]:
    p = s.payouts.c
    rows = c.execute(
        sa.select(*(p[name] for name in PayoutRow.__dataclass_fields__))
        .where(p.status.in_(tuple(statuses)))
        .order_by(p.payout_id)
    )
    return [PayoutRow(**row._mapping) for row in rows]


def wallets_with_status(c: sa.Connection, statuses: Sequence[str]) -> set[str]:
    """Wallets that have a payout in one of ``statuses``."""
    p = s.payouts.c
    return {
        row.wallet_id
        for row in c.execute(sa.select(p.wallet_id).where(p.status.in_(tuple(statuses))))
    }


def any_payout_with_status(c: sa.Connection, statuses: Sequence[str]) -> bool:
    p = s.payouts.c
    row = c.execute(sa.select(p.payout_id).where(p.status.in_(tuple(statuses))).limit(1)).first()
    return row is not None


def attempts_of(c: sa.Connection, payout_id: str) -> list[AttemptRow]:
    """Every invoice the payout ever had, oldest first."""
    a = s.payout_attempts.c
    return [
        AttemptRow(row.attempt_no, row.payment_hash, row.bolt11, row.outcome, row.pay_sent_at)
        for row in c.execute(
            sa.select(a.attempt_no, a.payment_hash, a.bolt11, a.outcome, a.pay_sent_at)
            .where(a.payout_id == payout_id)
            .order_by(a.attempt_no)
        )
    ]


def counts_by_status(c: sa.Connection) -> dict[str, tuple[int, int]]:
    """status -> (payouts, sats)."""
    p = s.payouts.c
    rows = c.execute(
        sa.select(p.status, sa.func.count(), sa.func.coalesce(sa.func.sum(p.sats), 0)).group_by(
            p.status
        )
    )
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


def count_paid_between(c: sa.Connection, start: datetime, end: datetime) -> int:
    """Payouts recorded paid (settled) in ``[start, end)``."""
    p = s.payouts.c
    return int(
        c.execute(
            sa.select(sa.func.count()).where(
                p.status == "paid", p.settled_at >= start, p.settled_at < end
            )
        ).scalar_one()
    )


def payout_ids_in_period(c: sa.Connection, start: datetime, end: datetime) -> set[str]:
    """Payouts settled paid in ``[start, end)``, or not paid and created in it."""
    p = s.payouts.c
    in_period = sa.or_(
        sa.and_(p.status == "paid", p.settled_at >= start, p.settled_at < end),
        sa.and_(p.status != "paid", p.created_at >= start, p.created_at < end),
    )
    return set(c.execute(sa.select(p.payout_id).where(in_period)).scalars())


def payout_summaries(c: sa.Connection, payout_ids: Iterable[str]) -> dict[str, sa.Row[Any]]:
    """payout id -> row (payout_id, wallet_id, status, sats, payment_hash) of those that exist."""
    p = s.payouts.c
    return {
        row.payout_id: row
        for row in c.execute(
            sa.select(p.payout_id, p.wallet_id, p.status, p.sats, p.payment_hash).where(
                p.payout_id.in_(sorted(payout_ids))
            )
        )
    }


def claimed_line_totals(c: sa.Connection, payout_ids: list[str]) -> dict[str, tuple[int, int]]:
    """payout id -> (lines it claims, their net sats)."""
    claimed, line = s.payout_lines.c, s.allocation_lines.c
    rows = c.execute(
        sa.select(claimed.payout_id, sa.func.count(), sa.func.sum(line.sats))
        .join(s.allocation_lines, line.line_id == claimed.line_id)
        .where(claimed.payout_id.in_(payout_ids))
        .group_by(claimed.payout_id)
    )
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


def payout_listing(c: sa.Connection) -> list[tuple[str, str, int, str]]:
    """(recipient_id, recipient_kind, sats, status) of every payout, by recipient."""
    p = s.payouts.c
    rows = c.execute(
        sa.select(p.recipient_id, p.recipient_kind, p.sats, p.status).order_by(p.recipient_id)
    ).all()
    return [(r.recipient_id, r.recipient_kind, r.sats, r.status) for r in rows]


# --------------------------------------------------------------------------- payouts: writes
def insert_payout(
    c: sa.Connection,
    *,
    payout_id: str,
    wallet_id: str,
    recipient_kind: str,
    recipient_id: str,
    sats: int,
    fiat_cents: int,
    memo: str,
    line_ids: Sequence[int],
    created_at: datetime,
    run_id: str,
) -> None:
    """A new ``planned`` payout and the claim of its lines (a line is claimed at most once)."""
    c.execute(
        s.payouts.insert().values(
            payout_id=payout_id,
            wallet_id=wallet_id,
            recipient_kind=recipient_kind,
            recipient_id=recipient_id,
            sats=sats,
            fiat_cents=fiat_cents,
            memo=memo,
            status="planned",
            attempts=0,
            created_at=created_at,
            dagster_run_id=run_id,
        )
    )
    c.execute(
        s.payout_lines.insert(),
        [{"line_id": line_id, "payout_id": payout_id} for line_id in line_ids],
    )


def record_invoice(
    c: sa.Connection,
    payout_id: str,
    *,
    attempts_before: int,
    payment_hash: str,
    bolt11: str,
    now: datetime,
) -> bool:
    """Store a new invoice (attempt ``attempts_before + 1``) and mark the ``planned`` payout
    invoiced. False if the payout changed meanwhile (not planned, or another attempt count)."""
    c.execute(
        s.payout_attempts.insert().values(
            payout_id=payout_id,
            attempt_no=attempts_before + 1,
            payment_hash=payment_hash,
            bolt11=bolt11,
            created_at=now,
        )
    )
    p = s.payouts.c
    updated = c.execute(
        s.payouts.update()
        .where(p.payout_id == payout_id, p.attempts == attempts_before, p.status == "planned")
        .values(
            status="invoiced",
            bolt11=bolt11,
            payment_hash=payment_hash,
            attempts=attempts_before + 1,
            invoiced_at=now,
        )
    )
    return updated.rowcount == 1


def mark_attempt_sent(c: sa.Connection, payment_hash: str, now: datetime) -> bool:
    """Mark the invoice's pay request sent; True if this is its first one."""
    a = s.payout_attempts.c
    first = c.execute(
        s.payout_attempts.update()
        .where(a.payment_hash == payment_hash, a.pay_sent_at.is_(None))
        .values(pay_sent_at=now)
    ).rowcount
    return first == 1


def clear_attempt_sent(c: sa.Connection, payment_hash: str) -> None:
    c.execute(
        s.payout_attempts.update()
        .where(s.payout_attempts.c.payment_hash == payment_hash)
        .values(pay_sent_at=None)
    )


def mark_in_flight(c: sa.Connection, payout_id: str, payment_hash: str) -> bool:
    """An invoiced (or in-flight) payout with this invoice goes in flight; False if it changed."""
    p = s.payouts.c
    updated = c.execute(
        s.payouts.update()
        .where(
            p.payout_id == payout_id,
            p.payment_hash == payment_hash,
            p.status.in_(("invoiced", "in_flight")),
        )
        .values(status="in_flight")
    )
    return updated.rowcount == 1


def revert_in_flight(c: sa.Connection, payout_id: str, status: str) -> None:
    """An in-flight payout goes back to ``status``."""
    p = s.payouts.c
    c.execute(
        s.payouts.update()
        .where(p.payout_id == payout_id, p.status == "in_flight")
        .values(status=status)
    )


def set_invoice(
    c: sa.Connection,
    payout_id: str,
    *,
    status: str,
    bolt11: str,
    payment_hash: str,
    detail: str | None = None,
) -> None:
    """Point an unpaid payout at one of its invoices, with a new status (and error text)."""
    values: dict[str, object] = {"status": status, "bolt11": bolt11, "payment_hash": payment_hash}
    if detail is not None:
        values["last_error"] = detail[:DETAIL_MAX]
    p = s.payouts.c
    c.execute(s.payouts.update().where(p.payout_id == payout_id, p.status != "paid").values(values))


def set_unpaid_status(c: sa.Connection, payout_id: str, status: str, detail: str) -> None:
    """Set the status (and error text) of a payout that is not paid."""
    p = s.payouts.c
    c.execute(
        s.payouts.update()
        .where(p.payout_id == payout_id, p.status != "paid")
        .values(status=status, last_error=detail[:DETAIL_MAX])
    )


def mark_failed(c: sa.Connection, payout_id: str, detail: str) -> None:
    set_unpaid_status(c, payout_id, "failed", detail)


def set_error(c: sa.Connection, payout_id: str, detail: str) -> None:
    c.execute(
        s.payouts.update()
        .where(s.payouts.c.payout_id == payout_id)
        .values(last_error=detail[:DETAIL_MAX])
    )


def mark_paid(
    c: sa.Connection, payout_id: str, payment_hash: str, bolt11: str, now: datetime
) -> None:
    """The payout is paid by this invoice (and the invoice's attempt says so)."""
    p = s.payouts.c
    c.execute(
        s.payouts.update()
        .where(p.payout_id == payout_id, p.status != "paid")
        .values(
            status="paid",
            payment_hash=payment_hash,
            bolt11=bolt11,
            settled_at=now,
            last_error=None,
        )
    )
    c.execute(
        s.payout_attempts.update()
        .where(s.payout_attempts.c.payment_hash == payment_hash)
        .values(outcome="paid", outcome_at=now)
    )


def set_attempt_outcome(
    c: sa.Connection, payment_hash: str, outcome: str, detail: str, now: datetime
) -> None:
    c.execute(
        s.payout_attempts.update()
        .where(s.payout_attempts.c.payment_hash == payment_hash)
        .values(outcome=outcome, outcome_detail=detail[:DETAIL_MAX], outcome_at=now)
    )


def void_payout(
    c: sa.Connection, payout_id: str, from_status: str, reason: str, now: datetime
) -> list[int] | None:
    """Void a payout still in ``from_status``: its lines are released (recorded in
    ``payout_released_lines``) and its invoices marked void. Returns the released line ids, or
    None (nothing written) if the payout is no longer in ``from_status``."""
    p = s.payouts.c
    updated = c.execute(
        s.payouts.update()
        .where(p.payout_id == payout_id, p.status == from_status)
        .values(status="void", settled_at=now, last_error=reason)
    )
    if updated.rowcount != 1:
        return None
    line_ids = list(
        c.execute(
            sa.select(s.payout_lines.c.line_id).where(s.payout_lines.c.payout_id == payout_id)
        ).scalars()
    )
    if line_ids:
        c.execute(
            s.payout_released_lines.insert(),
            [{"payout_id": payout_id, "line_id": i, "released_at": now} for i in line_ids],
        )
    c.execute(s.payout_lines.delete().where(s.payout_lines.c.payout_id == payout_id))
    a = s.payout_attempts.c
    c.execute(
        s.payout_attempts.update()
        .where(a.payout_id == payout_id, sa.or_(a.outcome.is_(None), a.outcome != "dead"))
        .values(outcome="void", outcome_detail="payout voided", outcome_at=now)
    )
    return line_ids


def requeue_failed(c: sa.Connection, payout_id: str, note: str) -> bool:
    """A ``failed`` payout goes back to ``invoiced`` (it has an invoice) or ``planned``, with
    ``note`` appended to its error text. False if there is no failed payout with this id."""
    p = s.payouts.c
    updated = c.execute(
        s.payouts.update()
        .where(p.payout_id == payout_id, p.status == "failed")
        .values(
            status=sa.case((p.payment_hash.is_(None), "planned"), else_="invoiced"),
            last_error=sa.func.coalesce(p.last_error, "") + note,
        )
    )
    return updated.rowcount == 1


# --------------------------------------------------------------------------- wallet debts
def wallet_debt_sats(c: sa.Connection) -> dict[str, int]:
    """wallet id -> sats it owes, as recorded by the last payout run."""
    d = s.payout_wallet_debts.c
    return {row.wallet_id: row.owed_sats for row in c.execute(sa.select(d.wallet_id, d.owed_sats))}


def save_wallet_debt(
    c: sa.Connection,
    wallet_id: str,
    *,
    recipient_id: str,
    owed_sats: int,
    owed_fiat_cents: int,
    alerted_at: datetime,
    known: bool,
) -> None:
    """Insert (``known=False``, ``since`` = ``alerted_at``) or update the wallet's debt row."""
    values = {
        "recipient_id": recipient_id,
        "owed_sats": owed_sats,
        "owed_fiat_cents": owed_fiat_cents,
        "alerted_at": alerted_at,
    }
    if not known:
        c.execute(
            s.payout_wallet_debts.insert().values(wallet_id=wallet_id, since=alerted_at, **values)
        )
    else:
        c.execute(
            s.payout_wallet_debts.update()
            .where(s.payout_wallet_debts.c.wallet_id == wallet_id)
            .values(values)
        )


def delete_wallet_debts(c: sa.Connection, wallet_ids: Iterable[str]) -> None:
    c.execute(
        s.payout_wallet_debts.delete().where(
            s.payout_wallet_debts.c.wallet_id.in_(sorted(wallet_ids))
        )
    )


def wallet_debts(c: sa.Connection) -> list[tuple[str, str, int, int]]:
    """(wallet_id, recipient_id, owed_sats, owed_fiat_cents) by wallet."""
    d = s.payout_wallet_debts.c
    rows = c.execute(
        sa.select(d.wallet_id, d.recipient_id, d.owed_sats, d.owed_fiat_cents).order_by(d.wallet_id)
    )
    return [(r.wallet_id, r.recipient_id, int(r.owed_sats), int(r.owed_fiat_cents)) for r in rows]


# --------------------------------------------------------------------------- dry runs
def insert_dry_run_rows(c: sa.Connection, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        c.execute(s.payout_dry_runs.insert(), list(rows))


def latest_dry_run_rows(c: sa.Connection) -> list[tuple[str, str, int]]:
    """(recipient_id, recipient_kind, sats) of the newest dry-run plan, by recipient."""
    d = s.payout_dry_runs.c
    latest = c.execute(sa.select(d.plan_id).order_by(d.row_id.desc()).limit(1)).scalar_one_or_none()
    rows = c.execute(
        sa.select(d.recipient_id, d.recipient_kind, d.sats)
        .where(d.plan_id == latest)
        .order_by(d.recipient_id)
    ).all()
    return [(r.recipient_id, r.recipient_kind, r.sats) for r in rows]
