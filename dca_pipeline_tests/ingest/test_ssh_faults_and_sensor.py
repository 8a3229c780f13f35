"""SSH faults during an ingest run (nothing lands), and the live sensor on a real instance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from dca_pipeline.defs.allocate.assets import allocations
from dca_pipeline.defs.ingest.sensors import lamassu_live_ingest
from dca_pipeline.defs.settings import BusinessSettings, business_days
from dca_pipeline.demo.lamassu_generator import fail_after_dispense
from dca_pipeline.ledger.database import LedgerResource
from dca_pipeline.sources import FolderLamassuSource, PostgresLamassuSource
from dca_pipeline_tests.ingest.conftest import (
    INGEST_ASSETS,
    lamassu_raw_rows,
    materialize,
    table_rows,
    validated_table,
)
from dca_pipeline_tests.sources.conftest import LamassuDatabase, write_executable

SAMPLE = Path(__file__).parents[2] / "data" / "sample" / "lamassu"
pytestmark = pytest.mark.dagster


@pytest.mark.ssh
@pytest.mark.postgres
def test_connection_dropped_mid_transfer_lands_nothing(
    lamassu_db: LamassuDatabase, make_ssh_source, sqlite_ledger, instance, tmp_path: Path
) -> None:
    psql = shutil.which("psql")
    assert psql
    # The export (one psql for the three tables) dies after 2000 bytes: the remote psql is
    # killed, so the channel closes without an exit status, exactly like a dropped connection.
    script = write_executable(
        tmp_path / "psql_dies_on_cash_in",
        "#!/bin/sh\n"
        'case "$*" in\n'
        f'  *"FROM cash_in_txs"*) {psql} "$@" | head -c 2000; kill -9 $$ ;;\n'
        f'  *) exec {psql} "$@" ;;\n'
        "esac\n",
    )
    source = make_ssh_source(lamassu_db.dbname, psql_executable=str(script))
    result = materialize(source, sqlite_ledger, instance, "2025-06-10")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "without an exit status" in failure.event_specific_data.error.to_string()
    assert table_rows(sqlite_ledger, lamassu_raw_rows) == []
    assert table_rows(sqlite_ledger, validated_table) == []

    # The same window with a healthy connection lands everything.
    healthy = make_ssh_source(lamassu_db.dbname)
    assert materialize(healthy, sqlite_ledger, instance, "2025-06-10").success
    assert {r["source_table"] for r in table_rows(sqlite_ledger, lamassu_raw_rows)} == {
        "cash_out_txs", "cash_out_actions", "cash_in_txs",
    }  # fmt: skip


def _tick(instance: dg.DagsterInstance, source, cursor: str | None):  # type: ignore[no-untyped-def]
    # An empty ledger (allocation not live yet): the sensor requests the ingest only.
    ledger = LedgerResource(url="sqlite://")
    resources = {"lamassu": source, "settings": BusinessSettings(), "ledger": ledger}
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources=resources,
        definitions=dg.Definitions(
            assets=[*INGEST_ASSETS, allocations], sensors=[lamassu_live_ingest],
            resources=resources,
        ),  # fmt: skip
    )
    return lamassu_live_ingest.evaluate_tick(context)


def test_live_sensor_requests_today_once_and_skips_when_unchanged(instance, tmp_path) -> None:
    folder = tmp_path / "lamassu"
    shutil.copytree(SAMPLE, folder)
    source = FolderLamassuSource(directory=str(folder))
    assert lamassu_live_ingest.default_status == dg.DefaultSensorStatus.STOPPED
    assert lamassu_live_ingest.minimum_interval_seconds == 30

    first = _tick(instance, source, None)
    [request] = first.run_requests
    assert request.partition_key == business_days.get_last_partition_key()
    assert json.loads(first.cursor)["digest"]

    idle = _tick(instance, source, first.cursor)
    assert not idle.run_requests and "unchanged" in idle.skip_message
    assert idle.cursor in (None, first.cursor)

    with (folder / "cash_out_txs.csv").open("a") as handle:
        handle.write((SAMPLE / "cash_out_txs.csv").read_text().splitlines()[1] + "\n")
    changed = _tick(instance, source, first.cursor)
    [again] = changed.run_requests
    assert again.run_key != request.run_key


def test_live_sensor_skips_with_a_reason_when_the_source_is_down(instance, tmp_path) -> None:
    source = FolderLamassuSource(directory=str(tmp_path / "missing"))
    result = _tick(instance, source, None)
    assert not result.run_requests
    assert "source unavailable" in result.skip_message


@pytest.mark.postgres
def test_live_sensor_fingerprint_sees_a_status_change(
    mutable_lamassu_db: LamassuDatabase, instance
) -> None:
    source = PostgresLamassuSource(dsn=mutable_lamassu_db.dsn)
    window = mutable_lamassu_db.summary.window
    before = source.fingerprint(window)
    assert source.fingerprint(window) == before  # deterministic
    victim = mutable_lamassu_db.summary.eligible_cash_out_ids[0]
    fail_after_dispense(mutable_lamassu_db.dsn, victim, at=window.end)
    after = source.fingerprint(window)
    # Same row count (no new row), different content digest.
    assert after != before
    assert [p.split(":")[0] for p in after.split("|")][0] == before.split("|")[0].split(":")[0]


@pytest.mark.ssh
@pytest.mark.postgres
def test_a_failing_remote_export_lands_nothing_and_says_why(
    lamassu_db: LamassuDatabase, make_ssh_source, sqlite_ledger, instance, tmp_path: Path
) -> None:
    psql = shutil.which("psql")
    # The real exports run, then the server refuses one table (as a missing GRANT would).
    script = write_executable(
        tmp_path / "psql_refuses_cash_in",
        f'#!/bin/sh\n{psql} "$@" >/dev/null 2>&1\n'
        "echo 'ERROR:  permission denied for table cash_in_txs' >&2\nexit 1\n",
    )
    source = make_ssh_source(lamassu_db.dbname, psql_executable=str(script))
    result = materialize(source, sqlite_ledger, instance, "2025-06-10")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "permission denied for table cash_in_txs" in message
    assert table_rows(sqlite_ledger, lamassu_raw_rows) == []
