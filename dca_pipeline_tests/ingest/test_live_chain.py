"""The live ingest run folds today's allocation in when nothing has to settle first.

A real folder source, a real SQLite ledger and a real Dagster instance: the sensor's request is
materialized as it is, and the new cash-out is allocated by that one run (one run launch and one
sensor hop fewer on the way to a payout).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from dca_pipeline.defs.allocate.assets import allocations
from dca_pipeline.defs.allocate.automation import LIVE_TAG, allocation_live_sensor
from dca_pipeline.defs.allocate.checks import ALLOCATION_ASSET_KEYS
from dca_pipeline.defs.ingest.sensors import INGEST_KEYS, lamassu_live_ingest
from dca_pipeline.defs.settings import BusinessSettings
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.database import LedgerResource
from dca_pipeline.sources import FolderLamassuSource
from dca_pipeline_tests.allocate.seeding import add_client, deposit
from dca_pipeline_tests.ingest.conftest import INGEST_ASSETS
from harness.lamassu_folder import append_dispensed_cash_out

SAMPLE = Path(__file__).parents[2] / "data" / "sample" / "lamassu"
TABLES = ("cash_out_txs.csv", "cash_out_actions.csv", "cash_in_txs.csv")
pytestmark = pytest.mark.dagster


def _settings(settle_minutes: int = 15) -> BusinessSettings:
    # The fixed run late in the day, so today's is not due while the tests run (it would be
    # due work the ingest run may fold in whatever the settle time).
    return BusinessSettings(settle_minutes=settle_minutes, fixed_run_time="23:59")


def _append_cash_out(folder: Path, at: datetime, index: int) -> str:
    return append_dispensed_cash_out(folder, templates=SAMPLE, at=at, index=index)


def _allocated(ledger: LedgerResource) -> set[str]:
    with ledger.engine().connect() as c:
        return set(c.execute(sa.select(s.allocation_events.c.source_id)).scalars())


@pytest.fixture
def live(tmp_path: Path, sqlite_ledger: LedgerResource):  # type: ignore[no-untyped-def]
    """Allocation went live yesterday: one cash-out of yesterday landed and allocated."""
    folder = tmp_path / "lamassu"
    folder.mkdir()
    for name in TABLES:
        (folder / name).write_text((SAMPLE / name).read_text().splitlines()[0] + "\n")
    rules = _settings().rules()
    today = rules.business_day(datetime.now(UTC))
    yesterday = today - timedelta(days=1)
    old = _append_cash_out(folder, rules.day_start_utc(yesterday) + timedelta(hours=3), 0)
    with sqlite_ledger.engine().begin() as c:
        add_client(c, "A")
        deposit(c, "dA", "A", 900_000)
    source = FolderLamassuSource(directory=str(folder))
    resources = {"lamassu": source, "ledger": sqlite_ledger, "settings": _settings()}
    instance = dg.DagsterInstance.ephemeral()
    tags = {"dagster/asset_partition_range_start": yesterday.isoformat(),
            "dagster/asset_partition_range_end": yesterday.isoformat()}  # fmt: skip
    assert dg.materialize([*INGEST_ASSETS, allocations], resources=resources,
                          instance=instance, tags=tags).success  # fmt: skip
    assert old in _allocated(sqlite_ledger)
    return folder, resources, instance, yesterday, today


def _tick(resources, instance, settings: BusinessSettings):  # type: ignore[no-untyped-def]
    resources = {**resources, "settings": settings}
    definitions = dg.Definitions(assets=[*INGEST_ASSETS, allocations],
                                 sensors=[lamassu_live_ingest], resources=resources)  # fmt: skip
    context = dg.build_sensor_context(
        instance=instance, resources=resources, definitions=definitions
    )
    return lamassu_live_ingest.evaluate_tick(context)


def test_without_settle_time_the_ingest_run_allocates_the_new_cash_out(live) -> None:  # type: ignore[no-untyped-def]
    folder, resources, instance, yesterday, today = live
    new = _append_cash_out(folder, datetime.now(UTC) - timedelta(seconds=5), 1)
    settings = _settings(0)
    (request,) = _tick(resources, instance, settings).run_requests
    assert set(request.asset_selection) == {*INGEST_KEYS, *ALLOCATION_ASSET_KEYS}
    # The allocation sensor's live range (the recheck window, not before allocation began),
    # and its tag, so that sensor sees this run in flight and does not start another.
    assert request.tags["dagster/asset_partition_range_start"] == yesterday.isoformat()
    assert request.tags["dagster/asset_partition_range_end"] == today.isoformat()
    assert request.tags[LIVE_TAG] == "live"

    run = dg.materialize([*INGEST_ASSETS, allocations], resources={**resources,
                         "settings": settings}, instance=instance, tags=request.tags,
                         selection=request.asset_selection, raise_on_error=False)  # fmt: skip
    assert run.success
    assert new in _allocated(resources["ledger"])
    # Nothing left for the allocation sensor.
    context = dg.build_sensor_context(
        instance=instance, resources={"ledger": resources["ledger"], "settings": settings}
    )
    assert isinstance(allocation_live_sensor(context), dg.SkipReason)


def test_with_a_settle_time_the_ingest_run_only_lands(live) -> None:  # type: ignore[no-untyped-def]
    folder, resources, instance, _, today = live
    _append_cash_out(folder, datetime.now(UTC) - timedelta(seconds=5), 1)
    (request,) = _tick(resources, instance, _settings(15)).run_requests
    assert set(request.asset_selection) == set(INGEST_KEYS)
    assert request.partition_key == today.isoformat() and LIVE_TAG not in request.tags


def test_no_fold_while_a_live_allocation_run_is_in_flight(live) -> None:  # type: ignore[no-untyped-def]
    from dagster._core.storage.dagster_run import DagsterRun  # a running run, no launcher

    folder, resources, instance, _, today = live
    running = DagsterRun(job_name="__anonymous_asset_job", run_id=str(uuid.uuid4()),
                         status=dg.DagsterRunStatus.STARTED, tags={LIVE_TAG: "live"})  # fmt: skip
    instance.add_run(running)
    _append_cash_out(folder, datetime.now(UTC) - timedelta(seconds=5), 1)
    (request,) = _tick(resources, instance, _settings(0)).run_requests
    assert set(request.asset_selection) == set(INGEST_KEYS)
    assert request.partition_key == today.isoformat()
