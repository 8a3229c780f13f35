"""Operator alerts for failed checks, quarantined rows and §4a reports (business-rules §4a, §8).

- A check of ERROR severity anywhere (money checks, ingestion reconciliation, payout
  reconciliation) that starts failing sends one alert; it is not repeated while the check stays
  red (live runs re-evaluate it often), and alerts again if it fails again after passing.
- A failing ``quarantine_report`` (WARN) sends one alert per batch of quarantined rows not
  alerted before (read from the ledger's ``quarantine`` table: id, table, reason; never the raw
  row), so each quarantined row is reported once.
- Every new ``allocation_issues`` row of a report kind (late, revoked, changed, moved,
  skipped: expected business, WARN checks that never block) sends one alert of its own, with
  its kind, event and cash-out id, business day, fiat and sats (read from the ledger, never a
  key); dedup key ``allocation_report:<issue id>``. Mismatches are not repeated here: they fail
  the blocking ``ledger_reproduces`` check, which alerts as an ERROR check.

The cursor keeps the last check execution read, the checks currently red, the last quarantine
id and the last report issue id alerted; the first tick starts at the present (no flood of old
history). Report ids are read in id order from the one allocation writer's rows. The sensor
sends alerts only (no runs, no money), so it starts RUNNING.
"""

import json
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import sqlalchemy as sa

from dca_pipeline.alerts import Alert, AlertDispatcher, AlertKind
from dca_pipeline.defs.allocate.checks import REPORT_CHECKS
from dca_pipeline.defs.payout.resources import AlertsResource
from dca_pipeline.domain.money import format_cents
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.resource import LedgerResource

QUARANTINE_CHECK = "quarantine_report"
BATCH = 500
SAMPLE = 10
#: report kind → the WARN check that lists it ("asset.check"), e.g. late → late_events.
REPORT_KIND_CHECKS = {
    kind: f"{asset.to_user_string()}.{name}" for asset, name, kind, _ in REPORT_CHECKS
}
_REPORT_WORDS = {
    "late": "late event", "revoked": "revoked cash-out", "changed": "changed cash-out",
    "moved": "moved cash-out", "skipped": "skipped fixed run",
}


@dataclass
class AlertCursor:
    execution_id: int = 0
    failing: set[str] = field(default_factory=set)
    quarantine_id: int = 0
    #: The last allocation_issues id alerted as a report; None: not known yet (a cursor written
    #: before report alerts existed), taken as the present on the next tick.
    report_id: int | None = 0

    @classmethod
    def parse(cls, text: str) -> "AlertCursor":
        data = json.loads(text)
        return cls(
            data["execution_id"], set(data["failing"]), data["quarantine_id"],
            data.get("report_id"),
        )

    def dump(self) -> str:
        return json.dumps(
            {
                "execution_id": self.execution_id,
                "failing": sorted(self.failing),
                "quarantine_id": self.quarantine_id,
                "report_id": self.report_id,
            }
        )


def _latest_execution_id(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> int:
    """The id of the check's newest execution record (0: never planned nor evaluated)."""
    record = instance.get_latest_asset_check_evaluation_record(key)
    return record.id if record is not None else 0


def _evaluations_after(
    instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey], after_id: int
) -> list[Any]:
    """Finished evaluations with an execution id above ``after_id``, oldest first.

    Read per check key from the asset-check execution table (works on every instance storage;
    a cross-run event query is refused by the default run-sharded SQLite storage). The public
    ``get_latest_asset_check_evaluation_record`` tells which checks have anything new; only
    those read their history, the one per-check history Dagster 1.13 has (every evaluation
    since the last tick counts: a check that went green then red again alerts again)."""
    found: list[Any] = []
    for key in keys:
        if _latest_execution_id(instance, key) <= after_id:
            continue
        for record in instance.event_log_storage.get_asset_check_execution_history(
            key, limit=BATCH
        ):
            if record.id <= after_id:
                break  # newest first
            if record.status.value != "PLANNED":
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


def _latest_issue_id(ledger: LedgerResource) -> int:
    i = s.allocation_issues.c
    with ledger.engine().connect() as c:
        return int(c.execute(sa.select(sa.func.max(i.issue_id))).scalar() or 0)


