"""Operator alerts on failed checks and quarantined rows, delivered to a real webhook."""

from __future__ import annotations

import dagster as dg
import pytest

from dca_pipeline.alerts import WebhookAlerts
from dca_pipeline.defs.payout.alert_sensor import operator_alerts_sensor
from dca_pipeline.defs.payout.resources import AlertsResource
from dca_pipeline.testing.webhook_receiver import running_webhook_receiver

pytestmark = pytest.mark.dagster
OUTCOME = {"money": True, "quarantine": True, "ticker": True}


@dg.asset
def validated_cash_outs() -> None:
    return None


@dg.asset_check(asset=validated_cash_outs, name="quarantine_report")
def quarantine_report() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=OUTCOME["quarantine"],
        severity=dg.AssetCheckSeverity.WARN,
        description="2 quarantined row(s) need attention",
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


def test_each_failed_error_check_and_quarantine_alerts_once() -> None:
    # The daemon's default storage (run-sharded SQLite on disk), not the in-memory one.
    with dg.instance_for_test() as instance:
        _check_alerts(instance)


def _check_alerts(instance: dg.DagsterInstance) -> None:
    _materialize(instance, money=False)  # history before the sensor starts: no alert
    with running_webhook_receiver() as receiver:
        resources = {"alerts": AlertsResource(webhook=WebhookAlerts(url=receiver.url("/a")))}

        def tick(cursor: str | None) -> str | None:
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, resources=resources, definitions=DEFS
            ) as context:
                operator_alerts_sensor(context)
                return context.cursor

        cursor = tick(None)
        assert receiver.delivered == []
        _materialize(instance)  # all green
        _materialize(instance, money=False, quarantine=False, ticker=False)
        cursor = tick(cursor)
        kinds = sorted(r.body["kind"] for r in receiver.delivered)
        assert kinds == ["check_failed", "quarantined_rows"]  # a failing WARN check is no alert
        check_alert = next(r for r in receiver.delivered if r.body["kind"] == "check_failed")
        assert "validated_cash_outs.lines_add_up" in check_alert.body["title"]
        assert tick(cursor) == cursor and len(receiver.delivered) == 2  # each alerts once
