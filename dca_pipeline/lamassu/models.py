"""The pandera models of a Lamassu cash-out: the §8 schema rules, and the validated contract.

* :class:`LamassuCashOut` is a cash-out row after its canonical text was read into exact
  integers (centavos, sats, commission in 1/100000, discount in %). Its checks are the
  static §8 rules (a Lamassu status, a UUID id, commission in [0, 1), discount in [0, 100],
  at most 21 M BTC for BTC/LN, no negative amount).
  :func:`dca_pipeline.lamassu.validation.validate_cash_outs` runs it lazily over every row
  at once: rows that fail a check are re-read by the exact row-wise parser, which writes the
  quarantine reason.
* :class:`ValidatedCashOut` is what the ``validated_cash_outs`` asset holds (its Dagster
  type): one row per Lamassu id, sats that add up, and an eligibility flag that agrees with
  its reason.

Every check is a vectorized numpy/pandas expression (no per-row Python), so validating a
million rows takes a fraction of a second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from dca_pipeline.domain.cash_out import ELIGIBLE_CRYPTO_CODES, LAMASSU_STATUSES
from dca_pipeline.domain.money import MAX_SATS
from dca_pipeline.lamassu.vectorized import TextColumn, uuid_text

COMMISSION_SCALE = 100_000  # numeric(14,5): commission_percentage × 10^5 is an integer


def _is_uuid(series: pd.Series) -> pd.Series:
    return pd.Series(uuid_text(TextColumn(series.to_numpy(dtype=object))), index=series.index)


def _bitcoin_bounded(frame: pd.DataFrame) -> pd.Series:
    # Another coin's smallest unit (wei) is not sats: only BTC/LN amounts are bounded by 21M BTC.
    bitcoin = frame["crypto_code"].isin(ELIGIBLE_CRYPTO_CODES)
    return ~bitcoin | (frame["crypto_atoms"] <= MAX_SATS)


class LamassuCashOut(pa.DataFrameModel):
    """A ``cash_out_txs`` row read exactly (business-rules §1, §8).

    One id twice is decided before this model runs (identical copies count once, different
    copies are all quarantined: a rule about pairs of rows, not a column check), so ids here
    are unique by construction; the output model checks it again.
    """

    id: Series[object]
    status: Series[object] = pa.Field(isin=list(LAMASSU_STATUSES))
    crypto_code: Series[object]
    fiat_cents: Series[np.int64] = pa.Field(ge=0)
    crypto_atoms: Series[np.int64] = pa.Field(ge=0)
    commission_scaled: Series[np.int64] = pa.Field(ge=0, lt=COMMISSION_SCALE)
    discount_value: Series[np.int64] = pa.Field(ge=0, le=100)
    ticker_scaled: Series[np.int64] = pa.Field(ge=0)

    @pa.check("id", name="uuid")
    def _id_is_uuid(cls, series: Series[object]) -> Series[bool]:
        return _is_uuid(series)

    @pa.dataframe_check(name="BTC/LN crypto_atoms at most 21M BTC")
    def _at_most_all_bitcoin(cls, frame: pd.DataFrame) -> Series[bool]:
        return _bitcoin_bounded(frame)

    class Config:
        strict = False  # the frame also carries the raw text columns


class ValidatedCashOut(pa.DataFrameModel):
    """One Lamassu cash-out, validated (business-rules §2, §3): the ledger's row."""

    id: Series[object] = pa.Field(unique=True)
    status: Series[object] = pa.Field(isin=list(LAMASSU_STATUSES))
    crypto_code: Series[object]
    fiat_code: Series[object]
    created: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "ns", "tz": "UTC"})
    confirmed_at: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=True, dtype_kwargs={"unit": "ns", "tz": "UTC"}
    )
    dispense_at: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=True, dtype_kwargs={"unit": "ns", "tz": "UTC"}
    )
    event_time: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "ns", "tz": "UTC"})
    business_day: Series[object]
    fiat_cents: Series[np.int64] = pa.Field(ge=0)
    crypto_atoms: Series[np.int64] = pa.Field(ge=0)
    commission_percentage: Series[object] = pa.Field(nullable=True)
    discount: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0, le=100)
    principal_sats: Series[np.int64] = pa.Field(ge=0)
    commission_sats: Series[np.int64] = pa.Field(ge=0)
    raw_ticker_price: Series[object] = pa.Field(nullable=True)
    ticker_principal_sats: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0)
    ticker_deviation: Series[bool]
    dispense: Series[bool]
    dispense_confirmed: Series[bool]
    error: Series[object] = pa.Field(nullable=True)
    eligible: Series[bool]
    ineligible_reason: Series[object] = pa.Field(nullable=True)

    @pa.dataframe_check(name="BTC/LN crypto_atoms at most 21M BTC")
    def _at_most_all_bitcoin(cls, frame: pd.DataFrame) -> Series[bool]:
        return _bitcoin_bounded(frame)

    @pa.dataframe_check(name="principal + commission = crypto_atoms")
    def _sats_add_up(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["principal_sats"] + frame["commission_sats"] == frame["crypto_atoms"]

    @pa.dataframe_check(name="eligible exactly when no ineligibility reason")
    def _eligible_has_no_reason(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["eligible"] == frame["ineligible_reason"].isna()

    @pa.dataframe_check(name="event_time is the dispense time, else confirmed_at, else created")
    def _event_time_rule(cls, frame: pd.DataFrame) -> Series[bool]:
        expected = frame["dispense_at"].fillna(frame["confirmed_at"]).fillna(frame["created"])
        return frame["event_time"] == expected

    class Config:
        strict = True
        ordered = True
