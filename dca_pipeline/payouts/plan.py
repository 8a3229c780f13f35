"""What is owed to whom: unclaimed allocation lines netted by wallet, payout ids and memos.

A wallet's payout is the NET of its unclaimed lines, compensating (negative) lines included
(business-rules §7). A wallet whose net is 0 or less gets no payout: its lines stay unclaimed
and net against its next lines; a negative net is a debt (a paid, then compensated line),
recovered from later payouts.

Pure ledger reads and pure functions; claiming lines (the write) is in :mod:`procedure`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import sqlalchemy as sa

from dca_pipeline.domain.money import format_cents, format_fraction
from dca_pipeline.ledger import schema as s

PAYOUT_ID_PREFIX = "po-"
CLIENT_KINDS = frozenset({"flow", "fixed"})
SATS_PER_BTC = 100_000_000
CENTS_PER_UNIT = 100


@dataclass(frozen=True)
class UnpaidLine:
    line_id: int
    kind: str
    recipient_id: str
    wallet_id: str
    fiat_cents: int
    sats: int


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


def unpaid_lines(connection: sa.Connection) -> list[UnpaidLine]:
    """Allocation lines not assigned to any payout, except ``unallocated`` (operator's sats)."""
    line = s.allocation_lines.c
    claimed = s.payout_lines.c
    rows = connection.execute(
        sa.select(
            line.line_id, line.kind, line.recipient_id, line.wallet_id, line.fiat_cents, line.sats
        )
        .select_from(s.allocation_lines.outerjoin(s.payout_lines, claimed.line_id == line.line_id))
        .where(claimed.line_id.is_(None), line.kind != "unallocated", line.wallet_id.is_not(None))
        .order_by(line.line_id)
    )
    return [
        UnpaidLine(r.line_id, r.kind, r.recipient_id, r.wallet_id, r.fiat_cents, r.sats)
        for r in rows
    ]


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


def compensated_payouts(connection: sa.Connection, statuses: Iterable[str]) -> set[str]:
    """Payouts in ``statuses`` with a claimed line that an UNCLAIMED line compensates (a
    compensation claimed by a payout was netted there already)."""
    claimed = s.payout_lines.alias("claimed")
    compensation = s.allocation_lines.alias("compensation")
    compensation_claim = s.payout_lines.alias("compensation_claim")
    p = s.payouts.c
    rows = connection.execute(
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


def claimed_lines(connection: sa.Connection, payout_ids: Iterable[str]) -> list[UnpaidLine]:
    """The lines these payouts claim (what voiding them would release)."""
    ids = sorted(payout_ids)
    if not ids:
        return []
    line = s.allocation_lines.c
    rows = connection.execute(
        sa.select(
            line.line_id, line.kind, line.recipient_id, line.wallet_id, line.fiat_cents, line.sats
        )
        .join(s.payout_lines, s.payout_lines.c.line_id == line.line_id)
        .where(s.payout_lines.c.payout_id.in_(ids))
        .order_by(line.line_id)
    )
    return [
        UnpaidLine(r.line_id, r.kind, r.recipient_id, r.wallet_id, r.fiat_cents, r.sats)
        for r in rows
    ]


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


def invoice_keys_by_wallet(connection: sa.Connection) -> dict[str, str]:
    """wallet_id → an invoice key of that wallet (SECRET: never log the values).

    Clients first; a commission recipient's newest version for wallets that are no client's.
    """
    keys: dict[str, str] = {}
    recipients = s.commission_recipients.c
    for row in connection.execute(
        sa.select(recipients.wallet_id, recipients.invoice_key).order_by(recipients.version_id)
    ):
        keys[row.wallet_id] = row.invoice_key  # later versions win
    for row in connection.execute(sa.select(s.clients.c.wallet_id, s.clients.c.invoice_key)):
        keys[row.wallet_id] = row.invoice_key
    return keys
