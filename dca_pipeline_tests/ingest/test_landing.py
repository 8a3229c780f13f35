"""Landing-table writes: the bulk insert stores exactly what a typed insert stores."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import sqlalchemy as sa

from dca_pipeline.ledger.landing import _bulk_insert, row_json, row_jsons
from dca_pipeline.ledger.schema import lamassu_raw_rows


def _row(row_id: str, created: datetime) -> dict:
    return {
        "source_table": "cash_in_txs", "id": row_id, "created": created,
        "business_day": date(2025, 6, 9), "row_json": "{}", "row_sha256": "x", "revision": 1,
        "first_seen_at": created, "last_seen_at": created,
    }  # fmt: skip


def test_bulk_insert_stores_what_the_typed_insert_stores(ledger) -> None:  # type: ignore[no-untyped-def]
    moment = datetime(2025, 6, 9, 13, 12, 42, 40933, tzinfo=timezone(timedelta(hours=-6)))
    with ledger.begin() as connection:
        connection.execute(lamassu_raw_rows.insert(), [_row("typed", moment)])
        _bulk_insert(connection, lamassu_raw_rows, [_row("bulk", moment)])
        stored = {
            r[0]: tuple(r[1:])
            for r in connection.execute(
                sa.text("SELECT id, created, business_day, first_seen_at FROM lamassu_raw_rows")
            )
        }
        typed = connection.execute(
            sa.select(lamassu_raw_rows.c.created).where(lamassu_raw_rows.c.id == "bulk")
        ).scalar_one()
    assert stored["bulk"] == stored["typed"]  # the same bytes in the database
    assert typed == moment.astimezone(UTC) and typed.tzinfo is not None


def test_row_json_is_sorted_compact_and_keeps_every_column() -> None:
    text = row_json({"b": "x/y", "a": None, "unknown_future_column": "é"})
    assert text == '{"a":null,"b":"x\\/y","unknown_future_column":"\\u00e9"}'
    assert row_jsons.__doc__ and row_json({"a": "1"}) == '{"a":"1"}'
