"""WebhookAlerts against a real loopback HTTP receiver."""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime, timedelta

import pytest

from dca_pipeline.alerts import Alert, AlertDeliveryError, WebhookAlerts
from harness.webhook_receiver import WebhookReceiver

FAST_BACKOFF = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}


def test_delivers_every_field_as_json(
    webhook_receiver: WebhookReceiver, funding_alert: Alert
) -> None:
    before = datetime.now(UTC)
    WebhookAlerts(url=webhook_receiver.url(), timeout_s=5).send(funding_alert)

    [request] = webhook_receiver.requests
    assert request.answered_status == 200
    assert request.headers["Content-Type"] == "application/json"
    body = request.body
    assert set(body) == {"kind", "title", "body", "dedup_key", "details", "sent_at"}
    assert body["kind"] == "funding_shortfall"
    assert body["title"] == funding_alert.title
    assert body["body"] == funding_alert.body
    assert body["dedup_key"] == "funding_shortfall:2026-11-25"
    assert body["details"] == {
        "needed_sats": "1250000",
        "available_sats": "1000000",
        "payouts": "7",
    }
    sent_at = datetime.fromisoformat(body["sent_at"])
    assert sent_at.tzinfo is not None
    assert before <= sent_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_retries_after_5xx_then_delivers(
    webhook_receiver: WebhookReceiver, funding_alert: Alert, caplog: pytest.LogCaptureFixture
) -> None:
    webhook_receiver.fail_next(2, status=500)
    caplog.set_level(logging.WARNING)

    WebhookAlerts(url=webhook_receiver.url(), max_attempts=4, **FAST_BACKOFF).send(funding_alert)

    assert [r.answered_status for r in webhook_receiver.requests] == [500, 500, 200]
    assert len(webhook_receiver.delivered) == 1
    assert "attempt 2/4 failed (HTTP 500)" in caplog.text


def test_gives_up_after_max_attempts_with_a_clear_error(
    webhook_receiver: WebhookReceiver, funding_alert: Alert
) -> None:
    webhook_receiver.fail_next(10, status=503)

    with pytest.raises(AlertDeliveryError) as raised:
        WebhookAlerts(url=webhook_receiver.url(), max_attempts=3, **FAST_BACKOFF).send(
            funding_alert
        )

    assert len(webhook_receiver.requests) == 3
    message = str(raised.value)
    assert "failed after 3 attempt(s)" in message
    assert "HTTP 503" in message
    assert "funding_shortfall:2026-11-25" in message


def test_client_error_is_final_and_not_retried(
    webhook_receiver: WebhookReceiver, funding_alert: Alert
) -> None:
    webhook_receiver.fail_next(5, status=400)

    with pytest.raises(AlertDeliveryError, match=r"after 1 attempt\(s\): HTTP 400"):
        WebhookAlerts(url=webhook_receiver.url(), max_attempts=4, **FAST_BACKOFF).send(
            funding_alert
        )

    assert len(webhook_receiver.requests) == 1


def test_connection_refused_is_retried_then_reported(
    closed_loopback_port: int, funding_alert: Alert
) -> None:
    resource = WebhookAlerts(
        url=f"http://127.0.0.1:{closed_loopback_port}/hook", max_attempts=3, **FAST_BACKOFF
    )
    with pytest.raises(AlertDeliveryError, match=r"after 3 attempt\(s\): ConnectError"):
        resource.send(funding_alert)


def test_read_timeout_is_retried(
    webhook_receiver: WebhookReceiver, funding_alert: Alert, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    webhook_receiver.stall_next(1, seconds=1.0)

    WebhookAlerts(url=webhook_receiver.url(), timeout_s=0.3, max_attempts=2, **FAST_BACKOFF).send(
        funding_alert
    )

    # The first request arrived but its answer came too late; the retry was answered.
    assert len(webhook_receiver.requests) == 2
    assert "ReadTimeout" in caplog.text


def test_url_token_never_appears_in_logs_errors_or_repr(
    webhook_receiver: WebhookReceiver,
    closed_loopback_port: int,
    funding_alert: Alert,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path_token = "hooks/T0KEN-in-path-8f3a9c"
    query_token = "Q-SECRET-77c1e2"
    caplog.set_level(logging.DEBUG)  # httpx logs every request URL at INFO
    good = WebhookAlerts(
        url=webhook_receiver.url(f"/{path_token}?key={query_token}"),
        max_attempts=2,
        **FAST_BACKOFF,
    )
    good.send(funding_alert)  # success path logs too
    webhook_receiver.fail_next(5, status=502)
    with pytest.raises(AlertDeliveryError) as http_failure:
        good.send(funding_alert)
    refused = WebhookAlerts(
        url=f"http://127.0.0.1:{closed_loopback_port}/{path_token}?key={query_token}",
        max_attempts=2,
        **FAST_BACKOFF,
    )
    with pytest.raises(AlertDeliveryError) as transport_failure:
        refused.send(funding_alert)

    # The token really was used (so the checks below are not vacuous)...
    assert webhook_receiver.requests[0].path == f"/{path_token}?key={query_token}"
    assert caplog.records, "expected log records to inspect"
    # ...and never shows anywhere an operator or a log shipper could see it.
    texts = [
        caplog.text,
        *(record.getMessage() for record in caplog.records),
        repr(good),
        str(good),
        repr(refused),
    ]
    for failure in (http_failure.value, transport_failure.value):
        texts += [str(failure), repr(failure), "".join(traceback.format_exception(failure))]
    for text in texts:
        assert "T0KEN-in-path" not in text
        assert query_token not in text
