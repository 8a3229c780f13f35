"""One real LNbits (FakeWallet) per test session; every test makes its own fresh wallets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from dca_pipeline.demo.lnbits import LNbitsServer, Wallet, start_lnbits
from dca_pipeline.payouts import LNbitsClient
from dca_pipeline_tests.payouts.seeding import (
    Line,
    add_client,
    add_commission_recipients,
    add_event,
)

SOURCE_FUNDING_SATS = 100_000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lnbits: needs the real LNbits server (.lnbits-venv)")


@pytest.fixture(scope="session")
def lnbits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LNbitsServer]:
    # start_lnbits raises (the tests fail, never skip) when .lnbits-venv is missing.
    server = start_lnbits(tmp_path_factory.mktemp("lnbits"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def source_wallet(lnbits_server: LNbitsServer) -> Wallet:
    wallet = lnbits_server.new_wallet("source")
    lnbits_server.fund(wallet.id, SOURCE_FUNDING_SATS)
    return wallet


@pytest.fixture
def recipient_wallet(lnbits_server: LNbitsServer) -> Wallet:
    return lnbits_server.new_wallet("recipient")


@pytest.fixture
def lnbits_client(lnbits_server: LNbitsServer, source_wallet: Wallet) -> Iterator[LNbitsClient]:
    with LNbitsClient(
        lnbits_server.url,
        source_wallet.adminkey,
        source_wallet.inkey,
        max_attempts=3,
        backoff_s=0.05,
    ) as client:
        yield client


# --------------------------------------------------------------------------- payout procedure
@dataclass
class PayoutWorld:
    """A migrated ledger with clients/commission recipients whose wallets are real LNbits
    wallets, a funded source wallet, and the standard allocation lines of ``seed_standard``."""

    engine: sa.Engine
    ledger_url: str
    server: LNbitsServer
    source: Wallet
    wallets: dict[str, Wallet]  # recipient_id -> wallet

    def client(self, **overrides: object) -> LNbitsClient:
        settings: dict[str, object] = {"max_attempts": 3, "backoff_s": 0.05}
        settings.update(overrides)
        return LNbitsClient(
            str(settings.pop("url", self.server.url)),
            self.source.adminkey,
            self.source.inkey,
            **settings,  # type: ignore[arg-type]
        )

    def sats(self, wallet: Wallet) -> int:
        return self.server.balance_msat(wallet) // 1000

    def balances(self) -> dict[str, int]:
        return {name: self.sats(wallet) for name, wallet in self.wallets.items()}

    def seed_standard(self) -> dict[str, int]:
        """Business-rules example A (+D commission, +E fixed); returns sats due per wallet name."""
        w = self.wallets
        add_event(
            self.engine,
            "cashout-A",
            [
                Line("flow", "alice", w["alice"].id, 180_000, 232_916),
                Line("flow", "bob", w["bob"].id, 20_000, 25_880),
                Line("commission", "r1", w["r1"].id, 0, 5_603),
                # r2's commission goes to alice's wallet: one payout for that wallet.
                Line("commission", "r2", w["alice"].id, 0, 2_401),
                Line("unallocated", None, None, 0, 0),
            ],
        )
        add_event(
            self.engine, "fixed:2026-11-24", [Line("fixed", "carol", w["carol"].id, 10_000, 12_939)]
        )
        return {"alice": 235_317, "bob": 25_880, "carol": 12_939, "r1": 5_603}


STANDARD_TOTAL_SATS = 235_317 + 25_880 + 12_939 + 5_603


@pytest.fixture
def world(ledger, lnbits_server: LNbitsServer) -> PayoutWorld:  # type: ignore[no-untyped-def]
    engine = ledger.engine()
    source = lnbits_server.new_wallet("source")
    lnbits_server.fund(source.id, STANDARD_TOTAL_SATS + 1_000)
    wallets = {name: lnbits_server.new_wallet(name) for name in ("alice", "bob", "carol", "r1")}
    for name in ("alice", "bob", "carol"):
        add_client(engine, name, wallets[name])
    add_commission_recipients(engine, {"r1": wallets["r1"], "r2": wallets["alice"]})
    return PayoutWorld(engine, ledger.url, lnbits_server, source, wallets)
