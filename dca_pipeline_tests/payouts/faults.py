"""Faults a real LNbits cannot be made to produce on demand, injected in front of the REAL one.

:class:`FaultyLNbits` is an httpx transport: every request goes to the real LNbits (FakeWallet)
unless a fault is armed for it, and every request is recorded. Faults are armed per recipient
wallet (the wallet an invoice was made on), so a test can hit one payout of a run whatever the
order the run pays them in:

- ``pending``: the pay goes through, but the answer says "pending";
- ``pending_unsent``: the pay never reaches LNbits; the answer says "pending";
- ``timeout``: the pay goes through, then the connection times out (no answer);
- ``timeout_unsent``: the connection times out after sending, before LNbits processed it;
- ``refused_after_paying``: the pay goes through, the answer is a 520 refusal;
- ``refused``: LNbits refuses (520) and nothing moves.

``pending_hashes``: rows of these payment hashes read "pending" (a payment still in flight),
by hash on the source wallet and in payment lists, whatever LNbits really holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from dca_pipeline.demo.lnbits import Wallet

PAYMENTS = "/api/v1/payments"
FAULTS = (
    "pending",
    "pending_unsent",
    "timeout",
    "timeout_unsent",
    "refused_after_paying",
    "refused",
)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    out: bool | None  # the "out" flag of a POST /api/v1/payments (False: an invoice)
    external_id: str | None


@dataclass
class _Invoice:
    payment_hash: str
    wallet_id: str
    amount_msat: int


@dataclass
class FaultyLNbits(httpx.BaseTransport):
    source: Wallet
    faults: dict[str, list[str]] = field(default_factory=dict)  # recipient wallet -> faults
    pending_hashes: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)
    invoices: dict[str, _Invoice] = field(default_factory=dict)  # bolt11 -> invoice
    inner: httpx.BaseTransport = field(default_factory=httpx.HTTPTransport)

    def arm(self, wallet: Wallet, *faults: str) -> None:
        assert all(fault in FAULTS for fault in faults), faults
        self.faults.setdefault(wallet.id, []).extend(faults)

    def hash_of(self, bolt11: str) -> str:
        return self.invoices[bolt11].payment_hash

    def invoices_created(self, external_id: str | None = None) -> int:
        return sum(
            1 for seen in self.seen if seen.out is False and external_id in (None, seen.external_id)
        )

    def requests_about(self, payment_hash: str) -> list[Seen]:
        return [seen for seen in self.seen if payment_hash in seen.path]

    # ----------------------------------------------------------------- transport
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = _json(request.content)
        out = body.get("out") if request.method == "POST" and request.url.path == PAYMENTS else None
        self.seen.append(
            Seen(request.method, request.url.path, out, body.get("external_id") or None)
        )
        if out is True:
            return self._pay(request, body)
        hash_ = request.url.path.removeprefix(PAYMENTS + "/")
        if (
            request.method == "GET"
            and request.url.path.startswith(PAYMENTS + "/")
            and hash_ in self.pending_hashes
            and request.headers.get("X-Api-Key") in (self.source.inkey, self.source.adminkey)
        ):
            return self._pending_status(request, hash_)
        response = self._forward(request)
        if request.url.path == PAYMENTS + "/paginated" and self.pending_hashes:
            page = _json(response.content)
            rows = [
                row | {"status": "pending"}
                if row.get("payment_hash") in self.pending_hashes
                else row
                for row in page.get("data", [])
            ]
            return _answer(response.status_code, page | {"data": rows}, request)
        if out is False and response.status_code == 201:
            row = _json(response.content)
            self.invoices[row["bolt11"]] = _Invoice(
                row["payment_hash"], row["wallet_id"], int(row["amount"])
            )
        return response

    def _pay(self, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        invoice = self.invoices.get(body.get("bolt11", ""))
        armed = self.faults.get(invoice.wallet_id, []) if invoice else []
        if not armed:
            return self._forward(request)
        fault = armed.pop(0)
        assert invoice is not None
        if fault in ("pending", "timeout", "refused_after_paying"):
            response = self._forward(request)
            assert response.status_code == 201, response.content  # it really paid
            if fault == "timeout":
                raise httpx.ReadTimeout("injected: answer lost after the pay", request=request)
            if fault == "pending":
                row = _json(response.content) | {"status": "pending"}
                return _answer(201, row, request)
        if fault == "timeout_unsent":
            raise httpx.ReadTimeout("injected: no answer, not processed", request=request)
        if fault == "pending_unsent":
            return _answer(201, self._source_row(invoice, body), request)
        detail = "Payment failed: injected refusal"
        return _answer(520, {"detail": detail, "status": "failed"}, request)

    def _pending_status(self, request: httpx.Request, payment_hash: str) -> httpx.Response:
        response = self._forward(request)
        real = _json(response.content)
        details = real.get("details") if response.status_code == 200 else None
        if not isinstance(details, dict):
            invoice = next(i for i in self.invoices.values() if i.payment_hash == payment_hash)
            details = self._source_row(invoice, {})
        return _answer(
            200,
            {"paid": False, "status": "pending", "details": details | {"status": "pending"}},
            request,
        )

    def _source_row(self, invoice: _Invoice, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "checking_id": f"internal_{invoice.payment_hash}",
            "payment_hash": invoice.payment_hash,
            "wallet_id": self.source.id,
            "amount": -invoice.amount_msat,
            "fee": 0,
            "bolt11": body.get("bolt11", ""),
            "status": "pending",
            "memo": "",
            "extra": body.get("extra", {}),
            "external_id": body.get("external_id"),
        }

    def _forward(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        content = response.read()
        response.close()
        return httpx.Response(
            response.status_code,
            headers={"content-type": response.headers.get("content-type", "application/json")},
            content=content,
            request=request,
        )

    def close(self) -> None:
        self.inner.close()


def _json(content: bytes) -> dict[str, Any]:
    try:
        value = json.loads(content or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _answer(status: int, body: object, request: httpx.Request) -> httpx.Response:
    return httpx.Response(status, json=body, request=request)
