"""Payouts: the LNbits client and the exactly-once payout procedure (business-rules §7).

Names are imported on first use, so the payout CLI (``payouts status`` …) loads neither Dagster
(``LNbitsResource`` lives in :mod:`dca_pipeline.payouts.resource`) nor httpx until it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dca_pipeline.payouts.lnbits import (
        Invoice,
        LNbitsAuthError,
        LNbitsClient,
        LNbitsError,
        LNbitsPaymentUnknown,
        LNbitsProtocolError,
        LNbitsRequestError,
        LNbitsUnavailable,
        PaymentKind,
        PaymentStatus,
        PayOutcome,
        PayOutcomeKind,
        msat_to_sats_exact,
        sats_to_msat,
    )
    from dca_pipeline.payouts.resource import LNbitsResource

__all__ = [
    "Invoice",
    "LNbitsAuthError",
    "LNbitsClient",
    "LNbitsError",
    "LNbitsPaymentUnknown",
    "LNbitsProtocolError",
    "LNbitsRequestError",
    "LNbitsResource",
    "LNbitsUnavailable",
    "PayOutcome",
    "PayOutcomeKind",
    "PaymentKind",
    "PaymentStatus",
    "msat_to_sats_exact",
    "sats_to_msat",
]
_MODULE_OF = {
    "LNbitsResource": "dca_pipeline.payouts.resource",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _MODULE_OF.get(name, "dca_pipeline.payouts.lnbits")
    return getattr(importlib.import_module(module), name)
