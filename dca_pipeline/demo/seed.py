"""Demo data: the bundled sample's clients, deposits and commission split, entered through the
admin API (``ledger/admin.py``) exactly as an admin would, and their LNbits wallets.

The sample files (``data/sample/``) are read with the ``simulate`` loaders, so the demo, the
``simulate`` preview of the README and the pipeline agree on one set of inputs.
"""

from __future__ import annotations

import csv
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dca_pipeline.config import config
from dca_pipeline.ledger import admin
from dca_pipeline.simulate import load_clients, load_commission, load_deposits

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
SAMPLE_FIRST_DAY = "2025-06-01"
SAMPLE_LAST_DAY = "2025-06-07"
#: Clients and the commission split take effect before the first sample cash-out.
SEED_EFFECTIVE_AT = datetime(2025, 5, 30, tzinfo=UTC)
LAMASSU_FILES = ("cash_out_txs.csv", "cash_out_actions.csv", "cash_in_txs.csv")


@dataclass(frozen=True)
class DemoWallet:
    """Where one client's or recipient's sats go. ``invoice_key`` is secret (not in repr)."""

    wallet_id: str
    lnbits_user_id: str
    invoice_key: str = field(repr=False)


def copy_sample_lamassu(folder: Path) -> Path:
    """The folder source's directory, filled with the bundled Lamassu export."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in LAMASSU_FILES:
        shutil.copyfile(SAMPLE_DIR / "lamassu" / name, folder / name)
    return folder


def sample_party_ids() -> tuple[list[str], list[str]]:
    """(client ids, commission recipient ids) of the sample, in file order."""
    with (SAMPLE_DIR / "clients.csv").open(newline="") as f:
        clients = [row["client_id"] for row in csv.DictReader(f)]
    with (SAMPLE_DIR / "commission.csv").open(newline="") as f:
        recipients = [row["recipient_id"] for row in csv.DictReader(f)]
    return clients, recipients


def sample_received_sats() -> int:
    """Σ crypto_atoms of the sample's dispensed cash-outs: what the ATM's wallet received."""
    total = 0
    with (SAMPLE_DIR / "lamassu" / "cash_out_txs.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["dispense"] == "t" and row["crypto_code"] in ("BTC", "LN"):
                total += int(row["crypto_atoms"])
    return total


def placeholder_wallets() -> dict[str, DemoWallet]:
    """Dry-run wallets: the sample's names and throwaway keys (nothing can be paid to them)."""
    clients, recipients = sample_party_ids()
    return {
        party: DemoWallet(f"wallet-{party}", f"user-{party}", f"dryrun-{secrets.token_hex(16)}")
        for party in [*clients, *recipients]
    }


def seed_ledger(ledger_url: str, wallets: Mapping[str, DemoWallet]) -> dict[str, int]:
    """Clients, confirmed deposits and the commission split of the sample, via the admin API.

    Returns counts for the summary. Pending deposits of the sample are entered as pending.
    """
    rules = config().rules()
    clients_csv = SAMPLE_DIR / "clients.csv"
    changes = load_clients(clients_csv, rules)
    for change in changes:
        wallet = wallets[change.client_id]
        admin.add_client(
            ledger_url,
            client_id=change.client_id,
            lnbits_user_id=wallet.lnbits_user_id,
            wallet_id=wallet.wallet_id,
            invoice_key=wallet.invoice_key,
            display_name=change.client_id.capitalize(),
            mode=change.mode,
            status=change.status,
            daily_limit_cents=change.daily_limit_cents,
            effective_at=SEED_EFFECTIVE_AT,
            now=SEED_EFFECTIVE_AT,
        )
    confirmed = load_deposits(SAMPLE_DIR / "deposits.csv", [c.client_id for c in changes])
    for deposit in confirmed:
        admin.add_deposit(
            ledger_url,
            client_id=deposit.client_id,
            amount_cents=deposit.amount_cents,
            deposit_id=deposit.deposit_id,
            confirm=True,
            confirmed_at=deposit.confirmed_at,
            note="demo seed",
            now=max(deposit.confirmed_at, SEED_EFFECTIVE_AT),
        )
    # The loader keeps confirmed deposits only (what allocations use); admins see the rest too.
    with (SAMPLE_DIR / "deposits.csv").open(newline="") as f:
        pending = [row for row in csv.DictReader(f) if row["status"] == "pending"]
    for row in pending:
        admin.add_deposit(
            ledger_url,
            client_id=row["client_id"],
            amount_cents=admin.parse_gtq(row["amount"]),
            deposit_id=row["deposit_id"],
            note="demo seed (not confirmed yet)",
        )
    (version,) = load_commission(SAMPLE_DIR / "commission.csv")
    admin.set_commission(
        ledger_url,
        recipients=[
            admin.RecipientSpec(
                recipient_id=r.recipient_id,
                wallet_id=wallets[r.recipient_id].wallet_id,
                basis_points=r.basis_points,
                invoice_key=wallets[r.recipient_id].invoice_key,
            )
            for r in version.recipients
        ],
        effective_at=SEED_EFFECTIVE_AT,
        note="demo seed",
        now=SEED_EFFECTIVE_AT,
    )
    return {
        "clients": len(changes),
        "deposits": len(confirmed),
        "pending_deposits": len(pending),
        "recipients": len(version.recipients),
    }
