"""Both sinks as Dagster resources configured from environment variables, in a real run."""

import dagster as dg
import pytest
from nostr_sdk import Keys

from dca_pipeline.alerts import (
    Alert,
    AlertDispatcher,
    AlertKind,
    AlertSink,
    NostrDmAlerts,
    WebhookAlerts,
)
from harness.nostr_relay import LocalNostrRelay, read_private_messages
from harness.webhook_receiver import WebhookReceiver

PROBE_ALERT = Alert(
    kind=AlertKind.CHECK_FAILED,
    title="ledger reproduction check failed",
    body="Backfill of 2026-11-24 differs from the stored ledger; nothing was paid.",
    dedup_key="check_failed:ledger_reproduces:2026-11-24",
    details={"differing_lines": "2"},
)


@dg.asset
def alert_probe(
    context: dg.AssetExecutionContext, webhook: WebhookAlerts, nostr: NostrDmAlerts
) -> None:
    sinks: dict[str, AlertSink] = {"webhook": webhook, "nostr": nostr}
    outcomes = AlertDispatcher(sinks, logger=context.log).send(PROBE_ALERT)
    failed = [o for o in outcomes if not o.delivered]
    if failed:
        raise dg.Failure(f"alert not delivered: {failed}")


def test_alerts_from_env_vars_in_a_dagster_run(
    webhook_receiver: WebhookReceiver,
    nostr_relay: LocalNostrRelay,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sender, operator = Keys.generate(), Keys.generate()
    token = "tok-9d8c7b6a5f4e"
    monkeypatch.setenv("DCA_ALERT_WEBHOOK_URL", webhook_receiver.url(f"/alerts/{token}"))
    monkeypatch.setenv("DCA_ALERT_NOSTR_SECRET_KEY", sender.secret_key().to_bech32())

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [alert_probe],
        instance=instance,
        resources={
            "webhook": WebhookAlerts(url=dg.EnvVar("DCA_ALERT_WEBHOOK_URL"), timeout_s=5),
            "nostr": NostrDmAlerts(
                relay_urls=[nostr_relay.url],
                sender_secret_key=dg.EnvVar("DCA_ALERT_NOSTR_SECRET_KEY"),
                recipient_pubkeys=[operator.public_key().to_bech32()],
                timeout_s=10,
            ),
        },
    )

    assert result.success
    [delivered] = webhook_receiver.delivered
    assert delivered.path == f"/alerts/{token}"
    assert delivered.body["dedup_key"] == PROBE_ALERT.dedup_key
    [dm] = read_private_messages(nostr_relay.url, operator.secret_key().to_hex())
    assert dm.content == PROBE_ALERT.as_text()
    # The dispatcher logged through the run's logger, and nothing secret reached that log
    # (what the Dagster UI shows) or any event of the run.
    entries = instance.all_logs(result.run_id)
    run_log = "\n".join(entry.user_message for entry in entries)
    assert "delivered via webhook" in run_log
    assert "delivered via nostr" in run_log
    everything = run_log + "\n".join(str(entry) for entry in entries)
    assert token not in everything
    assert sender.secret_key().to_bech32() not in everything
    assert sender.secret_key().to_hex() not in everything
