"""Payout resources from the environment: LNbits (source wallet) and operator alerts.

Secrets (the source wallet keys, the webhook URL, the Nostr secret key) are bound as
``dg.EnvVar`` so the UI shows the variable's name, never the value. Alert channels are optional:
each one is bound only when its variables are set (read when the code location loads).
"""

from __future__ import annotations

import logging
import os

import dagster as dg

from dca_pipeline.alerts import AlertDispatcher, NostrDmAlerts, WebhookAlerts
from dca_pipeline.payouts import LNbitsResource

#: Bound when DCA_LNBITS_URL is unset, so the code location still loads (and a dry run can
#: still plan); a real payout run refuses to start with it.
LNBITS_NOT_CONFIGURED_URL = "http://lnbits-not-configured.invalid"


class AlertsResource(dg.ConfigurableResource):
    """Operator alert channels; either may be absent (then the dispatcher logs loudly)."""

    webhook: WebhookAlerts | None = None
    nostr: NostrDmAlerts | None = None

    def dispatcher(
        self, logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None
    ) -> AlertDispatcher:
        return AlertDispatcher({"webhook": self.webhook, "nostr": self.nostr}, logger=logger)


def _csv_env(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


def alerts_from_env() -> AlertsResource:
    """DCA_ALERT_WEBHOOK_URL; DCA_ALERT_NOSTR_SECRET_KEY + DCA_ALERT_NOSTR_RELAYS +
    DCA_ALERT_NOSTR_RECIPIENTS (comma-separated relay URLs / operator npubs)."""
    webhook = None
    if os.environ.get("DCA_ALERT_WEBHOOK_URL", "").strip():
        webhook = WebhookAlerts(url=dg.EnvVar("DCA_ALERT_WEBHOOK_URL"))
    nostr = None
    relays, recipients = _csv_env("DCA_ALERT_NOSTR_RELAYS"), _csv_env("DCA_ALERT_NOSTR_RECIPIENTS")
    if os.environ.get("DCA_ALERT_NOSTR_SECRET_KEY", "").strip() and relays and recipients:
        nostr = NostrDmAlerts(
            relay_urls=relays,
            sender_secret_key=dg.EnvVar("DCA_ALERT_NOSTR_SECRET_KEY"),
            recipient_pubkeys=recipients,
        )
    return AlertsResource(webhook=webhook, nostr=nostr)


def lnbits_from_env() -> LNbitsResource:
    """DCA_LNBITS_URL + DCA_LNBITS_SOURCE_ADMIN_KEY + DCA_LNBITS_SOURCE_INVOICE_KEY."""
    if not os.environ.get("DCA_LNBITS_URL", "").strip():
        return LNbitsResource(
            base_url=LNBITS_NOT_CONFIGURED_URL,
            source_admin_key="not-configured",
            source_invoice_key="not-configured",
            max_attempts=1,
        )
    return LNbitsResource(
        base_url=dg.EnvVar("DCA_LNBITS_URL"),
        source_admin_key=dg.EnvVar("DCA_LNBITS_SOURCE_ADMIN_KEY"),
        source_invoice_key=dg.EnvVar("DCA_LNBITS_SOURCE_INVOICE_KEY"),
    )


def lnbits_configured(lnbits: LNbitsResource) -> bool:
    return lnbits.base_url != LNBITS_NOT_CONFIGURED_URL


defs = dg.Definitions(resources={"lnbits": lnbits_from_env(), "alerts": alerts_from_env()})
