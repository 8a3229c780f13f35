"""Lamassu rows change after creation; a second fetch of the same window sees the change."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg2

from dca_pipeline.demo.lamassu_generator import (
    confirm_later,
    fail_after_dispense,
    operator_cancel_later,
)
from dca_pipeline.sources import LamassuTable, PostgresLamassuSource, SshLamassuSource
from dca_pipeline_tests.sources.conftest import LamassuDatabase


def by_id(data: bytes) -> dict[str, dict[str, str]]:
    return {row["id"]: row for row in csv.DictReader(io.StringIO(data.decode()))}


def test_second_fetch_sees_status_and_error_changes(
    mutable_lamassu_db: LamassuDatabase, make_ssh_source: Callable[..., SshLamassuSource]
) -> None:
    db, summary = mutable_lamassu_db, mutable_lamassu_db.summary
    ssh = make_ssh_source(db.dbname)
    postgres = PostgresLamassuSource(dsn=db.dsn)
    window = summary.window
    assert summary.authorized_unconfirmed_ids, "fixture seed must produce a 0-conf row"
    zero_conf = summary.authorized_unconfirmed_ids[0]
    jammed = next(i for i in summary.eligible_cash_out_ids if i != zero_conf)
    abandoned = summary.not_seen_ids[0]

    before = by_id(ssh.fetch_csv(LamassuTable.CASH_OUT_TXS, window))
    assert (before[zero_conf]["status"], before[zero_conf]["confirmed_at"]) == ("authorized", "")
    assert before[jammed]["error"] == "" and before[jammed]["dispense_confirmed"] == "t"
    assert before[abandoned]["error"] == ""
    actions_before = ssh.fetch_csv(LamassuTable.CASH_OUT_ACTIONS, window)

    later = datetime(2025, 6, 11, 3, 0, 0, 123456, tzinfo=UTC)
    conn = psycopg2.connect(db.dsn)
    try:
        confirm_later(conn, zero_conf, later)
        fail_after_dispense(conn, jammed, later)
        operator_cancel_later(conn, abandoned, later)
    finally:
        conn.close()

    after_ssh = ssh.fetch_csv(LamassuTable.CASH_OUT_TXS, window)
    assert after_ssh == postgres.fetch_csv(LamassuTable.CASH_OUT_TXS, window)
    after = by_id(after_ssh)
    assert after[zero_conf]["status"] == "confirmed"
    assert after[zero_conf]["confirmed_at"] == "2025-06-11 03:00:00.123456+00"
    assert int(after[zero_conf]["tx_version"]) == int(before[zero_conf]["tx_version"]) + 1
    assert (after[jammed]["error"], after[jammed]["dispense_confirmed"]) == ("Bill jam", "f")
    assert (after[abandoned]["error"], after[abandoned]["dispense"]) == ("Operator cancel", "t")
    assert set(after) == set(before)

    actions_after = list(csv.DictReader(io.StringIO(
        ssh.fetch_csv(LamassuTable.CASH_OUT_ACTIONS, window).decode())))
    new_actions = actions_after[len(list(csv.DictReader(io.StringIO(actions_before.decode())))):]
    assert [(a["tx_id"], a["action"]) for a in new_actions] == [
        (zero_conf, "confirmed"), (jammed, "dispenseError"), (abandoned, "operatorCompleted"),
    ]
