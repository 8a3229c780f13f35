"""Hypothesis strategies for engine inputs (shared by the domain property tests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

from hypothesis import strategies as st

from dca_pipeline.domain.cash_out import CashOut
from dca_pipeline.domain.commission import CommissionRecipient, CommissionVersion
from dca_pipeline.domain.engine import ClientChange, Deposit

T0 = datetime(2025, 6, 1, tzinfo=UTC)
DAYS = 4


@dataclass
class Scenario:
    cash_outs: list[CashOut]
    fixed_days: list[date]
    clients: list[ClientChange]
    deposits: list[Deposit]
    commission_versions: list[CommissionVersion]

    def kwargs(self) -> dict:
        return {
            "cash_outs": self.cash_outs,
            "fixed_days": self.fixed_days,
            "clients": self.clients,
            "deposits": self.deposits,
            "commission_versions": self.commission_versions,
        }


# Few distinct minutes so that ties in time (and in remainders) actually happen.
instants = st.integers(0, DAYS * 24 * 4).map(lambda q: T0 + timedelta(minutes=15 * q))
cents = st.integers(1, 2_000_000)
# Settings and deposits cluster at the start so that most cash-outs meet several funded clients.
early_instants = st.one_of(st.just(T0), instants)


@st.composite
def cash_outs(draw, max_size: int = 12) -> list[CashOut]:
    ids = draw(
        st.lists(st.uuids().map(str), min_size=1, max_size=max_size, unique=True)
    )
    out = []
    for cid in ids:
        atoms = draw(st.integers(1, 5_000_000))
        commission = Fraction(draw(st.integers(0, 99_999)), 100_000)
        out.append(
            CashOut.from_lamassu(
                id=cid,
                event_time=draw(instants),
                fiat_cents=draw(cents),
                crypto_atoms=atoms,
                commission_percentage=commission,
                discount=draw(st.integers(0, 100)),
            )
        )
    return out


@st.composite
def scenarios(draw) -> Scenario:
    client_ids = draw(st.lists(st.sampled_from("ABCDEFGHIJ"), max_size=6, unique=True))
    clients: list[ClientChange] = []
    for cid in client_ids:
        for _ in range(draw(st.integers(1, 3))):
            mode = draw(st.sampled_from(["flow", "flow", "fixed"]))
            clients.append(
                ClientChange(
                    client_id=cid,
                    effective_at=draw(early_instants),
                    mode=mode,
                    status=draw(st.sampled_from(["active", "active", "paused"])),
                    daily_limit_cents=draw(st.integers(1, 300_000))
                    if mode == "fixed"
                    else None,
                )
            )
    # One change per (client, instant): the ledger's unique key.
    clients = list({(c.client_id, c.effective_at): c for c in clients}.values())
    deposits = [
        Deposit(
            f"d{i}",
            draw(st.sampled_from(client_ids)),
            draw(st.one_of(cents, st.integers(1, 50_000_000))),
            draw(early_instants),
        )
        for i in range(draw(st.integers(0, 12) if client_ids else st.just(0)))
    ]
    versions = []
    for _ in range(draw(st.integers(0, 2))):
        n = draw(st.integers(1, 4))
        cuts = sorted(
            draw(
                st.lists(
                    st.integers(1, 9_999), min_size=n - 1, max_size=n - 1, unique=True
                )
            )
        )
        bps = [b - a for a, b in zip([0, *cuts], [*cuts, 10_000], strict=True)]
        versions.append(
            CommissionVersion(
                effective_at=draw(instants),
                recipients=tuple(
                    CommissionRecipient(f"r{i}", f"w{i}", bp)
                    for i, bp in enumerate(bps)
                ),
            )
        )
    # One version per effective instant: the ledger's unique key.
    versions = list({v.effective_at: v for v in versions}.values())
    all_days = [T0.date() + timedelta(days=i) for i in range(DAYS)]
    days = draw(st.lists(st.sampled_from(all_days), unique=True))
    return Scenario(draw(cash_outs()), days, clients, deposits, versions)


@st.composite
def dense_flow_scenarios(draw) -> Scenario:
    """Several funded active flow clients from the start: proportional splits on most events."""
    letters = st.sampled_from("ABCDEFGHIJKLMNOP")
    client_ids = draw(st.lists(letters, min_size=2, max_size=10, unique=True))
    clients = [ClientChange(cid, T0, "flow", "active") for cid in client_ids]
    # Equal balances appear often, so remainder ties (and the tie rule) are exercised.
    amount = st.one_of(st.sampled_from([100_000, 300_000]), st.integers(1, 5_000_000))
    deposits = [Deposit(f"d-{cid}", cid, draw(amount), T0) for cid in client_ids]
    return Scenario(draw(cash_outs()), [], clients, deposits, [])


any_scenario = st.one_of(scenarios(), dense_flow_scenarios())
