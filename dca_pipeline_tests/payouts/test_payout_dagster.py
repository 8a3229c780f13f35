"""The payout stage inside Dagster: the job and its check gate, the sensor, reconciliation.

A small asset with a blocking check of our own stands in for the allocation stage's money
checks (the gate is generic over check keys). LNbits, the ledger and the webhook are real.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest
import sqlalchemy as sa
from nostr_sdk import Keys

from dca_pipeline.alerts import WebhookAlerts
from dca_pipeline.defs.payout.jobs import PAYOUT_TAG, build_payout_job
from dca_pipeline.defs.payout.reconciliation import CHECK_NAME, payout_reconciliation
from dca_pipeline.defs.payout.resources import AlertsResource, alerts_from_env, lnbits_from_env
from dca_pipeline.defs.payout.sensors import PayoutSensorCursor, build_payout_sensor
from dca_pipeline.defs.settings import BusinessSettings
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.database import LedgerResource
from dca_pipeline_tests.payouts.conftest import STANDARD_TOTAL_SATS, PayoutWorld
from dca_pipeline_tests.payouts.seeding import Line, add_event, payouts_by_status
from harness.nostr_relay import (
    LocalNostrRelay,
    read_private_messages,
    running_nostr_relay,
)
from harness.webhook_receiver import WebhookReceiver, running_webhook_receiver

pytestmark = [
    pytest.mark.lnbits,
    pytest.mark.dagster,
    pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True),
]

CHECK_OK = {"passed": True}


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["2026-11-23", "2026-11-24"]))
def flow_allocations() -> None:
    return None


@dg.asset_check(asset=flow_allocations, blocking=True)
def money_adds_up() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=CHECK_OK["passed"])


MONEY_CHECK = dg.AssetCheckKey(dg.AssetKey("flow_allocations"), "money_adds_up")
guarded_payout_job = build_payout_job(check_keys=[MONEY_CHECK])


def _allocate(instance: dg.DagsterInstance, passed: bool, partition: str = "2026-11-24") -> None:
    CHECK_OK["passed"] = passed
    dg.materialize(
        [flow_allocations, money_adds_up],
        instance=instance,
        partition_key=partition,
        raise_on_error=False,
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_webhook_receiver() as webhook:
        yield webhook


@pytest.fixture
def resources(
    world: PayoutWorld, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> dict[str, object]:
    monkeypatch.setenv("DCA_LNBITS_URL", world.server.url)
    monkeypatch.setenv("DCA_LNBITS_SOURCE_ADMIN_KEY", world.source.adminkey)
    monkeypatch.setenv("DCA_LNBITS_SOURCE_INVOICE_KEY", world.source.inkey)
    return {
        "ledger": LedgerResource(url=world.ledger_url),
        "lnbits": lnbits_from_env(),
        "alerts": AlertsResource(webhook=WebhookAlerts(url=receiver.url("/alerts/s3cr3t"))),
        "settings": BusinessSettings(),
    }


def _pay(instance: dg.DagsterInstance, resources: dict[str, object], **run_config: object):  # type: ignore[no-untyped-def]
    return guarded_payout_job.execute_in_process(
        instance=instance,
        resources=resources,
        run_config={"ops": {"send_payouts": {"config": run_config}}} if run_config else None,
        raise_on_error=False,
    )


def test_job_pays_when_checks_are_green_and_refuses_otherwise(
    world: PayoutWorld, resources: dict[str, object], receiver: WebhookReceiver
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    due = world.seed_standard()
    _allocate(instance, passed=True)

    result = _pay(instance, resources)

    assert result.success
    assert result.dagster_run.tags[PAYOUT_TAG] == "1"
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata  # type: ignore[union-attr]
    assert metadata["status"].value == "completed" and metadata["lnbits_payments"].value == 4
    assert world.balances() == due

    # A failed blocking check in a later allocation run: the payout job pays nothing.
    bob = world.wallets["bob"]
    add_event(world.engine, "cashout-B", [Line("flow", "bob", bob.id, 100, 700)])
    _allocate(instance, passed=False)
    refused = _pay(instance, resources)
    assert not refused.success
    [failure] = refused.get_step_failure_events()
    assert "refusing to pay" in failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert world.sats(bob) == due["bob"]
    [alert] = receiver.delivered
    assert alert.body["kind"] == "check_failed" and "money_adds_up" in alert.body["body"]

    # Data materialized without its check (nobody looked at it): still refused.
    dg.materialize([flow_allocations], instance=instance, partition_key="2026-11-24")
    assert not _pay(instance, resources).success
    assert world.sats(bob) == due["bob"]

    # Green again for the latest data: paid, once.
    _allocate(instance, passed=True)
    assert _pay(instance, resources).success
    assert world.sats(bob) == due["bob"] + 700
    # A failure in ANOTHER partition blocks too (latest evaluation per partition).
    _allocate(instance, passed=False, partition="2026-11-23")
    assert not _pay(instance, resources).success


def test_dry_run_config_and_env(
    world: PayoutWorld, resources: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    world.seed_standard()
    assert _pay(instance, resources, dry_run=True).success
    monkeypatch.setenv("DCA_PAYOUTS_DRY_RUN", "true")
    assert _pay(instance, resources).success
    assert payouts_by_status(world.engine) == {}
    assert sum(world.balances().values()) == 0
    with world.engine.connect() as c:
        plans = c.execute(sa.select(sa.func.count(sa.distinct(s.payout_dry_runs.c.plan_id))))
        assert plans.scalar_one() == 2


@pytest.fixture(scope="module")
def nostr_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNostrRelay]:
    with running_nostr_relay(tmp_path_factory.mktemp("payout-relay")) as relay:
        yield relay


def test_underfunded_run_fails_visibly_and_alerts_both_channels_configured_from_env(
    world: PayoutWorld,
    resources: dict[str, object],
    receiver: WebhookReceiver,
    nostr_relay: LocalNostrRelay,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sender, operator = Keys.generate(), Keys.generate()
    monkeypatch.setenv("DCA_ALERT_WEBHOOK_URL", receiver.url("/alerts/s3cr3t"))
    monkeypatch.setenv("DCA_ALERT_NOSTR_SECRET_KEY", sender.secret_key().to_bech32())
    monkeypatch.setenv("DCA_ALERT_NOSTR_RELAYS", nostr_relay.url)
    monkeypatch.setenv("DCA_ALERT_NOSTR_RECIPIENTS", operator.public_key().to_bech32())
    resources = resources | {"alerts": alerts_from_env()}
    instance = dg.DagsterInstance.ephemeral()
    world.seed_standard()
    world.server.fund(world.source.id, -world.sats(world.source))

    result = _pay(instance, resources)

    assert not result.success
    assert payouts_by_status(world.engine) == {"planned": 4}
    assert sum(world.balances().values()) == 0
    [webhook_alert] = receiver.delivered
    assert webhook_alert.body["kind"] == "funding_shortfall"
    [dm] = read_private_messages(nostr_relay.url, operator.secret_key().to_hex())
    assert "funding_shortfall" in dm.content and str(STANDARD_TOTAL_SATS) in dm.content
    # No secret reaches the run's events (what the UI shows).
    everything = "\n".join(str(event) for event in instance.all_logs(result.run_id))
    for secret in ("s3cr3t", world.source.adminkey, sender.secret_key().to_bech32()):
        assert secret not in everything


def test_sensor_requests_one_run_per_new_batch_and_a_repeated_tick_repeats_the_key(
    world: PayoutWorld,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    sensor = build_payout_sensor(asset_keys=[dg.AssetKey("flow_allocations")], job_name="j")
    resources = {"ledger": LedgerResource(url=world.ledger_url)}

    def tick(cursor: str | None):  # type: ignore[no-untyped-def]
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        return sensor.evaluate_tick(context)

    assert tick(None).run_requests == []  # nothing materialized, nothing pending
    # Two partitions in two runs: @asset_sensor would drop one; we see both, one request.
    _allocate(instance, passed=True, partition="2026-11-23")
    _allocate(instance, passed=True, partition="2026-11-24")
    first = tick(None)
    again = tick(None)  # the same tick evaluated twice (e.g. after a daemon restart)
    [request] = first.run_requests
    assert [r.run_key for r in again.run_requests] == [request.run_key]
    assert set(PayoutSensorCursor.parse(first.cursor).seen) == {"flow_allocations"}
    assert tick(first.cursor).run_requests == []

    # Nothing new, but unpaid lines are pending: one retry request per retry window.
    world.seed_standard()
    retry = tick(first.cursor)
    [retry_request] = retry.run_requests
    assert retry_request.run_key.startswith("payout-retry-")
    assert tick(retry.cursor).run_requests == []

    # A new materialization moves it on again, to a new key.
    _allocate(instance, passed=True)
    [later] = tick(retry.cursor).run_requests
    assert later.run_key != request.run_key


def test_sensor_definition_is_stopped_and_throttled(ledger_url: str) -> None:
    from dca_pipeline.defs.payout.sensors import payout_sensor

    assert payout_sensor.default_status is dg.DefaultSensorStatus.STOPPED
    assert payout_sensor.minimum_interval_seconds == 30
    assert payout_sensor.job_name == "payout_job"


def test_reconciliation_passes_then_catches_an_unknown_payment_and_a_changed_amount(
    world: PayoutWorld, resources: dict[str, object], receiver: WebhookReceiver
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    world.seed_standard()
    _allocate(instance, passed=True)
    assert _pay(instance, resources).success

    def reconcile() -> dg.AssetCheckEvaluation:
        result = dg.materialize([payout_reconciliation], instance=instance, resources=resources)
        [evaluation] = result.get_asset_check_evaluations()
        assert evaluation.check_name == CHECK_NAME
        return evaluation

    clean = reconcile()
    assert clean.passed, clean.metadata["problems"]
    assert receiver.delivered == []

    # A payment carrying a payout-like id the ledger never made (e.g. a second writer).
    with world.client() as client:
        stray = client.create_invoice(world.wallets["bob"].inkey, 5, "x", {}, "po-0000stray")
        client.pay_invoice(stray.bolt11, {}, "po-0000stray")
    # And a ledger row whose amount no longer matches what LNbits moved.
    with world.engine.begin() as c:
        c.execute(
            s.payouts.update()
            .where(s.payouts.c.wallet_id == world.wallets["carol"].id)
            .values(sats=s.payouts.c.sats + 1)
        )

    dirty = reconcile()
    assert not dirty.passed
    problems = "\n".join(dirty.metadata["problems"].value)  # type: ignore[union-attr]
    assert "po-0000stray" in problems and "no such payout" in problems
    assert world.wallets["carol"].id in problems
    assert [r.body["kind"] for r in receiver.delivered] == ["reconciliation_mismatch"]
