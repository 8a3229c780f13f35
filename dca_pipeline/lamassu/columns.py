"""Columns a Lamassu export must have for each use (business-rules §10); extra ones are kept."""

from __future__ import annotations

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "cash_out_txs": (
        "id",
        "fiat",
        "crypto_atoms",
        "crypto_code",
        "fiat_code",
        "commission_percentage",
        "discount",
        "raw_ticker_price",
        "status",
        "dispense",
        "dispense_confirmed",
        "error",
        "created",
        "confirmed_at",
    ),
    "cash_out_actions": ("id", "tx_id", "action", "created"),
    "cash_in_txs": ("id", "created", "fiat", "crypto_atoms", "crypto_code", "fiat_code"),
}
