"""The exactly-once payout procedure (business-rules §7), plain Python, no Dagster.

One run, under the writer lease (:mod:`lease`):

1. **Reconcile** every payout that is not settled, by asking LNbits first: each invoice it ever
   had (by payment hash: our payment on the source wallet, and the invoice on the recipient's
   wallet) and any payment carrying its id as ``external_id``. A payout LNbits shows as paid by
   us is recorded paid and never paid again; one whose payment LNbits shows pending stays
   **in flight** (asked again next run, its wallet gets nothing else meanwhile). A payout not
   yet paid whose lines were compensated is **voided** once LNbits proves it unpaid (no invoice
   of it was ever sent to be paid, or every sent one is dead on LNbits): its lines are released
   and net against the wallet's other lines.
2. **Plan and claim** in ONE transaction: every wallet's unclaimed lines are netted
   (compensations included); a positive net becomes one payout (deterministic id, see
   :func:`plan.payout_id_for`) and its lines are assigned to it (``payout_lines`` has the line
   as primary key: a line is paid at most once). A negative net is a debt: no payout, the lines
   stay unclaimed, the operator is alerted once per distinct amount. A wallet that still has an
   open (or in-flight) payout gets nothing new in the same run.
3. **Funding**: if the source wallet cannot cover everything due, pay nothing, alert, keep all
   pending (retried next run). Paying part of a batch would leave an arbitrary subset unpaid.
4. **Pay** each payout: create the invoice on the recipient's wallet, **store bolt11 + payment
   hash**, mark it in flight, pay it from the source wallet, record the outcome. An answer that
   is neither "paid" nor a definite "not paid" (pending; a timeout after the request was sent)
   leaves it in flight. A payout is only ever re-invoiced after LNbits said its invoice is dead
   (lost, expired) and not paid by us; until then the same invoice is paid again (an internal
   invoice is paid at most once).

A crash anywhere leaves the ledger in a state step 1 resolves: before the invoice is stored
nothing can have been paid (we only pay stored invoices); after it, the hash is known.
Zero-sat payouts are never created. ``dry_run`` records the plan in ``payout_dry_runs``
without claiming anything; the pause switch (env or ledger) stops runs before they start.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from dca_pipeline.alerts import Alert, AlertDispatcher, AlertKind
from dca_pipeline.config import Config, config
from dca_pipeline.domain.money import format_cents
from dca_pipeline.ledger import payout_store as store
from dca_pipeline.ledger.payout_store import AttemptRow as _Attempt
from dca_pipeline.ledger.payout_store import PayoutRow as _Payout
from dca_pipeline.payouts.lease import DEFAULT_LEASE_SECONDS, LeaseLost, PayoutLease
from dca_pipeline.payouts.lnbits import (
    LNbitsAuthError,
    LNbitsClient,
    LNbitsError,
    LNbitsPaymentUnknown,
    LNbitsRequestError,
    LNbitsUnavailable,
    PaymentKind,
    PaymentStatus,
    PayOutcomeKind,
    msat_to_sats_exact,
    sats_to_msat,
)
from dca_pipeline.payouts.plan import (
    Plan,
    PlannedPayout,
    WalletNet,
    memo_for,
    plan_payouts,
)

_LOGGER = logging.getLogger(__name__)

PAUSE_ENV = Config.variable("payouts_paused")
CONTROL_NAME = "payouts"
#: Not settled: asked about at the start of every run; the wallet gets no second payout.
OPEN_STATUSES = ("planned", "invoiced", "in_flight")
#: Not paid, so voidable once LNbits proves it unpaid, when its lines get compensated.
VOIDABLE_STATUSES = ("planned", "invoiced", "in_flight", "failed")
#: Fresh invoices one run may make for one payout when LNbits keeps losing them.
MAX_INVOICES_PER_RUN = 3

#: Called at each step with (step, payout_id); tests use it to kill the process mid-payout.
FaultHook = Callable[[str, str], None]
STEPS = (
    "before_invoice",
    "after_invoice",
    "invoice_stored",
    "before_pay",  # marked in flight, the pay request not sent yet
    "after_pay",
    "after_record",
)


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
    in_flight: list[str] = field(default_factory=list)  # LNbits gave no definite answer
    voided: list[str] = field(default_factory=list)  # compensated and proven unpaid: void
    held: list[str] = field(default_factory=list)  # compensated, not yet provably unpaid
    pending: list[str] = field(default_factory=list)  # still unpaid after this run
    deferred_wallets: list[str] = field(default_factory=list)
    owed: dict[str, int] = field(default_factory=dict)  # wallet -> sats it owes (net < 0)
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
            "in_flight": len(self.in_flight),
            "voided": len(self.voided),
            "held": len(self.held),
            "pending": len(self.pending),
            "deferred_wallets": len(self.deferred_wallets),
            "owed_wallets": len(self.owed),
            "owed_sats": sum(self.owed.values()),
            "due_sats": self.due_sats,
            "lnbits_payments": self.lnbits_payments,
            "dry_run_rows": self.dry_run_rows,
            "detail": self.detail,
        }


class _StopRun(Exception):
    def __init__(self, status: RunStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- pause switch
def paused_by_env() -> bool:
    """``DCA_PAYOUTS_PAUSED`` (:mod:`dca_pipeline.config`)."""
    return config().payouts_paused


def pause_state(engine: sa.Engine) -> tuple[bool, str | None]:
    """(paused, reason) from the ledger flag."""
    with engine.connect() as c:
        return store.pause_state(c, CONTROL_NAME)


def set_paused(engine: sa.Engine, paused: bool, reason: str | None = None) -> None:
    """Flip the ledger pause switch (idempotent)."""
    with engine.begin() as c:
        store.set_pause(c, CONTROL_NAME, paused, reason, _now())


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
def _payouts(connection: sa.Connection, statuses: tuple[str, ...]) -> list[_Payout]:
    return store.payouts_with_status(connection, statuses)


def _open_payouts(connection: sa.Connection) -> list[_Payout]:
    return store.payouts_with_status(connection, OPEN_STATUSES)


@dataclass
class _Evidence:
    """What LNbits says about one unsettled payout."""

    paid: PaymentStatus | None = None  # our payment, settled, on the source wallet
    paid_bolt11: str = ""
    pending: _Attempt | None = None  # our payment exists and is pending: in flight
    pending_unknown: bool = False  # a pending payment carrying its id, of no known invoice
    paid_elsewhere: str | None = None  # an invoice of it was paid, not by the source wallet
    payable: _Attempt | None = None  # newest invoice still open on the recipient's wallet
    dead: list[_Attempt] = field(default_factory=list)  # invoices LNbits shows as unpayable
    unreadable: list[_Attempt] = field(default_factory=list)  # recipient side not readable


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
        #: Open payouts this run must not pay (in flight, held until provably unpaid).
        self.skip: set[str] = set()

    # ----------------------------------------------------------------- flow
    def run(self) -> None:
        report = self.report
        try:
            with self.engine.connect() as c:
                self.keys = store.invoice_keys_by_wallet(c)
                before = _open_payouts(c)
                compensated = store.payouts_with_compensated_lines(c, VOIDABLE_STATUSES)
                failed = [p for p in _payouts(c, ("failed",)) if p.payout_id in compensated]
            for payout in before + failed:
                self._reconcile(payout, payout.payout_id in compensated)
            self._plan_and_claim()
            with self.engine.connect() as c:
                due = [p for p in _open_payouts(c) if p.payout_id not in self.skip]
                self.keys = store.invoice_keys_by_wallet(c)
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
    def _evidence(self, payout: _Payout, attempts: list[_Attempt]) -> _Evidence:
        """Ask LNbits about every invoice of the payout, and by its id (never guess)."""
        found = _Evidence()
        for attempt in reversed(attempts):
            status = self.lnbits.get_payment(attempt.payment_hash)
            if status.kind is PaymentKind.PAID and status.outgoing:
                found.paid, found.paid_bolt11 = status, attempt.bolt11
                return found
            if status.kind is PaymentKind.PENDING and status.outgoing and found.pending is None:
                found.pending = attempt
        ours = [row for row in self.lnbits.find_payments_by_external_id(payout.payout_id)]
        paid_rows = [row for row in ours if row.kind is PaymentKind.PAID and row.outgoing]
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
            found.paid, found.paid_bolt11 = row, row.bolt11 or payout.bolt11 or ""
            return found
        if found.pending is None and any(
            row.kind is PaymentKind.PENDING and row.outgoing for row in ours
        ):
            found.pending_unknown = True
        if found.pending is not None or found.pending_unknown:
            return found
        # Not paid by us, nothing pending: can an invoice of it still be paid?
        key = self.keys.get(payout.wallet_id)
        for attempt in reversed(attempts):
            if attempt.outcome in ("dead", "void"):
                found.dead.append(attempt)  # LNbits said so before; a dead invoice stays dead
                continue
            if key is None:
                found.unreadable.append(attempt)
                continue
            try:
                invoice = self.lnbits.get_payment(attempt.payment_hash, key)
            except LNbitsAuthError:
                found.unreadable.append(attempt)
                continue
            if invoice.kind is PaymentKind.PAID and not invoice.outgoing:
                found.paid_elsewhere = attempt.payment_hash
            elif invoice.kind is PaymentKind.PENDING:
                found.payable = found.payable or attempt
            else:  # failed (expired, lost by a restart) or not on that wallet: never payable
                found.dead.append(attempt)
        return found

    def _reconcile(self, payout: _Payout, compensated: bool) -> None:
        """Settle what LNbits proves (paid, in flight, dead, void) before anything is paid."""
        with self.engine.connect() as c:
            attempts = store.attempts_of(c, payout.payout_id)
        found = self._evidence(payout, attempts)
        if found.paid is not None:
            self._mark_paid(payout, found.paid, found.paid_bolt11, reconciled=True)
            return
        if found.pending is not None or found.pending_unknown:
            self.skip.add(payout.payout_id)
            self.report.in_flight.append(payout.payout_id)
            if found.pending is not None:
                self._set_in_flight(payout, found.pending, "LNbits shows the payment pending")
            self.log.warning(
                "payout %s is in flight (LNbits: pending): asked again next run",
                payout.payout_id,
            )
            return
        if found.paid_elsewhere is not None:
            self.skip.add(payout.payout_id)
            if payout.status != "failed":
                self._fail(payout, "invoice paid, but not by the source wallet")
            return
        newly_dead = [a for a in found.dead if a.outcome not in ("dead", "void")]
        for attempt in newly_dead:
            self._attempt_outcome(attempt.payment_hash, "dead", "LNbits: invoice not payable")
        dead_hashes = {a.payment_hash for a in found.dead}
        if compensated:
            # Voidable once no invoice of it can still be paid by a request we sent: an invoice
            # never sent is never paid (we pay only after marking it sent); a sent one must be
            # dead on LNbits.
            unproven = [
                a
                for a in attempts
                if a.pay_sent_at is not None and a.payment_hash not in dead_hashes
            ]
            if not unproven:
                self._void(payout)
                return
            self.skip.add(payout.payout_id)
            self.report.held.append(payout.payout_id)
            self.log.warning(
                "payout %s: its lines were compensated, but its invoice may still be paid by "
                "a request already sent; held (neither paid nor voided) until LNbits says the "
                "invoice is dead (it expires after %s s)",
                payout.payout_id,
                self.options.invoice_expiry_s,
            )
            return
        if payout.status == "failed":
            return
        current_dead = payout.payment_hash is not None and payout.payment_hash in dead_hashes
        if found.payable is not None and (
            payout.status == "planned" or found.payable.payment_hash != payout.payment_hash
        ):
            # An invoice that can still be paid is paid again, never replaced.
            self._use_invoice(payout, found.payable, "invoiced")
        elif current_dead and payout.status in ("invoiced", "in_flight"):
            self._set_status(payout, "planned", "LNbits: the invoice is dead and unpaid")

    def _set_in_flight(self, payout: _Payout, attempt: _Attempt, detail: str) -> None:
        self._use_invoice(payout, attempt, "in_flight", detail)

    def _use_invoice(
        self, payout: _Payout, attempt: _Attempt, status: str, detail: str | None = None
    ) -> None:
        with self.engine.begin() as c:
            store.set_invoice(
                c,
                payout.payout_id,
                status=status,
                bolt11=attempt.bolt11,
                payment_hash=attempt.payment_hash,
                detail=detail,
            )

    def _set_status(self, payout: _Payout, status: str, detail: str) -> None:
        with self.engine.begin() as c:
            store.set_unpaid_status(c, payout.payout_id, status, detail)

    def _void(self, payout: _Payout) -> None:
        """Void a payout LNbits proved unpaid; its lines go back to be netted (one transaction)."""
        with self.engine.begin() as c:
            line_ids = store.void_payout(
                c,
                payout.payout_id,
                payout.status,
                "void: its lines were compensated; LNbits shows it unpaid",
                _now(),
            )
            if line_ids is None:
                raise LeaseLost(f"payout {payout.payout_id} changed under us; stopping")
        self.report.voided.append(payout.payout_id)
        self.log.info(
            "payout %s (%s sats to wallet %s) voided: its lines were compensated and LNbits "
            "shows it unpaid; its %d lines are netted again",
            payout.payout_id,
            payout.sats,
            payout.wallet_id,
            len(line_ids),
        )

    # ----------------------------------------------------------------- plan
    def _plan_and_claim(self) -> None:
        now = _now()
        with self.engine.begin() as c:
            open_wallets = store.wallets_with_status(c, OPEN_STATUSES)
            plan = plan_payouts(store.unclaimed_lines(c), open_wallets)
            for planned in plan.payouts:
                self._insert_payout(c, planned, now)
                self.report.created.append(planned.payout_id)
            # One payout per wallet per run: a deferred wallet's lines wait for the next run.
            self.report.deferred_wallets.extend(plan.deferred)
            new_debts = self._record_debts(c, plan, open_wallets, now)
        for debt in plan.debts:
            self.report.owed[debt.wallet_id] = -debt.sats
        for debt in new_debts:
            self._alert_debt(debt)

    def _record_debts(
        self, c: sa.Connection, plan: Plan, open_wallets: set[str], now: datetime
    ) -> list[WalletNet]:
        """Keep ``payout_wallet_debts`` equal to the negative nets; return the debts that are
        new or changed amount (alerted once per distinct amount)."""
        known = store.wallet_debt_sats(c)
        debts = {debt.wallet_id: debt for debt in plan.debts}
        changed: list[WalletNet] = []
        for wallet_id, debt in debts.items():
            owed = known.get(wallet_id)
            if owed is not None and owed == -debt.sats:
                continue
            store.save_wallet_debt(
                c,
                wallet_id,
                recipient_id=debt.recipient_id,
                owed_sats=-debt.sats,
                owed_fiat_cents=-debt.fiat_cents,
                alerted_at=now,
                known=owed is not None,
            )
            changed.append(debt)
        # A wallet that no longer nets below zero owes nothing (unless it was not netted now).
        cleared = set(known) - set(debts) - open_wallets
        if cleared:
            store.delete_wallet_debts(c, cleared)
            for wallet_id in sorted(cleared):
                self.log.info("wallet %s owes nothing any more", wallet_id)
        return changed

    def _alert_debt(self, debt: WalletNet) -> None:
        owed_sats, owed_fiat = -debt.sats, -debt.fiat_cents
        fiat = f"{self.options.currency} {format_cents(owed_fiat)}"
        self._alert(
            AlertKind.PAYOUT_FAILED,
            f"wallet {debt.wallet_id} owes {owed_sats:,} sats",
            f"Wallet {debt.wallet_id} ({debt.recipient_id}) owes {owed_sats:,} sats ({fiat}): "
            "its unpaid lines net below zero because it was paid for lines that were "
            "compensated since (business-rules §4a). Nothing is paid to it until its next "
            "lines cover the debt; they are netted against it.",
            f"wallet_owes:{debt.wallet_id}:{owed_sats}",
            {
                "wallet_id": debt.wallet_id,
                "recipient_id": debt.recipient_id,
                "owed_sats": str(owed_sats),
                "owed_fiat_cents": str(owed_fiat),
            },
        )

    def _insert_payout(self, c: sa.Connection, planned: PlannedPayout, now: datetime) -> None:
        store.insert_payout(
            c,
            payout_id=planned.payout_id,
            wallet_id=planned.wallet_id,
            recipient_kind=planned.recipient_kind,
            recipient_id=planned.recipient_id,
            sats=planned.sats,
            fiat_cents=planned.fiat_cents,
            memo=memo_for(planned, self.options.currency),
            line_ids=planned.line_ids,
            created_at=now,
            run_id=self.report.run_id,
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
        has_invoice = payout.status in ("invoiced", "in_flight")
        bolt11 = payout.bolt11 if has_invoice else None
        payment_hash = payout.payment_hash if has_invoice else None
        status = payout.status
        attempts = payout.attempts
        for _ in range(MAX_INVOICES_PER_RUN):
            self.lease.ensure_held()  # never pay without holding the lease
            if bolt11 is None or payment_hash is None:
                if key is None:
                    self._no_key(payout)
                    return
                made = self._new_invoice(payout, key, attempts)
                if made is None:
                    return
                bolt11, payment_hash = made
                attempts += 1
                status = "invoiced"
            self.lnbits.source_wallet_id()  # read before marking in flight (it is cached)
            first_send = self._mark_sent(payout, payment_hash)
            self.hook("before_pay", payout.payout_id)
            try:
                outcome = self.lnbits.pay_invoice(bolt11, self._extra(payout), payout.payout_id)
            except LNbitsPaymentUnknown as exc:
                self._in_flight(payout, f"in flight: {exc}")
                return
            except (LNbitsUnavailable, LNbitsAuthError, LNbitsRequestError):
                # LNbits refused, or never saw the request: nothing was sent that could pay.
                self._unmark_sent(payout, payment_hash, status, first_send)
                raise
            self.hook("after_pay", payout.payout_id)
            kind = outcome.kind
            if kind is PayOutcomeKind.PAID:
                if outcome.amount_msat != sats_to_msat(payout.sats):
                    self._alert_amount_mismatch(payout, outcome.amount_msat)
                self._mark_paid_by_this_run(payout, payment_hash, bolt11, outcome.amount_msat)
                return
            if kind is PayOutcomeKind.PENDING:
                self._in_flight(payout, "in flight: LNbits answered pending")
                return
            if kind in (PayOutcomeKind.ALREADY_PAID, PayOutcomeKind.INVOICE_DEAD):
                # Either way, LNbits' own row on the source wallet decides.
                row = self.lnbits.get_payment(payment_hash)
                if row.kind is PaymentKind.PAID and row.outgoing:
                    self._mark_paid(payout, row, bolt11, reconciled=True)
                    return
                if row.kind is PaymentKind.PENDING and row.outgoing:
                    self._in_flight(payout, "in flight: LNbits shows the payment pending")
                    return
                if kind is PayOutcomeKind.ALREADY_PAID:
                    self._fail(payout, "invoice paid, but not by the source wallet")
                    return
                # Dead and not paid by us: the one case a payout gets a fresh invoice.
                self._attempt_outcome(payment_hash, "dead", outcome.detail)
                self._set_status(payout, "planned", f"LNbits: invoice dead ({outcome.detail})")
                bolt11 = payment_hash = None
                continue
            if kind is PayOutcomeKind.INSUFFICIENT_BALANCE:
                self._unmark_sent(payout, payment_hash, status, first_send)
                self._alert_shortfall(self.report.due_sats, None)
                raise _StopRun(RunStatus.UNDERFUNDED, "LNbits: insufficient balance")
            self._attempt_outcome(payment_hash, "failed", outcome.detail)
            self._fail(payout, f"LNbits refused the payment: {outcome.detail}")
            return
        self._fail(payout, f"LNbits lost {MAX_INVOICES_PER_RUN} invoices in a row")

    def _no_key(self, payout: _Payout) -> None:
        self._record_error(payout.payout_id, "no invoice key for this wallet in the ledger")
        self._alert(
            AlertKind.PAYOUT_FAILED,
            f"payout {payout.payout_id}: wallet has no invoice key",
            f"No client or commission recipient in the ledger has wallet "
            f"{payout.wallet_id}; the payout stays pending until one does.",
            f"no_invoice_key:{payout.wallet_id}",
        )

    def _mark_sent(self, payout: _Payout, payment_hash: str) -> bool:
        """Before the pay request leaves: the payout is in flight, the invoice marked sent (one
        transaction). Returns True if this is the invoice's first pay request."""
        with self.engine.begin() as c:
            first = store.mark_attempt_sent(c, payment_hash, _now())
            if not store.mark_in_flight(c, payout.payout_id, payment_hash):
                raise LeaseLost(f"payout {payout.payout_id} changed under us; stopping")
        return first

    def _unmark_sent(
        self, payout: _Payout, payment_hash: str, status: str, first_send: bool
    ) -> None:
        """A definite "not paid" to the request just sent: back to where it was."""
        with self.engine.begin() as c:
            if first_send:
                store.clear_attempt_sent(c, payment_hash)
            store.revert_in_flight(c, payout.payout_id, status)

    def _in_flight(self, payout: _Payout, detail: str) -> None:
        self._record_error(payout.payout_id, detail)
        self.report.in_flight.append(payout.payout_id)
        self.log.warning(
            "payout %s (%s sats to wallet %s) is in flight: %s. It is asked about again by "
            "payment hash before anything else is paid to that wallet, never re-invoiced "
            "until LNbits says it is unpaid.",
            payout.payout_id,
            payout.sats,
            payout.wallet_id,
            detail,
        )

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
        with self.engine.begin() as c:
            # Optimistic check on top of the lease: nobody else stored an invoice meanwhile.
            stored = store.record_invoice(
                c,
                payout.payout_id,
                attempts_before=attempts,
                payment_hash=invoice.payment_hash,
                bolt11=invoice.bolt11,
                now=_now(),
            )
            if not stored:
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
        with self.engine.begin() as c:
            store.mark_paid(c, payout_id, payment_hash, bolt11, _now())

    def _attempt_outcome(self, payment_hash: str, outcome: str, detail: str) -> None:
        with self.engine.begin() as c:
            store.set_attempt_outcome(c, payment_hash, outcome, detail, _now())

    def _record_error(self, payout_id: str, detail: str) -> None:
        with self.engine.begin() as c:
            store.set_error(c, payout_id, detail)

    def _fail(self, payout: _Payout, detail: str) -> None:
        with self.engine.begin() as c:
            store.mark_failed(c, payout.payout_id, detail)
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
    """The plan a real run would make now, assuming LNbits proves every compensated payout
    unpaid (so it is voided and its lines netted); nothing is claimed, nothing is paid."""

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
            compensated = store.payouts_with_compensated_lines(c, VOIDABLE_STATUSES)
            open_now = _open_payouts(c)
            voided = sorted(
                {p.payout_id for p in open_now if p.payout_id in compensated}
                | {p.payout_id for p in _payouts(c, ("failed",)) if p.payout_id in compensated}
            )
            existing = [p for p in open_now if p.payout_id not in compensated]
            plan = plan_payouts(
                store.unclaimed_lines(c) + store.lines_claimed_by(c, voided),
                {p.wallet_id for p in existing},
            )
        report.voided = voided
        report.deferred_wallets = list(plan.deferred)
        report.owed = {debt.wallet_id: -debt.sats for debt in plan.debts}
        report.due_sats = sum(p.sats for p in existing) + sum(p.sats for p in plan.payouts)
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
            for p in plan.payouts
        ]
        for row in rows:
            row.update(funded=funded, created_at=now)
        if rows:
            with self.engine.begin() as c:
                store.insert_dry_run_rows(c, rows)
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
    """Re-queue a ``failed`` payout (after the operator fixed its cause, e.g. the wallet's
    invoice key). It is never re-invoiced before LNbits says its invoice is unpaid: with a
    stored invoice it goes back to ``invoiced``, and the next run first asks LNbits about every
    invoice it had (by payment hash, payer and recipient side), records it paid if it was, pays
    the same invoice if it is still open, and makes a new one only once LNbits says the old one
    is dead and unpaid. Without a stored invoice it goes back to ``planned``."""
    with engine.begin() as c:
        return store.requeue_failed(c, payout_id, " (retried by an operator)")


def payout_counts(engine: sa.Engine) -> dict[str, tuple[int, int]]:
    """status -> (payouts, sats)."""
    with engine.connect() as c:
        return store.counts_by_status(c)


def wallet_debts(engine: sa.Engine) -> list[tuple[str, str, int, int]]:
    """(wallet_id, recipient_id, owed_sats, owed_fiat_cents) of every wallet whose unclaimed
    lines net below zero, as of the last payout run."""
    with engine.connect() as c:
        return store.wallet_debts(c)
