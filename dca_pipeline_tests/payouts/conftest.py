"""One real LNbits (FakeWallet) per test session; every test makes its own fresh wallets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dca_pipeline.payouts import LNbitsClient
from dca_pipeline.testing.lnbits_server import LNbitsServer, Wallet, start_lnbits

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
