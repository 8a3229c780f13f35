"""Lamassu cash-out validation (business-rules §2, §3, §8): the one implementation.

Row-wise and exact: every amount goes through :mod:`dca_pipeline.domain.money`, principal and
commission through :func:`dca_pipeline.domain.cash_out.split_principal`, eligibility through
:func:`dca_pipeline.domain.cash_out.ineligibility_reasons`. A row that breaks the schema is
quarantined with every reason found; a merely ineligible row is valid and flagged.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

import pandas as pd

from dca_pipeline.domain.cash_out import (
    LAMASSU_STATUSES,
    CashOut,
    ineligibility_reasons,
    split_principal,
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
        except (MoneyParseError, ValueError, TypeError):
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
        elif atoms > MAX_SATS:
            problems.append("crypto_atoms above 21M BTC")
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
    if row.get("status") not in LAMASSU_STATUSES:
        problems.append(f"status not a Lamassu status: {row.get('status')!r}")
    dispense = check("dispense", lambda t: _boolean(t, nullable=False))
    dispense_confirmed = check("dispense_confirmed", lambda t: _boolean(t, nullable=True))
    created = check("created", parse_timestamp)
    confirmed_at = None
    if row.get("confirmed_at") is not None:
        confirmed_at = check("confirmed_at", parse_timestamp)

    event_time = dispense_at or confirmed_at or created
    if event_time is not None and event_time > now:
        problems.append("event time in the future")
    if problems:
        return None, problems

    principal, commission_sats = split_principal(atoms, commission, discount)
    ticker_principal = None
    deviation = False
    if ticker:
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


def _dispense_times(
    actions: pd.DataFrame | None,
) -> tuple[dict[str, datetime], dict[str, str]]:
    """Earliest dispense action per cash-out, and cash-outs whose dispense time is unreadable."""
    if actions is None:
        return {}, {}
    missing = [c for c in REQUIRED_COLUMNS["cash_out_actions"] if c not in actions.columns]
    if missing:
        raise ExportRefused(f"cash_out_actions: missing required column(s): {', '.join(missing)}")
    earliest: dict[str, datetime] = {}
    broken: dict[str, str] = {}
    for row in actions.to_dict("records"):
        if row.get("action") != "dispense" or not row.get("tx_id"):
            continue
        try:
            at = parse_timestamp(row.get("created") or "")
        except ValueError:
            broken[row["tx_id"]] = f"dispense action {row.get('id')} has an unparseable created"
            continue
        if row["tx_id"] not in earliest or at < earliest[row["tx_id"]]:
            earliest[row["tx_id"]] = at
    return earliest, broken


def validate_cash_outs(
    cash_outs: pd.DataFrame,
    actions: pd.DataFrame | None,
    *,
    rules: BusinessRules,
    now: datetime,
) -> CashOutValidation:
    missing = [c for c in REQUIRED_COLUMNS["cash_out_txs"] if c not in cash_outs.columns]
    if missing:
        raise ExportRefused(f"cash_out_txs: missing required column(s): {', '.join(missing)}")
    dispense_at, broken = _dispense_times(actions)
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
    valid_df = pd.DataFrame(valid, columns=list(VALID_COLUMNS))
    quarantine_df = pd.DataFrame(quarantine, columns=list(QUARANTINE_COLUMNS))
    return CashOutValidation(valid=valid_df, quarantine=quarantine_df)


def eligible_cash_outs(valid: pd.DataFrame) -> list[CashOut]:
    eligible = valid[valid["eligible"]]
    out = [
        CashOut(
            id=str(r["id"]),
            event_time=r["event_time"],
            fiat_cents=int(r["fiat_cents"]),
            crypto_atoms=int(r["crypto_atoms"]),
            principal_sats=int(r["principal_sats"]),
            commission_sats=int(r["commission_sats"]),
        )
        for r in eligible.to_dict("records")
    ]
    return sorted(out, key=lambda c: (c.event_time, c.id))
