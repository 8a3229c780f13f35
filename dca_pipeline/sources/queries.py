"""The export SQL shared by every source: explicit column lists and window predicates.

Columns are named explicitly, in the DDL order of Lamassu v10.0.3 (``lamassu_schema_ddl.sql``),
never ``SELECT *``: a positional export is what made the prior tools mislabel nine
``cash_out_txs`` columns (lamassu-schema.md §6.2), and naming them makes a server without one
of these columns fail loudly instead of shifting the others.

No caller text is ever pasted into SQL. The only variable parts are the table (a
:class:`LamassuTable` member mapped to a constant) and the window bounds, which are rendered
here from validated aware UTC datetimes and checked against a strict pattern.
"""

from __future__ import annotations

import re
from datetime import datetime

from dca_pipeline.sources.base import FetchWindow, LamassuTable

_PROVISIONED_RECYCLERS = tuple(f"provisioned_recycler_{n}" for n in range(1, 7))
_DISPENSED_RECYCLERS = tuple(f"dispensed_recycler_{n}" for n in range(1, 7))
_REJECTED_RECYCLERS = tuple(f"rejected_recycler_{n}" for n in range(1, 7))
_DENOMINATION_RECYCLERS = tuple(f"denomination_recycler_{n}" for n in range(1, 7))

CASH_OUT_TXS_COLUMNS: tuple[str, ...] = (
    "id", "device_id", "to_address", "crypto_atoms", "crypto_code", "fiat", "fiat_code",
    "status", "dispense", "notified", "redeem", "phone", "error", "created", "confirmed_at",
    "hd_index", "swept", "timedout", "dispense_confirmed",
    "provisioned_1", "provisioned_2", "denomination_1", "denomination_2",
    "error_code", "customer_id", "tx_version", "published_at", "terms_accepted",
    "layer_2_address", "commission_percentage", "raw_ticker_price", "received_crypto_atoms",
    "discount", "discount_source", "tx_customer_photo_at", "tx_customer_photo_path",
    "provisioned_3", "provisioned_4", "denomination_3", "denomination_4",
    "wallet_score",
    *_PROVISIONED_RECYCLERS, *_DENOMINATION_RECYCLERS,
    "email",
)  # fmt: skip

CASH_OUT_ACTIONS_COLUMNS: tuple[str, ...] = (
    "id", "tx_id", "action", "to_address", "error", "error_code", "tx_hash",
    "provisioned_1", "provisioned_2", "dispensed_1", "dispensed_2",
    "rejected_1", "rejected_2", "denomination_1", "denomination_2",
    "redeem", "device_time", "created", "layer_2_address", "device_id",
    "provisioned_3", "provisioned_4", "dispensed_3", "dispensed_4",
    "rejected_3", "rejected_4", "denomination_3", "denomination_4",
    *_PROVISIONED_RECYCLERS, *_DISPENSED_RECYCLERS, *_REJECTED_RECYCLERS,
    *_DENOMINATION_RECYCLERS,
)  # fmt: skip

CASH_IN_TXS_COLUMNS: tuple[str, ...] = (
    "id", "device_id", "to_address", "crypto_atoms", "crypto_code", "fiat", "fiat_code",
    "fee", "tx_hash", "phone", "error", "created", "send", "send_confirmed", "timedout",
    "send_time", "error_code", "operator_completed", "send_pending", "cash_in_fee",
    "minimum_tx", "customer_id", "tx_version", "terms_accepted", "commission_percentage",
    "raw_ticker_price", "is_paper_wallet", "discount", "batch_id", "batched", "batch_time",
    "discount_source", "tx_customer_photo_at", "tx_customer_photo_path", "wallet_score",
    "email",
)  # fmt: skip

COLUMNS: dict[LamassuTable, tuple[str, ...]] = {
    LamassuTable.CASH_OUT_TXS: CASH_OUT_TXS_COLUMNS,
    LamassuTable.CASH_OUT_ACTIONS: CASH_OUT_ACTIONS_COLUMNS,
    LamassuTable.CASH_IN_TXS: CASH_IN_TXS_COLUMNS,
}

# Session settings that make the text form of the export independent of the server's and the
# client's configuration: timestamps print as `2025-06-09 19:12:42.040933+00` only with
# TimeZone=UTC and an ISO DateStyle, and text bytes are identical only in one encoding.
SESSION_SETTINGS_SQL: tuple[str, ...] = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET client_encoding = 'UTF8'",
)

_TIMESTAMP_LITERAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?\+00:00$")


def timestamp_literal(moment: datetime) -> str:
    """``'2025-06-09T19:12:42.040933+00:00'::timestamptz`` for an aware UTC datetime."""
    text = moment.isoformat()
    # FetchWindow already guarantees aware UTC; the pattern keeps anything else out of the SQL.
    if not _TIMESTAMP_LITERAL.fullmatch(text):
        raise ValueError(f"refusing to render a non-UTC or malformed timestamp: {text!r}")
    return f"'{text}'::timestamptz"


def select_sql(table: LamassuTable, window: FetchWindow) -> str:
    """The SELECT (explicit columns, window predicate, ordered by id) for one table."""
    table = LamassuTable(table)
    start, end = timestamp_literal(window.start), timestamp_literal(window.end)
    created_in_window = f"created >= {start} AND created < {end}"
    columns = ", ".join(COLUMNS[table])
    if table is LamassuTable.CASH_OUT_ACTIONS:
        # The actions of the cash-outs created in the window, whenever the action happened,
        # so that each cash-out's `dispense` action (its event time) arrives with it.
        where = f"tx_id IN (SELECT id FROM cash_out_txs WHERE {created_in_window})"
    else:
        where = created_in_window
    return f"SELECT {columns} FROM {table.value} WHERE {where} ORDER BY id"


def export_sql(table: LamassuTable, window: FetchWindow) -> str:
    """The single ``COPY ... TO STDOUT`` statement every source runs (or has run) for a table."""
    return f"COPY ({select_sql(table, window)}) TO STDOUT WITH (FORMAT csv, HEADER)"


def csv_header(table: LamassuTable) -> bytes:
    """The header line the export starts with (used to check completeness)."""
    return (",".join(COLUMNS[LamassuTable(table)]) + "\n").encode()


def fingerprint_sql(window: FetchWindow) -> str:
    """One cheap row: ``count:md5`` of the exported rows of every table in the window.

    The live sensor compares it with the previous tick to skip runs when nothing changed.
    Lamassu has no ``updated_at`` column, and a status/error/dispense change keeps the count
    and every timestamp, so only a digest of the row contents detects every change.
    """
    parts = []
    for table in LamassuTable:
        inner = select_sql(table, window)
        parts.append(
            "(SELECT count(*)::text || ':' || coalesce(md5(string_agg(md5(x::text), '' "
            f"ORDER BY x.id)), '') FROM ({inner}) AS x)"
        )
    return "SELECT " + " || '|' || ".join(parts)
