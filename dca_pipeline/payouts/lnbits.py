"""Typed LNbits client for payouts (LNbits 1.6.x REST API, see docs/reference lnbits.md).

Every call returns a typed outcome or raises one of the ``LNbits*`` errors below; nothing hands
raw JSON to the payout job. Amounts: requests are in sats, responses in msat, converted with
integer arithmetic only.

Secrets: the wallet keys travel only in the ``X-Api-Key`` header (never in a URL, so httpx's
request log lines cannot show them), are excluded from ``repr`` of the resource and the client,
and never appear in exception text (errors carry method, path, status and LNbits' ``detail``).

Retries: connection errors, timeouts, 429 and 5xx other than 520 (LNbits' "payment error"
status) are retried with bounded exponential backoff, then :class:`LNbitsUnavailable`.
A *pay* is resent only when LNbits cannot have seen it (the connection was never made, 429, or
503). Once the request may have reached LNbits (a timeout or a dropped connection after sending,
500/502/504), its outcome is unknown: :class:`LNbitsPaymentUnknown`, never a guess. The caller
keeps the payout in flight and asks LNbits about the payment hash later. (Resending the same
bolt11 could not pay twice, since an internal invoice is paid at most once, but the answer to a
resend while the first request is still being processed does not say who paid.) ALREADY_PAID
alone does not prove that *our* wallet paid: confirm with :meth:`LNbitsClient.get_payment` on
the source wallet. A retried *create_invoice* may leave an extra pending invoice on the
recipient's wallet; nobody pays it and it expires.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

MSAT_PER_SAT = 1000
# LNbits accepts 640 characters, but a bolt11 description field holds at most 1023 5-bit
# words = 639 bytes; a longer memo fails inside LNbits with a 400 about "bitstring".
MAX_MEMO_BYTES = 639
MAX_EXTERNAL_ID_CHARS = 256  # LNbits' external_id limit
LNBITS_PAYMENT_ERROR_STATUS = 520
PAGE_SIZE = 100
#: Transport errors raised before the request left this process: safe to resend a pay.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Answers of a server (or proxy) that did not process the request: safe to resend a pay.
_NOT_PROCESSED_STATUSES = frozenset({429, 503})


def sats_to_msat(sats: int) -> int:
    return _require_int(sats, "sats") * MSAT_PER_SAT


def msat_to_sats_exact(msat: int) -> int:
    """Whole sats of an msat amount; an amount with a sub-sat part is an error, not rounded."""
    sats, remainder = divmod(_require_int(msat, "msat"), MSAT_PER_SAT)
    if remainder:
        raise ValueError(f"{msat} msat is not a whole number of sats")
    return sats


def _require_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- errors
class LNbitsError(Exception):
    """Base of every error of this client. The text never contains a wallet key."""


class LNbitsAuthError(LNbitsError):
    """The key is unknown (LNbits answers 404 "Wallet not found."), missing (401) or of the
    wrong kind (403, e.g. paying with an invoice key). Retrying cannot help."""


class LNbitsUnavailable(LNbitsError):
    """LNbits did not answer usably within ``max_attempts`` (connection errors, timeouts,
    429, 5xx). The outcome of a pay attempt is unknown: look it up before paying again."""


class LNbitsPaymentUnknown(LNbitsUnavailable):
    """A pay request may have reached LNbits, but no usable answer came back (a timeout or a
    dropped connection after sending, 500/502/504). The money may or may not have moved: ask
    LNbits by payment hash before doing anything else with this payout. Never resent."""


class LNbitsRequestError(LNbitsError):
    """LNbits refused a request (400/520 and other 4xx) outside the typed pay outcomes."""

    def __init__(self, message: str, status_code: int, detail: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class LNbitsProtocolError(LNbitsError):
    """An answer that does not have the shape LNbits 1.6 documents (wrong version? proxy?)."""


# --------------------------------------------------------------------------- outcomes
@dataclass(frozen=True)
class Invoice:
    payment_hash: str
    bolt11: str
    checking_id: str
    external_id: str
    amount_msat: int
    #: The wallet LNbits made the invoice on (the key's wallet): checked against the ledger's.
    wallet_id: str | None = None


class PayOutcomeKind(enum.Enum):
    PAID = "paid"  # this call moved the money from our wallet
    PENDING = "pending"  # our payment exists but is not settled: in flight, ask again later
    ALREADY_PAID = "already_paid"  # the invoice was paid before (maybe by an earlier attempt)
    INSUFFICIENT_BALANCE = "insufficient_balance"  # nothing moved
    INVOICE_DEAD = "invoice_dead"  # expired or lost by an LNbits restart: make a new invoice
    REJECTED = "rejected"  # any other refusal; see ``detail``


@dataclass(frozen=True)
class PayOutcome:
    kind: PayOutcomeKind
    detail: str = ""
    http_status: int = 0
    payment_hash: str | None = None
    checking_id: str | None = None
    amount_msat: int = 0  # paid amount, positive; 0 unless PAID
    fee_msat: int = 0  # positive; internal payments have fee 0

    @property
    def settled(self) -> bool:
        """The invoice is paid (now or before); the caller confirms who paid via get_payment."""
        return self.kind in (PayOutcomeKind.PAID, PayOutcomeKind.ALREADY_PAID)


class PaymentKind(enum.Enum):
    PAID = "paid"
    PENDING = "pending"
    FAILED = "failed"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class PaymentStatus:
    """One payment row as seen by the wallet whose key asked (payer: negative amount)."""

    kind: PaymentKind
    payment_hash: str
    amount_msat: int = 0  # signed: negative = outgoing from the asking wallet
    fee_msat: int = 0
    checking_id: str | None = None
    wallet_id: str | None = None
    external_id: str | None = None
    memo: str = ""
    bolt11: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    time: str = ""  # LNbits' ISO timestamp of the row

    @property
    def outgoing(self) -> bool:
        return self.amount_msat < 0


_STATE_TO_KIND = {
    "success": PaymentKind.PAID,
    "pending": PaymentKind.PENDING,
    "failed": PaymentKind.FAILED,
}


# --------------------------------------------------------------------------- helpers
def _detail_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        value = body.get("detail", body.get("error", ""))
        return str(value)[:500]
    return str(body)[:200]


def _validate_external_id(external_id: str) -> str:
    if not isinstance(external_id, str) or not external_id:
        raise ValueError("external_id must be a non-empty string")
    if len(external_id) > MAX_EXTERNAL_ID_CHARS:
        raise ValueError(f"external_id longer than {MAX_EXTERNAL_ID_CHARS} characters")
    if any(ch.isspace() for ch in external_id):
        raise ValueError("external_id must not contain whitespace")
    return external_id


def _int_field(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise LNbitsProtocolError(f"LNbits payment field {name!r} is not an integer")
    return value


def _str_field(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise LNbitsProtocolError(f"LNbits payment field {name!r} is missing")
    return value


def _payment_status(row: Mapping[str, Any]) -> PaymentStatus:
    state = row.get("status")
    kind = _STATE_TO_KIND.get(state) if isinstance(state, str) else None
    if kind is None:
        raise LNbitsProtocolError(f"unknown LNbits payment status {state!r}")
    extra = row.get("extra")
    return PaymentStatus(
        kind=kind,
        payment_hash=_str_field(row, "payment_hash"),
        amount_msat=_int_field(row, "amount"),
        fee_msat=abs(_int_field(row, "fee")),
        checking_id=row.get("checking_id"),
        wallet_id=row.get("wallet_id"),
        external_id=row.get("external_id"),
        memo=row.get("memo") or "",
        bolt11=row.get("bolt11") or "",
        extra=dict(extra) if isinstance(extra, Mapping) else {},
        time=str(row.get("time") or ""),
    )


# --------------------------------------------------------------------------- client
class LNbitsClient:
    """One keep-alive ``httpx.Client`` to LNbits; close it (or use ``with``)."""

    def __init__(
        self,
        base_url: str,
        source_admin_key: str,
        source_invoice_key: str,
        *,
        timeout_s: float = 10.0,  # float-ok: seconds
        max_attempts: int = 4,
        backoff_s: float = 0.5,  # float-ok: seconds
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,  # float-ok: seconds
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not source_admin_key or not source_invoice_key:
            raise ValueError("the source wallet's admin key and invoice key are required")
        self._admin_key = source_admin_key
        self._invoice_key = source_invoice_key
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._source_wallet_id: str | None = None
        self._verified_keys: set[str] = set()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )
        #: HTTP requests sent, retries included (benches and tests read it).
        self.requests_sent = 0

    def __repr__(self) -> str:
        return f"LNbitsClient(base_url={str(self._http.base_url)!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- transport
    def _send(
        self,
        method: str,
        path: str,
        key: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        resend_after_sending: bool = True,
    ) -> httpx.Response:
        """Send with retries; return the first non-retryable response.

        Auth failures raise here for every endpoint; 404 "Wallet not found." is LNbits' answer
        to an unknown key (its other 404s, e.g. "Payment does not exist.", are returned).
        With ``resend_after_sending=False`` (a pay), a request LNbits may have received is
        never resent: :class:`LNbitsPaymentUnknown` instead.
        """
        last_problem = ""
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                self._sleep(self._backoff_s * (2 ** (attempt - 2)))
            self.requests_sent += 1
            try:
                response = self._http.request(
                    method, path, json=json, params=params, headers={"X-Api-Key": key}
                )
            except httpx.TransportError as exc:
                # The class name only: some transport errors quote the request.
                last_problem = type(exc).__name__
                if not resend_after_sending and not isinstance(exc, _NOT_SENT_ERRORS):
                    raise LNbitsPaymentUnknown(
                        f"{method} {path}: sent, no answer ({last_problem}); outcome unknown"
                    ) from None
                continue
            status = response.status_code
            if status == 429 or (status >= 500 and status != LNBITS_PAYMENT_ERROR_STATUS):
                last_problem = f"HTTP {status}"
                if not resend_after_sending and status not in _NOT_PROCESSED_STATUSES:
                    raise LNbitsPaymentUnknown(
                        f"{method} {path}: sent, answered {status}; outcome unknown"
                    )
                continue
            detail = _detail_of(response)
            if status in (401, 403) or (status == 404 and detail == "Wallet not found."):
                raise LNbitsAuthError(f"{method} {path} -> {status}: {detail}")
            if 300 <= status < 400:
                raise LNbitsProtocolError(
                    f"{method} {path} -> unexpected redirect {status} (LNbits not set up?)"
                )
            return response
        raise LNbitsUnavailable(
            f"{method} {path}: no usable answer after {self._max_attempts} attempts "
            f"(last: {last_problem})"
        )

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise LNbitsProtocolError(
                f"{response.request.method} {response.request.url.path} -> "
                f"{response.status_code}: body is not JSON"
            ) from exc

    def _refused(self, response: httpx.Response) -> LNbitsRequestError:
        detail = _detail_of(response)
        request = response.request
        return LNbitsRequestError(
            f"{request.method} {request.url.path} -> {response.status_code}: {detail}",
            response.status_code,
            detail,
        )

    # ---------------------------------------------------------------- wallet
    def wallet_balance_msat(self, key: str | None = None) -> int:
        """Balance in msat of the key's wallet (default: the source wallet)."""
        response = self._send("GET", "/api/v1/wallet", key or self._invoice_key)
        if response.status_code != 200:
            raise self._refused(response)
        return _int_field(self._json(response), "balance")

    def source_wallet_id(self) -> str:
        """The source wallet's id (read once with the admin key, which is what returns it)."""
        if self._source_wallet_id is None:
            response = self._send("GET", "/api/v1/wallet", self._admin_key)
            if response.status_code != 200:
                raise self._refused(response)
            wallet_id = self._json(response).get("id")
            if not isinstance(wallet_id, str) or not wallet_id:
                # LNbits returns the id only to the admin key.
                raise LNbitsAuthError("source_admin_key is not an admin key of its wallet")
            self._source_wallet_id = wallet_id
        return self._source_wallet_id

    # ---------------------------------------------------------------- receive
    def create_invoice(
        self,
        recipient_invoice_key: str,
        sats: int,
        memo: str,
        extra: Mapping[str, Any],
        external_id: str,
        expiry_s: int = 3600,
    ) -> Invoice:
        """An invoice for ``sats`` on the recipient's wallet (its invoice key)."""
        if _require_int(sats, "sats") <= 0:
            raise ValueError(f"refusing an invoice for {sats} sats: payouts must be positive")
        if len(memo.encode("utf-8")) > MAX_MEMO_BYTES:
            raise ValueError(f"memo longer than {MAX_MEMO_BYTES} bytes (UTF-8)")
        if _require_int(expiry_s, "expiry_s") <= 0:
            raise ValueError("expiry_s must be positive")
        _validate_external_id(external_id)
        response = self._send(
            "POST",
            "/api/v1/payments",
            recipient_invoice_key,
            json={
                "out": False,
                "amount": sats,
                "unit": "sat",
                "memo": memo,
                "extra": dict(extra),
                "external_id": external_id,
                "expiry": expiry_s,
            },
        )
        if response.status_code != 201:
            raise self._refused(response)
        body = self._json(response)
        amount_msat = _int_field(body, "amount")
        if amount_msat != sats_to_msat(sats) or body.get("status") != "pending":
            raise LNbitsProtocolError(
                f"LNbits created an invoice of {amount_msat} msat, status "
                f"{body.get('status')!r}; asked for {sats} sats"
            )
        return Invoice(
            payment_hash=_str_field(body, "payment_hash"),
            bolt11=_str_field(body, "bolt11"),
            checking_id=_str_field(body, "checking_id"),
            external_id=external_id,
            amount_msat=amount_msat,
            wallet_id=body.get("wallet_id") if isinstance(body.get("wallet_id"), str) else None,
        )

    # ---------------------------------------------------------------- pay
    def pay_invoice(self, bolt11: str, extra: Mapping[str, Any], external_id: str) -> PayOutcome:
        """Pay ``bolt11`` from the source wallet. Raises :class:`LNbitsPaymentUnknown` when the
        request may have reached LNbits without an answer (see module docstring)."""
        if not bolt11:
            raise ValueError("bolt11 is empty")
        _validate_external_id(external_id)
        our_wallet = self.source_wallet_id()
        response = self._send(
            "POST",
            "/api/v1/payments",
            self._admin_key,
            json={"out": True, "bolt11": bolt11, "extra": dict(extra), "external_id": external_id},
            resend_after_sending=False,
        )
        status = response.status_code
        if status == 201:
            return self._classify_paid_body(self._json(response), our_wallet)
        if status in (400, LNBITS_PAYMENT_ERROR_STATUS):
            return _classify_refusal(status, _detail_of(response))
        raise self._refused(response)

    @staticmethod
    def _classify_paid_body(body: Any, our_wallet: str) -> PayOutcome:
        # A 201 is not proof of payment: paying an invoice LNbits already marked failed
        # answers 201 with the *receiver's* failed row (positive amount, other wallet).
        if not isinstance(body, Mapping):
            raise LNbitsProtocolError("pay answer is not a JSON object")
        row = _payment_status(body)
        if row.kind is PaymentKind.PAID and row.outgoing and row.wallet_id == our_wallet:
            return PayOutcome(
                kind=PayOutcomeKind.PAID,
                http_status=201,
                payment_hash=row.payment_hash,
                checking_id=row.checking_id,
                amount_msat=-row.amount_msat,
                fee_msat=row.fee_msat,
            )
        if row.kind is PaymentKind.PENDING and row.outgoing and row.wallet_id == our_wallet:
            # Neither paid nor a definite "not paid": the payment is in flight.
            return PayOutcome(
                kind=PayOutcomeKind.PENDING,
                detail="LNbits answered: payment pending",
                http_status=201,
                payment_hash=row.payment_hash,
                checking_id=row.checking_id,
            )
        return PayOutcome(
            kind=PayOutcomeKind.INVOICE_DEAD,
            detail=f"LNbits answered 201 with a {row.kind.value} row that is not our payment",
            http_status=201,
            payment_hash=row.payment_hash,
        )

    # ---------------------------------------------------------------- read
    def get_payment(self, payment_hash: str, key: str | None = None) -> PaymentStatus:
        """The row of ``payment_hash`` in the key's wallet (default: the source wallet).

        LNbits checks a pending invoice on this call and marks it failed once expired. A hash
        that exists only in *another* wallet reads as NOT_FOUND here.
        """
        if not payment_hash or "/" in payment_hash:
            raise ValueError("payment_hash must be a non-empty hash")
        response = self._send("GET", f"/api/v1/payments/{payment_hash}", key or self._invoice_key)
        if response.status_code == 404:
            return self._not_found(payment_hash, key or self._invoice_key)
        if response.status_code != 200:
            raise self._refused(response)
        body = self._json(response)
        details = body.get("details") if isinstance(body, Mapping) else None
        if not isinstance(details, Mapping):
            # LNbits omits details when the row is not the asking wallet's.
            return self._not_found(payment_hash, key or self._invoice_key)
        return _payment_status(details)

    def _not_found(self, payment_hash: str, key: str) -> PaymentStatus:
        # This endpoint treats an unknown key like no key at all (public view), so "not found"
        # could hide a wrong key; make sure the key is real before answering NOT_FOUND.
        if key not in self._verified_keys:
            self.wallet_balance_msat(key)  # raises LNbitsAuthError for an unknown key
            self._verified_keys.add(key)
        return PaymentStatus(kind=PaymentKind.NOT_FOUND, payment_hash=payment_hash)

    def find_payments_by_external_id(
        self, external_id: str, key: str | None = None
    ) -> list[PaymentStatus]:
        """Every row (failed ones too) with this external_id in the key's wallet, newest first."""
        _validate_external_id(external_id)
        rows = self.list_payments({"external_id": external_id}, key)
        # LNbits ignores unknown filters silently; never trust the filter blindly.
        return [row for row in rows if row.external_id == external_id]

    def list_payments(
        self, filters: Mapping[str, str], key: str | None = None
    ) -> list[PaymentStatus]:
        """Every row (all statuses) of the key's wallet matching LNbits' filter parameters, e.g.
        ``{"external_id[like]": "po-", "time[ge]": "2026-11-24T06:00:00+00:00"}``. The caller
        re-checks what matters: LNbits silently ignores filters it does not know."""
        rows: list[PaymentStatus] = []
        offset = 0
        while True:
            response = self._send(
                "GET",
                "/api/v1/payments/paginated",
                key or self._invoice_key,
                params={**filters, "limit": PAGE_SIZE, "offset": offset},
            )
            if response.status_code != 200:
                raise self._refused(response)
            page = self._json(response)
            data = page.get("data") if isinstance(page, Mapping) else None
            total = page.get("total") if isinstance(page, Mapping) else None
            if not isinstance(data, list) or not isinstance(total, int):
                raise LNbitsProtocolError("paginated payments answer lacks data/total")
            rows.extend(_payment_status(row) for row in data)
            offset += len(data)
            if not data or offset >= total:
                return rows


def _classify_refusal(status: int, detail: str) -> PayOutcome:
    lowered = detail.lower()
    if "already paid" in lowered:
        # "Internal invoice already paid." / "Payment already paid." /
        # "Failed payment was already paid on the fundingsource."
        kind = PayOutcomeKind.ALREADY_PAID
    elif lowered.startswith("insufficient balance"):
        kind = PayOutcomeKind.INSUFFICIENT_BALANCE
    elif "retrying is not possible" in lowered:
        kind = PayOutcomeKind.INVOICE_DEAD  # FakeWallet lost the invoice (LNbits restarted)
    else:
        kind = PayOutcomeKind.REJECTED
    return PayOutcome(kind=kind, detail=detail, http_status=status)


def __getattr__(name: str) -> Any:
    # The Dagster resource lives in payouts/resource.py; resolved only when asked for here.
    if name == "LNbitsResource":
        from dca_pipeline.payouts.resource import LNbitsResource

        return LNbitsResource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
