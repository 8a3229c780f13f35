"""business-rules §9: every worked example is a test."""

from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction

from dca_pipeline.domain.cash_out import CashOut, split_principal
from dca_pipeline.domain.commission import CommissionRecipient, CommissionVersion
from dca_pipeline.domain.engine import AllocationLine, ClientChange, Deposit, allocate
from dca_pipeline.domain.rules import BusinessRules

T0 = datetime(2025, 6, 1, tzinfo=UTC)
T1 = datetime(2025, 6, 9, 19, 12, 42, tzinfo=UTC)
RULES = BusinessRules()


def example_a_cash_out() -> CashOut:
    return CashOut.from_lamassu(
        id="tx-a",
        event_time=T1,
        fiat_cents=200_000,
        crypto_atoms=266_800,
        commission_percentage=Fraction("0.03"),
        discount=0,  # NULL → 0
    )


def flow(client_id: str) -> ClientChange:
    return ClientChange(client_id, T0, "flow", "active")


def test_example_a_principal_and_commission() -> None:
    assert split_principal(266_800, Fraction("0.03"), 0) == (258_796, 8_004)


def test_example_a_two_flow_clients() -> None:
    deposits = [Deposit("d1", "A", 900_000, T0), Deposit("d2", "B", 100_000, T0)]
    result = allocate(
        cash_outs=[example_a_cash_out()],
        fixed_days=[],
        clients=[flow("A"), flow("B")],
        deposits=deposits,
        commission_versions=[],
        rules=RULES,
    )
    assert list(result.lines()) == [
        AllocationLine(1, "tx-a", "flow", "A", 180_000, 232_916),
        AllocationLine(2, "tx-a", "flow", "B", 20_000, 25_880),
    ]
    assert result.balances(deposits) == {"A": 720_000, "B": 80_000}


def test_example_b_discount() -> None:
    assert split_principal(512_400, Fraction("0.055"), 10) == (487_036, 25_364)


def test_example_c_cap_and_no_later_share() -> None:
    later = CashOut.from_lamassu(
        id="tx-later",
        event_time=datetime(2025, 6, 9, 20, tzinfo=UTC),
        fiat_cents=10_000,
        crypto_atoms=13_000,
        commission_percentage=Fraction(0),
        discount=0,
    )
    deposits = [Deposit("d1", "A", 50_000, T0)]
    result = allocate(
        cash_outs=[example_a_cash_out(), later],
        fixed_days=[],
        clients=[flow("A")],
        deposits=deposits,
        commission_versions=[],
        rules=RULES,
    )
    assert list(result.lines()) == [
        AllocationLine(1, "tx-a", "flow", "A", 50_000, 64_699),
        AllocationLine(2, "tx-a", "unallocated", None, 150_000, 194_097),
        AllocationLine(3, "tx-later", "unallocated", None, 10_000, 13_000),
    ]
    assert result.balances(deposits) == {"A": 0}


def test_example_d_commission_split() -> None:
    version = CommissionVersion(
        T0,
        (
            CommissionRecipient("r2", "w2", 3_000),
            CommissionRecipient("r1", "w1", 7_000),
        ),
    )
    shares = {r.recipient_id: s for r, s in version.split(8_004)}
    assert shares == {"r1": 5_603, "r2": 2_401}
    result = allocate(
        cash_outs=[example_a_cash_out()],
        fixed_days=[],
        clients=[],
        deposits=[],
        commission_versions=[version],
        rules=RULES,
    )
    assert [(line.kind, line.recipient_id, line.sats) for line in result.lines()] == [
        ("unallocated", None, 258_796),
        ("commission", "r1", 5_603),
        ("commission", "r2", 2_401),
    ]


def test_example_e_fixed() -> None:
    deposits = [Deposit("d1", "F", 10_000, T0)]
    result = allocate(
        cash_outs=[],
        fixed_days=[date(2025, 6, 10)],
        clients=[ClientChange("F", T0, "fixed", "active", daily_limit_cents=15_000)],
        deposits=deposits,
        commission_versions=[],
        rules=RULES,
        rate_history=[example_a_cash_out()],  # rate 258,796 / 2,000.00 GTQ
    )
    assert list(result.lines()) == [
        AllocationLine(1, "fixed:2025-06-10", "fixed", "F", 10_000, 12_939)
    ]
    assert result.balances(deposits) == {"F": 0}
    assert result.events[0].inputs["rate_sats_per_cent"] == "64699/50000"
