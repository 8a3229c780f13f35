"""Malformed Lamassu input through the ingest assets: quarantined rows and refused files.

The kinds of bad rows of the `simulate` tests plus the ones only landing can meet (no id, one
id twice in an export, a broken dispense action), all in one export: each is quarantined with
its reason and raw row, the good cash-out still validates, and the quarantine check warns.
A broken file is refused as a whole: the run fails and nothing lands.
"""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import dagster as dg
import pytest

from dca_pipeline.sources import FolderLamassuSource
from dca_pipeline_tests.ingest.conftest import (
    checks,
    lamassu_raw_rows,
    materialize,
    metadata,
    quarantine,
    table_rows,
    validated_table,
)
from dca_pipeline_tests.simulate.test_simulate import TX_A, tx
from dca_pipeline_tests.simulate.test_simulate_malformed import QUARANTINED

pytestmark = pytest.mark.dagster
DAY = "2025-06-09"
ACTION_COLUMNS = ["id", "tx_id", "action", "created", "error"]
CASH_IN_COLUMNS = ["id", "created", "fiat", "crypto_atoms", "crypto_code", "fiat_code"]


def _id(kind: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, kind))


# (kind, overrides of Example A, words of the reason); the simulate kinds first.
ROW_KINDS = [
    (kind, {k: v for k, v in overrides.items() if k != "created" or kind != "event_time_in_future"}
     | ({"confirmed_at": ""} if kind == "event_time_in_future" else {}), words)
    for kind, overrides, words in QUARANTINED
    if kind != "id_missing"
] + [
    ("discount_negative", {"discount": "-1"}, "discount"),
    ("commission_negative", {"commission_percentage": "-0.01000"}, "commission"),
    ("ticker_negative", {"raw_ticker_price": "-5.00000"}, "raw_ticker_price negative"),
    ("crypto_code_missing", {"crypto_code": ""}, "crypto_code missing"),
    ("btc_above_21m", {"crypto_atoms": "2100000000000001"}, "21M"),
    ("fiat_empty", {"fiat": ""}, "fiat"),
    ("dispense_confirmed_not_boolean", {"dispense_confirmed": "maybe"}, "dispense_confirmed"),
    ("broken_dispense_action", {}, "dispense action"),
]  # fmt: skip


