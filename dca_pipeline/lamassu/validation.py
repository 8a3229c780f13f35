"""Lamassu cash-out validation (business-rules §2, §3, §8): the one implementation.

Two paths, one result:

* **vectorized** (every row in the canonical form a PostgreSQL export has): the text is read
  into exact int64 by :mod:`dca_pipeline.lamassu.vectorized`, the §8 rules are checked by the
  pandera model :class:`~dca_pipeline.lamassu.models.LamassuCashOut`, and principal,
  commission (:func:`~dca_pipeline.domain.cash_out.split_principal_many`), ticker audit and
  eligibility (:func:`~dca_pipeline.domain.cash_out.ineligibility_reasons`) are computed on
  whole columns;
* **row-wise** (anything else: a non-canonical spelling, a failed rule, a duplicate id, a
  broken dispense action): the exact parser below, through :mod:`dca_pipeline.domain.money`,
  decides and writes every quarantine reason.

A row that breaks the schema is quarantined with every reason found; a merely ineligible row is
valid and flagged. ``validate_cash_outs_rowwise`` runs the row-wise path on every row: the
tests compare both paths on generated rows, so the fast path cannot drift from the exact one.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pandera.errors

from dca_pipeline.domain.apportion import INT64_LIMIT
from dca_pipeline.domain.cash_out import (
    ELIGIBLE_CRYPTO_CODES,
    LAMASSU_STATUSES,
    CashOut,
    ineligibility_reasons,
    split_principal,
    split_principal_many,
)
from dca_pipeline.domain.money import (
    MAX_SATS,
    SATS_PER_BTC,
    MoneyParseError,
    decimal_to_cents,
    parse_decimal,
    parse_integer,
)
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.lamassu.columns import REQUIRED_COLUMNS
from dca_pipeline.lamassu.csv_io import ExportRefused
from dca_pipeline.lamassu.models import COMMISSION_SCALE, LamassuCashOut, ValidatedCashOut
from dca_pipeline.lamassu.vectorized import TextColumn, fixed_point, flag, utc_timestamp

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_OFFSET = re.compile(r"(.*[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)([+-]\d{2})(?::?(\d{2}))?$")

VALID_COLUMNS = (
    "id",
    "status",
    "crypto_code",
    "fiat_code",
    "created",
    "confirmed_at",
    "dispense_at",
    "event_time",
    "business_day",
    "fiat_cents",
    "crypto_atoms",
    "commission_percentage",
    "discount",
    "principal_sats",
    "commission_sats",
    "raw_ticker_price",
    "ticker_principal_sats",
    "ticker_deviation",
    "dispense",
    "dispense_confirmed",
    "error",
    "eligible",
    "ineligible_reason",
)
QUARANTINE_COLUMNS = ("source_table", "source_id", "reason", "raw_row")


@dataclass(frozen=True)
class CashOutValidation:
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    #: How many input rows the exact row-wise parser had to read (the rest were vectorized).
    rowwise_rows: int = 0


def parse_timestamp(text: str) -> datetime:
    """PostgreSQL timestamptz text (``2025-06-09 19:12:42.040933+00``) → aware UTC.

    A timestamp without an offset is refused: guessing UTC is how the prior art mixed zones.
    """
    match = _OFFSET.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a timestamp with a UTC offset: {text!r}")
    body, hours, minutes = match.groups()
    parsed = datetime.fromisoformat(f"{body}{hours}:{minutes or '00'}")
    return parsed.astimezone(UTC)


#: Lamassu went live in 2014; the bound keeps every instant representable in datetime64[ns]
#: (later ones are refused as being in the future).
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def _lamassu_timestamp(text: str) -> datetime:
    value = parse_timestamp(text)
    if value < _EARLIEST:
        raise ValueError(f"timestamp out of range: {text!r}")
    return value


def _boolean(value: str | None, *, nullable: bool) -> bool | None:
    if value == "t":
        return True
    if value == "f":
        return False
    if value is None and nullable:
        return None
    raise ValueError


def _raw_json(row: dict[str, str | None]) -> str:
    return json.dumps(row, sort_keys=True)


def _parse_row(
    row: dict[str, str | None], rules: BusinessRules, now: datetime, dispense_at: datetime | None
) -> tuple[dict[str, object] | None, list[str]]:
    problems: list[str] = []

    def check(name: str, parse):  # type: ignore[no-untyped-def]
        text = row.get(name)
        try:
            return parse(text)
        except (MoneyParseError, ValueError, TypeError, AttributeError):  # None: missing
            problems.append(f"{name} unparseable: {text!r}")
            return None

    row_id = row.get("id")
    if not row_id:
        problems.append("id missing")
    elif not _UUID.fullmatch(row_id):
        problems.append(f"id is not a UUID: {row_id!r}")

    fiat = check("fiat", lambda t: parse_decimal(t))
    fiat_cents = None
    if fiat is not None:
        if fiat < 0:
            problems.append("fiat negative")
        else:
            try:
                fiat_cents = decimal_to_cents(fiat)
            except MoneyParseError:
                problems.append(f"fiat not a whole number of centavos: {row.get('fiat')!r}")
    atoms = None
    atoms_text = row.get("crypto_atoms")
    try:
        atoms = parse_integer(atoms_text or "")
    except MoneyParseError:
        kind = "not a whole number" if atoms_text and _is_decimal(atoms_text) else "unparseable"
        problems.append(f"crypto_atoms {kind}: {atoms_text!r}")
    if atoms is not None:
        if atoms < 0:
            problems.append("crypto_atoms negative")
            atoms = None
        elif row.get("crypto_code") in ELIGIBLE_CRYPTO_CODES and atoms > MAX_SATS:
            problems.append("crypto_atoms above 21M BTC")
            atoms = None
        elif atoms > INT64_LIMIT:  # another coin's smallest unit (wei): must fit the ledger
            problems.append("crypto_atoms above the 64-bit range")
            atoms = None

    commission = Fraction(0)
    if row.get("commission_percentage") is not None:
        value = check("commission_percentage", lambda t: Fraction(parse_decimal(t)))
        if value is not None and not 0 <= value < 1:
            problems.append("commission_percentage outside [0, 1)")
        elif value is not None:
            commission = value
    discount = 0
    if row.get("discount") is not None:
        value = check("discount", lambda t: parse_integer(t))
        if value is not None and not 0 <= value <= 100:
            problems.append("discount outside [0, 100]")
        elif value is not None:
            discount = value
    ticker = None
    if row.get("raw_ticker_price") is not None:
        ticker = check("raw_ticker_price", lambda t: parse_decimal(t))
        if ticker is not None and ticker < 0:
            problems.append("raw_ticker_price negative")

    if row.get("fiat_code") != rules.currency:
        problems.append(
            f"fiat_code {row.get('fiat_code')!r} is not the configured {rules.currency}"
        )
    if not row.get("crypto_code"):
        problems.append("crypto_code missing")
    if row.get("status") not in LAMASSU_STATUSES:
        problems.append(f"status not a Lamassu status: {row.get('status')!r}")
    dispense = check("dispense", lambda t: _boolean(t, nullable=False))
    dispense_confirmed = check("dispense_confirmed", lambda t: _boolean(t, nullable=True))
    created = check("created", _lamassu_timestamp)
    confirmed_at = None
    if row.get("confirmed_at") is not None:
        confirmed_at = check("confirmed_at", _lamassu_timestamp)

    event_time = dispense_at or confirmed_at or created
    if event_time is not None and event_time > now:
        problems.append("event time in the future")
    for name, value in (("created", created), ("confirmed_at", confirmed_at)):
        if value is not None and value is not event_time and value > now:
            problems.append(f"{name} in the future")
    if problems:
        return None, problems

    principal, commission_sats = split_principal(atoms, commission, discount)
    ticker_principal = None
    deviation = False
    # The ticker audit is about sats (§3): another coin's ticker and atoms are not comparable.
    if ticker and row.get("crypto_code") in ELIGIBLE_CRYPTO_CODES:
        ticker_principal = int(fiat_cents * SATS_PER_BTC // (ticker * 100))
        deviation = abs(principal - ticker_principal) > max(principal // 100, 200)
    reason = ineligibility_reasons(
        status=[row["status"]],
        dispense=[dispense],
        dispense_confirmed=[bool(dispense_confirmed)],
        has_error=[bool(row.get("error"))],
        fiat_cents=[fiat_cents],
        crypto_atoms=[atoms],
        crypto_code=[row.get("crypto_code")],
        confirmed_only=rules.confirmed_only,
    )[0]
    return {
        "id": row_id,
        "status": row["status"],
        "crypto_code": row.get("crypto_code"),
        "fiat_code": row.get("fiat_code"),
        "created": created,
        "confirmed_at": confirmed_at,
        "dispense_at": dispense_at,
        "event_time": event_time,
        "business_day": rules.business_day(event_time).isoformat(),
        "fiat_cents": fiat_cents,
        "crypto_atoms": atoms,
        "commission_percentage": row.get("commission_percentage"),
        "discount": None if row.get("discount") is None else discount,
        "principal_sats": principal,
        "commission_sats": commission_sats,
        "raw_ticker_price": row.get("raw_ticker_price"),
        "ticker_principal_sats": ticker_principal,
        "ticker_deviation": deviation,
        "dispense": dispense,
        "dispense_confirmed": bool(dispense_confirmed),  # NULL → False: the contract says IS TRUE
        "error": row.get("error"),
        "eligible": reason is None,
        "ineligible_reason": reason,
    }, []


def _is_decimal(text: str) -> bool:
    try:
        parse_decimal(text)
    except MoneyParseError:
        return False
    return True


def _check_actions_columns(actions: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS["cash_out_actions"] if c not in actions.columns]
    if missing:
        raise ExportRefused(f"cash_out_actions: missing required column(s): {', '.join(missing)}")


def _dispense_times_rowwise(
    actions: pd.DataFrame | None,
) -> tuple[dict[str, datetime], dict[str, str]]:
    """Earliest dispense action per cash-out, and cash-outs whose dispense time is unreadable."""
    if actions is None:
        return {}, {}
    _check_actions_columns(actions)
    earliest: dict[str, datetime] = {}
    broken: dict[str, str] = {}
    for row in actions.to_dict("records"):
        if row.get("action") != "dispense" or not row.get("tx_id"):
            continue
        try:
            at = _lamassu_timestamp(row.get("created") or "")
        except ValueError:
            broken[row["tx_id"]] = f"dispense action {row.get('id')} has an unparseable created"
            continue
        if row["tx_id"] not in earliest or at < earliest[row["tx_id"]]:
            earliest[row["tx_id"]] = at
    return earliest, broken




def _dispense_times(actions: pd.DataFrame | None) -> tuple[pd.Series, set[object]]:
    """Vectorized :func:`_dispense_times_rowwise` for canonical timestamps.

    Returns (tx_id → earliest dispense time, tx_ids with any non-canonical dispense time).
    Cash-outs of the second kind go to the row-wise path, which reads their actions exactly.
    """
    none = pd.Series([], dtype="datetime64[ns, UTC]", index=pd.Index([], dtype=object))
    if actions is None:
        return none, set()
    _check_actions_columns(actions)
    if actions.empty:
        return none, set()
    tx_ids = actions["tx_id"].to_numpy(dtype=object)
    has_tx = np.fromiter(map(bool, tx_ids), dtype=bool, count=len(tx_ids))
    dispenses = actions.loc[(actions["action"].to_numpy(dtype=object) == "dispense") & has_tx]
    if dispenses.empty:
        return none, set()
    ok, parsed = utc_timestamp(TextColumn(dispenses["created"].to_numpy(dtype=object)))
    tx = dispenses["tx_id"].to_numpy(dtype=object)
    earliest = pd.Series(parsed[ok], index=pd.Index(tx[ok], dtype=object)).groupby(level=0).min()
    return earliest, set(tx[~ok].tolist())


def _validate_rowwise(
    cash_outs: pd.DataFrame,
    dispense_at: Mapping[str, datetime],
    broken: Mapping[str, str],
    *,
    rules: BusinessRules,
    now: datetime,
) -> tuple[list[dict[str, object]], list[tuple[str, str, str, str]]]:
    rows = [
        {k: (None if v is None or v == "" else str(v)) for k, v in r.items()}
        for r in cash_outs.to_dict("records")
    ]
    # The same id twice: identical copies count once, different copies are all quarantined.
    by_id: dict[str, list[dict[str, str | None]]] = defaultdict(list)
    for row in rows:
        by_id[row.get("id") or ""].append(row)
    valid: list[dict[str, object]] = []
    quarantine: list[tuple[str, str, str, str]] = []
    for row_id in sorted(by_id):
        copies = by_id[row_id]
        distinct = {_raw_json(r): r for r in copies}
        if row_id and len(distinct) > 1:
            for raw in sorted(_raw_json(r) for r in copies):
                quarantine.append(
                    ("cash_out_txs", row_id, "same id twice with different content", raw)
                )
            continue
        for raw_text, row in (
            sorted(distinct.items()) if not row_id else [next(iter(distinct.items()))]
        ):
            parsed, problems = _parse_row(row, rules, now, dispense_at.get(row_id))
            if row_id in broken:
                problems.append(broken[row_id])
            if problems:
                quarantine.append(("cash_out_txs", row_id, "; ".join(problems), raw_text))
            else:
                valid.append(parsed)  # type: ignore[arg-type]
    return valid, quarantine


def _typed(valid: pd.DataFrame) -> pd.DataFrame:
    """The dtypes of :class:`ValidatedCashOut` (row-wise results arrive as Python objects)."""
    out = valid.reindex(columns=list(VALID_COLUMNS))
    for name in ("created", "confirmed_at", "dispense_at", "event_time"):
        out[name] = pd.to_datetime(out[name], utc=True).astype("datetime64[ns, UTC]")
    for name in ("fiat_cents", "crypto_atoms", "principal_sats", "commission_sats"):
        out[name] = out[name].astype(np.int64)
    for name in ("discount", "ticker_principal_sats"):
        out[name] = out[name].astype("Int64")
    for name in ("ticker_deviation", "dispense", "dispense_confirmed", "eligible"):
        out[name] = out[name].astype(bool)
    for name in (
        "id", "status", "crypto_code", "fiat_code", "business_day", "commission_percentage",
        "raw_ticker_price", "error", "ineligible_reason",
    ):  # fmt: skip
        out[name] = out[name].astype(object).where(out[name].notna(), None)
    return out


def validate_cash_outs_rowwise(
    cash_outs: pd.DataFrame,
    actions: pd.DataFrame | None,
    *,
    rules: BusinessRules,
    now: datetime,
) -> CashOutValidation:
    """Every row through the exact row-wise parser (the reference the fast path must equal)."""
    missing = [c for c in REQUIRED_COLUMNS["cash_out_txs"] if c not in cash_outs.columns]
    if missing:
        raise ExportRefused(f"cash_out_txs: missing required column(s): {', '.join(missing)}")
    dispense_at, broken = _dispense_times_rowwise(actions)
    valid, quarantine = _validate_rowwise(cash_outs, dispense_at, broken, rules=rules, now=now)
    return CashOutValidation(
        valid=_typed(pd.DataFrame(valid, columns=list(VALID_COLUMNS))),
        quarantine=pd.DataFrame(quarantine, columns=list(QUARANTINE_COLUMNS)),
        rowwise_rows=len(cash_outs),
    )


def _text(frame: pd.DataFrame, name: str) -> TextColumn:
    """A column as the row-wise parser sees it: ``str`` values, ``None`` for NULL and ""."""
    values = frame[name].to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        values = np.array(
            [None if v is None or v == "" else str(v) for v in values], dtype=object
        )
        return TextColumn(values)
    missing = pd.isna(values) | (values == "")
    if missing.any():
        values = values.copy()
        values[missing] = None
    return TextColumn(values, present=~missing)


def _fast_candidates(
    frame: pd.DataFrame, dispense_at: pd.Series, rules: BusinessRules, now: datetime
) -> tuple[npt.NDArray[np.bool_], dict[str, Any]]:
    """Read every canonical row exactly; returns (row is canonical, the parsed columns)."""
    n = len(frame)
    text = {name: _text(frame, name) for name in REQUIRED_COLUMNS["cash_out_txs"]}
    ok = np.ones(n, dtype=bool)

    fiat_ok, fiat_e5 = fixed_point(text["fiat"], 5, 13)
    ok &= fiat_ok & (fiat_e5 % 1000 == 0)  # whole centavos
    atoms_ok, atoms = fixed_point(text["crypto_atoms"], 0, 18)
    ok &= atoms_ok
    commission_ok, commission = fixed_point(text["commission_percentage"], 5, 13)
    ok &= commission_ok | ~text["commission_percentage"].present
    discount_ok, discount = fixed_point(text["discount"], 0, 4)
    ok &= discount_ok | ~text["discount"].present
    ticker_ok, ticker = fixed_point(text["raw_ticker_price"], 5, 13)
    ok &= ticker_ok | ~text["raw_ticker_price"].present

    dispense_t, dispense_f, _ = flag(text["dispense"])
    ok &= dispense_t | dispense_f
    confirmed_t, confirmed_f, confirmed_null = flag(text["dispense_confirmed"])
    ok &= confirmed_t | confirmed_f | confirmed_null

    created_ok, created_index = utc_timestamp(text["created"])
    ok &= created_ok
    confirmed_ok, confirmed_index = utc_timestamp(text["confirmed_at"])
    ok &= confirmed_ok | ~text["confirmed_at"].present

    ids = text["id"].values
    ok &= text["fiat_code"].values == rules.currency
    ok &= text["crypto_code"].present
    created = pd.Series(created_index, index=frame.index)
    confirmed_at = pd.Series(confirmed_index, index=frame.index)
    dispense_times = (
        pd.Series(ids, index=frame.index, dtype=object)
        .map(dispense_at)
        .astype("datetime64[ns, UTC]")
    )
    event_time = dispense_times.fillna(confirmed_at).fillna(created)
    in_future = pd.Timestamp(now)
    late = (event_time > in_future) | (created > in_future) | (confirmed_at > in_future)
    ok &= ~late.to_numpy()
    return ok, {
        "id": ids,
        "status": text["status"].values,
        "crypto_code": text["crypto_code"].values,
        "fiat_code": text["fiat_code"].values,
        "created": created.array,
        "confirmed_at": confirmed_at.array,
        "dispense_at": dispense_times.array,
        "event_time": event_time.array,
        "fiat_cents": fiat_e5 // 1000,
        "crypto_atoms": atoms,
        "commission_scaled": commission,
        "discount_value": discount,
        "discount_present": text["discount"].present,
        "ticker_scaled": ticker,
        "ticker_present": text["raw_ticker_price"].present,
        "commission_percentage": text["commission_percentage"].values,
        "raw_ticker_price": text["raw_ticker_price"].values,
        "dispense": dispense_t,
        "dispense_confirmed": confirmed_t,
        "error": text["error"].values,
        "has_error": text["error"].present,
    }


_RULE_COLUMNS = (
    "id", "status", "crypto_code", "fiat_cents", "crypto_atoms", "commission_scaled",
    "discount_value", "ticker_scaled",
)  # fmt: skip


def _rule_failures(parsed: dict[str, Any], rows: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
    """Which of ``rows`` break a §8 rule of :class:`LamassuCashOut` (lazy: all at once)."""
    frame = pd.DataFrame({name: parsed[name][rows] for name in _RULE_COLUMNS})
    failed = np.zeros(len(rows), dtype=bool)
    try:
        LamassuCashOut.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases["index"]
        if cases.isna().any():  # a column-level failure (dtype, missing column): our bug
            raise
        failed[cases.astype(np.int64).unique()] = True
    return failed


def _derive(parsed: dict[str, Any], rows: npt.NDArray[np.intp], rules: BusinessRules):
    """Principal, commission, ticker audit, business day and eligibility of valid rows."""
    col = {name: values[rows] for name, values in parsed.items()}
    atoms, fiat_cents = col["crypto_atoms"], col["fiat_cents"]
    # int64 for every row whose product fits (all BTC/LN ones), exact Python ints for the rest
    # (another coin's wei), so one large row does not slow the whole batch.
    principal = np.zeros(len(rows), dtype=np.int64)
    small = atoms <= INT64_LIMIT // (100 * COMMISSION_SCALE)
    for part in (small, ~small):
        if part.any():
            principal[part] = split_principal_many(
                atoms[part], col["commission_scaled"][part], col["discount_value"][part]
            )[0]
    commission = atoms - principal
    # ticker principal = floor(fiat_cents × 1e8 / (ticker × 100)), ticker = T / 1e5
    ticker = col["ticker_scaled"]
    sats_coin = np.isin(col["crypto_code"], ELIGIBLE_CRYPTO_CODES)
    has_ticker = (ticker > 0) & col["ticker_present"] & sats_coin
    numerator_fits = fiat_cents <= np.iinfo(np.int64).max // 10**11
    ticker_principal = np.zeros(len(rows), dtype=np.int64)
    fast = has_ticker & numerator_fits
    ticker_principal[fast] = fiat_cents[fast] * 10**11 // ticker[fast]
    for i in np.flatnonzero(has_ticker & ~numerator_fits):  # exact Python ints beyond int64
        ticker_principal[i] = int(fiat_cents[i]) * 10**11 // int(ticker[i])
    deviation = has_ticker & (
        np.abs(principal - ticker_principal) > np.maximum(principal // 100, 200)
    )
    event_time = pd.DatetimeIndex(col["event_time"])
    local_day = event_time.tz_convert(rules.zone).tz_localize(None).to_numpy()
    reasons = ineligibility_reasons(
        status=col["status"],
        dispense=col["dispense"],
        dispense_confirmed=col["dispense_confirmed"],
        has_error=col["has_error"],
        fiat_cents=fiat_cents,
        crypto_atoms=atoms,
        crypto_code=col["crypto_code"],
        confirmed_only=rules.confirmed_only,
    )
    return pd.DataFrame(
        {
            "id": col["id"],
            "status": col["status"],
            "crypto_code": col["crypto_code"],
            "fiat_code": col["fiat_code"],
            "created": col["created"],
            "confirmed_at": col["confirmed_at"],
            "dispense_at": col["dispense_at"],
            "event_time": event_time,
            "business_day": np.datetime_as_string(
                local_day.astype("datetime64[D]"), unit="D"
            ).astype(object),
            "fiat_cents": fiat_cents,
            "crypto_atoms": atoms,
            "commission_percentage": col["commission_percentage"],
            "discount": pd.arrays.IntegerArray(col["discount_value"], ~col["discount_present"]),
            "principal_sats": principal,
            "commission_sats": commission,
            "raw_ticker_price": col["raw_ticker_price"],
            "ticker_principal_sats": pd.arrays.IntegerArray(ticker_principal, ~has_ticker),
            "ticker_deviation": deviation,
            "dispense": col["dispense"],
            "dispense_confirmed": col["dispense_confirmed"],
            "error": col["error"],
            "eligible": pd.isna(reasons),
            "ineligible_reason": reasons,
        }
    )


def validate_cash_outs(
    cash_outs: pd.DataFrame,
    actions: pd.DataFrame | None,
    *,
    rules: BusinessRules,
    now: datetime,
    check_output: bool = True,
) -> CashOutValidation:
    """Validate a ``cash_out_txs`` export (+ ``cash_out_actions`` for the dispense times).

    Returns the valid rows (eligible or flagged ineligible, sorted by id, typed as
    :class:`ValidatedCashOut`) and the quarantine (source_table, source_id, reason, raw_row).
    Raises :class:`ExportRefused` when a required column is missing. ``check_output=False``
    skips the final :class:`ValidatedCashOut` check for a caller that runs it itself.
    """
    missing = [c for c in REQUIRED_COLUMNS["cash_out_txs"] if c not in cash_outs.columns]
    if missing:
        raise ExportRefused(f"cash_out_txs: missing required column(s): {', '.join(missing)}")
    frame = cash_outs
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        frame = frame.reset_index(drop=True)
    dispense_at, odd_actions = _dispense_times(actions)
    ok, parsed = _fast_candidates(frame, dispense_at, rules, now)
    ids = pd.Series(parsed["id"], dtype=object)
    ok &= ids.notna().to_numpy() & ~ids.duplicated(keep=False).to_numpy()
    if odd_actions:
        ok &= ~ids.isin(list(odd_actions)).to_numpy()
    candidates = np.flatnonzero(ok)
    ok[candidates[_rule_failures(parsed, candidates)]] = False

    slow_frame = frame.loc[~ok]
    slow_actions = None
    if actions is not None and len(slow_frame):
        # The row-wise reader gets the exact dispense times of its rows (their actions only).
        slow_ids = {str(v) for v in slow_frame["id"].tolist() if v is not None and v != ""}
        slow_actions = actions.loc[actions["tx_id"].isin(slow_ids)]
    slow_dispense, broken = _dispense_times_rowwise(slow_actions)
    slow_valid, quarantine = _validate_rowwise(
        slow_frame, slow_dispense, broken, rules=rules, now=now
    )
    valid = _derive(parsed, np.flatnonzero(ok), rules)
    if slow_valid:
        slow = _typed(pd.DataFrame(slow_valid, columns=list(VALID_COLUMNS)))
        valid = pd.concat([valid, slow], ignore_index=True)
    ids_out = valid["id"].to_numpy(dtype=object)
    if len(ids_out) > 1 and not (ids_out[1:] > ids_out[:-1]).all():  # exports are ORDER BY id
        valid = valid.sort_values("id", kind="stable", ignore_index=True)
    if check_output:
        valid = ValidatedCashOut.validate(valid, lazy=True)
    return CashOutValidation(
        valid=valid,
        quarantine=pd.DataFrame(quarantine, columns=list(QUARANTINE_COLUMNS)),
        rowwise_rows=len(slow_frame),
    )


def eligible_cash_outs(valid: pd.DataFrame) -> list[CashOut]:
    eligible = valid[valid["eligible"].astype(bool)]
    out = [
        CashOut(
            id=str(r["id"]),
            event_time=pd.Timestamp(r["event_time"]).to_pydatetime(),
            fiat_cents=int(r["fiat_cents"]),
            crypto_atoms=int(r["crypto_atoms"]),
            principal_sats=int(r["principal_sats"]),
            commission_sats=int(r["commission_sats"]),
        )
        for r in eligible.to_dict("records")
    ]
    return sorted(out, key=lambda c: (c.event_time, c.id))
