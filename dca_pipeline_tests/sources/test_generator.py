"""The Lamassu fixture generator: deterministic, realistic, exact amounts; and its CLI."""

from __future__ import annotations

import argparse
import csv
import io
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest

from dca_pipeline.cli.lamassu_fixture import register
from dca_pipeline.demo.lamassu_generator import (
    GUATEMALA,
    cash_out_crypto_atoms,
    create_lamassu_database,
    drop_database,
    generate,
)
from dca_pipeline.sources import FolderLamassuSource, LamassuTable, PostgresLamassuSource
from dca_pipeline_tests.sources.conftest import ADMIN_DSN, LamassuDatabase, unique_dbname

ELIGIBLE_SQL = """
    SELECT id::text FROM cash_out_txs
    WHERE dispense AND dispense_confirmed IS TRUE AND error IS NULL
      AND status IN ('authorized','instant','confirmed') AND fiat > 0 AND crypto_atoms > 0
      AND crypto_code IN ('BTC','LN')
"""


def table_rows(source: PostgresLamassuSource, table: LamassuTable, db: LamassuDatabase):
    data = source.fetch_csv(table, db.summary.window)
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_v8_cash_out_formula_matches_the_real_row() -> None:
    # lamassu-schema.md §3: 4000 GTQ at bid 826091.28, c = 0.055 → 512392 → 512400 sats.
    assert cash_out_crypto_atoms(Decimal(4000), Decimal("826091.28"), Decimal("0.055"), None) \
        == 512400


def test_every_coin_amount_is_the_exact_v8_amount_of_its_row(
    pg_source: PostgresLamassuSource, lamassu_db: LamassuDatabase
) -> None:
    cash_outs = table_rows(pg_source, LamassuTable.CASH_OUT_TXS, lamassu_db)
    bitcoin = [row for row in cash_outs if row["crypto_code"] in ("BTC", "LN")]
    assert len(bitcoin) > 100
    for row in bitcoin:
        discount = int(row["discount"]) if row["discount"] else None
        expected = cash_out_crypto_atoms(Decimal(row["fiat"]), Decimal(row["raw_ticker_price"]),
                                         Decimal(row["commission_percentage"]), discount)
        assert int(row["crypto_atoms"]) == expected
        assert expected % 100 == 0
        assert row["fiat_code"] == "GTQ" and Decimal(row["fiat"]) % 50 == 0
        assert Decimal(800_000) * Decimal("0.99") < Decimal(row["raw_ticker_price"]) \
            < Decimal(900_000) * Decimal("1.01")


def test_summary_eligibility_matches_the_business_rule_predicate(
    lamassu_db: LamassuDatabase,
) -> None:
    with psycopg2.connect(lamassu_db.dsn) as conn, conn.cursor() as cursor:
        cursor.execute(ELIGIBLE_SQL)
        eligible = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT crypto_code, status::text, error, count(*) FROM cash_out_txs "
                       "GROUP BY 1, 2, 3")
        mix = {(coin, status, error): n for coin, status, error, n in cursor.fetchall()}
    conn.close()
    summary = lamassu_db.summary
    assert eligible == set(summary.eligible_cash_out_ids)
    assert not eligible & set(summary.other_coin_ids)
    assert summary.other_coin_ids and summary.authorized_unconfirmed_ids
    total = sum(mix.values())
    not_seen = sum(n for (_, status, error), n in mix.items() if status == "notSeen" and not error)
    assert 0.15 < not_seen / total < 0.45
    assert 0.5 < len(eligible) / total < 0.8
    assert any(error == "Operator cancel" for (_, _, error) in mix)


def test_times_fall_in_the_guatemala_business_day_and_follow_the_lifecycle(
    pg_source: PostgresLamassuSource, lamassu_db: LamassuDatabase
) -> None:
    cash_outs = table_rows(pg_source, LamassuTable.CASH_OUT_TXS, lamassu_db)
    actions = table_rows(pg_source, LamassuTable.CASH_OUT_ACTIONS, lamassu_db)
    dispensed_at = {a["tx_id"]: a["created"] for a in actions if a["action"] == "dispense"}
    for row in cash_outs:
        created = datetime.fromisoformat(row["created"])
        assert time(8) <= created.astimezone(GUATEMALA).time() < time(20)
        if row["crypto_code"] == "LN" and row["confirmed_at"]:
            assert row["published_at"] == row["confirmed_at"]
        if row["id"] in dispensed_at:
            assert datetime.fromisoformat(dispensed_at[row["id"]]) > created
            assert row["dispense"] == "t"
        if row["status"] == "authorized" and row["dispense"] == "t":
            assert row["confirmed_at"] == ""


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    exports = []
    for seed in (5, 5, 6):
        dbname = unique_dbname("lamassu_det")
        dsn = create_lamassu_database(ADMIN_DSN, dbname)
        try:
            summary = generate(dsn, start=date(2025, 6, 9), days=2, cash_outs_per_day=12,
                               seed=seed)
            source = PostgresLamassuSource(dsn=dsn)
            exports.append({t: source.fetch_csv(t, summary.window) for t in LamassuTable})
        finally:
            drop_database(ADMIN_DSN, dbname)
    assert exports[0] == exports[1]
    assert exports[0][LamassuTable.CASH_OUT_TXS] != exports[2][LamassuTable.CASH_OUT_TXS]


def test_cli_creates_the_database_and_exports_the_folder(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    dbname = unique_dbname("lamassu_cli")
    args = parser.parse_args([
        "lamassu-fixture", "--admin-dsn", ADMIN_DSN, "--dbname", dbname, "--days", "2",
        "--per-day", "10", "--seed", "3", "--start", "2025-06-09",
        "--export-dir", str(tmp_path / "export"),
    ])  # fmt: skip
    try:
        assert args.func(args) == 0
        again = parser.parse_args([
            "lamassu-fixture", "--admin-dsn", ADMIN_DSN, "--dbname", dbname, "--days", "2",
            "--start", "2025-06-09", "--export-only", "--export-dir", str(tmp_path / "again"),
        ])  # fmt: skip
        assert again.func(again) == 0
    finally:
        drop_database(ADMIN_DSN, dbname)
    first = FolderLamassuSource(directory=str(tmp_path / "export"))
    second = FolderLamassuSource(directory=str(tmp_path / "again"))
    for table in LamassuTable:
        data = first.path_for(table).read_bytes()
        assert data == second.path_for(table).read_bytes()
        assert data.count(b"\n") > 1
    with pytest.raises(SystemExit):
        parser.parse_args(["lamassu-fixture", "--dbname", "x", "--start", "June 9"])
    with pytest.raises(SystemExit):
        parser.parse_args(["lamassu-fixture", "--dbname", "x; DROP DATABASE postgres"])
