"""SSH, Postgres and folder sources return the same bytes, in psql's CSV dialect."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from dca_pipeline.demo.lamassu_generator import export_folder
from dca_pipeline.sources import (
    FetchWindow,
    FolderLamassuSource,
    LamassuSource,
    LamassuTable,
    PostgresLamassuSource,
    SourceError,
    SshLamassuSource,
    fetch_tables,
)
from dca_pipeline.sources.queries import COLUMNS
from dca_pipeline_tests.sources.conftest import LamassuDatabase

PSQL_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?\+00$")


def rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_all_three_sources_return_identical_bytes(
    lamassu_db: LamassuDatabase,
    pg_source: PostgresLamassuSource,
    make_ssh_source: Callable[..., SshLamassuSource],
    tmp_path: Path,
) -> None:
    window = lamassu_db.summary.window
    export_folder(lamassu_db.dsn, tmp_path, window)
    sources: dict[str, LamassuSource] = {
        "postgres": pg_source,
        "ssh": make_ssh_source(lamassu_db.dbname),
        "folder": FolderLamassuSource(directory=str(tmp_path)),
    }
    exports = {name: fetch_tables(source, window) for name, source in sources.items()}
    for table in LamassuTable:
        assert exports["ssh"][table] == exports["postgres"][table], table
        assert exports["folder"][table] == exports["postgres"][table], table
    summary = lamassu_db.summary
    assert len(rows(exports["ssh"][LamassuTable.CASH_OUT_TXS])) == summary.cash_outs
    assert len(rows(exports["ssh"][LamassuTable.CASH_OUT_ACTIONS])) == summary.cash_out_actions
    assert len(rows(exports["ssh"][LamassuTable.CASH_IN_TXS])) == summary.cash_ins


def test_export_is_psql_csv_with_utc_timestamps_and_exact_numerics(
    pg_source: PostgresLamassuSource, lamassu_db: LamassuDatabase
) -> None:
    data = pg_source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)
    header, *lines = data.decode().splitlines()
    assert header.split(",") == list(COLUMNS[LamassuTable.CASH_OUT_TXS])
    parsed = rows(data)
    assert [row["id"] for row in parsed] == sorted(row["id"] for row in parsed)
    for row in parsed:
        assert PSQL_TIMESTAMP.match(row["created"]), row["created"]
        assert row["dispense"] in {"t", "f"}
        assert re.fullmatch(r"\d+\.\d{5}", row["fiat"])
        assert re.fullmatch(r"0\.\d{5}", row["commission_percentage"])
        if row["status"] == "notSeen":
            assert row["confirmed_at"] == ""  # NULL is an empty, unquoted field
    assert any(",,," in line for line in lines)
    actions = pg_source.fetch_csv(LamassuTable.CASH_OUT_ACTIONS, lamassu_db.summary.window)
    # device_id '' (operatorCompleted) is an empty *string*, which psql quotes.
    assert b',operatorCompleted,' in actions and b',""' in actions


def test_actions_come_with_their_cash_outs_even_when_they_happen_after_the_window(
    pg_source: PostgresLamassuSource, lamassu_db: LamassuDatabase
) -> None:
    with psycopg2.connect(lamassu_db.dsn) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT t.created FROM cash_out_txs t JOIN cash_out_actions a ON a.tx_id = t.id "
            "WHERE a.action = 'dispense' ORDER BY a.created - t.created DESC LIMIT 1"
        )
        (latest_dispensed_created,) = cursor.fetchone()
    window = FetchWindow(
        lamassu_db.summary.window.start, latest_dispensed_created + timedelta(microseconds=1)
    )
    txs = rows(pg_source.fetch_csv(LamassuTable.CASH_OUT_TXS, window))
    actions = rows(pg_source.fetch_csv(LamassuTable.CASH_OUT_ACTIONS, window))
    tx_ids = {row["id"] for row in txs}
    assert tx_ids and {row["tx_id"] for row in actions} <= tx_ids
    dispensed = {row["tx_id"] for row in actions if row["action"] == "dispense"}
    assert dispensed == {
        row["id"] for row in txs if row["dispense"] == "t" and row["dispense_confirmed"] == "t"
    }
    window_end_text = f"{window.end:%Y-%m-%d %H:%M:%S.%f}+00"
    assert any(row["created"] >= window_end_text for row in actions)
    assert [int(row["id"]) for row in actions] == sorted(int(row["id"]) for row in actions)


def test_folder_source_refuses_a_missing_export(tmp_path: Path) -> None:
    source = FolderLamassuSource(directory=str(tmp_path))
    window = FetchWindow(datetime(2025, 6, 9, tzinfo=UTC), datetime(2025, 6, 10, tzinfo=UTC))
    with pytest.raises(SourceError, match="cash_in_txs.csv does not exist"):
        source.fetch_csv(LamassuTable.CASH_IN_TXS, window)

