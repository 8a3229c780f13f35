"""Operator alerts for failed checks and quarantined rows (business-rules §8, issue 5 §4).

A failed ERROR check anywhere (money checks, ingestion reconciliation, payout reconciliation)
and a failing ``quarantine_report`` (WARN: rows that allocate nothing until fixed) each send
one alert, through the same channels as the payout alerts. A cursor over the event log makes
each evaluation alert once; the first tick starts at the present (no flood of old history).
It only sends alerts (no runs, no money), so it starts RUNNING.
"""

import dagster as dg
from dagster._core.events import DagsterEventType

from dca_pipeline.alerts import Alert, AlertKind
from dca_pipeline.defs.payout.resources import AlertsResource

QUARANTINE_CHECK = "quarantine_report"
BATCH = 500


def _alert_for(evaluation: dg.AssetCheckEvaluation, run_id: str) -> Alert | None:
    if evaluation.passed:
        return None
    check = f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
    details = {"check": check, "run_id": run_id}
    if evaluation.check_name == QUARANTINE_CHECK:
        return Alert(
            AlertKind.QUARANTINED_ROWS,
            "Lamassu rows are quarantined",
            f"{evaluation.description or 'quarantined rows'}: they allocate nothing until "
            "the source is fixed (see the quarantine table / the check in the UI).",
            f"quarantine:{run_id}",
            details,
        )
    if evaluation.severity is not dg.AssetCheckSeverity.ERROR:
        return None
    return Alert(
        AlertKind.CHECK_FAILED,
        f"Check failed: {check}",
        f"{evaluation.description or 'no description'}. A failed money check stops payouts "
        "until it passes again.",
        f"check_failed:{check}:{run_id}",
        details,
    )


@dg.sensor(
    name="operator_alerts_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts the operator (webhook / Nostr DM) on failed checks and quarantined rows.",
)
def operator_alerts_sensor(
    context: dg.SensorEvaluationContext, alerts: AlertsResource
) -> dg.SkipReason:
    instance = context.instance
    if context.cursor is None:
        latest = instance.event_log_storage.get_event_records(
            dg.EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION),
            limit=1,
            ascending=False,
        )
        context.update_cursor(str(latest[0].storage_id if latest else 0))
        return dg.SkipReason("started: alerting on check evaluations from now on")
    records = instance.event_log_storage.get_event_records(
        dg.EventRecordsFilter(
            event_type=DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=int(context.cursor)
        ),
        limit=BATCH,
        ascending=True,
    )
    dispatcher = alerts.dispatcher(context.log)
    sent = 0
    for record in records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is not None:
            alert = _alert_for(event.event_specific_data, entry.run_id)  # type: ignore[arg-type]
            if alert is not None:
                dispatcher.send(alert)
                sent += 1
        context.update_cursor(str(record.storage_id))
    return dg.SkipReason(f"{len(records)} check evaluation(s) read, {sent} alert(s) sent")
