"""Launch ``payout_job`` when the allocation assets have new materializations.

A plain ``@dg.sensor`` with its own cursor over ``instance.fetch_materializations``:
``@asset_sensor`` sees only the latest event and silently drops partitions (dagster.md §2c).
A materialization counts once its run has finished (its blocking checks have then been
evaluated, and the job's gate reads them). One run request per tick, whatever the number of
new materializations: a payout run pays everything unpaid. Its run key is derived from the
newest storage id, so a tick evaluated twice requests the same key and Dagster launches it
once. With nothing new, pending work (unpaid payouts, e.g. after a funding shortfall, and
payouts in flight, asked about again by payment hash) is retried at most every
``DCA_PAYOUT_RETRY_MINUTES`` (default 15). The sensor starts STOPPED.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg
import sqlalchemy as sa

from dca_pipeline.config import config
from dca_pipeline.ledger import payout_store
from dca_pipeline.ledger.resource import LedgerResource
from dca_pipeline.payouts.plan import group_by_wallet
from dca_pipeline.payouts.procedure import OPEN_STATUSES

ALLOCATION_ASSET_KEYS = tuple(
    dg.AssetKey(name)
    for name in ("flow_allocations", "fixed_allocations", "commission_splits", "client_balances")
)
PAYOUT_JOB_NAME = "payout_job"
MIN_INTERVAL_SECONDS = 30


@dataclass
class PayoutSensorCursor:
    seen: dict[str, int] = field(default_factory=dict)  # asset key -> last storage id handled
    retry_bucket: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> PayoutSensorCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(seen=dict(data.get("seen", {})), retry_bucket=data.get("retry_bucket"))

    def dump(self) -> str:
        return json.dumps({"seen": self.seen, "retry_bucket": self.retry_bucket}, sort_keys=True)


def pending_payout_work(engine: sa.Engine) -> bool:
    """Unsettled payouts (in flight included), or unclaimed lines that net to something
    payable."""
    with engine.connect() as c:
        return payout_store.any_payout_with_status(c, OPEN_STATUSES) or bool(
            group_by_wallet(payout_store.unclaimed_lines(c))
        )


def _retry_minutes() -> int:
    return max(1, config().payout_retry_minutes)


def build_payout_sensor(
    asset_keys: Sequence[dg.AssetKey] = ALLOCATION_ASSET_KEYS,
    job_name: str = PAYOUT_JOB_NAME,
    name: str = "payout_sensor",
) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        job_name=job_name,
        minimum_interval_seconds=MIN_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Runs payout_job after new allocation materializations; retries pending.",
    )
    def payout_sensor(
        context: dg.SensorEvaluationContext, ledger: LedgerResource
    ) -> dg.SensorResult | dg.SkipReason:
        cursor = PayoutSensorCursor.parse(context.cursor)
        instance = context.instance
        advanced: dict[str, int] = {}
        for key in asset_keys:
            name_ = key.to_user_string()
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=cursor.seen.get(name_)),
                limit=1000,
                ascending=True,
            ).records
            for record in records:
                run = instance.get_run_by_id(record.run_id)
                if run is not None and not run.is_finished:
                    break  # its checks may still be running: look again next tick
                advanced[name_] = record.storage_id
        if advanced:
            cursor.seen.update(advanced)
            newest = max(advanced.values())
            return dg.SensorResult(
                run_requests=[
                    dg.RunRequest(
                        run_key=f"payout-after-{newest}",
                        tags={"dca/trigger": "allocation"},
                    )
                ],
                cursor=cursor.dump(),
            )
        bucket = int(time.time()) // (_retry_minutes() * 60)
        if cursor.retry_bucket != bucket and pending_payout_work(ledger.engine()):
            cursor.retry_bucket = bucket
            return dg.SensorResult(
                run_requests=[
                    dg.RunRequest(run_key=f"payout-retry-{bucket}", tags={"dca/trigger": "retry"})
                ],
                cursor=cursor.dump(),
            )
        return dg.SkipReason("no new allocation materialization and nothing pending")

    return payout_sensor


payout_sensor = build_payout_sensor()
