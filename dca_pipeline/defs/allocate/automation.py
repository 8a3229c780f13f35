"""Live operation: allocations follow new validated cash-outs and the daily fixed run.

A sensor rather than ``AutomationCondition.eager()``: eager reacts only to upstream updates,
but here time alone makes work due — a cash-out becomes allocatable ``settle_minutes`` after its
instant (so a row that turns eligible a little late is still allocated in order), and the fixed
run is due at its configured local time (plus the settle time, so every cash-out before it is
final). Eager also only targets the latest partition, while a cash-out that settles after
midnight still belongs to yesterday. The sensor asks the ledger what is due
(:func:`dca_pipeline.ledger.allocations.due_range`) and requests ONE run over
[day of the last allocated event or the start of the ingest's overlap window, today]; the
allocated part of that range is recomputed and compared, which changes nothing, and reports a
cash-out Lamassu changed after it was allocated (errored) or delivered late.

Like the ingest and payout sensors it starts STOPPED: an operator turns the live chain on in
the UI (ingest, then this one). With an empty ledger the first range starts at the partitions'
start date (``DCA_START_DATE``): set it to the go-live day.

The ingest sensor folds the same range into its own run when it can (see
:func:`dca_pipeline.defs.ingest.sensors.lamassu_live_ingest`): that run carries the same tags,
so this sensor sees it in flight and waits; what it leaves due is requested here.
"""


from datetime import UTC, date, datetime

import dagster as dg

from dca_pipeline.defs.allocate.checks import ALLOCATION_ASSET_KEYS
from dca_pipeline.defs.settings import BusinessSettings, business_days
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger.resource import LedgerResource

LIVE_TAG = "dca/allocation"
#: Every 30 s like the other live sensors: a tick is two small queries.
MIN_INTERVAL_SECONDS = 30
_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def allocation_in_flight(instance: dg.DagsterInstance) -> bool:
    """A live allocation run (this sensor's or the ingest sensor's) is queued or running."""
    return bool(
        instance.get_run_records(
            filters=dg.RunsFilter(tags={LIVE_TAG: "live"}, statuses=_IN_FLIGHT), limit=1
        )
    )


def recheck_days(settings: BusinessSettings) -> int:
    # Lamassu rows change within the ingest's overlap window: recompare those days.
    return max(1, -(-settings.overlap_hours // 24))


def live_run_tags(first: date, last: date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
        LIVE_TAG: "live",
    }


@dg.sensor(
    name="allocation_live_sensor",
    target=list(ALLOCATION_ASSET_KEYS),
    minimum_interval_seconds=MIN_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Requests one allocation run over [day of the last allocated event, today] whenever a "
        "validated cash-out has settled or the fixed run's time has passed."
    ),
)
def allocation_live_sensor(
    context: dg.SensorEvaluationContext, ledger: LedgerResource, settings: BusinessSettings
) -> dg.SensorResult | dg.SkipReason:
    if allocation_in_flight(context.instance):
        return dg.SkipReason("an allocation run is already in flight")
    now = datetime.now(UTC)
    due = al.due_range(
        ledger.engine(),
        settings.rules(),
        now=now,
        settle_minutes=settings.settle_minutes,
        start_day=business_days.start.date(),
        recheck_days=recheck_days(settings),
    )
    if due is None:
        return dg.SkipReason("nothing due: no settled unallocated cash-out, no fixed run due")
    first, last = due
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                # The same work is requested once; anything new (or a later minute) re-requests.
                run_key=f"allocate:{first}:{last}:{now.strftime('%Y%m%dT%H%M')}",
                asset_selection=list(ALLOCATION_ASSET_KEYS),
                tags=live_run_tags(first, last),
            )
        ]
    )
