"""Engine throughput: client×cash-out pairs per second, against the naive Fraction loop.

    .venv/bin/python -m bench.engine [--cash-outs 10000] [--clients 1000] [--naive-cash-outs 300]

Both implementations run in this process on the same inputs. The naive loop
(:func:`harness.naive_allocation.naive_flow_split`, per-client ``Fraction``s) is
timed on the first ``--naive-cash-outs`` cash-outs only — it would take minutes on all of them —
and both are reported as pairs/s, so the ratio is rate against rate. The engine's lines for that
prefix are checked against the naive ones, so the bench also proves it measured the same thing.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from dca_pipeline.domain.cash_out import CashOut
from dca_pipeline.domain.engine import ClientChange, Deposit, allocate
from dca_pipeline.domain.rules import BusinessRules
from harness.naive_allocation import naive_flow_split

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def build_inputs(n_cash_outs: int, n_clients: int, seed: int = 1):
    rnd = random.Random(seed)
    clients = [
        ClientChange(f"client-{i:05d}", T0, "flow", "active") for i in range(n_clients)
    ]
    # Balances large enough that every client stays eligible for every cash-out: every pair is
    # real work, not a skipped zero balance.
    deposits = [
        Deposit(f"dep-{i}", c.client_id, rnd.randint(10**7, 10**9), T0)
        for i, c in enumerate(clients)
    ]
    cash_outs = []
    for i in range(n_cash_outs):
        fiat = rnd.choice([10_000, 80_000, 200_000, 400_000, 500_000])
        cash_outs.append(
            CashOut.from_lamassu(
                id=f"tx-{i:06d}",
                event_time=T0 + timedelta(minutes=10 * (i + 1)),
                fiat_cents=fiat,
                crypto_atoms=fiat * rnd.randint(118, 135) // 100 * 100,
                commission_percentage=Fraction(
                    rnd.choice([3_000, 4_500, 5_500]), 100_000
                ),
                discount=rnd.choice([0, 0, 0, 10]),
            )
        )
    return clients, deposits, cash_outs


def naive_run(cash_outs, deposits) -> tuple[int, list]:
    remaining = {d.client_id: d.amount_cents for d in deposits}
    pairs, out = 0, []
    for cash_out in cash_outs:
        eligible = {c: r for c, r in remaining.items() if r > 0}
        fiat, _, sats, _ = naive_flow_split(
            cash_out.fiat_cents, cash_out.principal_sats, eligible
        )
        for client_id, share in fiat.items():
            remaining[client_id] -= share
        pairs += len(eligible)
        out.append((fiat, sats))
    return pairs, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cash-outs", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=1_000)
    parser.add_argument("--naive-cash-outs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    clients, deposits, cash_outs = build_inputs(args.cash_outs, args.clients)
    rules = BusinessRules()
    engine_times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = allocate(
            cash_outs=cash_outs,
            fixed_days=[],
            clients=clients,
            deposits=deposits,
            commission_versions=[],
            rules=rules,
        )
        engine_times.append(time.perf_counter() - started)
    pairs = sum(len(e.client_index) for e in result.events)
    engine_rate = pairs / min(engine_times)

    prefix = cash_outs[: args.naive_cash_outs]
    started = time.perf_counter()
    naive_pairs, naive_out = naive_run(prefix, deposits)
    naive_seconds = time.perf_counter() - started
    naive_rate = naive_pairs / naive_seconds

    for event, (fiat, sats) in zip(result.events, naive_out, strict=False):
        ids = event.client_ids[event.client_index].tolist()
        assert dict(zip(ids, event.client_fiat_cents.tolist(), strict=True)) == fiat
        assert dict(zip(ids, event.client_sats.tolist(), strict=True)) == sats

    print(
        f"engine: {len(cash_outs):,} cash-outs x {len(clients):,} flow clients = {pairs:,} pairs"
    )
    print(
        f"engine: best of {args.repeat}: {min(engine_times):.3f} s"
        f" -> {engine_rate / 1e6:.2f} M pairs/s"
    )
    print(
        f"naive Fraction loop: {naive_pairs:,} pairs in {naive_seconds:.3f} s"
        f" -> {naive_rate / 1e6:.3f} M pairs/s"
    )
    print(
        f"ratio engine/naive: {engine_rate / naive_rate:.1f}x (same results on the naive prefix)"
    )


if __name__ == "__main__":
    main()
