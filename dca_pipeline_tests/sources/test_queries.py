"""Explicit column lists, window SQL and FetchWindow validation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import psycopg2
import pytest

from dca_pipeline.sources import COLUMNS, FetchWindow, LamassuTable, export_sql
from dca_pipeline.sources.queries import csv_header, timestamp_literal
from dca_pipeline_tests.sources.conftest import LamassuDatabase

WINDOW = FetchWindow(
    datetime(2025, 6, 9, 19, 12, 42, 40933, tzinfo=UTC), datetime(2025, 6, 10, tzinfo=UTC)
)


@pytest.mark.parametrize("table", list(LamassuTable))
def test_column_lists_are_all_ddl_columns_in_ddl_order(
    lamassu_db: LamassuDatabase, table: LamassuTable
) -> None:
    with psycopg2.connect(lamassu_db.dsn) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (table.value,),
        )
        in_database = tuple(name for (name,) in cursor.fetchall())
    assert COLUMNS[table] == in_database
    expected_counts = {
        LamassuTable.CASH_IN_TXS: 36, LamassuTable.CASH_OUT_TXS: 54,
        LamassuTable.CASH_OUT_ACTIONS: 52,
    }  # fmt: skip
    assert len(COLUMNS[table]) == expected_counts[table]  # lamassu-schema.md §1


@pytest.mark.parametrize("table", list(LamassuTable))
def test_export_sql_names_columns_orders_by_id_and_renders_utc_literals(
    table: LamassuTable,
) -> None:
    statement = export_sql(table, WINDOW)
    assert "*" not in statement
    assert statement.startswith("COPY (SELECT id, ")
    assert statement.endswith(" ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)")
    assert "'2025-06-09T19:12:42.040933+00:00'::timestamptz" in statement
    assert "'2025-06-10T00:00:00+00:00'::timestamptz" in statement
    assert "created >= '2025-06-09T19:12:42.040933+00:00'::timestamptz AND created < " in statement
    assert csv_header(table).startswith(b"id,")


def test_actions_are_selected_through_their_cash_outs_window() -> None:
    statement = export_sql(LamassuTable.CASH_OUT_ACTIONS, WINDOW)
    assert re.search(r"FROM cash_out_actions WHERE tx_id IN \(SELECT id FROM cash_out_txs "
                     r"WHERE created >= .+ AND created < .+\) ORDER BY id\)", statement)


def test_window_refuses_naive_non_utc_and_empty_windows() -> None:
    naive = datetime(2025, 6, 9)
    with pytest.raises(ValueError, match="aware"):
        FetchWindow(naive, naive + timedelta(days=1))
    guatemala = timezone(timedelta(hours=-6))
    with pytest.raises(ValueError, match="UTC"):
        FetchWindow(datetime(2025, 6, 9, tzinfo=guatemala), datetime(2025, 6, 10, tzinfo=UTC))
    with pytest.raises(ValueError, match="start < end"):
        FetchWindow(WINDOW.end, WINDOW.start)
    with pytest.raises(TypeError):
        FetchWindow("2025-06-09", WINDOW.end)  # type: ignore[arg-type]
    converted = FetchWindow.covering(
        datetime(2025, 6, 9, tzinfo=guatemala), datetime(2025, 6, 10, tzinfo=guatemala)
    )
    assert converted.start == datetime(2025, 6, 9, 6, tzinfo=UTC)


def test_timestamp_literal_refuses_anything_but_aware_utc() -> None:
    assert timestamp_literal(WINDOW.start) == "'2025-06-09T19:12:42.040933+00:00'::timestamptz"
    with pytest.raises(ValueError):
        timestamp_literal(datetime(2025, 6, 9))
    with pytest.raises(ValueError):
        timestamp_literal(datetime(2025, 6, 9, tzinfo=timezone(timedelta(hours=-6))))