def _new_reports(ledger: LedgerResource, after_id: int) -> list[sa.Row]:
    """Report rows above ``after_id`` (oldest first, at most BATCH), each with the event it
    names: its cash-out, fiat, principal, the currency it was allocated in and Σ client sats."""
    i, e, line = s.allocation_issues, s.allocation_events, s.allocation_lines
    client_sats = (
        sa.select(sa.func.coalesce(sa.func.sum(line.c.sats), 0))
        .where(line.c.source_id == e.c.source_id, line.c.kind.in_(("flow", "fixed")))
        .scalar_subquery()
    )
    with ledger.engine().connect() as c:
        return list(
            c.execute(
                sa.select(
                    i.c.issue_id, i.c.kind, i.c.source_id, i.c.business_day, i.c.detail,
                    e.c.source_kind, e.c.cash_out_id, e.c.fiat_cents, e.c.principal_sats,
                    e.c.inputs_json, client_sats.label("client_sats"),
                )
                .select_from(i.outerjoin(e, e.c.source_id == i.c.source_id))
                .where(i.c.issue_id > after_id, i.c.kind.in_(tuple(REPORT_KIND_CHECKS)))
                .order_by(i.c.issue_id)
                .limit(BATCH)
            ).all()
        )


def _currency(inputs_json: str | None) -> str:
    try:
        return str(json.loads(inputs_json or "{}").get("rules", {}).get("currency") or "GTQ")
    except (ValueError, AttributeError):
        return "GTQ"


def _alert_report(dispatcher: AlertDispatcher, row: sa.Row) -> None:
    """One alert for one §4a report: expected business, never a stop (no secret: ids, amounts
    and the report's own words only)."""
    # A compensation's totals are negated; the alert states the amounts involved.
    fiat = abs(int(row.fiat_cents or 0))
    sats = abs(int(row.client_sats or 0))
    principal = abs(int(row.principal_sats or 0))
    currency = _currency(row.inputs_json)
    subject = row.cash_out_id or row.source_id
    check = REPORT_KIND_CHECKS[row.kind]
    dispatcher.send(
        Alert(
            AlertKind.ALLOCATION_REPORT,
            f"Allocation report: {_REPORT_WORDS[row.kind]} {subject} ({row.business_day})",
            f"{row.detail}. Amounts: {format_cents(fiat)} {currency}, {sats} sats to clients "
            f"(principal {principal} sats). Expected business (business-rules §4a): nothing "
            f"is held, allocation and payouts go on (WARN check {check}; "
            f"`dca-pipeline allocations issues`).",
            f"allocation_report:{row.issue_id}",
            {
                "report": row.kind,
                "issue_id": str(row.issue_id),
                "event_id": row.source_id,
                "cash_out_id": row.cash_out_id or "",
                "business_day": row.business_day.isoformat(),
                "fiat_cents": str(fiat),
                "fiat": f"{format_cents(fiat)} {currency}",
                "sats": str(sats),
                "principal_sats": str(principal),
                "check": check,
            },
        )
    )


def _alert_new_reports(
    ledger: LedgerResource, dispatcher: AlertDispatcher, cursor: AlertCursor
) -> int:
    if cursor.report_id is None:
        cursor.report_id = _latest_issue_id(ledger)
        return 0
    rows = _new_reports(ledger, cursor.report_id)
    for row in rows:
        _alert_report(dispatcher, row)
        cursor.report_id = int(row.issue_id)
    return len(rows)


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
    description="Alerts the operator (webhook / Nostr DM) on failed checks, quarantined rows "
    "and allocation reports (late, revoked, changed, moved, skipped).",
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
        latest = [_latest_execution_id(instance, key) for key in keys]
        start = AlertCursor(
            max(latest, default=0), set(), _latest_quarantine_id(ledger), _latest_issue_id(ledger)
        )
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
    reports = _alert_new_reports(ledger, dispatcher, cursor)
    context.update_cursor(cursor.dump())
    return dg.SkipReason(
        f"{len(records)} check evaluation(s) read, {sent + reports} alert(s) sent "
        f"({reports} allocation report(s))"
    )
