"""An id already landed that arrives twice with different content (business-rules §8, §4a).

Run 1 lands cash-out X normally (validated, eligible). Run 2's export holds X twice with
different content: every copy is quarantined with the reason, the quarantine stays OPEN after
the ingest, nothing landed is lost, and X's validated row is kept but ``eligible = false`` with a
reason that says it is quarantined (the allocation stage treats X as revoked). Run 3 has X once
again: the quarantine resolves and X is eligible again. Through the real Dagster ingest assets,
a folder source whose files change between runs, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dca_pipeline.ledger.landing import DUPLICATE_ID_REASON
from dca_pipeline.sources import FolderLamassuSource
from dca_pipeline_tests.ingest.conftest import (
    checks,
    lamassu_raw_revisions,
    lamassu_raw_rows,
    materialize,
    metadata,
    quarantine,
    table_rows,
    validated_table,
)
from dca_pipeline_tests.ingest.test_malformed import (
    ACTION_COLUMNS,
    CASH_IN_COLUMNS,
    DAY,
    write,
)
from dca_pipeline_tests.simulate.test_simulate import TX_A, TX_B, tx

pytestmark = pytest.mark.dagster
X = TX_A
DISPENSE = {"id": "1", "tx_id": X, "action": "dispense", "created": "2025-06-09 19:27:00+00",
            "error": ""}  # fmt: skip


def _export(folder: Path, cash_outs: list[dict[str, str]]) -> None:
    write(folder / "cash_out_txs.csv", list(tx().keys()), cash_outs)
    write(folder / "cash_out_actions.csv", ACTION_COLUMNS, [DISPENSE])
    write(folder / "cash_in_txs.csv", CASH_IN_COLUMNS, [])


def _quarantine_of(ledger, row_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [r for r in table_rows(ledger, quarantine) if r["source_id"] == row_id]


def _validated(ledger) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {r["id"]: r for r in table_rows(ledger, validated_table)}


def test_landed_id_twice_with_different_content_is_quarantined_and_revoked_until_clean(
    ledger, instance, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "lamassu"
    folder.mkdir()
    source = FolderLamassuSource(directory=str(folder))
    other = tx(id=TX_B, fiat="100.00000", crypto_atoms="13340")

    # Run 1: X lands normally.
    _export(folder, [tx(), other])
    first = materialize(source, ledger, instance, DAY)
    assert first.success
    assert _validated(ledger)[X]["eligible"]
    assert _quarantine_of(ledger, X) == []
    [landed] = [r for r in table_rows(ledger, lamassu_raw_rows) if r["id"] == X]

    # Run 2: X twice with different content (the other cash-out is unaffected).
    _export(folder, [tx(), tx(fiat="1000.00000"), other])
    second = materialize(source, ledger, instance, DAY)
    assert second.success  # a bad row never stops the batch
    rows = _quarantine_of(ledger, X)
    assert len(rows) == 2  # every copy
    assert {r["reason"] for r in rows} == {DUPLICATE_ID_REASON}
    assert all(r["resolved_at"] is None for r in rows)  # still OPEN after the ingest
    copies = sorted(json.loads(r["raw_row"])["fiat"] for r in rows)
    assert copies == ["1000.00000", "2000.00000"]
    # Nothing landed is lost: the landed version and its revision are still there.
    [still] = [r for r in table_rows(ledger, lamassu_raw_rows) if r["id"] == X]
    assert still["row_sha256"] == landed["row_sha256"]
    revisions = [r for r in table_rows(ledger, lamassu_raw_revisions) if r["id"] == X]
    assert [r["row_sha256"] for r in revisions] == [landed["row_sha256"]]
    # The validated row is kept, but revoked: ineligible because it is quarantined.
    validated = _validated(ledger)
    assert set(validated) == {X, TX_B}
    assert not validated[X]["eligible"]
    assert validated[X]["ineligible_reason"] == f"quarantined: {DUPLICATE_ID_REASON}"
    assert validated[TX_B]["eligible"]
    meta = metadata(second, "validated_cash_outs")
    assert X in meta["withdrawn_by_quarantine"]
    assert meta["quarantine_resolved"] == 0
    evaluations = checks(second)
    assert evaluations["raw_and_validated_reconcile"].passed
    assert not evaluations["quarantine_report"].passed  # WARN: visible in the UI
    assert evaluations["quarantine_report"].metadata["quarantined"].value == 2

    # The same bad export again: still open, not duplicated, X still ineligible.
    again = materialize(source, ledger, instance, DAY)
    assert again.success
    assert [r["resolved_at"] for r in _quarantine_of(ledger, X)] == [None, None]
    assert not _validated(ledger)[X]["eligible"]
    assert metadata(again, "validated_cash_outs")["rows_unchanged"] == 2

    # Run 3: X once again, valid: the quarantine resolves and X is eligible again.
    _export(folder, [tx(), other])
    third = materialize(source, ledger, instance, DAY)
    assert third.success
    assert all(r["resolved_at"] is not None for r in _quarantine_of(ledger, X))
    validated = _validated(ledger)
    assert validated[X]["eligible"] and validated[X]["ineligible_reason"] is None
    assert checks(third)["quarantine_report"].passed
    assert checks(third)["raw_and_validated_reconcile"].passed


def test_a_new_version_after_the_duplicates_lands_and_resolves_them(
    ledger, instance, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Run 3 brings X once with content different from run 1: a new revision, eligible."""
    folder = tmp_path / "lamassu"
    folder.mkdir()
    source = FolderLamassuSource(directory=str(folder))
    _export(folder, [tx()])
    assert materialize(source, ledger, instance, DAY).success
    _export(folder, [tx(), tx(status="instant")])
    assert materialize(source, ledger, instance, DAY).success
    assert not _validated(ledger)[X]["eligible"]

    _export(folder, [tx(status="instant")])
    result = materialize(source, ledger, instance, DAY)
    assert result.success
    assert all(r["resolved_at"] is not None for r in _quarantine_of(ledger, X))
    revisions = [r for r in table_rows(ledger, lamassu_raw_revisions) if r["id"] == X]
    assert sorted(r["revision"] for r in revisions) == [1, 2]
    validated = _validated(ledger)[X]
    assert validated["eligible"] and validated["status"] == "instant"
    assert checks(result)["raw_and_validated_reconcile"].passed


def test_an_id_never_landed_twice_in_one_export_has_no_validated_row(
    sqlite_ledger, instance, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "lamassu"
    folder.mkdir()
    _export(folder, [tx(), tx(fiat="1000.00000")])
    result = materialize(FolderLamassuSource(directory=str(folder)), sqlite_ledger, instance, DAY)
    assert result.success
    assert [r["resolved_at"] for r in _quarantine_of(sqlite_ledger, X)] == [None, None]
    assert _validated(sqlite_ledger) == {}
    assert checks(result)["raw_and_validated_reconcile"].passed
