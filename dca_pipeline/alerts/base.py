"""Operator alerts: what an alert is, what a sink does, and fan-out to every configured sink.

Business rules §5/§7: when the pipeline cannot do its job (the source wallet cannot cover a
batch, a payout fails, a check fails, ...) the operator is told through whichever channels are
configured (Nostr DM and/or webhook). Delivery is best effort per channel, but never *silent*:
a failing channel is reported, and having no channel at all is logged as a warning.

Alerts travel to third parties (a chat webhook, Nostr relays), so they must never carry
secrets. :class:`Alert` scrubs the recognisable ones (Nostr secret keys, passwords inside
DSNs/URLs, values of detail keys that name a secret) before anything is sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, runtime_checkable

_LOGGER = logging.getLogger(__name__)

REDACTED = "[redacted]"


class AlertKind(StrEnum):
    FUNDING_SHORTFALL = "funding_shortfall"
    PAYOUT_FAILED = "payout_failed"
    RECONCILIATION_MISMATCH = "reconciliation_mismatch"
    QUARANTINED_ROWS = "quarantined_rows"
    CHECK_FAILED = "check_failed"
    ALLOCATION_REPORT = "allocation_report"
    INGEST_FAILED = "ingest_failed"


class AlertDeliveryError(Exception):
    """A sink could not deliver an alert. Its message never contains a secret."""


# Patterns of secrets that can be recognised in free text. Payment hashes and bolt11 invoices
# are not secrets (they are public on the invoice) and stay readable for the operator.
_NSEC = re.compile(r"\bnsec1[02-9ac-hj-np-z]{20,}\b", re.IGNORECASE)
# scheme://user:password@host -> keep user and host, drop the password.
_URL_PASSWORD = re.compile(r"(?P<prefix>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)", re.I)
# "password=...", "api_key: ...", "preimage=..." inside text.
_LABELLED_SECRET = re.compile(
    r"(?P<label>\b(?:password|passwd|pwd|secret|api[_-]?key|x-api-key|adminkey|inkey|"
    r"preimage|token|nsec|private[_-]?key)\b\s*[=:]\s*)(?P<value>[^\s,;&]+)",
    re.IGNORECASE,
)
_SECRET_DETAIL_KEY = re.compile(
    r"password|passwd|secret|api[_-]?key|adminkey|inkey|preimage|token|private[_-]?key|nsec|dsn",
    re.IGNORECASE,
)


def redact_secrets(text: str) -> str:
    """Replace every recognisable secret in ``text`` with ``[redacted]``."""
    text = _NSEC.sub(REDACTED, text)
    text = _URL_PASSWORD.sub(lambda m: m.group("prefix") + REDACTED, text)
    return _LABELLED_SECRET.sub(lambda m: m.group("label") + REDACTED, text)


@dataclass(frozen=True)
class Alert:
    """One operator alert.

    ``dedup_key`` identifies the *condition* (e.g. ``funding_shortfall:2026-11-25``) so that a
    receiver can collapse repeats of the same problem across retries and runs.
    """

    kind: AlertKind
    title: str
    body: str
    dedup_key: str
    details: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Scrub at construction so no sink, log line or repr can ever see the raw secret.
        scrubbed_details = {
            str(key): REDACTED if _SECRET_DETAIL_KEY.search(str(key)) else redact_secrets(str(v))
            for key, v in self.details.items()
        }
        object.__setattr__(self, "kind", AlertKind(self.kind))
        object.__setattr__(self, "title", redact_secrets(self.title))
        object.__setattr__(self, "body", redact_secrets(self.body))
        object.__setattr__(self, "dedup_key", redact_secrets(self.dedup_key))
        object.__setattr__(self, "details", MappingProxyType(scrubbed_details))

    def as_text(self) -> str:
        """Plain-text rendering for chat-like channels (Nostr DM)."""
        lines = [f"[dca-pipeline] {self.kind.value}: {self.title}", "", self.body]
        if self.details:
            lines.append("")
            lines.extend(f"{key}: {value}" for key, value in sorted(self.details.items()))
        lines.extend(["", f"dedup_key: {self.dedup_key}"])
        return "\n".join(lines)


@runtime_checkable
class AlertSink(Protocol):
    """A delivery channel. ``send`` returns on success and raises on failure."""

    def send(self, alert: Alert) -> None: ...


@dataclass(frozen=True)
class SinkOutcome:
    sink_name: str
    delivered: bool
    error: str | None = None


def _sink_name(sink: AlertSink) -> str:
    return type(sink).__name__


class AlertDispatcher:
    """Send each alert to every configured sink; one failing sink never stops the others.

    Errors are reported per sink in the returned outcomes and logged. Only the message of an
    :class:`AlertDeliveryError` is logged (our sinks guarantee it is secret-free); any other
    exception is reported by its type alone, because third-party messages may quote a
    secret-bearing URL.
    """

    def __init__(
        self,
        sinks: Iterable[AlertSink | None] | Mapping[str, AlertSink | None],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        named: list[tuple[str, AlertSink]] = []
        if isinstance(sinks, Mapping):
            named = [(name, sink) for name, sink in sinks.items() if sink is not None]
        else:
            named = [(_sink_name(sink), sink) for sink in sinks if sink is not None]
        self._sinks: tuple[tuple[str, AlertSink], ...] = tuple(named)
        self._log = logger if logger is not None else _LOGGER

    @property
    def sink_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._sinks)

    def send(self, alert: Alert) -> list[SinkOutcome]:
        if not self._sinks:
            # An alert nobody receives is a silent failure; make it loud in the run log.
            self._log.warning(
                "NO alert sink is configured (set DCA_ALERT_WEBHOOK_URL and/or the Nostr DM "
                "settings): alert %s was NOT delivered: %s: %s [dedup_key=%s]",
                alert.kind.value,
                alert.title,
                alert.body,
                alert.dedup_key,
            )
            return []
        outcomes: list[SinkOutcome] = []
        for name, sink in self._sinks:
            try:
                sink.send(alert)
            except AlertDeliveryError as exc:
                outcomes.append(SinkOutcome(name, delivered=False, error=str(exc)))
            except Exception as exc:  # one broken sink must not stop the rest
                outcomes.append(
                    SinkOutcome(
                        name, delivered=False, error=f"{type(exc).__name__} (detail hidden)"
                    )
                )
            else:
                outcomes.append(SinkOutcome(name, delivered=True))
        for outcome in outcomes:
            if outcome.delivered:
                self._log.info("alert %s delivered via %s", alert.dedup_key, outcome.sink_name)
            else:
                self._log.error(
                    "alert %s (%s) NOT delivered via %s: %s",
                    alert.dedup_key,
                    alert.title,
                    outcome.sink_name,
                    outcome.error,
                )
        return outcomes
