"""Nostr alert sink: an encrypted private direct message to each operator.

Protocol: **NIP-17** private direct messages (a kind-14 chat message, sealed with NIP-44
encryption in a kind-13 seal and gift-wrapped in a kind-1059 event signed by a throw-away key,
NIP-59). Chosen over NIP-04 because NIP-04 is deprecated: it leaks who talks to whom and when
(sender, recipient and timestamp are in the clear) and uses unauthenticated AES-CBC, whereas
NIP-17 hides sender and time from relays and is what current clients (0xchat, Amethyst,
Damus, Primal, ...) show as DMs. ``nostr-sdk`` (the rust-nostr bindings) implements it
directly (``nip17_make_private_msg``), so no crypto is written here.

Relays: the DM is published to every configured relay; the operator must pick relays their
client reads DMs from (ideally their NIP-17 kind-10050 inbox relays). A recipient counts as
reached when at least one relay acknowledged (``OK true``) its gift wrap; otherwise
:class:`AlertDeliveryError` is raised.

Time bound: ``nostr-sdk`` is async. Each ``send`` runs in a fresh event loop on a worker
thread (so it also works when the caller already runs a loop), under ``asyncio.wait_for`` with
``timeout_s``; the caller additionally stops waiting for the thread a few seconds after that.
An unreachable or silent relay therefore costs at most about ``timeout_s`` and never hangs a
payout run.

The sender secret key (nsec or hex) is a secret: configure it with
``dg.EnvVar("DCA_ALERT_NOSTR_SECRET_KEY")``; it is excluded from the resource's repr and from
every error message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import dagster as dg
from nostr_sdk import (
    AckPolicy,
    Client,
    ClientBuilder,
    Keys,
    NostrSdkError,
    PublicKey,
    RelayUrl,
    SendEventOutput,
    SendEventTarget,
    nip17_make_private_msg,
)
from pydantic import Field

from dca_pipeline.alerts.base import Alert, AlertDeliveryError

_LOGGER = logging.getLogger(__name__)

# Extra time the calling thread waits beyond ``timeout_s`` before abandoning a worker thread
# whose native future ignored cancellation.
_HARD_TIMEOUT_GRACE_S = 3.0  # float-ok: seconds
_SHUTDOWN_TIMEOUT_S = 2.0  # float-ok: seconds

T = TypeVar("T")


@dataclass(frozen=True)
class _RecipientResult:
    recipient_npub: str
    accepted_by: tuple[str, ...]
    rejected_by: dict[str, str]


def run_coroutine_bounded(
    make_coroutine: Callable[[], Coroutine[Any, Any, T]],
    timeout_s: float,  # float-ok: seconds
    what: str,
    grace_s: float = _HARD_TIMEOUT_GRACE_S,  # float-ok: seconds
) -> T:
    """Run a coroutine in a fresh event loop on a worker thread, with a hard time limit.

    ``asyncio.wait_for`` cancels the coroutine after ``timeout_s``; if a native future does
    not honour the cancellation, the caller still gets control back after a short grace
    period (the daemon thread is abandoned) and sees :class:`AlertDeliveryError`.
    """
    outcome: dict[str, Any] = {}

    def worker() -> None:
        try:
            outcome["value"] = asyncio.run(asyncio.wait_for(make_coroutine(), timeout_s))
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=worker, name=f"alert-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s + grace_s)
    if thread.is_alive():
        raise AlertDeliveryError(f"{what}: no answer within the hard limit of {timeout_s:g} s")
    error = outcome.get("error")
    if isinstance(error, TimeoutError):
        raise AlertDeliveryError(f"{what}: timed out after {timeout_s:g} s")
    if error is not None:
        raise error
    return outcome["value"]  # type: ignore[no-any-return]


class NostrDmAlerts(dg.ConfigurableResource):
    """Send each alert as a NIP-17 private DM to every recipient via the configured relays."""

    relay_urls: list[str] = Field(min_length=1, description="ws:// or wss:// relay URLs.")
    sender_secret_key: str = Field(
        repr=False, description="Sender's secret key (nsec or hex). Secret: use an EnvVar."
    )
    recipient_pubkeys: list[str] = Field(
        min_length=1, description="Operators' public keys (npub or hex)."
    )
    timeout_s: float = Field(  # float-ok: seconds
        default=15.0, gt=0, description="Hard limit for delivering one alert to everybody."
    )

    def _sender_keys(self) -> Keys:
        try:
            return Keys.parse(self.sender_secret_key.strip())
        except NostrSdkError:
            pass
        # Raised outside the except block: nothing about the value may be chained or echoed.
        raise AlertDeliveryError("sender_secret_key is not a valid Nostr secret key (nsec/hex)")

    def _recipients(self) -> list[PublicKey]:
        keys: list[PublicKey] = []
        for text in self.recipient_pubkeys:
            try:
                keys.append(PublicKey.parse(text.strip()))
            except NostrSdkError as exc:
                raise AlertDeliveryError(f"recipient {text!r} is not a valid npub/hex") from exc
        return keys

    def _relays(self) -> list[RelayUrl]:
        urls: list[RelayUrl] = []
        for text in self.relay_urls:
            try:
                urls.append(RelayUrl.parse(text.strip()))
            except NostrSdkError as exc:
                raise AlertDeliveryError(f"relay URL {text!r} is not valid") from exc
        return urls

    def send(self, alert: Alert) -> None:
        sender = self._sender_keys()
        recipients = self._recipients()
        relays = self._relays()
        text = alert.as_text()
        results = run_coroutine_bounded(
            lambda: _publish_private_messages(sender, recipients, relays, text, self.timeout_s),
            self.timeout_s,
            what=f"nostr DM alert {alert.dedup_key!r}",
        )
        unreached = [result for result in results if not result.accepted_by]
        for result in results:
            if result.accepted_by and result.rejected_by:
                _LOGGER.warning(
                    "nostr DM alert %s reached %s via %s, but these relays failed: %s",
                    alert.dedup_key,
                    result.recipient_npub,
                    ", ".join(result.accepted_by),
                    _describe(result.rejected_by),
                )
        if unreached:
            raise AlertDeliveryError(
                f"nostr DM alert {alert.dedup_key!r} reached no relay for "
                + "; ".join(f"{r.recipient_npub} ({_describe(r.rejected_by)})" for r in unreached)
            )


def _describe(rejected_by: dict[str, str]) -> str:
    return ", ".join(f"{url}: {reason}" for url, reason in sorted(rejected_by.items())) or "-"


async def _publish_private_messages(
    sender: Keys,
    recipients: list[PublicKey],
    relays: list[RelayUrl],
    text: str,
    timeout_s: float,  # float-ok: seconds
) -> list[_RecipientResult]:
    # Split the budget: connecting may take up to half, relay acknowledgements the rest.
    connect_budget = timedelta(seconds=timeout_s * 0.45)
    ack_budget = timedelta(seconds=timeout_s * 0.45)
    client: Client = ClientBuilder().connect_timeout(connect_budget).build()
    try:
        for relay in relays:
            await client.add_relay(relay)
        await client.connect(connect_budget)
        wraps = [nip17_make_private_msg(sender, recipient, text) for recipient in recipients]
        outputs: list[SendEventOutput | BaseException] = await asyncio.gather(
            *(
                client.send_event(wrap, SendEventTarget.to(relays), AckPolicy.all(), ack_budget)
                for wrap in wraps
            ),
            return_exceptions=True,
        )
    finally:
        try:
            await asyncio.wait_for(client.shutdown(), _SHUTDOWN_TIMEOUT_S)
        except (TimeoutError, NostrSdkError):
            _LOGGER.debug("nostr client did not shut down cleanly", exc_info=True)
    results: list[_RecipientResult] = []
    for recipient, output in zip(recipients, outputs, strict=True):
        npub = recipient.to_bech32()
        if isinstance(output, BaseException):
            reason = f"{type(output).__name__}: {output}"
            results.append(_RecipientResult(npub, (), {str(url): reason for url in relays}))
            continue
        results.append(
            _RecipientResult(
                npub,
                tuple(str(url) for url in output.success),
                {str(url): reason for url, reason in output.failed.items()},
            )
        )
    return results
