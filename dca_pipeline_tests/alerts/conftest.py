"""Real servers for the alert tests: a loopback webhook receiver and a local Nostr relay."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from dca_pipeline.alerts import Alert, AlertKind
from dca_pipeline.demo.processes import free_loopback_port
from harness.nostr_relay import LocalNostrRelay, running_nostr_relay
from harness.webhook_receiver import WebhookReceiver, running_webhook_receiver


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with running_webhook_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def nostr_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNostrRelay]:
    # One relay for the whole session: every test uses fresh keys, so tests cannot see each
    # other's messages.
    with running_nostr_relay(tmp_path_factory.mktemp("nostr-relay")) as relay:
        yield relay


@pytest.fixture
def closed_loopback_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    return free_loopback_port()


@pytest.fixture
def silent_loopback_port() -> Iterator[int]:
    """A port whose listener completes TCP handshakes but never says a word (a hung peer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@pytest.fixture
def funding_alert() -> Alert:
    return Alert(
        kind=AlertKind.FUNDING_SHORTFALL,
        title="Source wallet cannot cover the fixed batch",
        body="Batch needs 1,250,000 sats; source wallet holds 1,000,000 sats. "
        "Payouts stay pending and are retried on the next run.",
        dedup_key="funding_shortfall:2026-11-25",
        details={"needed_sats": "1250000", "available_sats": "1000000", "payouts": "7"},
    )
