"""Live ingestion: a sensor that lands the current business day while Lamassu is busy.

Every ``DCA_INGEST_INTERVAL_SECONDS`` (default 30) it asks the source for a fingerprint of the
window (``count:md5`` of the rows computed server-side for SSH/PostgreSQL, a digest of the files
for a folder) and requests a run of the raw and validated assets for today's partition only
when that fingerprint changed, or when ``DCA_INGEST_REFRESH_MINUTES`` (default 15) passed since
the last request (a safety net should a run fail after its request). So an idle tick costs one
tiny query and launches nothing. It starts STOPPED: an operator turns it on in the UI.

When no live allocation run is in flight and allocating can follow at once (nothing has to wait
for settlement: ``DCA_SETTLE_MINUTES=0``, or the ledger already holds due work), the same run
also materializes the allocation assets over the live range of ``allocation_live_sensor``
(ingest and allocation then cover [first, today]; the allocation step runs after the ingest's
blocking checks passed, in the same run). That saves one sensor hop and one run launch on the
way to a payout; the run carries the allocation sensor's tags, so that sensor waits for it.
A long catch-up range (allocation stalled for days) is left to the allocation sensor.

Environment variables (:mod:`dca_pipeline.config`):

``DCA_INGEST_INTERVAL_SECONDS``
    seconds between ticks (default 30).
``DCA_INGEST_REFRESH_MINUTES``
    request a run at least this often even when nothing changed (default 15; 0 = never).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from dca_pipeline.config import config
from dca_pipeline.defs.allocate.assets import allocations
from dca_pipeline.defs.allocate.automation import (
    allocation_in_flight,
    live_run_tags,
    recheck_days,
)
from dca_pipeline.defs.allocate.checks import ALLOCATION_ASSET_KEYS
from dca_pipeline.defs.ingest.assets import (
    RAW_KEYS,
    VALIDATED_KEY,
    lamassu_raw,
    validated_cash_outs,
)
from dca_pipeline.defs.settings import BusinessSettings, business_days
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger.resource import LedgerResource
from dca_pipeline.sources import FetchWindow, SourceError

INTERVAL_SECONDS = config().ingest_interval_seconds
REFRESH_MINUTES = config().ingest_refresh_minutes
INGEST_KEYS = [*RAW_KEYS.values(), VALIDATED_KEY]
TRIGGER_TAG = {"dca/trigger": "lamassu_live_ingest"}


def current_window(day: str, settings: BusinessSettings) -> FetchWindow:
    window = business_days.time_window_for_partition_key(day)
    return FetchWindow.covering(
        window.start - timedelta(hours=settings.overlap_hours), window.end
    )


def allocation_to_fold(
    instance: dg.DagsterInstance,
    ledger: LedgerResource,
    settings: BusinessSettings,
    day: str,
    now: datetime,
) -> tuple[date, date] | None:
    """The allocation range the ingest run of ``day`` should also materialize, or None."""
    if allocation_in_flight(instance):
        return None  # in order, one at a time: allocation_live_sensor follows up after it
    days = recheck_days(settings)
    where = {"now": now, "start_day": business_days.start.date(), "recheck_days": days}
    try:
        if settings.settle_minutes == 0:
            # The change may be a cash-out that is allocatable as soon as it has landed.
            span = al.live_range(ledger.engine(), settings.rules(), **where)
        else:
            # A new row must settle first: fold only work the ledger already has due.
            span = al.due_range(
                ledger.engine(), settings.rules(), settle_minutes=settings.settle_minutes, **where
            )
    except sa.exc.SQLAlchemyError:
        return None  # the ledger is unreachable: the ingest run alone reports it
    if span is None or span[1].isoformat() != day or (span[1] - span[0]).days > days:
        return None
    return span


@dg.sensor(
    name="lamassu_live_ingest",
    target=[lamassu_raw, validated_cash_outs, allocations],
    minimum_interval_seconds=INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.STOPPED,
    required_resource_keys={"lamassu", "settings", "ledger"},
    description=(
        "Lands today's Lamassu rows when the source window changed (cheap when idle); "
        "allocates in the same run when nothing has to settle first."
    ),
)
def lamassu_live_ingest(context: dg.SensorEvaluationContext):
    now = datetime.now(UTC)
    day = business_days.get_last_partition_key()
    if day is None:
        return dg.SkipReason("no business-day partition yet (DCA_START_DATE is in the future)")
    settings: BusinessSettings = context.resources.settings
    source = context.resources.lamassu
    window = current_window(day, settings)
    fingerprint = getattr(source, "fingerprint", None)
    try:
        digest = fingerprint(window) if fingerprint else now.isoformat()
    except SourceError as exc:  # source messages never hold secrets
        return dg.SkipReason(f"Lamassu source unavailable, nothing requested: {exc}")
    digest = hashlib.sha256(f"{day}|{digest}".encode()).hexdigest()[:24]
    previous = json.loads(context.cursor) if context.cursor else {}
    last_at = datetime.fromisoformat(previous["at"]) if previous.get("at") else None
    due = REFRESH_MINUTES > 0 and (
        last_at is None or now - last_at >= timedelta(minutes=REFRESH_MINUTES)
    )
    if previous.get("digest") == digest and not due:
        return dg.SkipReason(f"Lamassu window of {day} unchanged since {previous['at']}")
    context.update_cursor(json.dumps({"digest": digest, "at": now.isoformat()}))
    run_key = f"lamassu-live-{day}-{digest}-{now:%Y%m%dT%H%M%S}"
    span = allocation_to_fold(context.instance, context.resources.ledger, settings, day, now)
    if span is None:
        return dg.RunRequest(
            partition_key=day, run_key=run_key, asset_selection=INGEST_KEYS, tags=TRIGGER_TAG
        )
    return dg.RunRequest(
        run_key=run_key,
        asset_selection=[*INGEST_KEYS, *ALLOCATION_ASSET_KEYS],
        tags={**TRIGGER_TAG, **live_run_tags(*span)},
    )
