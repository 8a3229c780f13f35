"""One snapshot per fetch: a cash-out and its dispense action arrive together or not at all.

Business rules §2 ("Live allocation that never stops", item 7). A writer inserts a cash-out and
its ``dispense`` action in ONE transaction and commits it DURING a fetch of the three tables,
deterministically between the reading of ``cash_out_txs`` and of ``cash_out_actions``: the
writer holds an ACCESS EXCLUSIVE lock on ``cash_out_txs``, the fetch's first COPY blocks on it
(seen in ``pg_blocking_pids``) after its snapshot was taken (PostgreSQL takes a statement's
snapshot before the statement waits for its lock), the writer commits, and the fetch carries on
to the other tables. With a transaction per table, the later COPYs take a new snapshot and show
the dispense action without its cash-out; one REPEATABLE READ snapshot shows neither.
"""
from __future__ import annotations

import csv
import io
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date

import psycopg2
import pytest

from dca_pipeline.demo.lamassu_generator import create_lamassu_database, drop_database, generate
from dca_pipeline.sources import (
    FetchWindow,
    LamassuTable,
    PostgresLamassuSource,
    RemoteCommandError,
    SshLamassuSource,
)
from dca_pipeline.sources.queries import export_sql
from dca_pipeline_tests.sources.conftest import (
    ADMIN_DSN,
    FIXTURE_SEED,
    LamassuDatabase,
    unique_dbname,
)
from dca_pipeline_tests.sources.test_postgres_source import documented_role_setup

TABLES = tuple(LamassuTable)  # the order the ingestion assets fetch them in
WAIT_S = 30.0


@pytest.fixture(scope="module")
def snapshot_db() -> Iterator[LamassuDatabase]:
    """A small database of this module's own: every test inserts its own new cash-out."""
    dbname = unique_dbname("lamassu_snap")
    dsn = create_lamassu_database(ADMIN_DSN, dbname)
    try:
        summary = generate(
            dsn, start=date(2025, 6, 9), days=1, cash_outs_per_day=10, seed=FIXTURE_SEED + 7
        )
        yield LamassuDatabase(dbname, dsn, summary)
    finally:
        drop_database(ADMIN_DSN, dbname)


@pytest.fixture(scope="module")
def reader_dsn(snapshot_db: LamassuDatabase) -> Iterator[str]:
    """The documented SELECT-only role (module docstring of the Postgres source)."""
    role = f"dca_reader_{secrets.token_hex(4)}"
    password = f"pw-{secrets.token_hex(8)}"
    conn = psycopg2.connect(snapshot_db.dsn)
    try:
        with conn, conn.cursor() as cursor:
            for statement in documented_role_setup(role, password, snapshot_db.dbname):
                cursor.execute(statement)
    finally:
        conn.close()
    try:
        yield (
            f"host=127.0.0.1 port=5432 dbname={snapshot_db.dbname} user={role} "
            f"password={password}"
        )
    finally:
        conn = psycopg2.connect(snapshot_db.dsn)
        try:
            with conn, conn.cursor() as cursor:
                cursor.execute(f'DROP OWNED BY "{role}"')
                cursor.execute(f'DROP ROLE "{role}"')
        finally:
            conn.close()


def insert_dispensed_cash_out(cursor: psycopg2.extensions.cursor, window: FetchWindow) -> str:
    """A confirmed, dispensed cash-out and its ``dispense`` action (caller's transaction)."""
    tx_id = str(uuid.uuid4())
    created = window.start + (window.end - window.start) / 2
    cursor.execute(
        "INSERT INTO cash_out_txs (id, device_id, to_address, crypto_atoms, crypto_code, fiat,"
        " fiat_code, status, dispense, dispense_confirmed, created, confirmed_at, tx_version,"
        " terms_accepted, commission_percentage, raw_ticker_price, provisioned_1,"
        " denomination_1)"
        " SELECT %s, device_id, 'bc1qsnapshottest', 123456, 'BTC', 100, 'GTQ', 'confirmed',"
        " true, true, %s, %s, 3, true, 0.08, 850000, 1, 100"
        " FROM cash_out_txs ORDER BY created LIMIT 1",
        (tx_id, created, created),
    )
    cursor.execute(
        "INSERT INTO cash_out_actions (tx_id, action, provisioned_1, dispensed_1,"
        " denomination_1, created, device_id)"
        " SELECT id, 'dispense', 1, 1, 100, %s, device_id FROM cash_out_txs WHERE id = %s",
        (created, tx_id),
    )
    return tx_id


def seen(exports: dict[LamassuTable, bytes], tx_id: str) -> tuple[bool, bool]:
    """(is the cash-out in the export, is its dispense action in the export)."""
    def rows(table: LamassuTable) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(exports[table].decode())))

    in_txs = any(row["id"] == tx_id for row in rows(LamassuTable.CASH_OUT_TXS))
    in_actions = any(
        row["tx_id"] == tx_id and row["action"] == "dispense"
        for row in rows(LamassuTable.CASH_OUT_ACTIONS)
    )
    return in_txs, in_actions


def wait_until_blocked_by(observer_dsn: str, dbname: str, blocker_pid: int, table: str) -> str:
    """The query of the dca-pipeline backend that waits for ``blocker_pid``'s lock."""
    observer = psycopg2.connect(observer_dsn)
    observer.autocommit = True
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with observer.cursor() as cursor:
                cursor.execute(
                    "SELECT query FROM pg_stat_activity WHERE datname = %s"
                    " AND application_name = 'dca-pipeline'"
                    " AND %s = ANY(pg_blocking_pids(pid))",
                    (dbname, blocker_pid),
                )
                found = cursor.fetchone()
            if found is not None:
                return found[0]
            time.sleep(0.02)
    finally:
        observer.close()
    raise AssertionError(f"the fetch never waited on the lock on {table}")


