"""The read-only Postgres source: the documented SELECT-only role, errors without secrets."""

from __future__ import annotations

import re
import secrets

import psycopg2
import pytest

import dca_pipeline.sources.postgres as postgres_module
from dca_pipeline.sources import (
    AuthenticationError,
    LamassuTable,
    PostgresLamassuSource,
    RemoteCommandError,
    SourceError,
)
from dca_pipeline_tests.sources.conftest import ADMIN_DSN, LamassuDatabase


def documented_role_setup(role: str, password: str, dbname: str) -> list[str]:
    """The GRANT statements from the module docstring, with this test's names."""
    doc = postgres_module.__doc__ or ""
    statements = re.findall(r"^\s{4}((?:CREATE|GRANT|ALTER) [^;]+;)", doc, flags=re.MULTILINE)
    assert len(statements) == 5, statements
    return [
        statement.replace("'<a long random password>'", f"'{password}'")
        .replace("ON DATABASE lamassu", f"ON DATABASE {dbname}")
        .replace("dca_reader", role)
        for statement in statements
    ]


@pytest.fixture
def reader_dsn(lamassu_db: LamassuDatabase):
    role = f"dca_reader_{secrets.token_hex(4)}"
    password = f"pw-{secrets.token_hex(8)}"
    with psycopg2.connect(lamassu_db.dsn) as conn, conn.cursor() as cursor:
        for statement in documented_role_setup(role, password, lamassu_db.dbname):
            cursor.execute(statement)
    conn.close()
    dsn = f"host=127.0.0.1 port=5432 dbname={lamassu_db.dbname} user={role} password={password}"
    try:
        yield dsn, password
    finally:
        with psycopg2.connect(lamassu_db.dsn) as conn, conn.cursor() as cursor:
            cursor.execute(f'DROP OWNED BY "{role}"')  # revokes its grants, incl. CONNECT
            cursor.execute(f'DROP ROLE "{role}"')
        conn.close()


def test_select_only_role_fetches_the_same_bytes_and_cannot_write(
    lamassu_db: LamassuDatabase, pg_source: PostgresLamassuSource, reader_dsn: tuple[str, str]
) -> None:
    dsn, password = reader_dsn
    reader = PostgresLamassuSource(dsn=dsn)
    window = lamassu_db.summary.window
    for table in LamassuTable:
        assert reader.fetch_csv(table, window) == pg_source.fetch_csv(table, window)
    assert password not in repr(reader) and password not in str(reader)

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW default_transaction_read_only")
            assert cursor.fetchone() == ("on",)
            with pytest.raises(psycopg2.Error, match="read-only|permission denied"):
                cursor.execute(
                    "INSERT INTO cash_out_actions (tx_id, action) "
                    "VALUES ('00000000-0000-4000-8000-000000000000', 'dispense')"
                )
        conn.rollback()
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("SET default_transaction_read_only = off")  # a role may lift it...
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):  # ...but has no grant
                cursor.execute("UPDATE cash_out_txs SET error = 'x'")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cursor.execute("SELECT count(*) FROM customers")  # KYC data is not granted
    finally:
        conn.close()


def test_unknown_role_is_an_authentication_error_without_the_password(
    lamassu_db: LamassuDatabase,
) -> None:
    password = "Sup3r-Secret-Pa55"
    source = PostgresLamassuSource(
        dsn=f"postgresql://nobody_here:{password}@127.0.0.1:5432/{lamassu_db.dbname}"
    )
    with pytest.raises(AuthenticationError) as caught:
        source.fetch_csv(LamassuTable.CASH_OUT_TXS, lamassu_db.summary.window)
    assert password not in str(caught.value)
    assert password not in repr(source) and "dsn='***'" in repr(source)


def test_malformed_dsn_error_does_not_echo_the_dsn() -> None:
    password = "Sup3r-Secret-Pa55"
    source = PostgresLamassuSource(dsn=f"postgresql//reader:{password}@127.0.0.1/lamassu")
    from datetime import UTC, datetime

    from dca_pipeline.sources import FetchWindow

    window = FetchWindow(datetime(2025, 6, 9, tzinfo=UTC), datetime(2025, 6, 10, tzinfo=UTC))
    with pytest.raises(SourceError, match="malformed") as caught:
        source.fetch_csv(LamassuTable.CASH_OUT_TXS, window)
    assert password not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_missing_table_is_a_remote_command_error(lamassu_db: LamassuDatabase) -> None:
    source = PostgresLamassuSource(dsn=ADMIN_DSN)  # the `postgres` DB has no Lamassu tables
    with pytest.raises(RemoteCommandError, match='relation "cash_in_txs" does not exist'):
        source.fetch_csv(LamassuTable.CASH_IN_TXS, lamassu_db.summary.window)
