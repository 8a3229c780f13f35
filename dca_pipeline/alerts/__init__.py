"""Operator alerts (business rules §5, §7): Nostr DM and/or webhook, whichever is configured.

Typical wiring::

    dispatcher = AlertDispatcher({"webhook": webhook_or_none, "nostr": nostr_or_none})
    outcomes = dispatcher.send(Alert(AlertKind.FUNDING_SHORTFALL, title, body, dedup_key, {}))

Sinks that are ``None`` (not configured) are skipped; with none at all the dispatcher logs a
warning instead of dropping the alert silently. Names are imported on first use: the sinks are
Dagster resources, the rest (:mod:`dca_pipeline.alerts.base`) is plain Python.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
_MODULE_OF = {
    "NostrDmAlerts": "dca_pipeline.alerts.nostr",
    "WebhookAlerts": "dca_pipeline.alerts.webhook",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _MODULE_OF.get(name, "dca_pipeline.alerts.base")
    return getattr(importlib.import_module(module), name)
