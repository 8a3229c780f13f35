"""Operator alerts for failed checks and quarantined rows (business-rules §8, issue 5 §4).

A failed ERROR check anywhere (money checks, ingestion reconciliation, payout reconciliation)
and a failing ``quarantine_report`` (WARN: rows that allocate nothing until fixed) each send
one alert, through the same channels as the payout alerts. A cursor over the event log makes
each evaluation alert once; the first tick starts at the present (no flood of old history).
It only sends alerts (no runs, no money), so it starts RUNNING.
"""

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

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


def _evaluations_after(
    instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey], after_id: int
) -> list[AssetCheckExecutionRecord]:
    """Finished evaluations with an execution id above ``after_id``, oldest first.

    Read per check key from the asset-check execution table (works on every instance storage;
    a cross-run event query is refused by the default run-sharded SQLite storage)."""
    found: list[AssetCheckExecutionRecord] = []
    storage = instance.event_log_storage
    for key in keys:
        for record in storage.get_asset_check_execution_history(key, limit=BATCH):
            if record.id <= after_id:
                break  # newest first
            if record.status is not AssetCheckExecutionRecordStatus.PLANNED:
                found.append(record)
    return sorted(found, key=lambda record: record.id)


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
    keys = sorted(
        context.repository_def.asset_graph.asset_check_keys,  # type: ignore[union-attr]
        key=lambda key: key.to_user_string(),
    )
    if context.cursor is None:
        latest = [
            record.id
            for key in keys
            for record in instance.event_log_storage.get_asset_check_execution_history(key, 1)
        ]
        context.update_cursor(str(max(latest, default=0)))
        return dg.SkipReason("started: alerting on check evaluations from now on")
    records = _evaluations_after(instance, keys, int(context.cursor))
    dispatcher = alerts.dispatcher(context.log)
    sent = 0
    for record in records:
        evaluation = record.evaluation
        alert = _alert_for(evaluation, record.run_id) if evaluation is not None else None
        if alert is not None:
            dispatcher.send(alert)
            sent += 1
        context.update_cursor(str(record.id))
    return dg.SkipReason(f"{len(records)} check evaluation(s) read, {sent} alert(s) sent")
