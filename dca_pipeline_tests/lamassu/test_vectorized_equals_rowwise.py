"""The vectorized validation equals the exact row-wise one, row for row and reason for reason.

Rows are built from Example A with every field drawn from canonical values (the fast path) and
from the spellings the row-wise parser treats specially (signs, exponents, non-UTC offsets,
whitespace, NULLs, out-of-range numbers, duplicates), so both paths and their seam are covered.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.lamassu.csv_io import read_export
from dca_pipeline.lamassu.validation import validate_cash_outs, validate_cash_outs_rowwise
from dca_pipeline_tests.simulate.test_simulate import tx

NOW = datetime(2026, 1, 1, tzinfo=UTC)
IDS = [
    "2d4fa2cf-4c9a-4b5e-9d43-6c7f0f0b2a11",
    "0b6a8c52-7e3d-4f0e-8a4b-2c1d9e8f7a60",
    "F1E2D3C4-B5A6-4978-8695-A4B3C2D1E0F9",
    "9a9a9a9a-0000-4000-8000-000000000001",
]
NUMBERS = ["2000.00000", "0.00000", "1", "1.5", "100.005", "-5.00000", "+5", "1e3", " 7", "",
           "99999999999999.00000", "0.01000", ".5", "5.", "1,000", "NaN"]  # fmt: skip
ATOMS = ["266800", "0", "266800.000", "266800.5", "-1", "2100000000000001", "2100000000000000",
         "12e5", "", "00042", "922337203685477580700"]  # fmt: skip
COMMISSIONS = ["0.03000", "0.05500", "", "0.99999", "1.00000", "-0.01", "0.123456", "0.3"]
DISCOUNTS = ["", "10", "0", "100", "101", "-1", "10.0", "10.5", "x"]
TICKERS = ["794090.00000", "", "0.00000", "772812.00000", "-1.00000", "abc", "1.00001"]
TIMES = ["2025-06-09 19:12:42.040933+00", "2025-06-09 19:26:10+00", "2025-06-10 05:59:59+00",
         "2025-06-09 19:27:00.5+00", "2025-06-09 13:27:00-06", "2025-06-09 19:27:00+00:00",
         "2025-06-09T19:27:00+00", "2025-06-09 19:27:00", "2025-13-09 19:27:00+00",
         "2999-01-01 00:00:00+00", "1960-01-01 00:00:00+00", "soon", "",
         "2025-06-09 19:27:00.1234567+00"]  # fmt: skip
FIELDS = {
    "id": st.sampled_from(IDS + ["", "not-a-uuid", IDS[0].replace("-", "")]),
    "fiat": st.sampled_from(NUMBERS),
    "crypto_atoms": st.sampled_from(ATOMS),
    "commission_percentage": st.sampled_from(COMMISSIONS),
    "discount": st.sampled_from(DISCOUNTS),
    "raw_ticker_price": st.sampled_from(TICKERS),
    "status": st.sampled_from(
        ["confirmed", "authorized", "instant", "notSeen", "rejected", "paid", ""]
    ),
    "crypto_code": st.sampled_from(["BTC", "LN", "ETH", ""]),
    "fiat_code": st.sampled_from(["GTQ", "USD", ""]),
    "dispense": st.sampled_from(["t", "f", "", "yes"]),
    "dispense_confirmed": st.sampled_from(["t", "f", "", "1"]),
    "error": st.sampled_from(["", "Operator cancel"]),
    "created": st.sampled_from(TIMES),
    "confirmed_at": st.sampled_from(TIMES),
}


@st.composite
def rows(draw: st.DrawFn) -> dict[str, str]:
    # Mostly canonical rows (the fast path), with a few fields perturbed.
    base = tx(id=draw(st.sampled_from(IDS)))
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=3, unique=True)):
        base[name] = draw(FIELDS[name])
    return base


@st.composite
def actions(draw: st.DrawFn) -> list[dict[str, str]]:
    return draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.sampled_from(["1", "2", "3"]),
                    "tx_id": st.sampled_from(IDS + [""]),
                    "action": st.sampled_from(["dispense", "confirmed"]),
                    "created": st.sampled_from(TIMES),
                }
            ),
            max_size=4,
        )
    )


def _frame(records: list[dict[str, str]], columns: list[str]) -> pd.DataFrame:
    # As read_export gives it: text, None for an empty field.
    rows = [[r.get(c) or None for c in columns] for r in records]
    return pd.DataFrame(rows, columns=columns, dtype=object)


def assert_same(cash_outs: pd.DataFrame, acts: pd.DataFrame | None, rules: BusinessRules):
    fast = validate_cash_outs(cash_outs, acts, rules=rules, now=NOW)
    exact = validate_cash_outs_rowwise(cash_outs, acts, rules=rules, now=NOW)
    pd.testing.assert_frame_equal(fast.quarantine, exact.quarantine)
    pd.testing.assert_frame_equal(fast.valid, exact.valid.reset_index(drop=True))
    return fast


@settings(max_examples=150)
@given(st.lists(rows(), max_size=6), actions(), st.booleans())
def test_vectorized_validation_equals_rowwise(records, acts, confirmed_only) -> None:
    columns = list(tx().keys())
    action_frame = _frame(acts, ["id", "tx_id", "action", "created"]) if acts else None
    rules = BusinessRules(confirmed_only=confirmed_only)
    assert_same(_frame(records, columns), action_frame, rules)


@pytest.mark.parametrize("currency", ["GTQ", "USD"])
def test_generated_fixture_rows_take_the_fast_path_and_agree(currency: str) -> None:
    folder = Path(__file__).parents[2] / "data" / "sample" / "lamassu"
    cash_outs = read_export(folder / "cash_out_txs.csv", "cash_out_txs")
    acts = read_export(folder / "cash_out_actions.csv", "cash_out_actions")
    result = assert_same(cash_outs, acts, BusinessRules(currency=currency))
    if currency == "GTQ":  # every generated row is canonical: nothing needs the row-wise reader
        assert result.rowwise_rows == 0 and len(result.valid) == len(cash_outs)
    else:  # every row is quarantined (wrong currency), each by the row-wise reader
        assert result.rowwise_rows == len(cash_outs) == len(result.quarantine)
