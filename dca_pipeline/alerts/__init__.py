"""Operator alerts (business rules §5, §7): Nostr DM and/or webhook, whichever is configured.

Typical wiring::

    dispatcher = AlertDispatcher({"webhook": webhook_or_none, "nostr": nostr_or_none})
    outcomes = dispatcher.send(Alert(AlertKind.FUNDING_SHORTFALL, title, body, dedup_key, {}))

Sinks that are ``None`` (not configured) are skipped; with none at all the dispatcher logs a
warning instead of dropping the alert silently.
"""

from dca_pipeline.alerts.base import (
    Alert,
    AlertDeliveryError,
    AlertDispatcher,
    AlertKind,
    AlertSink,
    SinkOutcome,
    redact_secrets,
)
from dca_pipeline.alerts.nostr import NostrDmAlerts
from dca_pipeline.alerts.webhook import WebhookAlerts

__all__ = [
    "Alert",
    "AlertDeliveryError",
    "AlertDispatcher",
    "AlertKind",
    "AlertSink",
    "NostrDmAlerts",
    "SinkOutcome",
    "WebhookAlerts",
    "redact_secrets",
]
