"""Read-only PostgreSQL access to the Lamassu database (psycopg2 ``copy_expert``).

A fetch reads all its tables inside ONE ``REPEATABLE READ, READ ONLY`` transaction (one
snapshot: a cash-out and its ``dispense`` action committed together arrive together or not at
all, business rules §2), with a statement timeout, rolled back afterwards, so even a role that
could write cannot change anything through this source. The fingerprint query of the live
sensor runs the same way. The bytes are exactly those of ``COPY (SELECT <explicit columns>
...) TO STDOUT WITH (FORMAT csv, HEADER)`` with ``TimeZone=UTC`` (see
:mod:`dca_pipeline.sources.queries`).

Operator setup on the Lamassu server (as the ``postgres`` superuser, in the ``lamassu``
database) for a SELECT-only role::

    CREATE ROLE dca_reader LOGIN PASSWORD '<a long random password>';
    GRANT CONNECT ON DATABASE lamassu TO dca_reader;
    GRANT USAGE ON SCHEMA public TO dca_reader;
    GRANT SELECT ON cash_out_txs, cash_out_actions, cash_in_txs TO dca_reader;
    ALTER ROLE dca_reader SET default_transaction_read_only = on;

plus a ``pg_hba.conf`` line that admits ``dca_reader`` from the pipeline's address only
(``hostssl lamassu dca_reader <pipeline-ip>/32 scram-sha-256``). The DSN is given to the
resource with ``dg.EnvVar("DCA_LAMASSU_PG_DSN")``; it is masked in ``repr()`` and never logged.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import ClassVar

import dagster as dg
import psycopg2
import psycopg2.extensions

from dca_pipeline.sources.base import (
    AuthenticationError,
    FetchWindow,
    LamassuTable,
    RemoteCommandError,
    SecretMaskingMixin,
    SourceError,
    TransferError,
)
from dca_pipeline.sources.queries import SESSION_SETTINGS_SQL, export_sql, fingerprint_sql

_AUTH_FAILURE_CODES = frozenset({"28P01", "28000"})  # invalid_password, invalid_authorization
# libpq reports connection-time failures as text only (no SQLSTATE reaches psycopg2).
_AUTH_FAILURE_MARKERS = (
    "password authentication failed",
    "no password supplied",
    "FATAL:  role ",  # role "x" does not exist
    "pg_hba.conf rejects",
    "permission denied for database",
)


BEGIN_SNAPSHOT_SQL = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"


@contextmanager
def read_only_snapshot(
    connection: psycopg2.extensions.connection,
    *,
    statement_timeout_ms: int | None = None,
) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor inside ONE ``REPEATABLE READ, READ ONLY`` transaction; always rolled back.

    Every statement run on the cursor sees the same snapshot (taken by the first statement
    after ``BEGIN``), so several tables read through it agree with each other. The session
    settings of :data:`SESSION_SETTINGS_SQL` and the statement timeout (``set_config(...,
    true)``: this transaction only) apply to every statement in it.
    """
    # BEGIN/ROLLBACK are ours, not psycopg2's; switching to autocommit refuses a connection
    # that is inside a psycopg2 transaction, whose earlier statements would own the snapshot.
    was_autocommit = connection.autocommit
    connection.autocommit = True
    cursor = connection.cursor()
    try:
        try:
            cursor.execute(BEGIN_SNAPSHOT_SQL)
            for setting in SESSION_SETTINGS_SQL:
                cursor.execute(setting)
            if statement_timeout_ms is not None:
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    (f"{int(statement_timeout_ms)}ms",),
                )
            yield cursor
        except BaseException:
            if not connection.closed:
                # If the connection broke, the server ends the transaction by itself.
                with suppress(psycopg2.Error):
                    cursor.execute("ROLLBACK")
            raise
        else:
            cursor.execute("ROLLBACK")
    finally:
        cursor.close()
        if not connection.closed:
            connection.autocommit = was_autocommit


def copy_table(
    cursor: psycopg2.extensions.cursor, table: LamassuTable, window: FetchWindow
) -> bytes:
    """The COPY export of one table, on a cursor of :func:`read_only_snapshot`."""
    buffer = io.BytesIO()
    cursor.copy_expert(export_sql(LamassuTable(table), window), buffer)
    return buffer.getvalue()


