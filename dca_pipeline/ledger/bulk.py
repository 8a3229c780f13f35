"""The one bulk writer: many rows into one table, through the driver.

PostgreSQL: ``COPY … FROM STDIN (FORMAT csv)``; SQLite: one ``executemany``; any other
dialect: SQLAlchemy's ``executemany`` on untyped columns. Values are converted once per
distinct value by the column types' own bind processors, so what is stored is exactly what a
typed ``INSERT`` stores. Used by landing (raw rows, revisions, validated cash-outs) and meant
for the allocation lines.
"""

from __future__ import annotations

import csv
import io
import itertools
from typing import Any

import sqlalchemy as sa

_PLAIN = sa.MetaData()  # the same tables with untyped columns, for pre-processed bulk values


def insert_rows(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """``INSERT`` many rows given as dicts (every row with the same keys)."""
    if rows:
        names = list(rows[0])
        insert_columns(connection, table, {n: [r[n] for r in rows] for n in names}, len(rows))


def insert_columns(
    connection: sa.Connection, table: sa.Table, columns: dict[str, Any], count: int
) -> None:
    """``INSERT`` ``count`` rows given column by column: a list, or one value for every row.

    The column types' own bind processors convert each distinct value once, so what is stored
    is exactly what a typed insert stores; the rows then go to the driver as plain tuples
    (SQLite ``executemany``, PostgreSQL ``COPY``): SQLAlchemy's per-row parameter handling
    cost more than the database itself for 10⁵–10⁶ landed rows.
    """
    if count == 0:
        return
    dialect = connection.dialect
    names = list(columns)
    converted: list[Any] = []
    for name in names:
        process = table.c[name].type._cached_bind_processor(dialect)  # noqa: SLF001
        values = columns[name]
        if not isinstance(values, list):
            single = process(values) if process is not None and values is not None else values
            converted.append(itertools.repeat(single, count))
            continue
        if process is None:
            converted.append(values)
            continue
        seen: dict[Any, Any] = {None: None}
        out = []
        for value in values:
            try:
                out.append(seen[value])
            except KeyError:
                out.append(seen.setdefault(value, process(value)))
        converted.append(out)
    rows = list(zip(*converted, strict=True))
    if dialect.name == "sqlite":
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(
                f"INSERT INTO {table.name} ({', '.join(names)}) "
                f"VALUES ({', '.join('?' for _ in names)})",
                rows,
            )
        finally:
            cursor.close()
    elif dialect.name == "postgresql" and not _empty_text_in_nullable(table, columns):
        buffer = io.StringIO()
        # Python 3.11's csv writer quotes None like an empty text (""): FORCE_NULL makes ""
        # NULL in every nullable column, and an empty text in a nullable text column (where
        # that would be wrong) takes the generic path below instead.
        csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(rows)
        buffer.seek(0)
        force_null = [n for n in names if table.c[n].nullable]
        options = f", FORCE_NULL ({', '.join(force_null)})" if force_null else ""
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.copy_expert(
                f"COPY {table.name} ({', '.join(names)}) FROM STDIN WITH (FORMAT csv{options})",
                buffer,
            )
        finally:
            cursor.close()
    else:
        plain = _PLAIN.tables.get(table.name)
        if plain is None:
            plain = sa.Table(
                table.name, _PLAIN,
                *(sa.Column(c.name, sa.types.NullType(), primary_key=c.primary_key)
                  for c in table.columns),
            )  # fmt: skip
        connection.execute(plain.insert(), [dict(zip(names, r, strict=True)) for r in rows])


def _empty_text_in_nullable(table: sa.Table, columns: dict[str, Any]) -> bool:
    """Whether a nullable text column gets an empty text (COPY below would make it NULL)."""
    for name, values in columns.items():
        column = table.c[name]
        text = column.nullable and isinstance(column.type, sa.String)
        if text and (values == "" or (isinstance(values, list) and "" in values)):
            return True
    return False
