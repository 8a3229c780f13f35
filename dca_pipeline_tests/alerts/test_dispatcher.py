"""AlertDispatcher fan-out and the Alert value itself (secret scrubbing, rendering)."""

from __future__ import annotations

import logging

import pytest

from dca_pipeline.alerts import (
    Alert,
    AlertDispatcher,
    AlertKind,
    AlertSink,
    SinkOutcome,
    WebhookAlerts,
    redact_secrets,
)
from harness.webhook_receiver import running_webhook_receiver


def single_shot_webhook(url: str) -> WebhookAlerts:
    return WebhookAlerts(url=url, max_attempts=1, backoff_initial_s=0.0)


class ExplodingSink:
    """Fault injection: a sink that fails with an arbitrary exception quoting a secret."""

    def send(self, alert: Alert) -> None:
        raise RuntimeError("connect to https://hooks.example/T0P-SECRET failed")


def test_one_failing_sink_does_not_stop_the_others(
    funding_alert: Alert, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with running_webhook_receiver() as broken, running_webhook_receiver() as healthy:
        broken.fail_next(5, status=500)
        sinks: dict[str, AlertSink] = {
            "broken-webhook": single_shot_webhook(broken.url()),
            "exploding": ExplodingSink(),
            "healthy-webhook": single_shot_webhook(healthy.url()),
        }
        dispatcher = AlertDispatcher(sinks)

        outcomes = dispatcher.send(funding_alert)

        assert [body.body["dedup_key"] for body in healthy.delivered] == [
            "funding_shortfall:2026-11-25"
        ]
        assert len(broken.requests) == 1
    assert [(o.sink_name, o.delivered) for o in outcomes] == [
        ("broken-webhook", False),
        ("exploding", False),
        ("healthy-webhook", True),
    ]
    assert "HTTP 500" in (outcomes[0].error or "")
    # An unknown exception is reported by type only: its text might quote a secret.
    assert outcomes[1] == SinkOutcome("exploding", False, "RuntimeError (detail hidden)")
    assert "T0P-SECRET" not in caplog.text
    assert "NOT delivered via broken-webhook" in caplog.text
    assert "delivered via healthy-webhook" in caplog.text


def test_unnamed_sinks_are_named_by_type_and_none_entries_skipped(funding_alert: Alert) -> None:
    with running_webhook_receiver() as receiver:
        dispatcher = AlertDispatcher([None, single_shot_webhook(receiver.url())])
        assert dispatcher.sink_names == ("WebhookAlerts",)
        assert dispatcher.send(funding_alert) == [SinkOutcome("WebhookAlerts", True)]


@pytest.mark.parametrize("sinks", [[], {"webhook": None, "nostr": None}])
def test_no_configured_sink_is_a_loud_warning(
    sinks: object, funding_alert: Alert, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    outcomes = AlertDispatcher(sinks).send(funding_alert)  # type: ignore[arg-type]

    assert outcomes == []
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "NO alert sink is configured" in record.getMessage()
    assert funding_alert.title in record.getMessage()
    assert funding_alert.dedup_key in record.getMessage()


def test_dispatcher_logs_through_the_given_logger(
    funding_alert: Alert, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    AlertDispatcher([], logger=logging.getLogger("dagster.run.probe")).send(funding_alert)
    assert [r.name for r in caplog.records] == ["dagster.run.probe"]


def test_alert_scrubs_recognisable_secrets() -> None:
    nsec = "nsec1" + "q" * 58
    alert = Alert(
        kind=AlertKind.INGEST_FAILED,
        title=f"ingest failed with key {nsec}",
        body="could not connect to postgresql://lamassu:hunter2pass@10.0.0.5:5432/lamassu; "
        "payment_hash=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        dedup_key="ingest_failed:2026-11-25",
        details={"api_key": "abc123", "preimage": "00ff", "dsn": "x", "rows": "3"},
    )
    assert nsec not in alert.title
    assert "hunter2pass" not in alert.body
    assert "postgresql://lamassu:[redacted]@10.0.0.5:5432/lamassu" in alert.body
    # Payment hashes are public and help the operator: they stay.
    assert "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" in alert.body
    assert dict(alert.details) == {
        "api_key": "[redacted]",
        "preimage": "[redacted]",
        "dsn": "[redacted]",
        "rows": "3",
    }
    assert "hunter2pass" not in repr(alert)
    assert "abc123" not in alert.as_text()


def test_redact_secrets_handles_labelled_values() -> None:
    assert redact_secrets("adminkey=deadbeef, other=1") == "adminkey=[redacted], other=1"
    assert redact_secrets("X-Api-Key: s3cr3t") == "X-Api-Key: [redacted]"
    assert redact_secrets("nothing secret here: 12 sats") == "nothing secret here: 12 sats"


def test_alert_is_immutable_and_renders_text(funding_alert: Alert) -> None:
    with pytest.raises(AttributeError):
        funding_alert.title = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        funding_alert.details["payouts"] = "8"  # type: ignore[index]
    text = funding_alert.as_text()
    assert text.splitlines()[0] == (
        "[dca-pipeline] funding_shortfall: Source wallet cannot cover the fixed batch"
    )
    assert "available_sats: 1000000" in text
    assert text.endswith("dedup_key: funding_shortfall:2026-11-25")