def write(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def bad_folder(folder: Path) -> dict[str, tuple[str, str]]:
    """An export with one good cash-out and every bad kind; returns id → (kind, words)."""
    folder.mkdir(exist_ok=True)
    expected: dict[str, tuple[str, str]] = {}
    cash_outs = [tx()]
    actions = [{"id": "1", "tx_id": TX_A, "action": "dispense",
                "created": "2025-06-09 19:27:00+00", "error": ""}]  # fmt: skip
    for kind, overrides, words in ROW_KINDS:
        row_id = _id(kind)
        cash_outs.append(tx(**{"id": row_id, **overrides}))
        expected[row_id] = (kind, words)
        if kind == "event_time_in_future":  # a dispense in 2999 is the row's event time
            actions.append({"id": "2", "tx_id": row_id, "action": "dispense",
                            "created": "2999-01-01 00:00:00+00", "error": ""})  # fmt: skip
        if kind == "broken_dispense_action":
            actions.append({"id": "3", "tx_id": row_id, "action": "dispense",
                            "created": "soon", "error": ""})  # fmt: skip
    twice = _id("same_id_twice")
    cash_outs += [tx(id=twice), tx(id=twice, fiat="1000.00000")]
    expected[twice] = ("same_id_twice", "same id twice")
    cash_outs.append(tx(id="12345"))
    expected["12345"] = ("id_not_uuid", "UUID")
    cash_outs.append(tx(id=""))
    expected[""] = ("id_missing", "id missing")
    columns = list(tx().keys())
    write(folder / "cash_out_txs.csv", columns, cash_outs)
    write(folder / "cash_out_actions.csv", ACTION_COLUMNS, actions)
    write(folder / "cash_in_txs.csv", CASH_IN_COLUMNS, [])
    return expected


def test_every_kind_of_bad_row_is_quarantined_through_the_assets(ledger, instance, tmp_path):
    expected = bad_folder(tmp_path / "lamassu")
    assert len({kind for kind, _ in expected.values()}) >= 15
    result = materialize(FolderLamassuSource(directory=str(tmp_path / "lamassu")), ledger,
                         instance, DAY)  # fmt: skip
    assert result.success  # bad rows never stop the batch

    rows = table_rows(ledger, quarantine)
    reasons: dict[str, list[str]] = {}
    for row in rows:
        assert row["resolved_at"] is None and row["raw_row"].startswith("{")
        reasons.setdefault(row["source_id"], []).append(row["reason"])
    for row_id, (kind, words) in expected.items():
        assert row_id in reasons, kind
        assert any(words.lower() in r.lower() for r in reasons[row_id]), (kind, reasons[row_id])
    assert len(reasons[_id("same_id_twice")]) == 2  # every copy
    assert set(reasons) == set(expected)  # the good cash-out is not quarantined

    validated = {r["id"]: r for r in table_rows(ledger, validated_table)}
    assert set(validated) == {TX_A} and validated[TX_A]["eligible"]
    evaluations = checks(result)
    report = evaluations["quarantine_report"]
    assert not report.passed and report.severity == dg.AssetCheckSeverity.WARN
    assert report.metadata["quarantined"].value == len(rows)
    assert evaluations["raw_and_validated_reconcile"].passed
    assert metadata(result, "validated_cash_outs")["quarantined"] == len(rows) - 3

    # The same export again: the quarantine is not duplicated.
    assert materialize(FolderLamassuSource(directory=str(tmp_path / "lamassu")), ledger,
                       instance, DAY).success  # fmt: skip
    assert len(table_rows(ledger, quarantine)) == len(rows)


def test_a_corrected_row_resolves_its_quarantine_and_a_broken_one_is_withdrawn(
    sqlite_ledger, instance, tmp_path
) -> None:
    folder = tmp_path / "lamassu"
    folder.mkdir()
    columns = list(tx().keys())
    bad = _id("later_fixed")
    write(folder / "cash_out_txs.csv", columns, [tx(), tx(id=bad, fiat="1,000.00")])
    write(folder / "cash_out_actions.csv", ACTION_COLUMNS, [])
    write(folder / "cash_in_txs.csv", CASH_IN_COLUMNS, [])
    source = FolderLamassuSource(directory=str(folder))
    assert materialize(source, sqlite_ledger, instance, DAY).success
    assert [r["source_id"] for r in table_rows(sqlite_ledger, quarantine)] == [bad]

    # Lamassu corrects one row and breaks the other (its new version is unreadable).
    write(folder / "cash_out_txs.csv", columns, [tx(fiat="2,000.00"), tx(id=bad)])
    result = materialize(source, sqlite_ledger, instance, DAY)
    assert result.success
    by_id = {r["source_id"]: r for r in table_rows(sqlite_ledger, quarantine)}
    assert by_id[bad]["resolved_at"] is not None
    assert by_id[TX_A]["resolved_at"] is None
    validated = {r["id"]: r for r in table_rows(sqlite_ledger, validated_table)}
    assert validated[bad]["eligible"]
    # Never deleted: withdrawn from eligibility with the quarantine reason.
    assert not validated[TX_A]["eligible"]
    assert validated[TX_A]["ineligible_reason"].startswith("quarantined: fiat unparseable")
    assert TX_A in metadata(result, "validated_cash_outs")["withdrawn_by_quarantine"]
    assert checks(result)["raw_and_validated_reconcile"].passed


def _good(folder: Path) -> None:
    folder.mkdir()
    columns = list(tx().keys())
    write(folder / "cash_out_txs.csv", columns, [tx()])
    write(folder / "cash_out_actions.csv", ACTION_COLUMNS, [])
    write(folder / "cash_in_txs.csv", CASH_IN_COLUMNS,
          [{"id": _id("in"), "created": "2025-06-09 19:00:00+00", "fiat": "100.00000",
            "crypto_atoms": "1000", "crypto_code": "BTC", "fiat_code": "GTQ"}])  # fmt: skip


REFUSED_FILES = [
    ("missing_required_column", "cash_out_txs.csv",
     lambda text: text.replace("fiat_code", "currency")),
    ("binary_content", "cash_out_txs.csv", lambda text: text[:40] + "\x00\x01" + text[40:]),
    ("ragged_line", "cash_out_txs.csv", lambda text: text.rstrip("\n") + ",extra\n"),
    ("not_utf8", "cash_in_txs.csv", None),
    ("empty_file", "cash_out_actions.csv", lambda text: ""),
    ("duplicate_header", "cash_in_txs.csv", lambda text: text.replace("crypto_code", "fiat")),
    ("actions_missing_tx_id", "cash_out_actions.csv", lambda text: text.replace("tx_id", "tx")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "mutate"), [r[1:] for r in REFUSED_FILES],
                         ids=[r[0] for r in REFUSED_FILES])  # fmt: skip
def test_a_broken_file_is_refused_and_nothing_lands(sqlite_ledger, instance, tmp_path, name,
                                                    mutate) -> None:  # fmt: skip
    folder = tmp_path / "lamassu"
    _good(folder)
    path = folder / name
    if mutate is None:
        path.write_bytes(path.read_bytes() + "é".encode("latin-1"))
    else:
        path.write_text(mutate(path.read_text()))
    result = materialize(FolderLamassuSource(directory=str(folder)), sqlite_ledger, instance, DAY)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert name.split(".")[0] in message or "missing" in message, message
    assert table_rows(sqlite_ledger, lamassu_raw_rows) == []
    assert table_rows(sqlite_ledger, quarantine) == []


def test_quarantined_raw_row_json_keeps_unknown_columns(sqlite_ledger, instance, tmp_path):
    folder = tmp_path / "lamassu"
    _good(folder)
    assert materialize(FolderLamassuSource(directory=str(folder)), sqlite_ledger, instance,
                       DAY).success  # fmt: skip
    [row] = [r for r in table_rows(sqlite_ledger, lamassu_raw_rows)
             if r["source_table"] == "cash_out_txs"]  # fmt: skip
    assert json.loads(row["row_json"])["some_future_column"] == "x"