def copy_export(
    connection: psycopg2.extensions.connection,
    table: LamassuTable,
    window: FetchWindow,
    *,
    statement_timeout_ms: int | None = None,
) -> bytes:
    """Run the export of one table on an open connection, in its own read-only snapshot.

    The same statements as :meth:`PostgresLamassuSource.fetch_many` (:func:`read_only_snapshot`
    and :func:`copy_table`), used by the fixture exporter, so a folder written by
    ``export_folder`` holds exactly what the sources return.
    """
    with read_only_snapshot(connection, statement_timeout_ms=statement_timeout_ms) as cursor:
        return copy_table(cursor, table, window)


def _describe_pg_error(error: psycopg2.Error) -> str:
    # psycopg2 messages carry the server's text (never the password); keep the first line.
    text = (getattr(error, "pgerror", None) or str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


class PostgresLamassuSource(SecretMaskingMixin, dg.ConfigurableResource):
    """Fetches Lamassu exports over a direct, read-only PostgreSQL connection."""

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"dsn"})

    dsn: str
    connect_timeout_s: int = 15
    statement_timeout_s: int = 300

    def describe(self) -> str:
        """Non-secret identification for logs and metadata (host and database only)."""
        try:
            params = psycopg2.extensions.parse_dsn(self.dsn)
        except psycopg2.Error:
            return "postgres (DSN withheld)"
        return f"postgres {params.get('host', 'local socket')} dbname={params.get('dbname', '?')}"

    def _connect(self) -> psycopg2.extensions.connection:
        try:
            return psycopg2.connect(
                self.dsn,
                connect_timeout=self.connect_timeout_s,
                application_name="dca-pipeline",
            )
        except psycopg2.OperationalError as exc:
            message = _describe_pg_error(exc)
            if any(marker in message for marker in _AUTH_FAILURE_MARKERS):
                raise AuthenticationError(
                    f"Lamassu PostgreSQL refused the credentials: {message}"
                ) from None
            if "FATAL:" in message:  # the server answered and refused, e.g. no such database
                raise RemoteCommandError(f"Lamassu PostgreSQL refused: {message}") from None
            raise TransferError(f"cannot connect to Lamassu PostgreSQL: {message}") from None
        except psycopg2.Error:
            # libpq quotes the offending part of a malformed DSN, which may be the password.
            raise SourceError(
                "the Lamassu PostgreSQL DSN is malformed (details withheld: it holds a secret)"
            ) from None

    @contextmanager
    def _translated_errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except psycopg2.extensions.QueryCanceledError as exc:
            raise RemoteCommandError(
                f"{what} was cancelled (statement timeout "
                f"{self.statement_timeout_s} s?): {_describe_pg_error(exc)}"
            ) from None
        except psycopg2.OperationalError as exc:
            # Connection lost mid-COPY: the buffer is discarded, nothing partial escapes.
            raise TransferError(
                f"connection to Lamassu PostgreSQL failed during {what}: "
                f"{_describe_pg_error(exc)}"
            ) from None
        except psycopg2.Error as exc:
            if exc.pgcode in _AUTH_FAILURE_CODES:
                raise AuthenticationError(
                    f"Lamassu PostgreSQL refused the role: {_describe_pg_error(exc)}"
                ) from None
            raise RemoteCommandError(
                f"{what} failed on Lamassu PostgreSQL: {_describe_pg_error(exc)}"
            ) from None

    def fetch_many(
        self, tables: Iterable[LamassuTable], window: FetchWindow
    ) -> dict[LamassuTable, bytes]:
        """Every table over one connection and from ONE read-only REPEATABLE READ snapshot,
        each export complete or a :class:`SourceError`."""
        tables = [LamassuTable(t) for t in tables]
        connection = self._connect()
        try:
            out = {}
            with (
                self._translated_errors("the Lamassu export transaction"),
                read_only_snapshot(
                    connection, statement_timeout_ms=self.statement_timeout_s * 1000
                ) as cursor,
            ):
                for table in tables:
                    with self._translated_errors(f"the {table} export"):
                        out[table] = copy_table(cursor, table, window)
            return out
        finally:
            connection.close()

    def fetch_csv(self, table: LamassuTable, window: FetchWindow) -> bytes:
        table = LamassuTable(table)
        return self.fetch_many([table], window)[table]

    def fingerprint(self, window: FetchWindow) -> str:
        """``count:md5`` per table of the window's rows, computed by the server (one row),
        from one read-only REPEATABLE READ snapshot with the statement timeout."""
        connection = self._connect()
        try:
            with (
                self._translated_errors("the fingerprint query"),
                read_only_snapshot(
                    connection, statement_timeout_ms=self.statement_timeout_s * 1000
                ) as cursor,
            ):
                cursor.execute(fingerprint_sql(window))
                (value,) = cursor.fetchone()
            return str(value)
        finally:
            connection.close()
