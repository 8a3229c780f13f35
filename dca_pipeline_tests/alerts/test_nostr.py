"""NostrDmAlerts against a real local relay (nostr-relay), read back as the recipient."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback

import pytest
from nostr_sdk import Keys

from dca_pipeline.alerts import Alert, AlertDeliveryError, NostrDmAlerts
from dca_pipeline.alerts.nostr import run_coroutine_bounded
from harness.nostr_relay import LocalNostrRelay, read_private_messages

NIP17_CHAT_MESSAGE_KIND = 14


def _hex_secret(keys: Keys) -> str:
    return str(keys.secret_key().to_hex())


def _nsec(keys: Keys) -> str:
    return str(keys.secret_key().to_bech32())


def test_dm_is_delivered_encrypted_and_read_back_by_each_recipient(
    nostr_relay: LocalNostrRelay, funding_alert: Alert
) -> None:
    sender, operator_a, operator_b, stranger = (Keys.generate() for _ in range(4))
    alerts = NostrDmAlerts(
        relay_urls=[nostr_relay.url],
        sender_secret_key=_nsec(sender),
        # One recipient as npub, one as hex: both forms are accepted.
        recipient_pubkeys=[operator_a.public_key().to_bech32(), operator_b.public_key().to_hex()],
        timeout_s=10,
    )

    alerts.send(funding_alert)

    for operator in (operator_a, operator_b):
        [message] = read_private_messages(nostr_relay.url, _hex_secret(operator))
        assert message.content == funding_alert.as_text()
        assert "Source wallet cannot cover the fixed batch" in message.content
        assert "needed_sats: 1250000" in message.content
        assert message.sender_pubkey_hex == sender.public_key().to_hex()
        assert message.rumor_kind == NIP17_CHAT_MESSAGE_KIND
        # What the relay stores is ciphertext, not the alert.
        assert "Source wallet" not in message.gift_wrap_content
    assert read_private_messages(nostr_relay.url, _hex_secret(stranger)) == []


def test_send_works_when_the_caller_already_runs_an_event_loop(
    nostr_relay: LocalNostrRelay, funding_alert: Alert
) -> None:
    sender, operator = Keys.generate(), Keys.generate()
    alerts = NostrDmAlerts(
        relay_urls=[nostr_relay.url],
        sender_secret_key=_hex_secret(sender),
        recipient_pubkeys=[operator.public_key().to_hex()],
        timeout_s=10,
    )

    async def caller_with_a_running_loop() -> None:
        alerts.send(funding_alert)

    asyncio.run(caller_with_a_running_loop())

    [message] = read_private_messages(nostr_relay.url, _hex_secret(operator))
    assert message.content == funding_alert.as_text()


def test_one_dead_relay_does_not_block_delivery_through_a_live_one(
    nostr_relay: LocalNostrRelay,
    closed_loopback_port: int,
    funding_alert: Alert,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    sender, operator = Keys.generate(), Keys.generate()
    dead_relay = f"ws://127.0.0.1:{closed_loopback_port}"
    alerts = NostrDmAlerts(
        relay_urls=[dead_relay, nostr_relay.url],
        sender_secret_key=_nsec(sender),
        recipient_pubkeys=[operator.public_key().to_bech32()],
        timeout_s=2,
    )

    alerts.send(funding_alert)

    [message] = read_private_messages(nostr_relay.url, _hex_secret(operator))
    assert message.content == funding_alert.as_text()
    assert f"these relays failed: {dead_relay}" in caplog.text


@pytest.mark.parametrize("relay_kind", ["refusing", "silent"])
def test_unreachable_relay_raises_within_the_timeout(
    relay_kind: str,
    closed_loopback_port: int,
    silent_loopback_port: int,
    funding_alert: Alert,
) -> None:
    port = closed_loopback_port if relay_kind == "refusing" else silent_loopback_port
    timeout_s = 2.0
    sender, operator = Keys.generate(), Keys.generate()
    alerts = NostrDmAlerts(
        relay_urls=[f"ws://127.0.0.1:{port}"],
        sender_secret_key=_nsec(sender),
        recipient_pubkeys=[operator.public_key().to_bech32()],
        timeout_s=timeout_s,
    )

    started = time.monotonic()
    with pytest.raises(AlertDeliveryError) as raised:
        alerts.send(funding_alert)
    elapsed = time.monotonic() - started

    assert elapsed < timeout_s + 1.0
    message = str(raised.value)
    assert "funding_shortfall:2026-11-25" in message
    assert operator.public_key().to_bech32() in message or "timed out" in message


def test_sender_secret_never_appears_in_repr_or_errors(
    closed_loopback_port: int, funding_alert: Alert
) -> None:
    sender, operator = Keys.generate(), Keys.generate()
    secret = _nsec(sender)
    valid = NostrDmAlerts(
        relay_urls=[f"ws://127.0.0.1:{closed_loopback_port}"],
        sender_secret_key=secret,
        recipient_pubkeys=[operator.public_key().to_bech32()],
        timeout_s=1,
    )
    with pytest.raises(AlertDeliveryError) as delivery_failure:
        valid.send(funding_alert)

    malformed_secret = "nsec1thisisnotavalidkeybutstillsecret"
    malformed = NostrDmAlerts(
        relay_urls=valid.relay_urls,
        sender_secret_key=malformed_secret,
        recipient_pubkeys=valid.recipient_pubkeys,
        timeout_s=1,
    )
    with pytest.raises(AlertDeliveryError, match="not a valid Nostr secret key") as bad_key:
        malformed.send(funding_alert)

    texts = [repr(valid), str(valid), repr(malformed), str(malformed)]
    for failure in (delivery_failure.value, bad_key.value):
        texts += [str(failure), "".join(traceback.format_exception(failure))]
    for text in texts:
        assert secret not in text
        assert _hex_secret(sender) not in text
        assert malformed_secret not in text


def test_invalid_recipient_is_reported(nostr_relay: LocalNostrRelay, funding_alert: Alert) -> None:
    alerts = NostrDmAlerts(
        relay_urls=[nostr_relay.url],
        sender_secret_key=_nsec(Keys.generate()),
        recipient_pubkeys=["npub1notakey"],
    )
    with pytest.raises(AlertDeliveryError, match="recipient 'npub1notakey' is not a valid"):
        alerts.send(funding_alert)


def test_hard_limit_returns_control_even_if_the_coroutine_ignores_cancellation() -> None:
    # A coroutine that blocks its loop cannot be cancelled by asyncio.wait_for; the caller
    # must still get control back (this is the guard against a wedged native future).
    async def wedged() -> None:
        time.sleep(3)

    started = time.monotonic()
    with pytest.raises(AlertDeliveryError, match="no answer within the hard limit of 0.5 s"):
        run_coroutine_bounded(wedged, 0.5, what="wedged probe", grace_s=0.2)
    assert time.monotonic() - started < 1.5


def test_bounded_runner_passes_results_and_errors_through() -> None:
    async def answer() -> int:
        return 42

    async def broken() -> None:
        raise ValueError("boom")

    assert run_coroutine_bounded(answer, 1.0, what="answer") == 42
    with pytest.raises(ValueError, match="boom"):
        run_coroutine_bounded(broken, 1.0, what="broken")
