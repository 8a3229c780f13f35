"""The exactly-once payout procedure (business-rules §7), plain Python, no Dagster.

One run, under the writer lease (:mod:`lease`):

1. **Reconcile** every payout that is not settled, by asking LNbits first: each invoice it ever
   had (by payment hash, on the source wallet) and any payment carrying its id as
   ``external_id``. A payout LNbits shows as paid by us is recorded paid and never paid again.
2. **Plan and claim** in ONE transaction: every unclaimed allocation line, grouped by wallet,
   becomes one payout (deterministic id, see :func:`plan.payout_id_for`) and its lines are
   assigned to it (``payout_lines`` has the line as primary key: a line is paid at most once).
   A wallet that still has an unpaid payout gets no second one in the same run.
3. **Funding**: if the source wallet cannot cover everything due, pay nothing, alert, keep all
   pending (retried next run). Paying part of a batch would leave an arbitrary subset unpaid.
4. **Pay** each payout: create the invoice on the recipient's wallet, **store bolt11 + payment
   hash**, pay it from the source wallet, record the outcome. An invoice LNbits lost (restart,
   expiry) is replaced only after LNbits confirms it was not paid.

A crash anywhere leaves the ledger in a state step 1 resolves: before the invoice is stored
nothing can have been paid (we only pay stored invoices); after it, the hash is known.
Zero-sat payouts are never created. ``dry_run`` records the plan in ``payout_dry_runs``
without claiming anything; the pause switch (env or ledger) stops runs before they start.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from dca_pipeline.alerts import Alert, AlertDispatcher, AlertKind
from dca_pipeline.ledger import schema as s
from dca_pipeline.payouts.lease import DEFAULT_LEASE_SECONDS, LeaseLost, PayoutLease
from dca_pipeline.payouts.lnbits import (
    LNbitsAuthError,
    LNbitsClient,
    LNbitsError,
    LNbitsRequestError,
    LNbitsUnavailable,
    PaymentKind,
    PaymentStatus,
    PayOutcomeKind,
    msat_to_sats_exact,
    sats_to_msat,
)
from dca_pipeline.payouts.plan import (
    PlannedPayout,
    group_by_wallet,
    invoice_keys_by_wallet,
    memo_for,
    unpaid_lines,
)

_LOGGER = logging.getLogger(__name__)

PAUSE_ENV = "DCA_PAYOUTS_PAUSED"
CONTROL_NAME = "payouts"
OPEN_STATUSES = ("planned", "invoiced")
#: Fresh invoices one run may make for one payout when LNbits keeps losing them.
MAX_INVOICES_PER_RUN = 3

#: Called at each step with (step, payout_id); tests use it to kill the process mid-payout.
FaultHook = Callable[[str, str], None]
STEPS = ("before_invoice", "after_invoice", "invoice_stored", "after_pay", "after_record")


class RunStatus(enum.StrEnum):
    COMPLETED = "completed"  # nothing left that this run could pay
    PAUSED = "paused"
    BUSY = "busy"  # another writer holds the lease
    UNDERFUNDED = "underfunded"
    DRY_RUN = "dry_run"
    LNBITS_UNAVAILABLE = "lnbits_unavailable"
    LNBITS_ERROR = "lnbits_error"  # e.g. a wrong source key, an answer of an unknown shape
    LEASE_LOST = "lease_lost"


@dataclass(frozen=True)
class PayoutOptions:
    dry_run: bool = False
    currency: str = "GTQ"
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    invoice_expiry_s: int = 3600


@dataclass
class PayoutRunReport:
    run_id: str
    status: RunStatus = RunStatus.COMPLETED
    created: list[str] = field(default_factory=list)  # payout ids planned by this run
    reconciled_paid: list[str] = field(default_factory=list)  # found paid on LNbits
    paid: list[str] = field(default_factory=list)  # paid by this run
    failed: list[str] = field(default_factory=list)  # marked failed (permanent) by this run
    pending: list[str] = field(default_factory=list)  # still unpaid after this run
    deferred_wallets: list[str] = field(default_factory=list)
    due_sats: int = 0
    paid_sats: int = 0
    balance_msat: int | None = None
    lnbits_payments: int = 0  # successful pay calls made by this run
    dry_run_rows: int = 0
    detail: str = ""

    def summary(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "created": len(self.created),
            "reconciled_paid": len(self.reconciled_paid),
            "paid": len(self.paid),
            "paid_sats": self.paid_sats,
            "failed": len(self.failed),
            "pending": len(self.pending),
            "deferred_wallets": len(self.deferred_wallets),
            "due_sats": self.due_sats,
            "lnbits_payments": self.lnbits_payments,
            "dry_run_rows": self.dry_run_rows,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class _Payout:
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


class _StopRun(Exception):
    def __init__(self, status: RunStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- pause switch
def paused_by_env() -> bool:
    return os.environ.get(PAUSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def pause_state(engine: sa.Engine) -> tuple[bool, str | None]:
    """(paused, reason) from the ledger flag."""
    with engine.connect() as c:
        row = c.execute(
            sa.select(s.payout_control.c.paused, s.payout_control.c.reason).where(
                s.payout_control.c.name == CONTROL_NAME
            )
        ).first()
    return (bool(row.paused), row.reason) if row else (False, None)


def set_paused(engine: sa.Engine, paused: bool, reason: str | None = None) -> None:
    """Flip the ledger pause switch (idempotent)."""
    with engine.begin() as c:
        values = {"paused": paused, "reason": reason, "updated_at": _now()}
        updated = c.execute(
            s.payout_control.update().where(s.payout_control.c.name == CONTROL_NAME).values(values)
        )
        if updated.rowcount == 0:
            c.execute(s.payout_control.insert().values(name=CONTROL_NAME, **values))


def is_paused(engine: sa.Engine) -> tuple[bool, str]:
    if paused_by_env():
        return True, f"env {PAUSE_ENV} is set"
    paused, reason = pause_state(engine)
    return paused, f"ledger pause switch: {reason or 'no reason given'}"


# --------------------------------------------------------------------------- entry point
def run_payouts(
    engine: sa.Engine,
    lnbits: LNbitsClient,
    *,
    run_id: str,
    alerts: AlertDispatcher | None = None,
    options: PayoutOptions | None = None,
    hook: FaultHook | None = None,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
) -> PayoutRunReport:
    """One payout run. Never raises for LNbits trouble: the report's status says what happened."""
    options = options or PayoutOptions()
    log = log or _LOGGER
    report = PayoutRunReport(run_id=run_id)
    paused, why = is_paused(engine)
    if paused:
        report.status, report.detail = RunStatus.PAUSED, why
        log.warning("payouts are paused (%s): nothing planned, nothing paid", why)
        return report
    if options.dry_run:
        return _DryRun(engine, lnbits, run_id, options, log).run(report)
    lease = PayoutLease(engine, options.lease_seconds)
    if not lease.acquire():
        report.status, report.detail = RunStatus.BUSY, "another payout writer holds the lease"
        log.warning("another payout run holds the ledger lease: this run pays nothing")
        return report
    try:
        # Re-read under the lease: the switch may have been flipped while we waited.
        paused, why = is_paused(engine)
        if paused:
            report.status, report.detail = RunStatus.PAUSED, why
            return report
        _Run(engine, lnbits, lease, report, options, alerts, hook, log).run()
        return report
    finally:
        lease.release()


