"""Ingest asset tests: the real sources (folder, PostgreSQL, sshd) into a real ledger."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from dca_pipeline.defs.ingest.assets import lamassu_raw, validated_cash_outs
from dca_pipeline.defs.settings import BusinessSettings
from dca_pipeline.ledger.database import LedgerResource, ledger_engine
from dca_pipeline.ledger.schema import (
    lamassu_raw_revisions,
    lamassu_raw_rows,
    quarantine,
)
from dca_pipeline.ledger.schema import (
    validated_cash_outs as validated_table,
)

# The Lamassu databases and the sshd of the source tests, shared (imported fixtures).
from dca_pipeline_tests.sources.conftest import (  # noqa: F401
    lamassu_db,
    make_ssh_source,
    mutable_lamassu_db,
    sshd,
)

INGEST_ASSETS = [lamassu_raw, validated_cash_outs]


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def sqlite_ledger(tmp_path) -> Iterator[LedgerResource]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    resource = LedgerResource(url=url)
    resource.engine()
    yield resource
    ledger_engine(url).dispose()


def materialize(
    source: Any,
    ledger: LedgerResource,
    instance: dg.DagsterInstance,
    first_day: str,
    last_day: str | None = None,
    settings: BusinessSettings | None = None,
) -> dg.ExecuteInProcessResult:
    """Run the ingest assets for [first_day, last_day] as ONE run (single_run backfill)."""
    tags = {}
    partition_key = None
    if last_day and last_day != first_day:
        tags = {
            "dagster/asset_partition_range_start": first_day,
            "dagster/asset_partition_range_end": last_day,
        }
    else:
        partition_key = first_day
    return dg.materialize(
        INGEST_ASSETS,
        partition_key=partition_key,
        tags=tags,
        resources={"lamassu": source, "ledger": ledger, "settings": settings or BusinessSettings()},
        instance=instance,
        raise_on_error=False,
    )


def metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, Any]:
    # A range run records one materialization per partition, all with the step's metadata.
    event = next(
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)
    )
    return {
        k: getattr(v, "value", v)
        for k, v in event.step_materialization_data.materialization.metadata.items()
    }


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def table_rows(ledger: LedgerResource, table: sa.Table) -> list[dict[str, Any]]:
    with ledger.begin() as connection:
        return [dict(r) for r in connection.execute(sa.select(table)).mappings()]


__all__ = [
    "lamassu_raw_revisions", "lamassu_raw_rows", "quarantine", "validated_table",
]  # fmt: skip
