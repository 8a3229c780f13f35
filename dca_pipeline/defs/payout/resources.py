"""Payout resources from the environment: LNbits (source wallet) and operator alerts.

Secrets (the source wallet keys, the webhook URL, the Nostr secret key) are bound as
``dg.EnvVar`` so the UI shows the variable's name, never the value. Alert channels are optional:
each one is bound only when its variables are set (:mod:`dca_pipeline.config`, read when the
code location loads).
"""

from __future__ import annotations

import logging

import dagster as dg

from dca_pipeline.alerts import AlertDispatcher, NostrDmAlerts, WebhookAlerts
from dca_pipeline.config import Config, config
from dca_pipeline.payouts.resource import LNbitsResource

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


def alerts_from_env(settings: Config | None = None) -> AlertsResource:
    """DCA_ALERT_WEBHOOK_URL; DCA_ALERT_NOSTR_SECRET_KEY + DCA_ALERT_NOSTR_RELAYS +
    DCA_ALERT_NOSTR_RECIPIENTS (comma-separated relay URLs / operator npubs)."""
    settings = settings or config()
    webhook = None
    if settings.alert_webhook_url:
        webhook = WebhookAlerts(url=dg.EnvVar(settings.alert_webhook_url.name))
    nostr = None
    if settings.nostr_alerts_on:
        nostr = NostrDmAlerts(
            relay_urls=list(settings.alert_nostr_relays),
            sender_secret_key=dg.EnvVar(settings.alert_nostr_secret_key.name),
            recipient_pubkeys=list(settings.alert_nostr_recipients),
        )
    return AlertsResource(webhook=webhook, nostr=nostr)


def lnbits_from_env(settings: Config | None = None) -> LNbitsResource:
    """DCA_LNBITS_URL + DCA_LNBITS_SOURCE_ADMIN_KEY + DCA_LNBITS_SOURCE_INVOICE_KEY."""
    settings = settings or config()
    if not settings.lnbits_url:
        return LNbitsResource(
            base_url=LNBITS_NOT_CONFIGURED_URL,
            source_admin_key="not-configured",
            source_invoice_key="not-configured",
            max_attempts=1,
        )
    return LNbitsResource(
        base_url=dg.EnvVar(settings.lnbits_url.name),
        source_admin_key=dg.EnvVar(settings.lnbits_source_admin_key.name),
        source_invoice_key=dg.EnvVar(settings.lnbits_source_invoice_key.name),
    )


def lnbits_configured(lnbits: LNbitsResource) -> bool:
    return lnbits.base_url != LNBITS_NOT_CONFIGURED_URL


defs = dg.Definitions(resources={"lnbits": lnbits_from_env(), "alerts": alerts_from_env()})
