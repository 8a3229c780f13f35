"""One cash-out: eligibility (business-rules §2) and principal/commission (§3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from dca_pipeline.domain.apportion import INT64_LIMIT
from dca_pipeline.domain.money import MAX_SATS

ELIGIBLE_STATUSES = ("authorized", "instant", "confirmed")
CONFIRMED_ONLY_STATUSES = ("confirmed",)
ELIGIBLE_CRYPTO_CODES = ("BTC", "LN")
#: Lamassu's status_stage enum; any other value is a schema break (§8).
LAMASSU_STATUSES = (
    "notSeen",
    "published",
    "authorized",
    "instant",
    "confirmed",
    "rejected",
    "insufficientFunds",
)

# Reasons a valid row is not eligible (informational; such rows are not quarantined).
NOT_DISPENSED = "not dispensed"
DISPENSE_NOT_CONFIRMED = "dispense not confirmed"
HAS_ERROR = "has error"
STATUS_NOT_ELIGIBLE = "status not eligible"
NO_FIAT = "fiat is zero"
NO_CRYPTO = "crypto_atoms is zero"
OTHER_COIN = "crypto_code not BTC/LN"


def ineligibility_reasons(
    *,
    status: npt.ArrayLike,
    dispense: npt.ArrayLike,
    dispense_confirmed: npt.ArrayLike,
    has_error: npt.ArrayLike,
    fiat_cents: npt.ArrayLike,
    crypto_atoms: npt.ArrayLike,
    crypto_code: npt.ArrayLike,
    confirmed_only: bool,
) -> npt.NDArray[np.object_]:
    """The §2 predicate, vectorized: the first reason each row is NOT eligible, or None.

    ``dispense_confirmed`` must already map NULL to False (the contract says ``IS TRUE``).
    Works on arrays of any length, so the pipeline and single-row callers share it.
    """
    statuses = CONFIRMED_ONLY_STATUSES if confirmed_only else ELIGIBLE_STATUSES
    checks = (
        (~np.asarray(dispense, dtype=bool), NOT_DISPENSED),
        (~np.asarray(dispense_confirmed, dtype=bool), DISPENSE_NOT_CONFIRMED),
        (np.asarray(has_error, dtype=bool), HAS_ERROR),
        (~np.isin(np.asarray(status, dtype=object), statuses), STATUS_NOT_ELIGIBLE),
        (np.asarray(fiat_cents, dtype=np.int64) <= 0, NO_FIAT),
        (np.asarray(crypto_atoms, dtype=np.int64) <= 0, NO_CRYPTO),
        (
            ~np.isin(np.asarray(crypto_code, dtype=object), ELIGIBLE_CRYPTO_CODES),
            OTHER_COIN,
        ),
    )
    reasons = np.full(
        len(np.atleast_1d(np.asarray(status, dtype=object))), None, dtype=object
    )
    # Later checks first, so the earliest failing check's reason is what remains.
    for failed, reason in reversed(checks):
        reasons[np.atleast_1d(failed)] = reason
    return reasons


def effective_commission(commission_percentage: Fraction, discount: int) -> Fraction:
    """c_eff = commission × (1 − discount/100); NULLs are passed in as 0."""
    if not 0 <= commission_percentage < 1:
        raise ValueError(
            f"commission_percentage outside [0, 1): {commission_percentage}"
        )
    if not 0 <= discount <= 100:
        raise ValueError(f"discount outside [0, 100]: {discount}")
    return commission_percentage * (1 - Fraction(discount, 100))


def split_principal(
    crypto_atoms: int, commission_percentage: Fraction, discount: int
) -> tuple[int, int]:
    """(principal_sats, commission_sats) with principal = floor(atoms × (1 − c_eff)) exactly."""
    if crypto_atoms < 0:
        raise ValueError("crypto_atoms must be non-negative")
    keep = 1 - effective_commission(commission_percentage, discount)
    principal = crypto_atoms * keep.numerator // keep.denominator
    return principal, crypto_atoms - principal


#: Lamassu stores commission_percentage as numeric(14,5): an integer count of 1/100000.
COMMISSION_SCALE = 100_000


def split_principal_many(
    crypto_atoms: npt.NDArray[np.int64],
    commission_scaled: npt.NDArray[np.int64],
    discount: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Vectorized :func:`split_principal` for commissions given in 1/100000 units.

    principal = floor(atoms × (100·S − c·(100 − d)) / (100·S)), S = 100000. Uses int64 when the
    product provably fits and exact Python ints otherwise; both give the same numbers.
    """
    atoms = np.asarray(crypto_atoms, dtype=np.int64)
    keep_num = 100 * COMMISSION_SCALE - np.asarray(
        commission_scaled, dtype=np.int64
    ) * (100 - np.asarray(discount, dtype=np.int64))
    denominator = 100 * COMMISSION_SCALE
    if len(atoms) and int(atoms.max()) * denominator > INT64_LIMIT:
        principal = np.array(
            [
                int(a) * int(k) // denominator
                for a, k in zip(atoms, keep_num, strict=True)
            ],
            dtype=np.int64,
        )
    else:
        principal = atoms * keep_num // denominator
    return principal, atoms - principal


@dataclass(frozen=True, order=False)
class CashOut:
    """An eligible, validated cash-out as the engine sees it."""

    id: str
    event_time: datetime
    fiat_cents: int
    crypto_atoms: int
    principal_sats: int
    commission_sats: int
    inputs: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.event_time.tzinfo is None:
            raise ValueError(f"cash-out {self.id}: event_time must be timezone-aware")
        if self.fiat_cents <= 0 or self.crypto_atoms <= 0:
            raise ValueError(f"cash-out {self.id}: fiat and crypto must be positive")
        if self.crypto_atoms > MAX_SATS:
            raise ValueError(f"cash-out {self.id}: crypto_atoms above 21M BTC")
        if self.principal_sats + self.commission_sats != self.crypto_atoms:
            raise ValueError(
                f"cash-out {self.id}: principal + commission != crypto_atoms"
            )
        if self.principal_sats < 0 or self.commission_sats < 0:
            raise ValueError(f"cash-out {self.id}: negative principal or commission")

    @classmethod
    def from_lamassu(
        cls,
        *,
        id: str,
        event_time: datetime,
        fiat_cents: int,
        crypto_atoms: int,
        commission_percentage: Fraction,
        discount: int,
    ) -> CashOut:
        principal, commission = split_principal(
            crypto_atoms, commission_percentage, discount
        )
        return cls(
            id=id,
            event_time=event_time,
            fiat_cents=fiat_cents,
            crypto_atoms=crypto_atoms,
            principal_sats=principal,
            commission_sats=commission,
        )
