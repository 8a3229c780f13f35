"""The ingest assets end to end: folder, PostgreSQL and SSH sources into SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from dca_pipeline.defs.settings import BusinessSettings
from dca_pipeline.demo.lamassu_generator import fail_after_dispense, update_later
from dca_pipeline.domain.money import format_cents
from dca_pipeline.lamassu.csv_io import read_export
from dca_pipeline.ledger.database import LedgerResource
from dca_pipeline.sources import FolderLamassuSource, PostgresLamassuSource
from dca_pipeline_tests.ingest.conftest import (
    checks,
    lamassu_raw_revisions,
    lamassu_raw_rows,
    materialize,
    metadata,
    table_rows,
    validated_table,
)
from dca_pipeline_tests.sources.conftest import LamassuDatabase

SAMPLE = Path(__file__).parents[2] / "data" / "sample" / "lamassu"
pytestmark = pytest.mark.dagster


def _sample(table: str):  # type: ignore[no-untyped-def]
    return read_export(SAMPLE / f"{table}.csv", table)


def test_folder_sample_lands_validates_and_reruns_unchanged(ledger: LedgerResource, instance):
    source = FolderLamassuSource(directory=str(SAMPLE))
    result = materialize(source, ledger, instance, "2025-06-01", "2025-06-07")
    assert result.success
    cash_outs, actions, cash_ins = (
        _sample(t) for t in ("cash_out_txs", "cash_out_actions", "cash_in_txs")
    )
    raw = metadata(result, "lamassu_cash_out_txs")
    assert (raw["rows_fetched"], raw["rows_new"], raw["rows_changed"]) == (len(cash_outs),
                                                                          len(cash_outs), 0)
    assert metadata(result, "lamassu_cash_out_actions")["rows_new"] == len(actions)
    assert metadata(result, "lamassu_cash_in_txs")["rows_new"] == len(cash_ins)
    validated = metadata(result, "validated_cash_outs")
    assert validated["rows_validated"] == len(cash_outs) and validated["quarantined"] == 0
    assert validated["rows_read_row_wise"] == 0  # the generated export is all canonical

    rows = table_rows(ledger, validated_table)
    assert sorted(r["id"] for r in rows) == sorted(cash_outs["id"])
    eligible_cents = sum(r["fiat_cents"] for r in rows if r["eligible"])
    assert validated["eligible_fiat_total"] == format_cents(eligible_cents)
    assert all(r["principal_sats"] + r["commission_sats"] == r["crypto_atoms"] for r in rows)
    evaluations = checks(result)
    assert evaluations["raw_and_validated_reconcile"].passed
    assert evaluations["quarantine_report"].passed
    assert evaluations["raw_and_validated_reconcile"].metadata["landed"].value == len(cash_outs)

    # The same window again: everything seen, nothing new, no new revision.
    again = materialize(source, ledger, instance, "2025-06-01", "2025-06-07")
    assert again.success
    raw = metadata(again, "lamassu_cash_out_txs")
    assert (raw["rows_new"], raw["rows_changed"], raw["rows_unchanged"]) == (0, 0, len(cash_outs))
    assert metadata(again, "validated_cash_outs")["rows_unchanged"] == len(cash_outs)
    assert len(table_rows(ledger, lamassu_raw_revisions)) == len(cash_outs) + len(actions) + len(
        cash_ins
    )


def test_one_partition_fetches_its_day_plus_the_overlap(sqlite_ledger, instance) -> None:
    source = FolderLamassuSource(directory=str(SAMPLE))
    result = materialize(source, sqlite_ledger, instance, "2025-06-04",
                         settings=BusinessSettings(overlap_hours=48))  # fmt: skip
    assert result.success
    days = {str(r["business_day"]) for r in table_rows(sqlite_ledger, lamassu_raw_rows)
            if r["source_table"] == "cash_out_txs"}  # fmt: skip
    assert days == {"2025-06-02", "2025-06-03", "2025-06-04"}
    meta = metadata(result, "lamassu_cash_out_txs")
    assert meta["window_start"] == "2025-06-02T06:00:00+00:00"
    assert meta["window_end"] == "2025-06-05T06:00:00+00:00"


@pytest.mark.postgres
@pytest.mark.ssh
def test_postgres_and_ssh_sources_land_the_same_rows(
    lamassu_db: LamassuDatabase, make_ssh_source, tmp_path: Path, instance
) -> None:
    landed = {}
    for name, source in (
        ("postgres", PostgresLamassuSource(dsn=lamassu_db.dsn)),
        ("ssh", make_ssh_source(lamassu_db.dbname)),
    ):
        ledger = LedgerResource(url=f"sqlite:///{tmp_path / name}.sqlite")
        result = materialize(source, ledger, instance, "2025-06-09", "2025-06-11")
        assert result.success, name
        assert checks(result)["raw_and_validated_reconcile"].passed
        landed[name] = (
            sorted((r["source_table"], r["id"], r["row_sha256"])
                   for r in table_rows(ledger, lamassu_raw_rows)),
            sorted((r["id"], r["eligible"], r["principal_sats"])
                   for r in table_rows(ledger, validated_table)),
        )  # fmt: skip
        assert "PRIVATE KEY" not in str(result.get_asset_materialization_events())
    assert landed["postgres"] == landed["ssh"]
    summary = lamassu_db.summary
    raw_rows, validated_rows = landed["postgres"]
    assert sum(1 for r in raw_rows if r[0] == "cash_out_txs") == summary.cash_outs
    assert sum(1 for r in raw_rows if r[0] == "cash_out_actions") == summary.cash_out_actions
    assert sum(1 for r in raw_rows if r[0] == "cash_in_txs") == summary.cash_ins
    assert {r[0] for r in validated_rows if r[1]} == set(summary.eligible_cash_out_ids)


@pytest.mark.postgres
def test_status_changes_between_fetches_keep_every_revision_and_flag_errors(
    mutable_lamassu_db: LamassuDatabase, ledger: LedgerResource, instance
) -> None:
    source = PostgresLamassuSource(dsn=mutable_lamassu_db.dsn)
    assert materialize(source, ledger, instance, "2025-06-10").success
    summary = mutable_lamassu_db.summary
    unconfirmed = summary.authorized_unconfirmed_ids[0]
    eligible = sorted(set(summary.eligible_cash_out_ids) - {unconfirmed})
    with ledger.begin() as connection:
        in_window = set(connection.execute(sa.select(validated_table.c.id)).scalars())
    victim = next(i for i in eligible if i in in_window)
    before = {r["id"]: r for r in table_rows(ledger, validated_table)}
    assert before[victim]["eligible"]

    later = summary.window.end
    fail_after_dispense(mutable_lamassu_db.dsn, victim, at=later)
    update_later(mutable_lamassu_db.dsn, unconfirmed, at=later, status="confirmed")
    result = materialize(source, ledger, instance, "2025-06-10")
    assert result.success
    raw = metadata(result, "lamassu_cash_out_txs")
    assert raw["rows_changed"] >= 2
    # Both versions of the failed cash-out are kept, in order.
    revisions = sorted(
        (r["revision"], r["row_json"]) for r in table_rows(ledger, lamassu_raw_revisions)
        if r["id"] == victim
    )  # fmt: skip
    assert [r[0] for r in revisions] == [1, 2]
    assert '"error":null' in revisions[0][1] and '"error":"Bill jam"' in revisions[1][1]
    after = {r["id"]: r for r in table_rows(ledger, validated_table)}
    # Never deleted: updated to ineligible with the reason, and reported by the asset.
    assert not after[victim]["eligible"] and after[victim]["ineligible_reason"]
    assert victim in metadata(result, "validated_cash_outs")["became_ineligible"]
    assert set(after) >= set(before)
    assert checks(result)["raw_and_validated_reconcile"].passed


def test_source_error_lands_nothing_and_deletes_nothing(sqlite_ledger, instance, tmp_path):
    folder = tmp_path / "lamassu"
    folder.mkdir()
    for table in ("cash_out_txs", "cash_out_actions"):  # cash_in_txs.csv is missing
        (folder / f"{table}.csv").write_bytes((SAMPLE / f"{table}.csv").read_bytes())
    source = FolderLamassuSource(directory=str(folder))
    result = materialize(source, sqlite_ledger, instance, "2025-06-03")
    assert not result.success
    assert table_rows(sqlite_ledger, lamassu_raw_rows) == []

    (folder / "cash_in_txs.csv").write_bytes((SAMPLE / "cash_in_txs.csv").read_bytes())
    assert materialize(source, sqlite_ledger, instance, "2025-06-03").success
    landed = table_rows(sqlite_ledger, lamassu_raw_rows)
    (folder / "cash_in_txs.csv").unlink()
    assert not materialize(source, sqlite_ledger, instance, "2025-06-03").success
    assert table_rows(sqlite_ledger, lamassu_raw_rows) == landed


def test_validated_asset_type_is_the_pandera_model() -> None:
    from dca_pipeline.defs.ingest.assets import validated_cash_outs

    spec = validated_cash_outs.get_output_name_for_asset_key(dg.AssetKey("validated_cash_outs"))
    dagster_type = validated_cash_outs.op.outs[spec].dagster_type
    assert dagster_type.display_name == "ValidatedCashOut"
    schema = dagster_type.metadata["schema"].value if "schema" in dagster_type.metadata else None
    assert schema is None or "principal_sats" in str(schema)


def test_a_downstream_asset_can_read_validated_cash_outs_as_a_frame(sqlite_ledger, instance):
    from dca_pipeline.defs.ingest.assets import lamassu_raw, validated_cash_outs
    from dca_pipeline.defs.settings import business_days

    seen: list = []

    @dg.asset(partitions_def=business_days, ins={"cash_outs": dg.AssetIn("validated_cash_outs")},
              backfill_policy=dg.BackfillPolicy.single_run())
    def consumer(cash_outs):  # type: ignore[no-untyped-def]
        seen.append(cash_outs)
        return dg.MaterializeResult(metadata={"rows": len(cash_outs)})

    source = FolderLamassuSource(directory=str(SAMPLE))
    result = dg.materialize(
        [lamassu_raw, validated_cash_outs, consumer], partition_key="2025-06-03",
        resources={"lamassu": source, "ledger": sqlite_ledger, "settings": BusinessSettings()},
        instance=instance,
    )  # fmt: skip
    assert result.success
    [frame] = seen
    days = {str(r["business_day"]) for r in table_rows(sqlite_ledger, validated_table)}
    assert days >= {"2025-06-03"} and len(days) > 1  # the overlap validated earlier days too
    expected = sum(1 for r in table_rows(sqlite_ledger, validated_table)
                   if str(r["business_day"]) == "2025-06-03")  # fmt: skip
    assert len(frame) == expected > 0
    assert set(frame["business_day"].astype(str)) == {"2025-06-03"}
