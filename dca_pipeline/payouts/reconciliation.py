"""Ledger payouts vs. LNbits payments, per wallet, for a period (the reconciliation report).

Evidence is read from both ends of every payment: the **source wallet** (what left, by the
payout id we send as ``external_id``) and the **recipient wallet** (what arrived, read with the
invoice key the ledger holds for it). Any difference is a problem; the Dagster asset turns a
non-empty problem list into a failing check and an alert.

The period selects: payouts settled in it, unsettled payouts created in it, and every source
payment in it that carries a payout id (so a payment the ledger does not know is found too).
Each selected payout is then looked up by id, not by time, so a payment a few milliseconds on
the other side of the boundary from its ledger row cannot fake a mismatch.

The ledger is checked against itself too: a paid payout's amount is the NET of the lines it
claims (compensating lines included, business-rules §7), and a void payout claims no line (its
lines went back to be netted) and has no payment on LNbits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from dca_pipeline.ledger import payout_store as store
from dca_pipeline.payouts.lnbits import (
    LNbitsAuthError,
    LNbitsClient,
    PaymentKind,
    PaymentStatus,
    sats_to_msat,
)
from dca_pipeline.payouts.plan import PAYOUT_ID_PREFIX

UNKNOWN_WALLET = "(unknown)"


@dataclass
class WalletTotals:
    wallet_id: str
    ledger_paid_count: int = 0
    ledger_paid_sats: int = 0
    sent_count: int = 0  # successful payments out of the source wallet for this wallet's payouts
    sent_sats: int = 0
    received_count: int = 0  # successful incoming payments seen on the recipient wallet
    received_sats: int = 0

    @property
    def balanced(self) -> bool:
        return (
            self.ledger_paid_count == self.sent_count == self.received_count
            and self.ledger_paid_sats == self.sent_sats == self.received_sats
        )


@dataclass
class ReconciliationReport:
    start: datetime
    end: datetime
    wallets: dict[str, WalletTotals] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    payouts_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def totals(self, wallet_id: str) -> WalletTotals:
        return self.wallets.setdefault(wallet_id, WalletTotals(wallet_id))


def _paid_out(rows: list[PaymentStatus]) -> list[PaymentStatus]:
    return [row for row in rows if row.kind is PaymentKind.PAID and row.outgoing]


def _paid_in(rows: list[PaymentStatus]) -> list[PaymentStatus]:
    return [row for row in rows if row.kind is PaymentKind.PAID and not row.outgoing]


def reconcile_period(
    engine: sa.Engine, lnbits: LNbitsClient, start: datetime, end: datetime
) -> ReconciliationReport:
    """Compare the ledger with LNbits for payouts of ``[start, end)`` (aware datetimes)."""
    report = ReconciliationReport(start, end)
    # Payments out of the source wallet in the period that carry a payout id.
    window = lnbits.list_payments(
        {
            "external_id[like]": PAYOUT_ID_PREFIX,
            "time[ge]": start.isoformat(),
            "time[lt]": end.isoformat(),
        }
    )
    with engine.connect() as c:
        keys = store.invoice_keys_by_wallet(c)
        selected_ids = store.payout_ids_in_period(c, start, end)
        selected_ids |= {
            row.external_id
            for row in _paid_out(window)
            if row.external_id and row.external_id.startswith(PAYOUT_ID_PREFIX)
        }
        ledger_rows = store.payout_summaries(c, selected_ids)
        line_sums = store.claimed_line_totals(c, sorted(ledger_rows))
    for payout_id in sorted(selected_ids):
        report.payouts_checked += 1
        ledger = ledger_rows.get(payout_id)
        _check_payout(report, lnbits, keys, payout_id, ledger)
        if ledger is not None:
            _check_lines(report, ledger, line_sums.get(payout_id))
    for totals in report.wallets.values():
        if not totals.balanced:
            report.problems.append(f"wallet {totals.wallet_id}: totals differ {totals}")
    return report


def _check_lines(
    report: ReconciliationReport, ledger: sa.Row, claimed: tuple[int, int] | None
) -> None:
    where = f"{ledger.payout_id} (wallet {ledger.wallet_id}, {ledger.sats} sats)"
    lines, net = claimed or (0, 0)
    if ledger.status == "void":
        if lines:
            report.problems.append(f"{where}: void, but still claims {lines} line(s)")
    elif net != ledger.sats:
        report.problems.append(
            f"{where}: '{ledger.status}', but its {lines} line(s) net to {net} sats"
        )


def _check_payout(
    report: ReconciliationReport,
    lnbits: LNbitsClient,
    keys: dict[str, str],
    payout_id: str,
    ledger: sa.Row | None,
) -> None:
    sent = _paid_out(lnbits.find_payments_by_external_id(payout_id))
    if ledger is None:
        report.problems.append(
            f"{payout_id}: {len(sent)} payment(s) from the source wallet, no such payout in "
            "the ledger"
        )
        unknown = report.totals(UNKNOWN_WALLET)
        unknown.sent_count += len(sent)
        unknown.sent_sats += sum(-row.amount_msat // 1000 for row in sent)
        return
    totals = report.totals(ledger.wallet_id)
    totals.sent_count += len(sent)
    totals.sent_sats += sum(-row.amount_msat // 1000 for row in sent)
    key = keys.get(ledger.wallet_id)
    received: list[PaymentStatus] = []
    if key is not None:
        try:
            received = _paid_in(lnbits.find_payments_by_external_id(payout_id, key))
        except LNbitsAuthError:
            key = None  # reported below as unreadable
    totals.received_count += len(received)
    totals.received_sats += sum(row.amount_msat // 1000 for row in received)
    where = f"{payout_id} (wallet {ledger.wallet_id}, {ledger.sats} sats)"
    if ledger.status != "paid":
        if sent or received:
            consequence = (
                "its lines were released to be netted again: paid twice if they were"
                if ledger.status == "void"
                else "the next payout run records it"
            )
            report.problems.append(
                f"{where}: paid on LNbits but '{ledger.status}' in the ledger ({consequence})"
            )
        return
    totals.ledger_paid_count += 1
    totals.ledger_paid_sats += ledger.sats
    if len(sent) != 1:
        report.problems.append(f"{where}: {len(sent)} payments from the source wallet, 1 expected")
    elif sent[0].amount_msat != -sats_to_msat(ledger.sats):
        report.problems.append(f"{where}: source wallet paid {-sent[0].amount_msat} msat")
    elif sent[0].payment_hash != ledger.payment_hash:
        report.problems.append(f"{where}: paid hash differs from the ledger's")
    if key is None:
        report.problems.append(f"{where}: no usable invoice key in the ledger for the wallet")
    elif len(received) != 1 or received[0].amount_msat != sats_to_msat(ledger.sats):
        report.problems.append(
            f"{where}: the recipient wallet shows {len(received)} incoming payment(s) "
            f"of {sum(row.amount_msat for row in received)} msat"
        )
