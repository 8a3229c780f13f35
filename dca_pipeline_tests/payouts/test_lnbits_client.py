"""LNbitsClient against a real LNbits 1.6.2 with the FakeWallet funding source."""

from __future__ import annotations

import logging
import secrets
import time

import dagster as dg
import pytest

from dca_pipeline.demo.lnbits import LNbitsServer, Wallet
from dca_pipeline.payouts import (
    LNbitsAuthError,
    LNbitsClient,
    LNbitsResource,
    PaymentKind,
    PayOutcomeKind,
    sats_to_msat,
)

pytestmark = pytest.mark.lnbits


def payout_id() -> str:
    return f"run-{secrets.token_hex(4)}:client-{secrets.token_hex(2)}"


def test_invoice_and_pay_move_exactly_the_amount(
    lnbits_server: LNbitsServer, source_wallet: Wallet, recipient_wallet: Wallet
) -> None:
    resource = LNbitsResource(
        base_url=lnbits_server.url,
        source_admin_key=source_wallet.adminkey,
        source_invoice_key=source_wallet.inkey,
    )
    key = payout_id()
    with resource.client() as lnbits:
        invoice = lnbits.create_invoice(
            recipient_wallet.inkey, 1_234, "DCA: 1,234 sats", {"payout_id": key}, key
        )
        outcome = lnbits.pay_invoice(invoice.bolt11, {"payout_id": key}, key)

    assert outcome.kind is PayOutcomeKind.PAID
    assert outcome.payment_hash == invoice.payment_hash
    assert (outcome.amount_msat, outcome.fee_msat) == (1_234_000, 0)
    assert lnbits_server.balance_msat(recipient_wallet) == 1_234_000
    assert lnbits_server.balance_msat(source_wallet) == sats_to_msat(100_000 - 1_234)


def test_paying_the_same_invoice_twice_pays_once(
    lnbits_server: LNbitsServer,
    lnbits_client: LNbitsClient,
    source_wallet: Wallet,
    recipient_wallet: Wallet,
) -> None:
    key = payout_id()
    invoice = lnbits_client.create_invoice(recipient_wallet.inkey, 500, "twice", {}, key)

    first = lnbits_client.pay_invoice(invoice.bolt11, {}, key)
    second = lnbits_client.pay_invoice(invoice.bolt11, {}, key)

    assert first.kind is PayOutcomeKind.PAID
    assert second.kind is PayOutcomeKind.ALREADY_PAID
    assert second.settled and "already paid" in second.detail
    assert lnbits_server.balance_msat(recipient_wallet) == 500_000
    assert lnbits_server.balance_msat(source_wallet) == sats_to_msat(100_000 - 500)


def test_insufficient_balance_moves_nothing(
    lnbits_server: LNbitsServer, lnbits_client: LNbitsClient, recipient_wallet: Wallet
) -> None:
    key = payout_id()
    invoice = lnbits_client.create_invoice(recipient_wallet.inkey, 100_001, "too big", {}, key)

    outcome = lnbits_client.pay_invoice(invoice.bolt11, {}, key)

    assert outcome.kind is PayOutcomeKind.INSUFFICIENT_BALANCE
    assert outcome.http_status == 520
    assert lnbits_client.wallet_balance_msat() == sats_to_msat(100_000)
    assert lnbits_server.balance_msat(recipient_wallet) == 0
    assert lnbits_client.get_payment(invoice.payment_hash, recipient_wallet.inkey).kind is (
        PaymentKind.PENDING
    )


def test_unknown_and_wrong_keys_are_auth_errors_without_the_key(
    lnbits_server: LNbitsServer, source_wallet: Wallet, recipient_wallet: Wallet
) -> None:
    bogus_admin, bogus_invoice = secrets.token_hex(16), secrets.token_hex(16)
    key = payout_id()
    with LNbitsClient(lnbits_server.url, bogus_admin, bogus_invoice, backoff_s=0) as stranger:
        with pytest.raises(LNbitsAuthError) as balance_error:
            stranger.wallet_balance_msat()
        with pytest.raises(LNbitsAuthError) as create_error:
            stranger.create_invoice(bogus_invoice, 10, "x", {}, key)
        # This endpoint answers unknown keys like anonymous callers; the client must notice.
        with pytest.raises(LNbitsAuthError):
            stranger.get_payment("ab" * 32)
        with pytest.raises(LNbitsAuthError) as pay_error:
            stranger.pay_invoice("lnbc1fake", {}, key)
        # One request per call plus get_payment's key check: auth errors are not retried.
        assert stranger.requests_sent == 5

    # An invoice key configured as the admin key is caught before paying.
    with LNbitsClient(lnbits_server.url, source_wallet.inkey, source_wallet.inkey) as wrong:
        invoice = wrong.create_invoice(recipient_wallet.inkey, 10, "x", {}, key)
        with pytest.raises(LNbitsAuthError) as wrong_kind:
            wrong.pay_invoice(invoice.bolt11, {}, key)
    assert lnbits_server.balance_msat(source_wallet) == sats_to_msat(100_000)

    errors = [balance_error.value, create_error.value, pay_error.value, wrong_kind.value]
    assert "Wallet not found." in str(balance_error.value)
    for error in errors:
        for secret in (bogus_admin, bogus_invoice, source_wallet.inkey, source_wallet.adminkey):
            assert secret not in str(error) and secret not in repr(error)


