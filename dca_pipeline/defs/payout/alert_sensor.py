"""Operator alerts for failed checks and quarantined rows (business-rules §8, issue 5 §4).

- A check of ERROR severity anywhere (money checks, ingestion reconciliation, payout
  reconciliation) that starts failing sends one alert; it is not repeated while the check stays
  red (live runs re-evaluate it often), and alerts again if it fails again after passing.
- A failing ``quarantine_report`` (WARN) sends one alert per batch of quarantined rows not
  alerted before (read from the ledger's ``quarantine`` table: id, table, reason; never the raw
  row), so each quarantined row is reported once.

The cursor keeps the last check execution read, the checks currently red and the last
quarantine id alerted; the first tick starts at the present (no flood of old history). The
sensor sends alerts only (no runs, no money), so it starts RUNNING.
"""

import json
from dataclasses import dataclass, field

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from dca_pipeline.alerts import Alert, AlertDispatcher, AlertKind
from dca_pipeline.defs.payout.resources import AlertsResource
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.database import LedgerResource

QUARANTINE_CHECK = "quarantine_report"
BATCH = 500
SAMPLE = 10


@dataclass
class AlertCursor:
    execution_id: int = 0
    failing: set[str] = field(default_factory=set)
    quarantine_id: int = 0

    @classmethod
    def parse(cls, text: str) -> "AlertCursor":
        data = json.loads(text)
        return cls(data["execution_id"], set(data["failing"]), data["quarantine_id"])

    def dump(self) -> str:
        return json.dumps(
            {
                "execution_id": self.execution_id,
                "failing": sorted(self.failing),
                "quarantine_id": self.quarantine_id,
            }
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


def _latest_quarantine_id(ledger: LedgerResource) -> int:
    with ledger.engine().connect() as c:
        return int(c.execute(sa.select(sa.func.max(s.quarantine.c.quarantine_id))).scalar() or 0)


def _alert_new_quarantine(
    ledger: LedgerResource, dispatcher: AlertDispatcher, cursor: AlertCursor, check: str
) -> bool:
    q = s.quarantine.c
    with ledger.engine().connect() as c:
        rows = c.execute(
            sa.select(q.quarantine_id, q.source_table, q.source_id, q.reason)
            .where(q.resolved_at.is_(None), q.quarantine_id > cursor.quarantine_id)
            .order_by(q.quarantine_id)
        ).all()
    if not rows:
        return False
    cursor.quarantine_id = rows[-1].quarantine_id
    sample = "; ".join(f"{r.source_table} {r.source_id}: {r.reason}" for r in rows[:SAMPLE])
    dispatcher.send(
        Alert(
            AlertKind.QUARANTINED_ROWS,
            f"{len(rows)} new Lamassu row(s) quarantined",
            f"They allocate nothing until the source is fixed (table quarantine, check {check}). "
            f"{sample}" + (" ..." if len(rows) > SAMPLE else ""),
            f"quarantine:{rows[0].quarantine_id}-{rows[-1].quarantine_id}",
            {"rows": str(len(rows)), "check": check},
        )
    )
    return True


def _alert_check(
    dispatcher: AlertDispatcher, evaluation: dg.AssetCheckEvaluation, check: str, run_id: str
) -> None:
    dispatcher.send(
        Alert(
            AlertKind.CHECK_FAILED,
            f"Check failed: {check}",
            f"{evaluation.description or 'no description'}. A failed money check stops payouts "
            "until it passes again (no further alert while it stays red).",
            f"check_failed:{check}:{run_id}",
            {"check": check, "run_id": run_id},
        )
    )


@dg.sensor(
    name="operator_alerts_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts the operator (webhook / Nostr DM) on failed checks and quarantined rows.",
)
def operator_alerts_sensor(
    context: dg.SensorEvaluationContext, alerts: AlertsResource, ledger: LedgerResource
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
        start = AlertCursor(max(latest, default=0), set(), _latest_quarantine_id(ledger))
        context.update_cursor(start.dump())
        return dg.SkipReason("started: alerting on check evaluations from now on")
    cursor = AlertCursor.parse(context.cursor)
    dispatcher = alerts.dispatcher(context.log)
    records = _evaluations_after(instance, keys, cursor.execution_id)
    sent = 0
    for record in records:
        cursor.execution_id = record.id
        evaluation = record.evaluation
        if evaluation is None:
            continue
        check = f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
        if evaluation.passed:
            cursor.failing.discard(check)
        elif evaluation.check_name == QUARANTINE_CHECK:
            sent += _alert_new_quarantine(ledger, dispatcher, cursor, check)
        elif evaluation.severity is dg.AssetCheckSeverity.ERROR and check not in cursor.failing:
            cursor.failing.add(check)
            _alert_check(dispatcher, evaluation, check, record.run_id)
            sent += 1
    context.update_cursor(cursor.dump())
    return dg.SkipReason(f"{len(records)} check evaluation(s) read, {sent} alert(s) sent")