def fetch_with_commit_during(
    db: LamassuDatabase,
    fetch: Callable[[], dict[LamassuTable, bytes]],
    locked: LamassuTable,
) -> tuple[str, dict[LamassuTable, bytes]]:
    """Run ``fetch`` while a writer holds ``locked``; commit the writer once it blocks."""
    window = db.summary.window
    writer = psycopg2.connect(db.dsn)
    result: dict[str, object] = {}
    worker: threading.Thread | None = None
    try:
        with writer.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {locked.value} IN ACCESS EXCLUSIVE MODE")
            tx_id = insert_dispensed_cash_out(cursor, window)

        def run() -> None:
            try:
                result["exports"] = fetch()
            except BaseException as exc:  # re-raised in the test thread
                result["error"] = exc

        worker = threading.Thread(target=run, name="snapshot-fetch", daemon=True)
        worker.start()
        query = wait_until_blocked_by(db.dsn, db.dbname, writer.get_backend_pid(), locked)
        # That table's COPY waits (pg_stat_activity keeps the first 1 kB of the query).
        assert len(query) > 100 and export_sql(locked, window).startswith(query), query
        writer.commit()  # the cash-out and its action become visible together, mid-fetch
    finally:
        writer.rollback()  # no-op after the commit; releases the lock if anything failed
        writer.close()
        if worker is not None:
            worker.join(WAIT_S)
    assert worker is not None and not worker.is_alive(), "the fetch did not finish"
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return tx_id, result["exports"]  # type: ignore[return-value]


def assert_both_or_neither(
    db: LamassuDatabase,
    make_source: Callable[[], PostgresLamassuSource | SshLamassuSource],
) -> None:
    source = make_source()
    window = db.summary.window
    tx_id, during = fetch_with_commit_during(
        db, lambda: source.fetch_many(TABLES, window), LamassuTable.CASH_OUT_TXS
    )
    in_txs, in_actions = seen(during, tx_id)
    assert in_txs == in_actions, (
        f"one fetch saw the cash-out: {in_txs}, its dispense action: {in_actions} "
        "(the tables were read from different snapshots)"
    )
    # The rows are valid and in the window: the next fetch has both.
    assert seen(source.fetch_many(TABLES, window), tx_id) == (True, True)


def test_postgres_fetch_reads_the_three_tables_from_one_snapshot(
    snapshot_db: LamassuDatabase, reader_dsn: str
) -> None:
    assert_both_or_neither(snapshot_db, lambda: PostgresLamassuSource(dsn=reader_dsn))


def test_ssh_fetch_reads_the_three_tables_from_one_snapshot(
    snapshot_db: LamassuDatabase, make_ssh_source: Callable[..., SshLamassuSource]
) -> None:
    assert_both_or_neither(snapshot_db, lambda: make_ssh_source(snapshot_db.dbname))


def test_ssh_script_is_one_repeatable_read_transaction_around_the_copies(
    make_ssh_source: Callable[..., SshLamassuSource], snapshot_db: LamassuDatabase
) -> None:
    marker = secrets.token_hex(16)
    argv = make_ssh_source(snapshot_db.dbname).remote_argv_many(
        list(TABLES), snapshot_db.summary.window, marker
    )
    commands = [argv[i + 1] for i, word in enumerate(argv) if word == "-c"]
    control = [
        (i, c) for i, c in enumerate(commands)
        if re.match(r"(?i)\s*(BEGIN|START|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT)\b", c)
    ]  # fmt: skip
    copies = [i for i, c in enumerate(commands) if c.startswith("COPY ")]
    assert len(copies) == len(TABLES)
    assert len(control) == 2, control
    (begin_at, begin), (end_at, end) = control
    assert re.fullmatch(r"BEGIN ISOLATION LEVEL REPEATABLE READ,? READ ONLY", begin), begin
    assert end == "ROLLBACK"
    assert begin_at < copies[0] and copies[-1] < end_at
    assert "-1" not in argv and "--single-transaction" not in argv


def terminate_backend(dsn: str, pid: int) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        conn.close()


@pytest.mark.parametrize("call", ["fetch_many", "fingerprint"])
def test_postgres_statement_timeout_still_applies_inside_the_snapshot(
    snapshot_db: LamassuDatabase, reader_dsn: str, call: str
) -> None:
    source = PostgresLamassuSource(dsn=reader_dsn, statement_timeout_s=1)
    window = snapshot_db.summary.window
    blocker = psycopg2.connect(snapshot_db.dsn)
    # Without a timeout the call would wait for the lock forever: end the lock after 15 s.
    release = threading.Timer(15, terminate_backend, (snapshot_db.dsn, blocker.get_backend_pid()))
    try:
        with blocker.cursor() as cursor:
            cursor.execute("LOCK TABLE cash_out_txs IN ACCESS EXCLUSIVE MODE")
        release.start()
        started = time.monotonic()
        with pytest.raises(RemoteCommandError, match="statement timeout 1 s"):
            if call == "fetch_many":
                source.fetch_many(TABLES, window)
            else:
                source.fingerprint(window)
        assert time.monotonic() - started < 10
    finally:
        release.cancel()
        blocker.close()
