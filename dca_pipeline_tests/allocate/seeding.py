"""Seed a ledger directly through the schema tables (clients, settings, deposits, commission,
validated cash-outs), exactly as the admin and ingest stages would leave them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import sqlalchemy as sa

from dca_pipeline.domain.cash_out import split_principal
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.ledger import schema as s

SINCE = datetime(2024, 12, 1, tzinfo=UTC)
RULES = BusinessRules()


def add_client(
    c: sa.Connection,
    client_id: str,
    *,
    mode: str = "flow",
    status: str = "active",
    daily_limit_cents: int | None = None,
    effective_at: datetime = SINCE,
) -> None:
    c.execute(
        s.clients.insert().values(
            client_id=client_id,
            lnbits_user_id=f"user-{client_id}",
            wallet_id=f"wallet-{client_id}",
            invoice_key=f"secret-invoice-key-{client_id}",
            created_at=effective_at,
        )
    )
    change(c, client_id, mode=mode, status=status, daily_limit_cents=daily_limit_cents,
           effective_at=effective_at)


def change(
    c: sa.Connection,
    client_id: str,
    *,
    mode: str,
    status: str,
    effective_at: datetime,
    daily_limit_cents: int | None = None,
) -> None:
    c.execute(
        s.client_settings.insert().values(
            client_id=client_id,
            effective_at=effective_at,
            mode=mode,
            status=status,
            daily_limit_cents=daily_limit_cents,
            recorded_at=effective_at,
        )
    )


def deposit(
    c: sa.Connection,
    deposit_id: str,
    client_id: str,
    amount_cents: int,
    confirmed_at: datetime = SINCE,
    *,
    corrects: str | None = None,
) -> None:
    c.execute(
        s.deposits.insert().values(
            deposit_id=deposit_id,
            client_id=client_id,
            kind="correction" if corrects else "deposit",
            amount_cents=amount_cents,
            currency="GTQ",
            status="confirmed",
            created_at=confirmed_at,
            confirmed_at=confirmed_at,
            corrects_deposit_id=corrects,
        )
    )


def commission(
    c: sa.Connection, shares: dict[str, int], effective_at: datetime = SINCE
) -> None:
    version_id = c.execute(
        s.commission_versions.insert()
        .values(effective_at=effective_at, recorded_at=effective_at)
        .returning(s.commission_versions.c.version_id)
    ).scalar_one()
    c.execute(
        s.commission_recipients.insert(),
        [
            dict(
                version_id=version_id,
                recipient_id=rid,
                wallet_id=f"wallet-{rid}",
                invoice_key=f"secret-{rid}-key",
                basis_points=bp,
            )
            for rid, bp in shares.items()
        ],
    )


def cash_out_row(
    cash_out_id: str,
    event_time: datetime,
    fiat_cents: int,
    crypto_atoms: int,
    *,
    commission_percentage: str = "0.03",
    discount: int | None = None,
    eligible: bool = True,
    rules: BusinessRules = RULES,
) -> dict[str, object]:
    principal, commission_sats = split_principal(
        crypto_atoms, Fraction(commission_percentage), discount or 0
    )
    return dict(
        id=cash_out_id,
        status="confirmed",
        crypto_code="BTC",
        fiat_code="GTQ",
        created=event_time - timedelta(seconds=30),
        confirmed_at=event_time - timedelta(seconds=10),
        dispense_at=event_time,
        event_time=event_time,
        business_day=rules.business_day(event_time),
        fiat_cents=fiat_cents,
        crypto_atoms=crypto_atoms,
        commission_percentage=commission_percentage,
        discount=discount,
        principal_sats=principal,
        commission_sats=commission_sats,
        raw_ticker_price=None,
        ticker_principal_sats=None,
        ticker_deviation=False,
        dispense=True,
        dispense_confirmed=eligible,
        error=None,
        eligible=eligible,
        ineligible_reason=None if eligible else "dispense not confirmed",
        validated_at=event_time + timedelta(minutes=1),
    )


def add_cash_outs(c: sa.Connection, rows: list[dict[str, object]]) -> None:
    if rows:
        c.execute(s.validated_cash_outs.insert(), rows)


@dataclass(frozen=True)
class Scenario:
    first_day: date
    last_day: date
    flow_clients: int
    fixed_clients: int
    cash_outs_per_day: int


def seed_scenario(c: sa.Connection, sc: Scenario, *, seed: int = 7) -> None:
    """Flow + fixed clients with staggered deposits, a 70/30 commission, random cash-outs."""
    rng = random.Random(seed)
    commission(c, {"operator": 7000, "partner": 3000})
    for i in range(sc.flow_clients):
        cid = f"flow-{i:04d}"
        add_client(c, cid)
        deposit(c, f"dep-{cid}", cid, rng.randint(50_000, 5_000_000))
    for i in range(sc.fixed_clients):
        cid = f"fixed-{i:04d}"
        add_client(c, cid, mode="fixed", daily_limit_cents=rng.choice([5_000, 15_000, 50_000]))
        deposit(c, f"dep-{cid}", cid, rng.randint(20_000, 400_000))
    # A deposit that arrives in the middle of the period, so balances change over time.
    if sc.flow_clients:
        mid = RULES.day_start_utc(sc.first_day + (sc.last_day - sc.first_day) / 2)
        deposit(c, "dep-late", "flow-0000", 1_000_000, mid)
    # One cash-out early on the first day, so its fixed run (09:00) has a reference rate (§5).
    eve = RULES.day_start_utc(sc.first_day) + timedelta(minutes=30)
    rows = [cash_out_row("tx-eve", eve, 100_000, 13_000_000)]
    day = sc.first_day
    while day <= sc.last_day:
        start = RULES.day_start_utc(day)
        for k in range(sc.cash_outs_per_day):
            at = start + timedelta(seconds=rng.randint(0, 86_399), microseconds=k)
            fiat = rng.randint(1, 400) * 500
            atoms = fiat * rng.randint(120, 140)
            rows.append(cash_out_row(f"tx-{day:%Y%m%d}-{k:04d}", at, fiat, atoms,
                                     discount=rng.choice([None, None, 10])))
        day += timedelta(days=1)
    add_cash_outs(c, rows)
