"""Validation semantics below `simulate`: §2 eligibility, event time, business day, §3 ticker."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.lamassu.csv_io import read_export
from dca_pipeline.lamassu.validation import eligible_cash_outs, validate_cash_outs
from dca_pipeline_tests.simulate.test_simulate import TX_A, tx

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RULES = BusinessRules()


def validate(rows: list[dict[str, str]], actions: list[dict[str, str]] | None = None, **rules):
    frame = pd.DataFrame(rows, dtype=object).replace("", None)
    acts = pd.DataFrame(actions, columns=["id", "tx_id", "action", "created"]) if actions else None
    return validate_cash_outs(frame, acts, rules=BusinessRules(**rules), now=NOW)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"status": "notSeen"}, "status not eligible"),
        ({"status": "published"}, "status not eligible"),
        ({"status": "rejected"}, "status not eligible"),
        ({"status": "insufficientFunds"}, "status not eligible"),
        ({"dispense": "f"}, "not dispensed"),
        ({"dispense_confirmed": ""}, "dispense not confirmed"),
        ({"dispense_confirmed": "f"}, "dispense not confirmed"),
        ({"error": "Operator cancel"}, "has error"),
        ({"fiat": "0.00000"}, "fiat is zero"),
        ({"crypto_atoms": "0"}, "crypto_atoms is zero"),
        ({"crypto_code": "ETH"}, "crypto_code not BTC/LN"),
    ],
)
def test_ineligible_rows_are_valid_not_quarantined(overrides: dict[str, str], reason: str) -> None:
    result = validate([tx(**overrides)])
    assert result.quarantine.empty
    row = result.valid.iloc[0]
    assert not row["eligible"] and row["ineligible_reason"] == reason
    assert eligible_cash_outs(result.valid) == []


@pytest.mark.parametrize("status", ["authorized", "instant", "confirmed"])
def test_eligible_statuses_and_the_confirmed_only_switch(status: str) -> None:
    assert validate([tx(status=status)]).valid.iloc[0]["eligible"]
    narrowed = validate([tx(status=status)], confirmed_only=True).valid.iloc[0]
    assert narrowed["eligible"] == (status == "confirmed")


def test_ln_is_eligible_and_worked_example_a_principal() -> None:
    row = validate([tx(crypto_code="LN")]).valid.iloc[0]
    assert row["eligible"]
    assert (row["principal_sats"], row["commission_sats"]) == (258_796, 8_004)


def test_worked_example_b_discount_through_validation() -> None:
    row = validate([tx(crypto_atoms="512400", commission_percentage="0.05500", discount="10")])
    assert (row.valid.iloc[0]["principal_sats"], row.valid.iloc[0]["commission_sats"]) == (
        487_036,
        25_364,
    )


def test_event_time_prefers_earliest_dispense_action_then_confirmed_at_then_created() -> None:
    actions = [
        {"id": "1", "tx_id": TX_A, "action": "dispense", "created": "2025-06-09 19:30:00+00"},
        {"id": "2", "tx_id": TX_A, "action": "dispense", "created": "2025-06-09 19:27:00.5+00"},
        {"id": "3", "tx_id": TX_A, "action": "confirmed", "created": "2025-06-09 19:00:00+00"},
    ]
    with_action = validate([tx()], actions).valid.iloc[0]
    assert with_action["event_time"] == datetime(2025, 6, 9, 19, 27, 0, 500000, tzinfo=UTC)
    assert validate([tx()]).valid.iloc[0]["event_time"] == datetime(
        2025, 6, 9, 19, 26, 10, tzinfo=UTC
    )
    created_only = validate([tx(confirmed_at="", status="authorized")]).valid.iloc[0]
    assert created_only["event_time"] == datetime(2025, 6, 9, 19, 12, 42, 40933, tzinfo=UTC)


def test_business_day_is_the_guatemala_date() -> None:
    late = validate([tx(confirmed_at="2025-06-10 05:59:59+00")]).valid.iloc[0]
    assert late["business_day"] == "2025-06-09"
    next_day = validate([tx(confirmed_at="2025-06-10 06:00:00+00")]).valid.iloc[0]
    assert next_day["business_day"] == "2025-06-10"


def test_unparseable_dispense_action_quarantines_its_cash_out() -> None:
    actions = [{"id": "9", "tx_id": TX_A, "action": "dispense", "created": "soon"}]
    result = validate([tx()], actions)
    assert result.valid.empty
    assert "dispense action 9" in result.quarantine.iloc[0]["reason"]


def test_several_problems_are_all_reported_in_one_row() -> None:
    result = validate([tx(fiat="1.001", fiat_code="USD", discount="200")])
    reason = result.quarantine.iloc[0]["reason"]
    assert "centavos" in reason and "USD" in reason and "discount" in reason
    assert result.quarantine.iloc[0]["raw_row"].startswith("{")


def test_ticker_deviation_is_flagged_not_quarantined() -> None:
    # 2000 GTQ at 794,090 GTQ/BTC → 251,860 sats at market; principal 258,796: 2.7 % off.
    flagged = validate([tx()]).valid.iloc[0]
    assert flagged["ticker_principal_sats"] == 251_860 and flagged["ticker_deviation"]
    close = validate([tx(raw_ticker_price="772812.00000")]).valid.iloc[0]
    assert not close["ticker_deviation"]
    assert pd.isna(validate([tx(raw_ticker_price="")]).valid.iloc[0]["ticker_principal_sats"])


def test_read_export_keeps_unknown_columns_and_maps_empty_to_null() -> None:
    data = (
        b"id,fiat,crypto_atoms,crypto_code,fiat_code,commission_percentage,discount,"
        b"raw_ticker_price,status,dispense,dispense_confirmed,error,created,confirmed_at,extra\n"
        b"x,1.00000,100,BTC,GTQ,,,,confirmed,t,t,,2025-06-09 19:12:42+00,,kept\n"
    )
    frame = read_export(data, "cash_out_txs")
    assert frame.iloc[0]["extra"] == "kept" and frame.iloc[0]["discount"] is None
