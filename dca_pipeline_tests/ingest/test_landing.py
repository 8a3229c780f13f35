"""Landing-table writes: the bulk insert stores exactly what a typed insert stores."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import sqlalchemy as sa

from dca_pipeline.ledger.bulk import insert_rows
from dca_pipeline.ledger.landing import row_json, row_jsons
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
        insert_rows(connection, lamassu_raw_rows, [_row("bulk", moment)])
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


def test_fast_row_jsons_match_pandas_on_awkward_texts() -> None:
    """The per-column encoder (one json.dumps per column) writes exactly pandas' bytes."""
    import itertools

    import pandas as pd

    from dca_pipeline.ledger.landing import _pandas_row_jsons

    awkward = ["\\", "\x1f", "u001f", "\\u001f", "a/b", "é", "\U0001f600", "\x7f", "", '"', None]
    values = [list(v) for v in itertools.product(awkward, repeat=2)]
    frame = pd.DataFrame(values, columns=["b", "a"], dtype=object)
    assert row_jsons(frame) == _pandas_row_jsons(frame)
    mixed = pd.DataFrame({"a": [1, None], "b": ["x", float("nan")]}, dtype=object)
    expected = ['{"a":1,"b":"x"}', '{"a":null,"b":null}']
    assert row_jsons(mixed) == _pandas_row_jsons(mixed) == expected


def test_bulk_insert_keeps_null_and_empty_text_apart(ledger) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL's COPY path must not turn an empty text into NULL (or NULL into '')."""
    from dca_pipeline.ledger.schema import clients

    moment = datetime(2025, 6, 9, 13, 12, 42, tzinfo=UTC)
    rows = [
        {"client_id": cid, "display_name": name, "lnbits_user_id": "u", "wallet_id": "w",
         "invoice_key": "k", "created_at": moment}
        for cid, name in (("none", None), ("empty", ""), ("text", 'a,"b"\nc'))
    ]  # fmt: skip
    with ledger.begin() as connection:
        insert_rows(connection, clients, rows[:1])  # COPY on PostgreSQL
        insert_rows(connection, clients, rows[1:])  # an empty text: the generic path
        stored = dict(
            connection.execute(sa.select(clients.c.client_id, clients.c.display_name)).all()
        )
    assert stored == {"none": None, "empty": "", "text": 'a,"b"\nc'}
