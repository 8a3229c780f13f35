"""Faults a real LNbits cannot be made to produce on demand, injected with httpx.MockTransport.

The bodies are copies of what LNbits 1.6.2 answered in the research runs (lnbits.md §6-§7).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from dca_pipeline.payouts import (
    LNbitsAuthError,
    LNbitsClient,
    LNbitsPaymentUnknown,
    LNbitsProtocolError,
    LNbitsRequestError,
    LNbitsResource,
    LNbitsUnavailable,
    PaymentKind,
    PayOutcomeKind,
    msat_to_sats_exact,
    sats_to_msat,
)

ADMIN_KEY = "a" * 31 + "1"
INVOICE_KEY = "b" * 31 + "2"
RECIPIENT_KEY = "c" * 31 + "3"
OUR_WALLET = "w-source"
HASH = "f" * 64
BOLT11 = "lnbc5u1pfake"

Handler = Callable[[httpx.Request], httpx.Response]


def paid_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "checking_id": f"internal_{HASH}",
        "payment_hash": HASH,
        "wallet_id": OUR_WALLET,
        "amount": -500_000,
        "fee": 0,
        "bolt11": BOLT11,
        "status": "success",
        "memo": "DCA",
        "extra": {"payout_id": "p-1"},
        "external_id": "p-1",
    }
    row.update(overrides)
    return row


class FakeLNbits:
    """Answers the wallet-id lookup itself and hands every other request to ``script``."""

    def __init__(self, *script: Handler | Exception) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        is_wallet_lookup = request.method == "GET" and request.url.path == "/api/v1/wallet"
        if is_wallet_lookup and request.headers["X-Api-Key"] == ADMIN_KEY:
            return httpx.Response(200, json={"id": OUR_WALLET, "name": "s", "balance": 7_000})
        self.requests.append(request)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step(request)


def answer(status: int, body: object) -> Handler:
    return lambda request: httpx.Response(status, json=body)


def client_for(fake: FakeLNbits, sleeps: list[float], max_attempts: int = 4) -> LNbitsClient:
    return LNbitsClient(
        "http://lnbits.invalid",
        ADMIN_KEY,
        INVOICE_KEY,
        max_attempts=max_attempts,
        backoff_s=0.5,
        transport=httpx.MockTransport(fake),
        sleep=sleeps.append,
    )


def test_503_then_success_is_retried_with_backoff() -> None:
    fake = FakeLNbits(answer(503, {"detail": "busy"}), answer(201, paid_row()))
    sleeps: list[float] = []
    with client_for(fake, sleeps) as lnbits:
        outcome = lnbits.pay_invoice(BOLT11, {"payout_id": "p-1"}, "p-1")
    assert outcome.kind is PayOutcomeKind.PAID
    assert (outcome.amount_msat, outcome.payment_hash) == (500_000, HASH)
    assert len(fake.requests) == 2 and sleeps == [0.5]
    assert json.loads(fake.requests[1].content) == {
        "out": True,
        "bolt11": BOLT11,
        "extra": {"payout_id": "p-1"},
        "external_id": "p-1",
    }


@pytest.mark.parametrize(
    "fault",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.WriteError("broken pipe"),
        answer(500, {"detail": "Internal Server Error"}),
        answer(502, {"detail": "Bad Gateway"}),
        answer(504, {"detail": "Gateway Timeout"}),
    ],
    ids=["read-timeout", "dropped", "write-error", "500", "502", "504"],
)
def test_a_pay_that_may_have_reached_lnbits_is_never_resent(fault: Handler | Exception) -> None:
    # The request may have gone through with its answer lost: the outcome is unknown, and the
    # caller asks LNbits by payment hash (a resend's answer would not say who paid).
    fake = FakeLNbits(fault, answer(201, paid_row()))
    with client_for(fake, []) as lnbits, pytest.raises(LNbitsPaymentUnknown) as unknown:
        lnbits.pay_invoice(BOLT11, {}, "p-1")
    assert len(fake.requests) == 1 and isinstance(unknown.value, LNbitsUnavailable)
    assert "outcome unknown" in str(unknown.value)


def test_a_pay_that_never_left_is_resent() -> None:
    fake = FakeLNbits(
        httpx.ConnectError("refused"),
        answer(429, {"error": "Rate limit exceeded: 200 per 1 minute"}),
        answer(503, {"detail": "Service Unavailable"}),
        answer(201, paid_row()),
    )
    with client_for(fake, []) as lnbits:
        assert lnbits.pay_invoice(BOLT11, {}, "p-1").kind is PayOutcomeKind.PAID
    assert len(fake.requests) == 4


def test_a_pending_answer_is_pending_not_a_refusal() -> None:
    fake = FakeLNbits(answer(201, paid_row(status="pending")))
    with client_for(fake, []) as lnbits:
        outcome = lnbits.pay_invoice(BOLT11, {}, "p-1")
    assert outcome.kind is PayOutcomeKind.PENDING and not outcome.settled
    assert outcome.payment_hash == HASH


def test_connection_errors_exhaust_attempts() -> None:
    fake = FakeLNbits(*[httpx.ConnectError("refused") for _ in range(4)])
    sleeps: list[float] = []
    with client_for(fake, sleeps) as lnbits, pytest.raises(LNbitsUnavailable) as error:
        lnbits.get_payment(HASH)
    assert len(fake.requests) == 4
    assert sleeps == [0.5, 1.0, 2.0]
    assert "ConnectError" in str(error.value)


def test_429_and_503_are_retried_but_520_is_an_answer() -> None:
    fake = FakeLNbits(
        answer(429, {"error": "Rate limit exceeded: 200 per 1 minute"}),
        answer(503, {"detail": "Service Unavailable"}),
        answer(520, {"detail": "Bolt11 decoding failed.", "status": "failed"}),
    )
    with client_for(fake, []) as lnbits:
        outcome = lnbits.pay_invoice(BOLT11, {}, "p-1")
    assert (outcome.kind, outcome.detail) == (PayOutcomeKind.REJECTED, "Bolt11 decoding failed.")
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    ("row", "why"),
    [
        (paid_row(status="failed", amount=500_000, wallet_id="w-recipient"), "receiver failed row"),
        (paid_row(amount=500_000, wallet_id="w-recipient"), "receiver's row, success"),
        (paid_row(wallet_id="w-someone-else"), "another payer's row"),
        (paid_row(status="failed"), "our row, failed"),
    ],
)
def test_201_that_is_not_our_successful_payment_is_dead(row: dict[str, object], why: str) -> None:
    fake = FakeLNbits(answer(201, row))
    with client_for(fake, []) as lnbits:
        outcome = lnbits.pay_invoice(BOLT11, {}, "p-1")
    assert outcome.kind is PayOutcomeKind.INVOICE_DEAD, why
    assert outcome.http_status == 201 and not outcome.settled


@pytest.mark.parametrize(
    ("detail", "kind"),
    [
        ("Internal invoice already paid.", PayOutcomeKind.ALREADY_PAID),
        ("Payment already paid.", PayOutcomeKind.ALREADY_PAID),
        ("Insufficient balance.", PayOutcomeKind.INSUFFICIENT_BALANCE),
        ("Payment is failed node, retrying is not possible.", PayOutcomeKind.INVOICE_DEAD),
        ("Payment failed: Only internal invoices can be used!", PayOutcomeKind.REJECTED),
    ],
)
def test_520_details_map_to_outcomes(detail: str, kind: PayOutcomeKind) -> None:
    fake = FakeLNbits(answer(520, {"detail": detail, "status": "failed"}))
    with client_for(fake, []) as lnbits:
        assert lnbits.pay_invoice(BOLT11, {}, "p-1").kind is kind


def test_403_and_401_are_auth_errors_and_not_retried() -> None:
    fake = FakeLNbits(
        answer(403, {"detail": "Invoice (or Admin) key required."}),
        answer(401, {"detail": "No Api Key provided."}),
    )
    with client_for(fake, []) as lnbits:
        with pytest.raises(LNbitsAuthError):
            lnbits.pay_invoice(BOLT11, {}, "p-1")
        with pytest.raises(LNbitsAuthError):
            lnbits.find_payments_by_external_id("p-1")
    assert len(fake.requests) == 2


def test_create_invoice_refusal_and_unexpected_amount() -> None:
    fake = FakeLNbits(
        answer(520, {"detail": "Invoice amount 20000000 sats is too high.", "status": "failed"}),
        answer(201, {**paid_row(amount=1_000, status="pending"), "checking_id": HASH}),
    )
    with client_for(fake, []) as lnbits:
        with pytest.raises(LNbitsRequestError) as refused:
            lnbits.create_invoice(RECIPIENT_KEY, 20_000_000, "x", {}, "p-1")
        with pytest.raises(LNbitsProtocolError):
            lnbits.create_invoice(RECIPIENT_KEY, 2, "x", {}, "p-1")  # answered 1 sat
    assert refused.value.status_code == 520 and "too high" in refused.value.detail
    assert fake.requests[0].headers["X-Api-Key"] == RECIPIENT_KEY


def test_find_by_external_id_pages_and_drops_foreign_rows() -> None:
    page_one = {"data": [paid_row(external_id="p-1")] * 100, "total": 101}
    page_two = {"data": [paid_row(status="failed"), paid_row(external_id="other")], "total": 101}
    fake = FakeLNbits(answer(200, page_one), answer(200, page_two))
    with client_for(fake, []) as lnbits:
        rows = lnbits.find_payments_by_external_id("p-1")
    assert len(rows) == 101 and rows[-1].kind is PaymentKind.FAILED
    assert [dict(request.url.params)["offset"] for request in fake.requests] == ["0", "100"]


def test_non_integer_amounts_are_protocol_errors() -> None:
    fake = FakeLNbits(answer(200, {"paid": True, "details": paid_row(amount=-500_000.0)}))
    with client_for(fake, []) as lnbits, pytest.raises(LNbitsProtocolError):
        lnbits.get_payment(HASH)


def test_msat_conversions_are_exact() -> None:
    assert sats_to_msat(1_234) == 1_234_000
    assert msat_to_sats_exact(-1_234_000) == -1_234
    with pytest.raises(ValueError):
        msat_to_sats_exact(1_234_001)
    with pytest.raises(TypeError):
        sats_to_msat(1.0)  # type: ignore[arg-type]


def test_keys_never_appear_in_reprs_or_errors() -> None:
    resource = LNbitsResource(
        base_url="http://lnbits.invalid", source_admin_key=ADMIN_KEY, source_invoice_key=INVOICE_KEY
    )
    assert "lnbits.invalid" in repr(resource)
    fake = FakeLNbits(
        httpx.ConnectError(f"boom {ADMIN_KEY}"),  # even a chatty transport error is not echoed
        answer(404, {"detail": "Wallet not found."}),
    )
    with client_for(fake, [], max_attempts=1) as lnbits:
        shown = [repr(resource), str(resource), repr(lnbits)]
        for call in (lambda: lnbits.wallet_balance_msat(), lambda: lnbits.wallet_balance_msat()):
            with pytest.raises((LNbitsUnavailable, LNbitsAuthError)) as error:
                call()
            shown += [str(error.value), repr(error.value)]
    for text in shown:
        assert ADMIN_KEY not in text and INVOICE_KEY not in text
