"""LNbits payout throughput: invoice+pay pairs/s, raw httpx loop vs. LNbitsClient.

    .venv/bin/python -m bench.lnbits_raw [--n 100]

Starts a real LNbits (FakeWallet) on loopback, funds one source wallet, makes 10 recipients and
pays them round-robin: first with a plain ``httpx`` loop (the floor any client pays), then the
same number of pairs through :class:`~dca_pipeline.payouts.LNbitsClient`, in the same run. Both
are reported as pairs/s with their ratio. Every pair's result is checked and the recipients'
balances are compared with what was sent, so a fast but wrong loop cannot pass unnoticed.
``raw_pair_rate(server, n)`` is reused by the payout bench as its baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from dca_pipeline.demo.lnbits import LNbitsServer, Wallet, start_lnbits
from dca_pipeline.payouts import LNbitsClient, PayOutcomeKind

RECIPIENTS = 10
WARMUP_PAIRS = 5


@dataclass(frozen=True)
class BenchWallets:
    source: Wallet
    recipients: list[Wallet]


def pair_amount_sats(index: int) -> int:
    """Varied, deterministic amounts so no two consecutive invoices look alike."""
    return 1 + (index * 37) % 1_000


def make_wallets(server: LNbitsServer, pairs: int, recipients: int = RECIPIENTS) -> BenchWallets:
    source = server.new_wallet("bench-source")
    server.fund(source.id, sum(pair_amount_sats(i) for i in range(pairs)) + 1_000)
    return BenchWallets(source, [server.new_wallet(f"bench-r{i}") for i in range(recipients)])


def _received_msat(server: LNbitsServer, wallets: BenchWallets) -> int:
    return sum(server.balance_msat(wallet) for wallet in wallets.recipients)


def _raw_pairs(http: httpx.Client, wallets: BenchWallets, first: int, count: int) -> None:
    for index in range(first, first + count):
        recipient = wallets.recipients[index % len(wallets.recipients)]
        key = f"bench-raw-{index}"
        invoice = http.post(
            "/api/v1/payments",
            json={
                "out": False,
                "amount": pair_amount_sats(index),
                "unit": "sat",
                "memo": key,
                "external_id": key,
            },
            headers={"X-Api-Key": recipient.inkey},
        )
        if invoice.status_code != 201:
            raise RuntimeError(f"invoice {index}: HTTP {invoice.status_code}")
        paid = http.post(
            "/api/v1/payments",
            json={"out": True, "bolt11": invoice.json()["bolt11"], "external_id": key},
            headers={"X-Api-Key": wallets.source.adminkey},
        )
        body = paid.json()
        if paid.status_code != 201 or body.get("status") != "success" or body["amount"] >= 0:
            raise RuntimeError(f"pay {index}: HTTP {paid.status_code} {body.get('status')}")


def _client_pairs(client: LNbitsClient, wallets: BenchWallets, first: int, count: int) -> None:
    for index in range(first, first + count):
        recipient = wallets.recipients[index % len(wallets.recipients)]
        key = f"bench-client-{index}"
        invoice = client.create_invoice(recipient.inkey, pair_amount_sats(index), key, {}, key)
        outcome = client.pay_invoice(invoice.bolt11, {}, key)
        if outcome.kind is not PayOutcomeKind.PAID:
            raise RuntimeError(f"pay {index}: {outcome.kind.value} {outcome.detail}")


def _checked_rate(
    server: LNbitsServer, wallets: BenchWallets, first: int, n: int, timed_loop: Callable[[], None]
) -> float:
    before = _received_msat(server, wallets)
    started = time.perf_counter()
    timed_loop()
    elapsed = time.perf_counter() - started
    sent_msat = sum(pair_amount_sats(i) for i in range(first, first + n)) * 1_000
    if _received_msat(server, wallets) - before != sent_msat:
        raise RuntimeError("recipients did not receive exactly what the loop paid")
    return n / elapsed


def raw_pair_rate(server: LNbitsServer, n: int, wallets: BenchWallets | None = None) -> float:
    """Invoice+pay pairs per second with a bare keep-alive httpx loop (after a short warm-up)."""
    wallets = wallets or make_wallets(server, n + WARMUP_PAIRS)
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        _raw_pairs(http, wallets, 0, WARMUP_PAIRS)
        return _checked_rate(
            server, wallets, WARMUP_PAIRS, n, lambda: _raw_pairs(http, wallets, WARMUP_PAIRS, n)
        )


def client_pair_rate(server: LNbitsServer, n: int, wallets: BenchWallets | None = None) -> float:
    """The same pairs through LNbitsClient (typed outcomes, body checks, retry wrapper)."""
    wallets = wallets or make_wallets(server, n + WARMUP_PAIRS)
    with LNbitsClient(server.url, wallets.source.adminkey, wallets.source.inkey) as client:
        _client_pairs(client, wallets, 0, WARMUP_PAIRS)
        return _checked_rate(
            server,
            wallets,
            WARMUP_PAIRS,
            n,
            lambda: _client_pairs(client, wallets, WARMUP_PAIRS, n),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="timed invoice+pay pairs per loop")
    args = parser.parse_args()

    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="lnbits-bench-") as workdir,
        start_lnbits(Path(workdir)) as server,
    ):
        print(f"LNbits ready in {time.perf_counter() - started:.1f} s at {server.url}")
        raw = raw_pair_rate(server, args.n)
        client = client_pair_rate(server, args.n)
    print(f"raw httpx loop : {raw:6.1f} pairs/s ({1000 / raw:5.1f} ms/pair), n={args.n}")
    print(f"LNbitsClient   : {client:6.1f} pairs/s ({1000 / client:5.1f} ms/pair), n={args.n}")
    print(f"client / raw   : {client / raw:6.2f}")


if __name__ == "__main__":
    main()
