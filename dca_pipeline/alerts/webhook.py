"""Webhook alert sink: POST the alert as JSON to an operator-chosen URL.

The URL usually embeds a token (Slack/Discord/ntfy style), so it is treated as a secret: it is
excluded from the resource's repr, never written to a log line or exception text by this
module, and scrubbed from httpx/httpcore log records (httpx logs every request URL at INFO).
Configure it with ``dg.EnvVar("DCA_ALERT_WEBHOOK_URL")``.

Delivery is retried a bounded number of times with exponential backoff on transport errors
(connection refused/reset, timeouts), HTTP 5xx and 429. Other 4xx answers are final: retrying
a rejected request cannot succeed. Retries can deliver the same alert twice; the body's
``dedup_key`` lets the receiver collapse duplicates.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import httpx
from pydantic import Field

from dca_pipeline.alerts.base import Alert, AlertDeliveryError

_LOGGER = logging.getLogger(__name__)

# Loggers that may print a request URL. Filters apply only to records created on the logger
# itself, so each one is listed explicitly rather than just the parent.
_URL_LOGGING_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_MASK = "***"


class _SecretScrubbingFilter(logging.Filter):
    """Rewrite log records so that no registered secret string survives in them."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def register(self, secrets: set[str]) -> None:
        with self._lock:
            self._secrets |= secrets

    def scrub(self, text: str) -> str:
        with self._lock:
            # Longest first, so the full URL is masked before its parts are.
            ordered = sorted(self._secrets, key=len, reverse=True)
        for secret in ordered:
            text = text.replace(secret, _MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg = scrubbed
            record.args = ()
        return True


_SCRUBBER = _SecretScrubbingFilter()
_scrubber_installed = False
_install_lock = threading.Lock()


def _install_scrubber() -> None:
    global _scrubber_installed
    with _install_lock:
        if _scrubber_installed:
            return
        for name in _URL_LOGGING_LOGGERS:
            logging.getLogger(name).addFilter(_SCRUBBER)
        _scrubber_installed = True


def _secret_parts_of(url: str) -> set[str]:
    """The substrings of ``url`` that may carry a credential: all of it, path+query, userinfo."""
    parts = {url, url.rstrip("/")}
    split = urlsplit(url)
    path_and_query = split.path + (f"?{split.query}" if split.query else "")
    if len(path_and_query) > 1:
        parts.add(path_and_query)
    if split.query:
        parts.add(split.query)
    if split.password:
        parts.add(split.password)
    if split.username:
        parts.add(split.username)
    # Every path segment or query value long enough to be a token.
    for segment in split.path.split("/") + [p.partition("=")[2] for p in split.query.split("&")]:
        if len(segment) >= 8:
            parts.add(segment)
    return {part for part in parts if part}


def _is_retryable_status(status_code: int) -> bool:
    return status_code >= 500 or status_code == 429


class WebhookAlerts(dg.ConfigurableResource):
    """POST alerts as JSON to a webhook URL (a secret: pass ``dg.EnvVar``)."""

    url: str = Field(
        repr=False,
        description="Webhook URL; may embed a token, so it is a secret. Use an EnvVar.",
    )
    timeout_s: float = Field(  # float-ok: seconds
        default=10.0, gt=0, description="Per-attempt timeout for connect, write and read."
    )
    max_attempts: int = Field(default=4, ge=1, description="Attempts before giving up.")
    backoff_initial_s: float = Field(  # float-ok: seconds
        default=1.0, ge=0, description="Sleep after the first failed attempt; doubles after."
    )
    backoff_max_s: float = Field(  # float-ok: seconds
        default=30.0, ge=0, description="Upper bound of one backoff sleep."
    )

    @staticmethod
    def payload(alert: Alert, sent_at: datetime) -> dict[str, Any]:
        return {
            "kind": alert.kind.value,
            "title": alert.title,
            "body": alert.body,
            "dedup_key": alert.dedup_key,
            "details": dict(alert.details),
            "sent_at": sent_at.isoformat(),
        }

    def _backoff_s(self, failed_attempts: int) -> float:  # float-ok: seconds
        return float(min(self.backoff_initial_s * 2.0 ** (failed_attempts - 1), self.backoff_max_s))

    def send(self, alert: Alert) -> None:
        _install_scrubber()
        _SCRUBBER.register(_secret_parts_of(self.url))
        body = self.payload(alert, datetime.now(UTC))
        last_problem = "no attempt made"
        attempts_made = 0
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            for attempt in range(1, self.max_attempts + 1):
                attempts_made = attempt
                retryable, last_problem = self._attempt(client, body)
                if not last_problem:
                    return
                if not retryable:
                    break
                if attempt < self.max_attempts:
                    delay = self._backoff_s(attempt)
                    _LOGGER.warning(
                        "webhook alert %s: attempt %d/%d failed (%s); retrying in %.2f s",
                        alert.dedup_key,
                        attempt,
                        self.max_attempts,
                        last_problem,
                        delay,
                    )
                    time.sleep(delay)
        # Raised outside any ``except`` block so no httpx exception (whose text may quote the
        # URL) is chained to it as __context__.
        raise AlertDeliveryError(
            f"webhook delivery of alert {alert.dedup_key!r} failed after "
            f"{attempts_made} attempt(s): {last_problem}"
        )

    def _attempt(self, client: httpx.Client, body: dict[str, Any]) -> tuple[bool, str]:
        """One POST. Returns (retryable, problem); an empty problem means delivered."""
        problem: str
        try:
            response = client.post(self.url, json=body)
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {_SCRUBBER.scrub(str(exc))}"
            return True, problem
        except httpx.HTTPError as exc:
            # Not a transport problem (e.g. an invalid URL): retrying cannot help.
            return False, f"{type(exc).__name__}"
        if response.is_success:
            return False, ""
        problem = f"HTTP {response.status_code}"
        return _is_retryable_status(response.status_code), problem
