"""What is owed to whom: unclaimed allocation lines netted by wallet, payout ids and memos.

A wallet's payout is the NET of its unclaimed lines, compensating (negative) lines included
(business-rules §7). A wallet whose net is 0 or less gets no payout: its lines stay unclaimed
and net against its next lines; a negative net is a debt (a paid, then compensated line),
recovered from later payouts.

Pure functions; the ledger reads (unclaimed lines, invoice keys) and the claim (the write) are
in :mod:`dca_pipeline.ledger.payout_store`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from dca_pipeline.domain.money import format_cents, format_fraction
from dca_pipeline.ledger.payout_store import UnpaidLine

PAYOUT_ID_PREFIX = "po-"
CLIENT_KINDS = frozenset({"flow", "fixed"})
SATS_PER_BTC = 100_000_000
CENTS_PER_UNIT = 100


@dataclass(frozen=True)
class WalletNet:
    """The net of one wallet's unclaimed lines (may be 0 or negative)."""

    wallet_id: str
    recipient_kind: str  # 'client' if any line is a client's, else 'commission'
    recipient_id: str
    sats: int
    fiat_cents: int
    client_sats: int
    client_fiat_cents: int
    commission_sats: int
    line_ids: tuple[int, ...] = field(repr=False)


@dataclass(frozen=True)
class PlannedPayout:
    """One would-be payout: the positive net of every unclaimed line of one wallet."""

    wallet_id: str
    recipient_kind: str  # 'client' if any line is a client's, else 'commission'
    recipient_id: str
    sats: int
    fiat_cents: int
    client_sats: int
    client_fiat_cents: int
    commission_sats: int
    line_ids: tuple[int, ...] = field(repr=False)

    @property
    def payout_id(self) -> str:
        return payout_id_for(self.wallet_id, self.line_ids)


def payout_id_for(wallet_id: str, line_ids: Iterable[int]) -> str:
    """Deterministic: the same wallet and lines always give the same id (unique in the ledger,
    so two planners racing over the same lines collide on the primary key)."""
    material = wallet_id + "\n" + ",".join(str(i) for i in sorted(line_ids))
    return PAYOUT_ID_PREFIX + hashlib.sha256(material.encode()).hexdigest()[:32]


def net_by_wallet(lines: Sequence[UnpaidLine]) -> list[WalletNet]:
    """The net of every wallet's lines, by wallet id."""
    by_wallet: dict[str, list[UnpaidLine]] = {}
    for item in lines:
        by_wallet.setdefault(item.wallet_id, []).append(item)
    nets: list[WalletNet] = []
    for wallet_id in sorted(by_wallet):
        group = by_wallet[wallet_id]
        clients = sorted({i.recipient_id for i in group if i.kind in CLIENT_KINDS})
        others = sorted({i.recipient_id for i in group if i.kind not in CLIENT_KINDS})
        nets.append(
            WalletNet(
                wallet_id=wallet_id,
                recipient_kind="client" if clients else "commission",
                recipient_id=(clients or others)[0],
                sats=sum(item.sats for item in group),
                fiat_cents=sum(item.fiat_cents for item in group),
                client_sats=sum(i.sats for i in group if i.kind in CLIENT_KINDS),
                client_fiat_cents=sum(i.fiat_cents for i in group if i.kind in CLIENT_KINDS),
                commission_sats=sum(i.sats for i in group if i.kind not in CLIENT_KINDS),
                line_ids=tuple(sorted(item.line_id for item in group)),
            )
        )
    return nets


def _planned(net: WalletNet) -> PlannedPayout:
    return PlannedPayout(
        wallet_id=net.wallet_id,
        recipient_kind=net.recipient_kind,
        recipient_id=net.recipient_id,
        sats=net.sats,
        fiat_cents=net.fiat_cents,
        client_sats=net.client_sats,
        client_fiat_cents=net.client_fiat_cents,
        commission_sats=net.commission_sats,
        line_ids=net.line_ids,
    )


@dataclass(frozen=True)
class Plan:
    """What a payout run does with the unclaimed lines (the real run and the dry run alike)."""

    payouts: list[PlannedPayout]  # one per wallet whose net is positive
    debts: list[WalletNet]  # wallets whose net is negative: what they owe
    settled: list[str]  # wallets whose net is exactly 0 (their lines wait, owing nothing)
    deferred: list[str]  # wallets skipped: a payout of theirs is still open (or in flight)


def plan_payouts(lines: Sequence[UnpaidLine], open_wallets: Iterable[str] = ()) -> Plan:
    """Net the unclaimed lines per wallet; a wallet with an open payout gets nothing new."""
    blocked = set(open_wallets)
    plan = Plan([], [], [], [])
    for net in net_by_wallet(lines):
        if net.wallet_id in blocked:
            plan.deferred.append(net.wallet_id)
        elif net.sats > 0:
            plan.payouts.append(_planned(net))
        elif net.sats < 0:
            plan.debts.append(net)
        else:
            plan.settled.append(net.wallet_id)
    return plan


def group_by_wallet(lines: Sequence[UnpaidLine]) -> list[PlannedPayout]:
    """One planned payout per wallet whose lines net to more than 0 sats.

    A wallet whose lines net to 0 or less (e.g. a line and its compensation) gets nothing
    now; its lines stay unclaimed and are paid with that wallet's next positive lines.
    """
    return plan_payouts(lines).payouts


def _group_thousands(text: str) -> str:
    whole, dot, frac = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-')):,}{dot}{frac}"


def average_price_text(fiat_cents: int, sats: int) -> str | None:
    """Fiat per BTC paid, exact rational shown with 2 decimals (truncated); None if undefined."""
    if sats <= 0 or fiat_cents <= 0:
        return None
    per_btc = Fraction(fiat_cents * SATS_PER_BTC, sats * CENTS_PER_UNIT)
    return _group_thousands(format_fraction(per_btc, 2))


def payout_memo(
    payout_id: str,
    *,
    sats: int,
    client_sats: int,
    client_fiat_cents: int,
    commission_sats: int,
    currency: str = "GTQ",
) -> str:
    """E.g. ``DCA 233,126 sats for GTQ 1,799.00, avg 772,114.32 GTQ/BTC [po-…]``."""
    parts: list[str] = []
    if client_sats:
        fiat = _group_thousands(format_cents(client_fiat_cents))
        text = f"DCA {client_sats:,} sats for {currency} {fiat}"
        price = average_price_text(client_fiat_cents, client_sats)
        if price is not None:
            text += f", avg {price} {currency}/BTC"
        parts.append(text)
    if commission_sats:
        label = "commission" if client_sats else "DCA commission"
        parts.append(f"{label} {commission_sats:,} sats")
    body = "; ".join(parts)
    if sats != client_sats and client_sats:
        body = f"{sats:,} sats: {body}"
    return f"{body} [{payout_id}]"


def memo_for(planned: PlannedPayout, currency: str = "GTQ") -> str:
    return payout_memo(
        planned.payout_id,
        sats=planned.sats,
        client_sats=planned.client_sats,
        client_fiat_cents=planned.client_fiat_cents,
        commission_sats=planned.commission_sats,
        currency=currency,
    )