def test_restart_between_invoice_and_pay_kills_the_invoice(
    lnbits_server: LNbitsServer,
    lnbits_client: LNbitsClient,
    source_wallet: Wallet,
    recipient_wallet: Wallet,
) -> None:
    key = payout_id()
    stale = lnbits_client.create_invoice(recipient_wallet.inkey, 700, "before restart", {}, key)

    lnbits_server.restart()  # FakeWallet forgets the invoice's secret
    dead = lnbits_client.pay_invoice(stale.bolt11, {}, key)

    assert dead.kind is PayOutcomeKind.INVOICE_DEAD
    assert lnbits_server.balance_msat(source_wallet) == sats_to_msat(100_000)
    assert lnbits_server.balance_msat(recipient_wallet) == 0
    assert lnbits_client.get_payment(stale.payment_hash, recipient_wallet.inkey).kind is (
        PaymentKind.FAILED
    )

    fresh = lnbits_client.create_invoice(recipient_wallet.inkey, 700, "after restart", {}, key)
    assert lnbits_client.pay_invoice(fresh.bolt11, {}, key).kind is PayOutcomeKind.PAID
    assert lnbits_server.balance_msat(recipient_wallet) == 700_000
    # Both invoices carry the key; the dead one is listed too (failed rows included).
    kinds = {
        row.payment_hash: row.kind
        for row in lnbits_client.find_payments_by_external_id(key, recipient_wallet.inkey)
    }
    assert kinds == {stale.payment_hash: PaymentKind.FAILED, fresh.payment_hash: PaymentKind.PAID}


def test_expired_invoice_answers_201_with_the_receivers_row_and_is_dead(
    lnbits_server: LNbitsServer,
    lnbits_client: LNbitsClient,
    source_wallet: Wallet,
    recipient_wallet: Wallet,
) -> None:
    key = payout_id()
    invoice = lnbits_client.create_invoice(recipient_wallet.inkey, 40, "expires", {}, key, 1)
    time.sleep(1.2)
    # The status check is what marks an expired invoice failed.
    expired = lnbits_client.get_payment(invoice.payment_hash, recipient_wallet.inkey)
    assert expired.kind is PaymentKind.FAILED

    outcome = lnbits_client.pay_invoice(invoice.bolt11, {}, key)

    assert outcome.kind is PayOutcomeKind.INVOICE_DEAD
    assert outcome.http_status == 201  # the trap: a 201 that paid nothing
    assert lnbits_server.balance_msat(source_wallet) == sats_to_msat(100_000)
    assert lnbits_server.balance_msat(recipient_wallet) == 0


def test_get_payment_and_find_by_external_id(
    lnbits_client: LNbitsClient, recipient_wallet: Wallet
) -> None:
    key = payout_id()
    invoice = lnbits_client.create_invoice(
        recipient_wallet.inkey, 321, "status", {"payout_id": key}, key
    )
    assert lnbits_client.get_payment(invoice.payment_hash, recipient_wallet.inkey).kind is (
        PaymentKind.PENDING
    )
    # The source wallet has no row for it yet.
    assert lnbits_client.get_payment(invoice.payment_hash).kind is PaymentKind.NOT_FOUND
    assert lnbits_client.get_payment(secrets.token_hex(32)).kind is PaymentKind.NOT_FOUND
    assert lnbits_client.find_payments_by_external_id(key) == []

    assert lnbits_client.pay_invoice(invoice.bolt11, {"payout_id": key}, key).settled

    paid_out = lnbits_client.get_payment(invoice.payment_hash)
    received = lnbits_client.get_payment(invoice.payment_hash, recipient_wallet.inkey)
    assert (paid_out.kind, paid_out.amount_msat, paid_out.external_id) == (
        PaymentKind.PAID,
        -321_000,
        key,
    )
    assert paid_out.outgoing and paid_out.extra["payout_id"] == key
    assert (received.kind, received.amount_msat) == (PaymentKind.PAID, 321_000)
    assert received.extra["payout_id"] == key

    [ours] = lnbits_client.find_payments_by_external_id(key)
    assert (ours.payment_hash, ours.kind, ours.amount_msat) == (
        invoice.payment_hash,
        PaymentKind.PAID,
        -321_000,
    )
    assert lnbits_client.find_payments_by_external_id(payout_id()) == []


