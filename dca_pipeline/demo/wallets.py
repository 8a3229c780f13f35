"""The demo's LNbits: a real LNbits (FakeWallet) on loopback, one wallet per client and
commission recipient, and an operator-funded source wallet (``demo/lnbits.py``).

Payments between wallets of one LNbits are internal and final, so the demo's payouts are real
LNbits payments: balances move, payment hashes exist, reconciliation has something to compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dca_pipeline.demo.lnbits import (
    DEFAULT_LNBITS_PYTHON,
    LNbitsServer,
    Wallet,
    start_lnbits,
)
from dca_pipeline.demo.seed import DemoWallet, sample_party_ids, sample_received_sats


def lnbits_available() -> bool:
    """True when the LNbits venv that ``scripts/bootstrap.sh`` builds is present."""
    return DEFAULT_LNBITS_PYTHON.exists()


@dataclass
class DemoLNbits:
    server: LNbitsServer
    source: Wallet
    wallets: dict[str, Wallet]
    funded_sats: int

    def demo_wallets(self) -> dict[str, DemoWallet]:
        return {party: DemoWallet(w.id, w.user_id, w.inkey) for party, w in self.wallets.items()}

    def environment(self) -> dict[str, str]:
        """The pipeline's LNbits settings for this server (keys: only ever in the env)."""
        return {
            "DCA_LNBITS_URL": self.server.url,
            "DCA_LNBITS_SOURCE_ADMIN_KEY": self.source.adminkey,
            "DCA_LNBITS_SOURCE_INVOICE_KEY": self.source.inkey,
        }

    def balances_sats(self) -> dict[str, int]:
        """Current balance of every demo wallet, the source included, in whole sats."""
        balances = {"(source)": self.server.balance_msat(self.source) // 1000}
        for party, wallet in self.wallets.items():
            balances[party] = self.server.balance_msat(wallet) // 1000
        return balances

    def stop(self) -> None:
        self.server.stop()


def start_demo_lnbits(workdir: Path) -> DemoLNbits:
    """Start LNbits under ``workdir``, create the wallets, fund the source with what the sample
    ATM received (an operator top-up; the pipeline itself never mints sats)."""
    server = start_lnbits(workdir)
    try:
        clients, recipients = sample_party_ids()
        wallets = {party: server.new_wallet(party) for party in [*clients, *recipients]}
        source = server.new_wallet("atm-source")
        funded = sample_received_sats()
        server.fund(source.id, funded)
    except BaseException:
        server.stop()
        raise
    return DemoLNbits(server=server, source=source, wallets=wallets, funded_sats=funded)
