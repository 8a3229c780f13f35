"""Operator alerts on failed checks and quarantined rows, delivered to a real webhook."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from dca_pipeline.alerts import WebhookAlerts
from dca_pipeline.defs.payout.alert_sensor import operator_alerts_sensor
from dca_pipeline.defs.payout.resources import AlertsResource
from dca_pipeline.ledger import schema as s
from harness.webhook_receiver import WebhookReceiver, running_webhook_receiver

pytestmark = [
    pytest.mark.dagster,
    pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True),
]
OUTCOME = {"money": True, "quarantine": True, "ticker": True}
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@dg.asset
def validated_cash_outs() -> None:
    return None


@dg.asset_check(asset=validated_cash_outs, name="quarantine_report")
def quarantine_report() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=OUTCOME["quarantine"],
        severity=dg.AssetCheckSeverity.WARN,
        description="quarantined row(s) need attention",
    )


@dg.asset_check(asset=validated_cash_outs, name="ticker_deviation")
def ticker_deviation() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=OUTCOME["ticker"], severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=validated_cash_outs, name="lines_add_up", blocking=True)
def lines_add_up() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=OUTCOME["money"], description="1 sat missing")


DEFS = dg.Definitions(
    assets=[validated_cash_outs],
    asset_checks=[quarantine_report, ticker_deviation, lines_add_up],
)


def _materialize(instance: dg.DagsterInstance, **outcome: bool) -> None:
    OUTCOME.update({"money": True, "quarantine": True, "ticker": True} | outcome)
    dg.materialize(
        [validated_cash_outs, quarantine_report, ticker_deviation, lines_add_up],
        instance=instance,
        raise_on_error=False,
    )


def _quarantine(ledger, source_id: str) -> None:  # type: ignore[no-untyped-def]
    with ledger.begin() as c:
        c.execute(
            s.quarantine.insert().values(
                source_table="cash_out_txs",
                source_id=source_id,
                reason="fiat is not a whole number of centavos",
                raw_row='{"phone": "+502 5555 0000"}',
                row_sha256=source_id,
                first_seen_at=NOW,
                last_seen_at=NOW,
            )
        )


def test_each_red_check_and_each_quarantined_row_alerts_once(ledger) -> None:  # type: ignore[no-untyped-def]
    # The daemon's default storage (run-sharded SQLite on disk), not the in-memory one.
    with dg.instance_for_test() as instance, running_webhook_receiver() as receiver:
        _check_alerts(instance, ledger, receiver)


def _check_alerts(instance: dg.DagsterInstance, ledger, receiver: WebhookReceiver) -> None:  # type: ignore[no-untyped-def]
    resources = {
        "alerts": AlertsResource(webhook=WebhookAlerts(url=receiver.url("/a"))),
        "ledger": ledger,
    }
    cursor: dict[str, str | None] = {"value": None}

    def tick() -> list[str]:
        before = len(receiver.delivered)
        with dg.build_sensor_context(
            instance=instance, cursor=cursor["value"], resources=resources, definitions=DEFS
        ) as context:
            operator_alerts_sensor(context)
            cursor["value"] = context.cursor
        return [r.body["kind"] for r in receiver.delivered[before:]]

    _quarantine(ledger, "old-row")
    _materialize(instance, money=False, quarantine=False)  # history before the sensor starts
    assert tick() == []

    _materialize(instance)  # all green
    _quarantine(ledger, "tx-1")
    _quarantine(ledger, "tx-2")
    _materialize(instance, money=False, quarantine=False, ticker=False)
    assert sorted(tick()) == ["check_failed", "quarantined_rows"]  # a red WARN check: no alert
    check_alert, rows_alert = sorted(receiver.delivered, key=lambda r: r.body["kind"])
    assert "validated_cash_outs.lines_add_up" in check_alert.body["title"]
    assert rows_alert.body["details"]["rows"] == "2" and "tx-1" in rows_alert.body["body"]
    assert "old-row" not in rows_alert.body["body"] and "+502" not in rows_alert.body["body"]

    # Still red, same quarantined rows (live runs re-evaluate often): no repeat.
    _materialize(instance, money=False, quarantine=False)
    assert tick() == [] and tick() == []

    # One more quarantined row: one alert for it; the check going green then red again: alert.
    _quarantine(ledger, "tx-3")
    _materialize(instance, quarantine=False)
    _materialize(instance, money=False)
    assert sorted(tick()) == ["check_failed", "quarantined_rows"]
    [new_rows] = [r for r in receiver.delivered[-2:] if r.body["kind"] == "quarantined_rows"]
    assert new_rows.body["details"]["rows"] == "1" and "tx-3" in new_rows.body["body"]