def test_invalid_amounts_and_ids_are_refused_before_any_request(
    lnbits_client: LNbitsClient, recipient_wallet: Wallet
) -> None:
    key = payout_id()
    bad_calls = [
        lambda: lnbits_client.create_invoice(recipient_wallet.inkey, 0, "zero", {}, key),
        lambda: lnbits_client.create_invoice(recipient_wallet.inkey, -5, "neg", {}, key),
        lambda: lnbits_client.create_invoice(recipient_wallet.inkey, 1.5, "f", {}, key),  # type: ignore[arg-type]
        lambda: lnbits_client.create_invoice(recipient_wallet.inkey, True, "b", {}, key),
        lambda: lnbits_client.create_invoice(recipient_wallet.inkey, 5, "m" * 640, {}, key),
        lambda: lnbits_client.create_invoice(recipient_wallet.inkey, 5, "é" * 320, {}, key),
        lambda: lnbits_client.create_invoice(recipient_wallet.inkey, 5, "x", {}, "has space"),
        lambda: lnbits_client.create_invoice(recipient_wallet.inkey, 5, "x", {}, "k" * 257),
        lambda: lnbits_client.create_invoice(recipient_wallet.inkey, 5, "x", {}, ""),
        lambda: lnbits_client.pay_invoice("lnbc1x", {}, "new\nline"),
    ]
    for call in bad_calls:
        with pytest.raises((ValueError, TypeError)):
            call()
    assert lnbits_client.requests_sent == 0
    # The limits themselves are accepted by LNbits (639 bytes is bolt11's description limit).
    invoice = lnbits_client.create_invoice(
        recipient_wallet.inkey, 1, "m" * 637 + "é", {}, "k" * 256
    )
    assert invoice.amount_msat == 1_000


def test_keys_stay_out_of_repr_and_http_logs(
    lnbits_server: LNbitsServer,
    source_wallet: Wallet,
    recipient_wallet: Wallet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    resource = LNbitsResource(
        base_url=lnbits_server.url,
        source_admin_key=source_wallet.adminkey,
        source_invoice_key=source_wallet.inkey,
    )
    secrets_ = (source_wallet.adminkey, source_wallet.inkey, recipient_wallet.inkey)
    key = payout_id()
    with caplog.at_level(logging.DEBUG), resource.client() as lnbits:
        invoice = lnbits.create_invoice(recipient_wallet.inkey, 3, "log check", {}, key)
        lnbits.pay_invoice(invoice.bolt11, {}, key)
        lnbits.get_payment(invoice.payment_hash)
        client_repr = repr(lnbits)
    assert any("HTTP Request" in record.getMessage() for record in caplog.records)
    shown = "\n".join([caplog.text, repr(resource), str(resource), client_repr])
    shown += repr(source_wallet) + repr(lnbits_server)
    for secret in secrets_:
        assert secret not in shown


def test_resource_reads_keys_from_env_vars_in_dagster(
    lnbits_server: LNbitsServer,
    source_wallet: Wallet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DCA_LNBITS_SOURCE_ADMIN_KEY", source_wallet.adminkey)
    monkeypatch.setenv("DCA_LNBITS_SOURCE_INVOICE_KEY", source_wallet.inkey)

    @dg.asset
    def source_balance(lnbits: LNbitsResource) -> int:
        with lnbits.client() as client:
            return client.wallet_balance_msat()

    result = dg.materialize(
        [source_balance],
        resources={
            "lnbits": LNbitsResource(
                base_url=lnbits_server.url,
                source_admin_key=dg.EnvVar("DCA_LNBITS_SOURCE_ADMIN_KEY"),
                source_invoice_key=dg.EnvVar("DCA_LNBITS_SOURCE_INVOICE_KEY"),
            )
        },
    )
    assert result.success
    assert result.output_for_node("source_balance") == sats_to_msat(100_000)
