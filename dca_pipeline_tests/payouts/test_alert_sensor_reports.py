"""Operator alerts for §4a reports (late, revoked, changed, moved, skipped): one alert each,
from the ledger's ``allocation_issues`` rows, delivered to a real loopback webhook."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from dca_pipeline.alerts import WebhookAlerts
from dca_pipeline.defs.payout.alert_sensor import operator_alerts_sensor
from dca_pipeline.defs.payout.resources import AlertsResource
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import schema as s
from dca_pipeline_tests.allocate.seeding import add_cash_outs, add_client, cash_out_row, deposit
from harness.webhook_receiver import running_webhook_receiver

pytestmark = pytest.mark.dagster

RULES = BusinessRules()
T = datetime(2025, 6, 9, 16, 0, tzinfo=UTC)  # 10:00 in Guatemala, after the 09:00 fixed run
DAY = RULES.business_day(T)
LATER = datetime(2026, 1, 1, tzinfo=UTC)


@dg.asset
def flow_allocations() -> None:
    return None


DEFS = dg.Definitions(assets=[flow_allocations])


def _run(engine) -> al.RangeOutcome:  # type: ignore[no-untyped-def]
    return al.allocate_range(engine, RULES, DAY, DAY, now=LATER, settle_minutes=15,
                             start_day=date(2025, 1, 1))


def test_each_allocation_report_alerts_once(ledger) -> None:  # type: ignore[no-untyped-def]
    engine = ledger.engine()
    with engine.begin() as c:
        add_client(c, "A")
        add_client(c, "B")
        deposit(c, "dA", "A", 900_000)
        deposit(c, "dB", "B", 100_000)
        add_cash_outs(c, [cash_out_row("first", T - timedelta(hours=1), 10_000, 1_300_000)])
    _run(engine)
    with engine.begin() as c:  # a report from before the sensor started: history, no alert
        add_cash_outs(c, [cash_out_row("early", T - timedelta(hours=3), 5_000, 650_000)])
    assert [r.kind for r in _run(engine).reports] == ["late"]

    with dg.instance_for_test() as instance, running_webhook_receiver() as receiver:
        resources = {
            "alerts": AlertsResource(webhook=WebhookAlerts(url=receiver.url("/a"))),
            "ledger": ledger,
        }
        cursor: dict[str, str | None] = {"value": None}

        def tick() -> list[dict]:
            before = len(receiver.delivered)
            with dg.build_sensor_context(
                instance=instance, cursor=cursor["value"], resources=resources, definitions=DEFS
            ) as context:
                operator_alerts_sensor(context)
                cursor["value"] = context.cursor
            return [r.body for r in receiver.delivered[before:]]

        assert tick() == []  # starts at the present

        # A late cash-out: one report row → one alert with its id, day, fiat and sats.
        with engine.begin() as c:
            add_cash_outs(c, [cash_out_row("late", T - timedelta(hours=2), 10_000, 1_300_000)])
        assert [r.kind for r in _run(engine).reports] == ["late"]
        (late,) = tick()
        with engine.connect() as c:
            client_sats = c.execute(
                sa.select(sa.func.sum(s.allocation_lines.c.sats)).where(
                    s.allocation_lines.c.source_id == "late",
                    s.allocation_lines.c.kind == "flow",
                )
            ).scalar_one()
            issue_id = c.execute(
                sa.select(s.allocation_issues.c.issue_id).where(
                    s.allocation_issues.c.source_id == "late"
                )
            ).scalar_one()
        assert late["kind"] == "allocation_report"
        assert late["dedup_key"] == f"allocation_report:{issue_id}"
        assert "late" in late["title"] and "late" in late["body"]
        assert {
            k: late["details"][k]
            for k in ("report", "event_id", "cash_out_id", "business_day", "fiat", "sats")
        } == {
            "report": "late",
            "event_id": "late",
            "cash_out_id": "late",
            "business_day": DAY.isoformat(),
            "fiat": "100.00 GTQ",
            "sats": str(client_sats),
        }
        assert "100.00 GTQ" in late["body"] and f"{client_sats} sats" in late["body"]
        assert "early" not in late["body"]
        # Evaluated again (and the allocation run again): no second alert.
        assert not _run(engine).reports
        assert tick() == [] and tick() == []

        # A revoked cash-out: the compensating event's amounts, positive, and its cash-out id;
        # a mismatch row is not a report (its ERROR check alerts instead).
        with engine.begin() as c:
            c.execute(
                s.validated_cash_outs.update()
                .where(s.validated_cash_outs.c.id == "first")
                .values(eligible=False, error="dispense failed", ineligible_reason="has error")
            )
            c.execute(s.allocation_issues.insert().values(
                source_id="replay:2025-06-09…2025-06-09", kind="mismatch", business_day=DAY,
                detail="a difference", detected_at=LATER,
            ))
        assert [r.kind for r in _run(engine).reports] == ["revoked"]
        (revoked,) = tick()
        assert revoked["details"]["report"] == "revoked"
        assert revoked["details"]["event_id"] == "undo:first"
        assert revoked["details"]["cash_out_id"] == "first"
        assert revoked["details"]["fiat_cents"] == "10000"
        assert int(revoked["details"]["sats"]) > 0
        assert "first" in revoked["title"] and "secret-invoice-key" not in str(revoked)
        assert tick() == []

        # An acknowledged report was alerted already: acknowledging sends nothing.
        al.acknowledge_issue(engine, issue_id, note="seen", now=LATER)
        assert tick() == []

        # A cursor written before report alerts existed starts them at the present.
        old = json.loads(cursor["value"] or "{}")
        del old["report_id"]
        cursor["value"] = json.dumps(old)
        assert tick() == []
        with engine.begin() as c:  # Lamassu flips it back: allocated again, as a late one
            c.execute(
                s.validated_cash_outs.update()
                .where(s.validated_cash_outs.c.id == "first")
                .values(eligible=True, error=None, ineligible_reason=None)
            )
        assert [r.kind for r in _run(engine).reports] == ["late"]
        assert [r["details"]["event_id"] for r in tick()] == ["first~2"]
