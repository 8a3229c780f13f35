"""Payouts: the LNbits client and the exactly-once payout procedure (business-rules §7)."""

from dca_pipeline.payouts.lnbits import (
    Invoice,
    LNbitsAuthError,
    LNbitsClient,
    LNbitsError,
    LNbitsPaymentUnknown,
    LNbitsProtocolError,
    LNbitsRequestError,
    LNbitsResource,
    LNbitsUnavailable,
    PaymentKind,
    PaymentStatus,
    PayOutcome,
    PayOutcomeKind,
    msat_to_sats_exact,
    sats_to_msat,
)

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
