"""Commission recipients and the per-cash-out commission split (business-rules §6)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dca_pipeline.domain.apportion import largest_remainder

TOTAL_BASIS_POINTS = 10_000


class CommissionConfigError(ValueError):
    """A commission configuration the system refuses (shares must sum to exactly 10 000 bp)."""


@dataclass(frozen=True)
class CommissionRecipient:
    recipient_id: str
    wallet_id: str
    basis_points: int


@dataclass(frozen=True)
class CommissionVersion:
    """The recipient list in force from ``effective_at`` until the next version."""

    effective_at: datetime
    recipients: tuple[CommissionRecipient, ...]

    def __post_init__(self) -> None:
        if self.effective_at.tzinfo is None:
            raise CommissionConfigError("effective_at must be timezone-aware")
        validate_recipients(self.recipients)
        # Ties go to the smaller recipient id: keep recipients in that order once, here.
        ordered = tuple(sorted(self.recipients, key=lambda r: r.recipient_id))
        object.__setattr__(self, "recipients", ordered)

    def split(self, commission_sats: int) -> list[tuple[CommissionRecipient, int]]:
        """Largest remainder over the basis points; Σ shares == commission_sats exactly."""
        shares = largest_remainder(
            commission_sats, [r.basis_points for r in self.recipients]
        )
        return list(zip(self.recipients, shares, strict=True))


def validate_recipients(recipients: tuple[CommissionRecipient, ...]) -> None:
    if not recipients:
        raise CommissionConfigError(
            "a commission configuration needs at least one recipient"
        )
    ids = [r.recipient_id for r in recipients]
    if len(set(ids)) != len(ids):
        raise CommissionConfigError("recipient ids must be unique")
    for r in recipients:
        if not r.recipient_id or not r.wallet_id:
            raise CommissionConfigError("recipient_id and wallet_id are required")
        if not 0 < r.basis_points <= TOTAL_BASIS_POINTS:
            raise CommissionConfigError(
                f"recipient {r.recipient_id}: basis points must be in 1..10000"
            )
    total = sum(r.basis_points for r in recipients)
    if total != TOTAL_BASIS_POINTS:
        raise CommissionConfigError(f"basis points sum to {total}, not exactly 10000")
