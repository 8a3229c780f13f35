"""Resources shared by every stage, configured from :func:`dca_pipeline.config.config`
(secrets via ``EnvVar``).

Stage-specific resources (the Lamassu source, LNbits, alerts) are defined beside their stage in
``defs/<stage>/resources.py``; this module holds the ones every stage uses.
"""

from __future__ import annotations

import dagster as dg

from dca_pipeline.config import DEFAULT_LEDGER_URL, Config, config
from dca_pipeline.defs.settings import settings_from_env
from dca_pipeline.ledger.resource import LedgerResource


def ledger_from_env(settings: Config | None = None) -> LedgerResource:
    """``DCA_LEDGER_URL`` (may hold a password, so only its name reaches the UI), else SQLite."""
    url = (settings or config()).ledger_url
    if url:
        return LedgerResource(url=dg.EnvVar(url.name))
    return LedgerResource(url=DEFAULT_LEDGER_URL)


defs = dg.Definitions(resources={"settings": settings_from_env(), "ledger": ledger_from_env()})