# --------------------------------------------------------------------------- ledger helpers
def _open_payouts(connection: sa.Connection) -> list[_Payout]:
    p = s.payouts.c
    rows = connection.execute(
        sa.select(*(p[name] for name in _Payout.__dataclass_fields__))
        .where(p.status.in_(OPEN_STATUSES))
        .order_by(p.payout_id)
    )
    return [_Payout(**row._mapping) for row in rows]


def _attempt_hashes(connection: sa.Connection, payout_id: str) -> list[tuple[str, str]]:
    a = s.payout_attempts.c
    return [
        (row.payment_hash, row.bolt11)
        for row in connection.execute(
            sa.select(a.payment_hash, a.bolt11)
            .where(a.payout_id == payout_id)
            .order_by(a.attempt_no)
        )
    ]


class _Run:
    def __init__(
        self,
        engine: sa.Engine,
        lnbits: LNbitsClient,
        lease: PayoutLease,
        report: PayoutRunReport,
        options: PayoutOptions,
        alerts: AlertDispatcher | None,
        hook: FaultHook | None,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.engine = engine
        self.lnbits = lnbits
        self.lease = lease
        self.report = report
        self.options = options
        self.alerts = alerts
        self.hook = hook or (lambda step, payout_id: None)
        self.log = log
        self.keys: dict[str, str] = {}

    # ----------------------------------------------------------------- flow
    def run(self) -> None:
        report = self.report
        try:
            with self.engine.connect() as c:
                before = _open_payouts(c)
            for payout in before:
                self._reconcile(payout)
            self._plan_and_claim()
            with self.engine.connect() as c:
                due = _open_payouts(c)
                self.keys = invoice_keys_by_wallet(c)
            report.due_sats = sum(p.sats for p in due)
            if due:
                self._check_funding(report.due_sats)
                for payout in due:
                    self._pay(payout)
        except _StopRun as stop:
            report.status, report.detail = stop.status, stop.detail
        except LNbitsUnavailable as exc:
            report.status, report.detail = RunStatus.LNBITS_UNAVAILABLE, str(exc)
            self._alert(
                AlertKind.PAYOUT_FAILED,
                "LNbits is unreachable: payouts are pending",
                f"The payout run stopped: {exc}. Unpaid payouts stay pending; the next run "
                "first asks LNbits which of them were paid, then pays the rest.",
                f"lnbits_unavailable:{_now():%Y-%m-%d}",
            )
        except LeaseLost as exc:
            report.status, report.detail = RunStatus.LEASE_LOST, str(exc)
        except LNbitsError as exc:  # not retryable: wrong source key, unexpected answer, ...
            report.status, report.detail = RunStatus.LNBITS_ERROR, str(exc)
            self._alert(
                AlertKind.PAYOUT_FAILED,
                "LNbits refused the payout run",
                f"The payout run stopped: {exc}. Unpaid payouts stay pending.",
                f"lnbits_error:{_now():%Y-%m-%d}",
            )
        with self.engine.connect() as c:
            report.pending = [p.payout_id for p in _open_payouts(c)]
        self.log.info("payout run %s: %s", report.run_id, report.summary())

    # ----------------------------------------------------------------- reconcile
    def _reconcile(self, payout: _Payout) -> bool:
        """Ask LNbits whether an unsettled payout was paid; record it if so."""
        with self.engine.connect() as c:
            attempts = _attempt_hashes(c, payout.payout_id)
        for payment_hash, bolt11 in reversed(attempts):
            status = self.lnbits.get_payment(payment_hash)
            if status.kind is PaymentKind.PAID and status.outgoing:
                self._mark_paid(payout, status, bolt11, reconciled=True)
                return True
        paid_rows = [
            row
            for row in self.lnbits.find_payments_by_external_id(payout.payout_id)
            if row.kind is PaymentKind.PAID and row.outgoing
        ]
        if len(paid_rows) > 1:
            self._alert(
                AlertKind.RECONCILIATION_MISMATCH,
                f"payout {payout.payout_id} was paid {len(paid_rows)} times",
                f"LNbits shows {len(paid_rows)} payments from the source wallet for payout "
                f"{payout.payout_id} ({payout.sats} sats to wallet {payout.wallet_id}).",
                f"double_payment:{payout.payout_id}",
            )
        if paid_rows:
            row = paid_rows[-1]
            self._mark_paid(payout, row, row.bolt11 or payout.bolt11 or "", reconciled=True)
            return True
        return False

    # ----------------------------------------------------------------- plan
    def _plan_and_claim(self) -> None:
        now = _now()
        with self.engine.begin() as c:
            open_wallets = {
                row.wallet_id
                for row in c.execute(
                    sa.select(s.payouts.c.wallet_id).where(s.payouts.c.status.in_(OPEN_STATUSES))
                )
            }
            for planned in group_by_wallet(unpaid_lines(c)):
                if planned.wallet_id in open_wallets:
                    # One payout per wallet per run: these lines wait for the next run.
                    self.report.deferred_wallets.append(planned.wallet_id)
                    continue
                self._insert_payout(c, planned, now)
                self.report.created.append(planned.payout_id)

    def _insert_payout(self, c: sa.Connection, planned: PlannedPayout, now: datetime) -> None:
        c.execute(
            s.payouts.insert().values(
                payout_id=planned.payout_id,
                wallet_id=planned.wallet_id,
                recipient_kind=planned.recipient_kind,
                recipient_id=planned.recipient_id,
                sats=planned.sats,
                fiat_cents=planned.fiat_cents,
                memo=memo_for(planned, self.options.currency),
                status="planned",
                attempts=0,
                created_at=now,
                dagster_run_id=self.report.run_id,
            )
        )
        c.execute(
            s.payout_lines.insert(),
            [{"line_id": line_id, "payout_id": planned.payout_id} for line_id in planned.line_ids],
        )

    # ----------------------------------------------------------------- funding
    def _check_funding(self, due_sats: int) -> None:
        balance_msat = self.lnbits.wallet_balance_msat()
        self.report.balance_msat = balance_msat
        if balance_msat >= sats_to_msat(due_sats):
            return
        self._alert_shortfall(due_sats, balance_msat)
        raise _StopRun(
            RunStatus.UNDERFUNDED,
            f"source wallet holds {balance_msat // 1000} sats, {due_sats} sats are due",
        )

    def _alert_shortfall(self, due_sats: int, balance_msat: int | None) -> None:
        held = "unknown" if balance_msat is None else str(balance_msat // 1000)
        self._alert(
            AlertKind.FUNDING_SHORTFALL,
            "Source wallet cannot cover the payouts",
            f"{due_sats} sats are due but the source wallet holds {held} sats. Nothing was "
            "paid; every payout stays pending and is retried on the next run.",
            f"funding_shortfall:{_now():%Y-%m-%d}",
            {"due_sats": str(due_sats), "available_sats": held},
        )

    # ----------------------------------------------------------------- pay
    def _pay(self, payout: _Payout) -> None:
        key = self.keys.get(payout.wallet_id)
        if key is None:
            self._record_error(payout.payout_id, "no invoice key for this wallet in the ledger")
            self._alert(
                AlertKind.PAYOUT_FAILED,
                f"payout {payout.payout_id}: wallet has no invoice key",
                f"No client or commission recipient in the ledger has wallet "
                f"{payout.wallet_id}; the payout stays pending until one does.",
                f"no_invoice_key:{payout.wallet_id}",
            )
            return
        bolt11 = payout.bolt11 if payout.status == "invoiced" else None
        payment_hash = payout.payment_hash if payout.status == "invoiced" else None
        attempts = payout.attempts
        for _ in range(MAX_INVOICES_PER_RUN):
            self.lease.ensure_held()  # never pay without holding the lease
            if bolt11 is None or payment_hash is None:
                made = self._new_invoice(payout, key, attempts)
                if made is None:
                    return
                bolt11, payment_hash = made
                attempts += 1
            outcome = self.lnbits.pay_invoice(bolt11, self._extra(payout), payout.payout_id)
            self.hook("after_pay", payout.payout_id)
            kind = outcome.kind
            if kind is PayOutcomeKind.PAID:
                if outcome.amount_msat != sats_to_msat(payout.sats):
                    self._alert_amount_mismatch(payout, outcome.amount_msat)
                self._mark_paid_by_this_run(payout, payment_hash, bolt11, outcome.amount_msat)
                return
            if kind in (PayOutcomeKind.ALREADY_PAID, PayOutcomeKind.INVOICE_DEAD):
                # Either way, LNbits' own row on the source wallet decides.
                row = self.lnbits.get_payment(payment_hash)
                if row.kind is PaymentKind.PAID and row.outgoing:
                    self._mark_paid(payout, row, bolt11, reconciled=True)
                    return
                if kind is PayOutcomeKind.ALREADY_PAID:
                    self._fail(payout, "invoice paid, but not by the source wallet")
                    return
                self._attempt_outcome(payment_hash, "dead", outcome.detail)
                bolt11 = payment_hash = None  # make a fresh invoice
                continue
            if kind is PayOutcomeKind.INSUFFICIENT_BALANCE:
                self._alert_shortfall(self.report.due_sats, None)
                raise _StopRun(RunStatus.UNDERFUNDED, "LNbits: insufficient balance")
            self._attempt_outcome(payment_hash, "failed", outcome.detail)
            self._fail(payout, f"LNbits refused the payment: {outcome.detail}")
            return
        self._fail(payout, f"LNbits lost {MAX_INVOICES_PER_RUN} invoices in a row")

    def _extra(self, payout: _Payout) -> dict[str, str]:
        return {"payout_id": payout.payout_id, "tag": "dca_payout", "run_id": self.report.run_id}

    def _new_invoice(self, payout: _Payout, key: str, attempts: int) -> tuple[str, str] | None:
        self.hook("before_invoice", payout.payout_id)
        try:
            invoice = self.lnbits.create_invoice(
                key,
                payout.sats,
                payout.memo,
                self._extra(payout),
                payout.payout_id,
                expiry_s=self.options.invoice_expiry_s,
            )
        except (LNbitsAuthError, LNbitsRequestError) as exc:
            self._fail(payout, f"cannot create the invoice: {exc}")
            return None
        self.hook("after_invoice", payout.payout_id)
        if invoice.wallet_id != payout.wallet_id:
            # The ledger's invoice key belongs to another wallet: paying would send the money
            # to the wrong person. The unpaid invoice is simply never paid.
            self._fail(payout, "the wallet's invoice key in the ledger belongs to another wallet")
            return None
        now = _now()
        with self.engine.begin() as c:
            c.execute(
                s.payout_attempts.insert().values(
                    payout_id=payout.payout_id,
                    attempt_no=attempts + 1,
                    payment_hash=invoice.payment_hash,
                    bolt11=invoice.bolt11,
                    created_at=now,
                )
            )
            # Optimistic check on top of the lease: nobody else stored an invoice meanwhile.
            updated = c.execute(
                s.payouts.update()
                .where(
                    s.payouts.c.payout_id == payout.payout_id,
                    s.payouts.c.attempts == attempts,
                    s.payouts.c.status.in_(OPEN_STATUSES),
                )
                .values(
                    status="invoiced",
                    bolt11=invoice.bolt11,
                    payment_hash=invoice.payment_hash,
                    attempts=attempts + 1,
                    invoiced_at=now,
                )
            )
            if updated.rowcount != 1:
                raise LeaseLost(f"payout {payout.payout_id} changed under us; stopping")
        self.hook("invoice_stored", payout.payout_id)
        return invoice.bolt11, invoice.payment_hash

    # ----------------------------------------------------------------- records
    def _mark_paid_by_this_run(
        self, payout: _Payout, payment_hash: str, bolt11: str, amount_msat: int
    ) -> None:
        self._write_paid(payout.payout_id, payment_hash, bolt11)
        self.report.paid.append(payout.payout_id)
        self.report.paid_sats += msat_to_sats_exact(amount_msat)
        self.report.lnbits_payments += 1
        self.hook("after_record", payout.payout_id)

    def _mark_paid(
        self, payout: _Payout, row: PaymentStatus, bolt11: str, *, reconciled: bool
    ) -> None:
        self._write_paid(payout.payout_id, row.payment_hash, bolt11)
        if reconciled:
            self.report.reconciled_paid.append(payout.payout_id)
            self.log.info("payout %s was already paid on LNbits: recorded", payout.payout_id)

    def _write_paid(self, payout_id: str, payment_hash: str, bolt11: str) -> None:
        now = _now()
        with self.engine.begin() as c:
            c.execute(
                s.payouts.update()
                .where(s.payouts.c.payout_id == payout_id, s.payouts.c.status != "paid")
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

    def _attempt_outcome(self, payment_hash: str, outcome: str, detail: str) -> None:
        with self.engine.begin() as c:
            c.execute(
                s.payout_attempts.update()
                .where(s.payout_attempts.c.payment_hash == payment_hash)
                .values(outcome=outcome, outcome_detail=detail[:500], outcome_at=_now())
            )

    def _record_error(self, payout_id: str, detail: str) -> None:
        with self.engine.begin() as c:
            c.execute(
                s.payouts.update()
                .where(s.payouts.c.payout_id == payout_id)
                .values(last_error=detail[:500])
            )

    def _fail(self, payout: _Payout, detail: str) -> None:
        with self.engine.begin() as c:
            c.execute(
                s.payouts.update()
                .where(s.payouts.c.payout_id == payout.payout_id, s.payouts.c.status != "paid")
                .values(status="failed", last_error=detail[:500])
            )
        self.report.failed.append(payout.payout_id)
        self._alert(
            AlertKind.PAYOUT_FAILED,
            f"payout {payout.payout_id} failed",
            f"{payout.sats} sats to wallet {payout.wallet_id} ({payout.recipient_id}): "
            f"{detail}. Its lines stay assigned to it; an operator can retry it.",
            f"payout_failed:{payout.payout_id}",
        )

    def _alert_amount_mismatch(self, payout: _Payout, amount_msat: int) -> None:
        self._alert(
            AlertKind.RECONCILIATION_MISMATCH,
            f"payout {payout.payout_id} paid a different amount",
            f"LNbits moved {amount_msat} msat for a payout of {payout.sats} sats.",
            f"amount_mismatch:{payout.payout_id}",
        )

    def _alert(
        self,
        kind: AlertKind,
        title: str,
        body: str,
        dedup_key: str,
        details: dict[str, str] | None = None,
    ) -> None:
        self.log.warning("ALERT %s: %s — %s", kind.value, title, body)
        if self.alerts is not None:
            self.alerts.send(Alert(kind, title, body, dedup_key, details or {}))


# --------------------------------------------------------------------------- dry run
class _DryRun:
    def __init__(
        self,
        engine: sa.Engine,
        lnbits: LNbitsClient,
        run_id: str,
        options: PayoutOptions,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.engine, self.lnbits, self.run_id = engine, lnbits, run_id
        self.options, self.log = options, log

    def run(self, report: PayoutRunReport) -> PayoutRunReport:
        with self.engine.connect() as c:
            existing = _open_payouts(c)
            planned = group_by_wallet(unpaid_lines(c))
        report.due_sats = sum(p.sats for p in existing) + sum(p.sats for p in planned)
        funded: bool | None
        try:
            report.balance_msat = self.lnbits.wallet_balance_msat()
            funded = report.balance_msat >= sats_to_msat(report.due_sats)
        except LNbitsError as exc:
            funded = None
            report.detail = f"balance unknown: {exc}"
        now = _now()
        rows = [
            self._row(
                p.payout_id,
                p.wallet_id,
                p.recipient_kind,
                p.recipient_id,
                p.sats,
                p.fiat_cents,
                0,  # its lines are already claimed by that payout
                p.memo,
            )
            for p in existing
        ] + [
            self._row(
                None,
                p.wallet_id,
                p.recipient_kind,
                p.recipient_id,
                p.sats,
                p.fiat_cents,
                len(p.line_ids),
                memo_for(p, self.options.currency),
            )
            for p in planned
        ]
        for row in rows:
            row.update(funded=funded, created_at=now)
        if rows:
            with self.engine.begin() as c:
                c.execute(s.payout_dry_runs.insert(), rows)
        report.status = RunStatus.DRY_RUN
        report.dry_run_rows = len(rows)
        self.log.info("dry run %s: %s", self.run_id, report.summary())
        return report

    def _row(
        self,
        payout_id: str | None,
        wallet_id: str,
        recipient_kind: str,
        recipient_id: str,
        sats: int,
        fiat_cents: int,
        line_count: int,
        memo: str,
    ) -> dict[str, object]:
        return {
            "plan_id": self.run_id,
            "payout_id": payout_id,
            "wallet_id": wallet_id,
            "recipient_kind": recipient_kind,
            "recipient_id": recipient_id,
            "sats": sats,
            "fiat_cents": fiat_cents,
            "line_count": line_count,
            "memo": memo,
            "dagster_run_id": self.run_id,
        }


# --------------------------------------------------------------------------- operator actions
def retry_failed_payout(engine: sa.Engine, payout_id: str) -> bool:
    """Put a ``failed`` payout back to ``planned`` (after the operator fixed its cause, e.g. the
    wallet's invoice key). The next run reconciles it with LNbits first, then pays it."""
    with engine.begin() as c:
        updated = c.execute(
            s.payouts.update()
            .where(s.payouts.c.payout_id == payout_id, s.payouts.c.status == "failed")
            .values(status="planned")
        )
    return updated.rowcount == 1


def payout_counts(engine: sa.Engine) -> dict[str, tuple[int, int]]:
    """status -> (payouts, sats)."""
    p = s.payouts.c
    with engine.connect() as c:
        rows = c.execute(
            sa.select(p.status, sa.func.count(), sa.func.coalesce(sa.func.sum(p.sats), 0)).group_by(
                p.status
            )
        )
        return {row[0]: (int(row[1]), int(row[2])) for row in rows}
