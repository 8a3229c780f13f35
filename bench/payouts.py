"""Payout throughput and payments per run, against a real LNbits (FakeWallet).

    .venv/bin/python -m bench.payouts [--recipients 100] [--ledger-url URL]

(a) payouts/s of the exactly-once procedure (lease, reconcile, plan+claim, funding check, per
    payout: invoice, store bolt11+hash, pay, record) versus the raw invoice+pay rate of a bare
    httpx loop against the same LNbits in the same run (``bench.lnbits_raw``); goal >= 0.8x.
(c) LNbits payments per run per recipient, counted on LNbits itself (source wallet rows), for a
    first run, a re-run over the same (paid) lines, and a run with new lines; goal <= 1.

Every payout is checked on the recipients' balances, so a fast but wrong run cannot pass.
The ledger is a fresh SQLite file unless ``--ledger-url`` names an (empty) database.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import sqlalchemy as sa

from bench.lnbits_raw import raw_pair_rate
from dca_pipeline.demo.lnbits import LNbitsServer, Wallet, start_lnbits
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.database import ledger_engine, migrate
from dca_pipeline.ledger.sequence import next_seq
from dca_pipeline.payouts import LNbitsClient, PaymentKind
from dca_pipeline.payouts.plan import PAYOUT_ID_PREFIX
from dca_pipeline.payouts.procedure import RunStatus, run_payouts

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def amount(index: int, round_no: int) -> int:
    return 1 + (index * 37 + round_no * 11) % 1_000


def seed(engine: sa.Engine, wallets: list[Wallet], round_no: int) -> None:
    source_id = f"bench-event-{round_no}"
    with engine.begin() as c:
        if round_no == 0:
            c.execute(
                s.clients.insert(),
                [
                    {
                        "client_id": f"c{i:04d}",
                        "lnbits_user_id": w.user_id,
                        "wallet_id": w.id,
                        "invoice_key": w.inkey,
                        "created_at": NOW,
                    }
                    for i, w in enumerate(wallets)
                ],
            )
        c.execute(
            s.allocation_events.insert().values(
                source_id=source_id,
                source_kind="cash_out",
                event_time=NOW,
                event_rank=0,
                business_day=date(2026, 11, 24),
                fiat_cents=100 * len(wallets),
                principal_sats=sum(amount(i, round_no) for i in range(len(wallets))),
                commission_sats=0,
                inputs_json="{}",
                seq=next_seq(),
                cash_out_id=source_id,
                as_of=NOW,
                allocated_at=NOW,
            )
        )
        c.execute(
            s.allocation_lines.insert(),
            [
                {
                    "source_id": source_id,
                    "line_no": i + 1,
                    "kind": "flow",
                    "recipient_id": f"c{i:04d}",
                    "wallet_id": w.id,
                    "business_day": date(2026, 11, 24),
                    "fiat_cents": 100,
                    "sats": amount(i, round_no),
                    "created_at": NOW,
                }
                for i, w in enumerate(wallets)
            ],
        )


def payments_per_wallet(client: LNbitsClient, engine: sa.Engine) -> Counter[str]:
    """Successful payouts out of the source wallet, per recipient wallet, read from LNbits."""
    with engine.connect() as c:
        wallet_of = dict(c.execute(sa.select(s.payouts.c.payout_id, s.payouts.c.wallet_id)).all())
    rows = client.list_payments({"external_id[like]": PAYOUT_ID_PREFIX})
    return Counter(
        wallet_of.get(row.external_id or "", "?")
        for row in rows
        if row.kind is PaymentKind.PAID and row.outgoing
    )


def timed_run(
    engine: sa.Engine, server: LNbitsServer, source: Wallet, run_id: str
) -> tuple[float, object]:
    with LNbitsClient(server.url, source.adminkey, source.inkey) as client:
        started = time.perf_counter()
        report = run_payouts(engine, client, run_id=run_id)
        return time.perf_counter() - started, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100)
    parser.add_argument("--ledger-url", default=None)
    args = parser.parse_args()
    n = args.recipients

    with tempfile.TemporaryDirectory(prefix="payout-bench-") as workdir:
        url = args.ledger_url or f"sqlite:///{Path(workdir) / 'ledger.sqlite'}"
        engine = ledger_engine(url)
        migrate(engine)
        with start_lnbits(Path(workdir) / "lnbits") as server:
            source = server.new_wallet("bench-source")
            wallets = [server.new_wallet(f"r{i}") for i in range(n)]
            server.fund(source.id, 3 * 1_000 * n)
            print(f"LNbits {server.url}, {n} recipients, ledger {sa.make_url(url).drivername}")

            # Baseline on its own wallets, before AND after: LNbits slows as its DB grows, so
            # one side only would favour whichever loop ran first.
            raw_before = raw_pair_rate(server, n)

            seed(engine, wallets, 0)
            before = [server.balance_msat(w) for w in wallets]
            elapsed, report = timed_run(engine, server, source, "bench-1")
            assert report.status is RunStatus.COMPLETED, report  # type: ignore[attr-defined]
            after = [server.balance_msat(w) for w in wallets]
            expected = [amount(i, 0) * 1_000 for i in range(n)]
            if [a - b for a, b in zip(after, before, strict=True)] != expected:
                raise RuntimeError("recipients did not receive exactly their payouts")
            rate = n / elapsed

            rerun_s, rerun = timed_run(engine, server, source, "bench-2")
            seed(engine, wallets, 1)
            third_s, third = timed_run(engine, server, source, "bench-3")

            with LNbitsClient(server.url, source.adminkey, source.inkey) as client:
                per_wallet = payments_per_wallet(client, engine)
            raw_after = raw_pair_rate(server, n)
            raw = (raw_before + raw_after) / 2

    print(
        f"(a) raw invoice+pay loop : {raw:6.1f} pairs/s ({1000 / raw:5.1f} ms/pair; "
        f"{raw_before:.1f} before, {raw_after:.1f} after)"
    )
    print(f"    payout procedure     : {rate:6.1f} payouts/s ({1000 / rate:5.1f} ms/payout)")
    print(f"    procedure / raw      : {rate / raw:6.2f}   (goal >= 0.80)")
    print(
        f"(c) LNbits payments per run: first {report.lnbits_payments} for {n} recipients, "  # type: ignore[attr-defined]
        f"re-run {rerun.lnbits_payments} ({rerun_s:.2f} s), "  # type: ignore[attr-defined]
        f"new lines {third.lnbits_payments} ({third_s:.2f} s)"  # type: ignore[attr-defined]
    )
    print(
        f"    per recipient over all 3 runs (LNbits rows): max {max(per_wallet.values())}, "
        f"min {min(per_wallet.values())}, wallets {len(per_wallet)} (goal: 2 each = 1 per run "
        "with lines, 0 for the re-run)"
    )


if __name__ == "__main__":
    main()
