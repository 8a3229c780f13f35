"""Resources shared by every stage, configured from the environment (secrets via ``EnvVar``).

Stage-specific resources (the Lamassu source, LNbits, alerts) are defined beside their stage in
``defs/<stage>/resources.py``; this module holds the ones every stage uses.
"""

from __future__ import annotations

import os

import dagster as dg

from dca_pipeline.defs.settings import settings_from_env
from dca_pipeline.ledger.database import DEFAULT_LEDGER_URL, LedgerResource


def ledger_from_env() -> LedgerResource:
    """``DCA_LEDGER_URL`` (may hold a password, so only its name reaches the UI), else SQLite."""
    if os.environ.get("DCA_LEDGER_URL", "").strip():
        return LedgerResource(url=dg.EnvVar("DCA_LEDGER_URL"))
    return LedgerResource(url=DEFAULT_LEDGER_URL)


defs = dg.Definitions(resources={"settings": settings_from_env(), "ledger": ledger_from_env()})
