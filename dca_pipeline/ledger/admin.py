"""The admin side of the ledger: clients, deposits, commission (plain Python, no Dagster).

Every public function

- takes the ledger as its first argument (an ``Engine``, a ``Connection`` — joined through a
  savepoint —, a ledger URL or a :class:`~dca_pipeline.ledger.resource.LedgerResource`; URLs
  and resources are opened with :func:`~dca_pipeline.ledger.database.open_ledger`) and
  keyword-only arguments;
- validates everything first and writes in ONE transaction, so on any error NOTHING changes;
- raises an :class:`AdminError` subclass whose message is one line and never holds a secret
  (invoice keys are never echoed, and database error texts, which can quote whole rows, are
  replaced by the name of the refused constraint);
- takes ``now`` (aware, default: the current UTC time) so tests and seeds are deterministic.

Money is integer centavos (``*_cents``); parse admin text with :func:`parse_gtq`. Instants are
aware and stored in UTC.

History is never rewritten. Mode/status/limit changes, deposit confirmations and commission
versions must take effect *after* the last allocated event (otherwise re-materializing an
allocated day would give a different answer), and after the client's latest scheduled change.
A confirmed deposit is never edited: :func:`correct_deposit` adds a compensating
``kind='correction'`` row. A client's payout wallet is immutable once the client has a flow or
fixed allocation line.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import sqlalchemy as sa

from dca_pipeline.config import ConfigError, config
from dca_pipeline.domain.money import MoneyParseError, format_cents, parse_cents
from dca_pipeline.ledger import payout_store
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.balances import CLIENT_LINE_KINDS, client_balances
from dca_pipeline.ledger.database import open_ledger

if TYPE_CHECKING:
    from dca_pipeline.ledger.resource import LedgerResource

Mode = Literal["flow", "fixed"]
Status = Literal["active", "paused"]
LedgerLike: TypeAlias = "LedgerResource | sa.Engine | sa.Connection | str"

#: Client, deposit, recipient and wallet ids: printable, no spaces, safe in tables and memos.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
#: Invoice keys are opaque: printable ASCII without spaces (LNbits uses 32 hex digits).
_KEY = re.compile(r"[\x21-\x7e]{8,512}")


# --------------------------------------------------------------------------- errors
class AdminError(Exception):
    """An admin request the ledger refuses; ``str(error)`` is one line without secrets."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class InvalidRequest(AdminError):
    """Malformed input: a bad id, amount, time, mode, basis points..."""


class NotFound(AdminError):
    """The client, deposit or commission configuration does not exist."""


class AlreadyExists(AdminError):
    """The id is taken (client, deposit, wallet, commission version time)."""


class LedgerUnavailable(AdminError):
    """The database failed (connection lost, timeout...); the transaction was rolled back."""


class Refused(AdminError):
    """Well-formed, but a business rule forbids it (limit above the maximum, editing a
    confirmed deposit, changing a wallet that has allocations, rewriting history...)."""


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ClientSettings:
    """One row of a client's mode/status/limit history."""

    effective_at: datetime
    mode: Mode
    status: Status
    daily_limit_cents: int | None
    recorded_at: datetime
    note: str | None = None


@dataclass(frozen=True)
class ClientInfo:
    """A client as the admin sees it. The invoice key is deliberately not a field."""

    client_id: str
    display_name: str | None
    lnbits_user_id: str
    wallet_id: str
    created_at: datetime
    #: The settings in force at the requested instant (None: the first one is still scheduled).
    settings: ClientSettings | None
    #: The next scheduled change after the requested instant, if any.
    next_change: ClientSettings | None
    has_allocations: bool


@dataclass(frozen=True)
class DepositInfo:
    deposit_id: str
    client_id: str
    kind: Literal["deposit", "correction"]
    amount_cents: int
    currency: str
    status: Literal["pending", "confirmed"]
    created_at: datetime
    confirmed_at: datetime | None
    corrects_deposit_id: str | None
    note: str | None


@dataclass(frozen=True)
class Balance:
    """remaining = confirmed deposits incl. corrections − Σ fiat of flow+fixed lines."""

    client_id: str
    deposited_cents: int  # confirmed kind='deposit'
    corrections_cents: int  # confirmed kind='correction' (signed)
    pending_cents: int  # not counted until confirmed
    allocated_cents: int
    allocated_sats: int
    remaining_cents: int


@dataclass(frozen=True)
class RecipientSpec:
    """Input of :func:`set_commission`. ``invoice_key`` is secret (hidden from repr)."""

    recipient_id: str
    wallet_id: str
    basis_points: int
    invoice_key: str = field(repr=False)


@dataclass(frozen=True)
class RecipientInfo:
    recipient_id: str
    wallet_id: str
    basis_points: int


@dataclass(frozen=True)
class CommissionInfo:
    version_id: int
    effective_at: datetime
    recorded_at: datetime
    note: str | None
    recipients: tuple[RecipientInfo, ...]


@dataclass(frozen=True)
class StatusSummary:
    at: datetime
    clients: int
    clients_active_flow: int
    clients_active_fixed: int
    clients_paused: int
    clients_scheduled: int  # first settings row still in the future
    pending_deposits: int
    pending_cents: int
    confirmed_cents: int  # deposits + corrections
    allocated_cents: int
    allocated_sats: int
    remaining_cents: int
    unallocated_cents: int
    unallocated_sats: int
    commission_sats: int
    allocation_events: int
    last_allocated_event_at: datetime | None
    commission: CommissionInfo | None
    payouts_by_status: dict[str, int]
    balances: tuple[Balance, ...]


# --------------------------------------------------------------------------- helpers
def parse_gtq(text: str, *, allow_negative: bool = False, what: str = "amount") -> int:
    """GTQ text → integer centavos, exactly (``"12.345"`` and ``"1e3"`` are refused)."""
    try:
        cents = parse_cents(text)
    except MoneyParseError:
        raise InvalidRequest(
            f"{what} {text!r} is not a GTQ amount with at most 2 decimals"
        ) from None
    if cents == 0 or (cents < 0 and not allow_negative):
        raise InvalidRequest(f"{what} must be {'non-zero' if allow_negative else 'positive'}")
    return cents


def system_max_daily_cents() -> int:
    """The system maximum daily limit: ``DCA_MAX_DAILY_GTQ`` (default 2000.00 GTQ)."""
    try:
        return config().max_daily_cents
    except ConfigError as exc:
        raise InvalidRequest(f"bad setting: {exc}") from None


def system_currency() -> str:
    """``DCA_CURRENCY`` (default GTQ)."""
    try:
        return config().currency
    except ConfigError as exc:
        raise InvalidRequest(f"bad setting: {exc}") from None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None, what: str, default: datetime) -> datetime:
    if value is None:
        return default
    if not isinstance(value, datetime):
        raise InvalidRequest(f"{what} must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRequest(f"{what} must be timezone-aware (give a UTC offset)")
    return value.astimezone(UTC)


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 64 else "..."
        raise InvalidRequest(
            f"{what} {shown!r} is invalid: 1-128 characters of letters, digits and . _ : @ -, "
            "starting with a letter or digit"
        )
    return value


def _check_key(value: object, owner: str) -> str:
    # Never quote the value: it is a secret.
    if not isinstance(value, str) or not _KEY.fullmatch(value):
        raise InvalidRequest(
            f"invoice key of {owner} is invalid: 8-512 printable characters without spaces"
        )
    return value


def _check_cents(value: object, what: str, *, allow_negative: bool = False) -> int:
    # bool is an int subclass; floats are never money.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{what} must be an integer number of centavos")
    if value == 0 or (value < 0 and not allow_negative):
        raise InvalidRequest(f"{what} must be {'non-zero' if allow_negative else 'positive'}")
    return value


def _check_text(value: str | None, what: str, limit: int = 500) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or "\n" in value or "\r" in value:
        raise InvalidRequest(f"{what} must be one line of at most {limit} characters")
    return value.strip() or None


def _limit_ok(cents: int, max_daily_cents: int | None) -> int:
    maximum = system_max_daily_cents() if max_daily_cents is None else max_daily_cents
    _check_cents(cents, "daily limit")
    if cents > maximum:
        raise Refused(
            f"daily limit {format_cents(cents)} is above the system maximum {format_cents(maximum)}"
        )
    return cents


def _engine(ledger: LedgerResource | sa.Engine | str) -> sa.Engine:
    """An engine as given; a URL or a resource's URL through :func:`open_ledger`."""
    if isinstance(ledger, sa.Engine):
        return ledger
    return open_ledger(ledger if isinstance(ledger, str) else ledger.url)


#: Messages of the guard triggers (migrations 0001, 0100): fixed texts, never row data.
_TRIGGER_MARKERS = ("is append-only", "is immutable once", "never edited or deleted")


@contextmanager
def _transaction(ledger: LedgerLike) -> Iterator[sa.Connection]:
    """One transaction (a savepoint inside a caller's one); database errors are translated."""
    try:
        if isinstance(ledger, sa.Connection):
            scope = ledger.begin_nested() if ledger.in_transaction() else ledger.begin()
            with scope:
                yield ledger
        else:
            with _engine(ledger).begin() as connection:
                yield connection
    except sa.exc.StatementError as exc:
        raise _translated(exc) from None


@contextmanager
def _reading(ledger: LedgerLike) -> Iterator[sa.Connection]:
    try:
        if isinstance(ledger, sa.Connection):
            yield ledger
        else:
            with _engine(ledger).connect() as connection:
                yield connection
    except sa.exc.StatementError as exc:
        raise _translated(exc) from None


def _translated(exc: sa.exc.StatementError) -> AdminError:
    """A database error as a one-line AdminError. Never str(exc): SQLAlchemy appends the
    statement's parameters, and PostgreSQL's CHECK messages quote the row — keys included."""
    orig = getattr(exc, "orig", None)
    first = (str(orig).strip().splitlines() or [""])[0] if orig is not None else ""
    if any(marker in first for marker in _TRIGGER_MARKERS):
        return Refused(f"the ledger refused the change: {first}")
    if isinstance(exc, sa.exc.IntegrityError):
        return Refused(
            f"the ledger refused the change ({_constraint_name(exc)}); nothing was changed"
        )
    return LedgerUnavailable(
        f"the ledger failed ({type(orig or exc).__name__}); nothing was changed"
    )


def _constraint_name(exc: sa.exc.IntegrityError) -> str:
    diag = getattr(exc.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name:
        return f"constraint {name}"
    text = str(exc.orig).splitlines()[0] if str(exc.orig) else ""
    # SQLite: "CHECK constraint failed: name" / "UNIQUE constraint failed: t.col" (no values).
    match = re.match(
        r"((?:CHECK|UNIQUE|NOT NULL|FOREIGN KEY) constraint failed)(: [\w., ]+)?", text
    )
    return match.group(0) if match else "integrity constraint"


def _last_allocated_at(c: sa.Connection) -> datetime | None:
    return c.execute(sa.select(sa.func.max(s.allocation_events.c.event_time))).scalar()


def _not_before_history(c: sa.Connection, when: datetime, what: str) -> None:
    """A change effective at or before an allocated event would rewrite allocated history."""
    last = _last_allocated_at(c)
    if last is not None and when <= last:
        raise Refused(
            f"{what} {_iso(when)} is not after the last allocated event ({_iso(last)}): "
            "allocated history cannot change"
        )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _client_row(c: sa.Connection, client_id: str) -> sa.Row[Any]:
    _check_id(client_id, "client id")
    row = c.execute(sa.select(s.clients).where(s.clients.c.client_id == client_id)).first()
    if row is None:
        raise NotFound(f"no client {client_id!r}")
    return row


def _settings_rows(c: sa.Connection, client_id: str) -> list[ClientSettings]:
    return _settings_by_client(c, [client_id]).get(client_id, [])


def _settings_by_client(
    c: sa.Connection, client_ids: Sequence[str] | None
) -> dict[str, list[ClientSettings]]:
    """Settings history per client, oldest first (one query for any number of clients)."""
    cs = s.client_settings.c
    query = sa.select(
        cs.client_id,
        cs.effective_at,
        cs.mode,
        cs.status,
        cs.daily_limit_cents,
        cs.recorded_at,
        cs.note,
    ).order_by(cs.client_id, cs.effective_at)
    if client_ids is not None:
        query = query.where(cs.client_id.in_(client_ids))
    history: dict[str, list[ClientSettings]] = {}
    for r in c.execute(query):
        history.setdefault(r.client_id, []).append(
            ClientSettings(
                r.effective_at,
                r.mode,
                r.status,
                None if r.daily_limit_cents is None else int(r.daily_limit_cents),
                r.recorded_at,
                r.note,
            )
        )
    return history


def _in_force(history: Sequence[ClientSettings], at: datetime) -> ClientSettings | None:
    current = None
    for row in history:
        if row.effective_at <= at:
            current = row
    return current


def _has_allocations(c: sa.Connection, client_id: str) -> bool:
    lines = s.allocation_lines.c
    return (
        c.execute(
            sa.select(lines.line_id)
            .where(lines.recipient_id == client_id, lines.kind.in_(CLIENT_LINE_KINDS))
            .limit(1)
        ).first()
        is not None
    )


def _wallet_not_taken(c: sa.Connection, wallet_id: str, client_id: str) -> None:
    # Payouts are grouped by wallet: two clients on one wallet could not be told apart.
    other = c.execute(
        sa.select(s.clients.c.client_id).where(
            s.clients.c.wallet_id == wallet_id, s.clients.c.client_id != client_id
        )
    ).scalar()
    if other is not None:
        raise AlreadyExists(f"wallet {wallet_id!r} is already the wallet of client {other!r}")


def _client_info(c: sa.Connection, row: sa.Row[Any], at: datetime) -> ClientInfo:
    return _client_infos(c, [row], at, one=True)[0]


def _client_infos(
    c: sa.Connection, rows: Sequence[sa.Row[Any]], at: datetime, one: bool = False
) -> list[ClientInfo]:
    ids = [row.client_id for row in rows]
    histories = _settings_by_client(c, ids if one else None)
    lines = s.allocation_lines.c
    with_lines_query = (
        sa.select(lines.recipient_id).distinct().where(lines.kind.in_(CLIENT_LINE_KINDS))
    )
    if one:
        with_lines_query = with_lines_query.where(lines.recipient_id.in_(ids))
    with_lines = set(c.execute(with_lines_query).scalars())
    infos = []
    for row in rows:
        history = histories.get(row.client_id, [])
        upcoming = [h for h in history if h.effective_at > at]
        infos.append(
            ClientInfo(
                client_id=row.client_id,
                display_name=row.display_name,
                lnbits_user_id=row.lnbits_user_id,
                wallet_id=row.wallet_id,
                created_at=row.created_at,
                settings=_in_force(history, at),
                next_change=upcoming[0] if upcoming else None,
                has_allocations=row.client_id in with_lines,
            )
        )
    return infos


def _deposit_info(row: sa.Row[Any]) -> DepositInfo:
    return DepositInfo(
        deposit_id=row.deposit_id,
        client_id=row.client_id,
        kind=row.kind,
        amount_cents=int(row.amount_cents),
        currency=row.currency,
        status=row.status,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        corrects_deposit_id=row.corrects_deposit_id,
        note=row.note,
    )


# --------------------------------------------------------------------------- clients
def add_client(
    ledger: LedgerLike,
    *,
    client_id: str,
    lnbits_user_id: str,
    wallet_id: str,
    invoice_key: str,
    display_name: str | None = None,
    mode: Mode = "flow",
    status: Status = "active",
    daily_limit_cents: int | None = None,
    effective_at: datetime | None = None,
    max_daily_cents: int | None = None,
    now: datetime | None = None,
) -> ClientInfo:
    """Create a client and its first settings row (effective at ``effective_at``, default now).

    ``mode='fixed'`` needs ``daily_limit_cents`` (≤ the system maximum); ``'flow'`` refuses one.
    ``invoice_key`` is the secret invoice/read key of ``wallet_id``.
    """
    now = _aware(now, "now", _utc_now())
    effective = _aware(effective_at, "effective time", now)
    _check_id(client_id, "client id")
    _check_id(lnbits_user_id, "LNbits user id")
    _check_id(wallet_id, "wallet id")
    _check_key(invoice_key, f"client {client_id!r}")
    display_name = _check_text(display_name, "display name", 200)
    mode, daily_limit_cents = _mode_and_limit(mode, daily_limit_cents, max_daily_cents)
    if status not in ("active", "paused"):
        raise InvalidRequest(f"status must be active or paused, not {status!r}")
    with _transaction(ledger) as c:
        if c.execute(
            sa.select(s.clients.c.client_id).where(s.clients.c.client_id == client_id)
        ).first():
            raise AlreadyExists(f"client {client_id!r} already exists")
        _wallet_not_taken(c, wallet_id, client_id)
        _not_before_history(c, effective, "effective time")
        c.execute(
            s.clients.insert().values(
                client_id=client_id,
                display_name=display_name,
                lnbits_user_id=lnbits_user_id,
                wallet_id=wallet_id,
                invoice_key=invoice_key,
                created_at=now,
            )
        )
        c.execute(
            s.client_settings.insert().values(
                client_id=client_id,
                effective_at=effective,
                mode=mode,
                status=status,
                daily_limit_cents=daily_limit_cents,
                recorded_at=now,
                note="created",
            )
        )
        return _client_info(c, _client_row(c, client_id), now)


def _mode_and_limit(
    mode: str, limit: int | None, max_daily_cents: int | None
) -> tuple[Mode, int | None]:
    if mode == "flow":
        if limit is not None:
            raise InvalidRequest("a flow client has no daily limit (the limit is for fixed mode)")
        return "flow", None
    if mode == "fixed":
        if limit is None:
            raise InvalidRequest("a fixed client needs a daily limit")
        return "fixed", _limit_ok(limit, max_daily_cents)
    raise InvalidRequest(f"mode must be flow or fixed, not {mode!r}")


def get_client(ledger: LedgerLike, *, client_id: str, at: datetime | None = None) -> ClientInfo:
    at = _aware(at, "at", _utc_now())
    with _reading(ledger) as c:
        return _client_info(c, _client_row(c, client_id), at)


def client_history(ledger: LedgerLike, *, client_id: str) -> list[ClientSettings]:
    """Every settings row of the client, oldest first (scheduled ones included)."""
    with _reading(ledger) as c:
        _client_row(c, client_id)
        return _settings_rows(c, client_id)


def list_clients(ledger: LedgerLike, *, at: datetime | None = None) -> list[ClientInfo]:
    """All clients with the settings in force at ``at`` (default now), by client id."""
    at = _aware(at, "at", _utc_now())
    with _reading(ledger) as c:
        rows = c.execute(sa.select(s.clients).order_by(s.clients.c.client_id)).all()
        return _client_infos(c, rows, at)


def _change_settings(
    ledger: LedgerLike,
    client_id: str,
    effective_at: datetime | None,
    now: datetime | None,
    note: str | None,
    change: Any,
) -> ClientSettings:
    """Append a settings row: the state at ``effective_at`` with ``change`` applied."""
    now = _aware(now, "now", _utc_now())
    effective = _aware(effective_at, "effective time", now)
    note = _check_text(note, "note")
    with _transaction(ledger) as c:
        _client_row(c, client_id)
        history = _settings_rows(c, client_id)
        latest = history[-1]
        # Rows are full snapshots: one inserted before a scheduled row would be undone by it.
        if effective <= latest.effective_at:
            raise Refused(
                f"client {client_id!r} already has a change effective at "
                f"{_iso(latest.effective_at)}; a new change must take effect after it"
            )
        _not_before_history(c, effective, "effective time")
        mode, status, limit = change(latest)
        row = ClientSettings(effective, mode, status, limit, now, note)
        c.execute(
            s.client_settings.insert().values(
                client_id=client_id,
                effective_at=effective,
                mode=mode,
                status=status,
                daily_limit_cents=limit,
                recorded_at=now,
                note=note,
            )
        )
        return row


def pause_client(
    ledger: LedgerLike,
    *,
    client_id: str,
    effective_at: datetime | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> ClientSettings:
    """Pause from ``effective_at`` (default now); refused if already paused then."""

    def change(latest: ClientSettings) -> tuple[str, str, int | None]:
        if latest.status == "paused":
            raise Refused(f"client {client_id!r} is already paused")
        return latest.mode, "paused", latest.daily_limit_cents

    return _change_settings(ledger, client_id, effective_at, now, note, change)


def resume_client(
    ledger: LedgerLike,
    *,
    client_id: str,
    effective_at: datetime | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> ClientSettings:
    """Resume (status active) from ``effective_at`` (default now); refused if not paused."""

    def change(latest: ClientSettings) -> tuple[str, str, int | None]:
        if latest.status == "active":
            raise Refused(f"client {client_id!r} is not paused")
        return latest.mode, "active", latest.daily_limit_cents

    return _change_settings(ledger, client_id, effective_at, now, note, change)


def set_mode(
    ledger: LedgerLike,
    *,
    client_id: str,
    mode: Mode,
    daily_limit_cents: int | None = None,
    effective_at: datetime | None = None,
    max_daily_cents: int | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> ClientSettings:
    """Switch flow↔fixed. Switching to fixed needs ``daily_limit_cents``; flow refuses one."""
    mode, limit = _mode_and_limit(mode, daily_limit_cents, max_daily_cents)

    def change(latest: ClientSettings) -> tuple[str, str, int | None]:
        if latest.mode == mode:
            raise Refused(f"client {client_id!r} is already in {mode} mode")
        return mode, latest.status, limit

    return _change_settings(ledger, client_id, effective_at, now, note, change)


def set_limit(
    ledger: LedgerLike,
    *,
    client_id: str,
    daily_limit_cents: int,
    effective_at: datetime | None = None,
    max_daily_cents: int | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> ClientSettings:
    """Change a fixed client's daily limit; refused above the system maximum."""
    limit = _limit_ok(daily_limit_cents, max_daily_cents)

    def change(latest: ClientSettings) -> tuple[str, str, int | None]:
        if latest.mode != "fixed":
            raise Refused(
                f"client {client_id!r} is in flow mode: a limit needs fixed mode (set-mode fixed)"
            )
        if latest.daily_limit_cents == limit:
            raise Refused(f"client {client_id!r} already has the limit {format_cents(limit)}")
        return "fixed", latest.status, limit

    return _change_settings(ledger, client_id, effective_at, now, note, change)


def set_wallet(
    ledger: LedgerLike,
    *,
    client_id: str,
    wallet_id: str,
    invoice_key: str,
) -> ClientInfo:
    """Replace the client's payout wallet (and key): refused once the client has a flow or
    fixed allocation line. The same wallet with a new key (key rotation) is always allowed."""
    _check_id(wallet_id, "wallet id")
    _check_key(invoice_key, f"client {client_id!r}")
    with _transaction(ledger) as c:
        row = _client_row(c, client_id)
        if wallet_id != row.wallet_id:
            if _has_allocations(c, client_id):
                raise Refused(
                    f"client {client_id!r} has allocation lines: its wallet cannot change"
                )
            _wallet_not_taken(c, wallet_id, client_id)
        elif invoice_key == row.invoice_key:
            raise Refused(f"client {client_id!r} already has this wallet and key")
        c.execute(
            s.clients.update()
            .where(s.clients.c.client_id == client_id)
            .values(wallet_id=wallet_id, invoice_key=invoice_key)
        )
        return _client_info(c, _client_row(c, client_id), _utc_now())


# --------------------------------------------------------------------------- deposits
def add_deposit(
    ledger: LedgerLike,
    *,
    client_id: str,
    amount_cents: int,
    deposit_id: str | None = None,
    currency: str | None = None,
    note: str | None = None,
    confirm: bool = False,
    confirmed_at: datetime | None = None,
    now: datetime | None = None,
) -> DepositInfo:
    """Record a pending deposit (``confirm=True``: add and confirm in one transaction).

    ``deposit_id`` defaults to a fresh ``dep-<hex>`` id; ``currency`` must be the system one
    (``DCA_CURRENCY``, default GTQ).
    """
    now = _aware(now, "now", _utc_now())
    amount = _check_cents(amount_cents, "deposit amount")
    deposit_id = _check_id(deposit_id or f"dep-{uuid.uuid4().hex[:16]}", "deposit id")
    expected = system_currency()
    currency = expected if currency is None else currency
    if currency != expected:
        raise InvalidRequest(f"currency must be {expected}, not {currency!r}")
    note = _check_text(note, "note")
    when = _aware(confirmed_at, "confirmation time", now) if confirm else None
    if confirmed_at is not None and not confirm:
        raise InvalidRequest("confirmed_at given without confirm=True")
    with _transaction(ledger) as c:
        _client_row(c, client_id)
        _deposit_id_free(c, deposit_id)
        if when is not None:
            _check_confirmation_time(c, when, now)
        c.execute(
            s.deposits.insert().values(
                deposit_id=deposit_id,
                client_id=client_id,
                kind="deposit",
                amount_cents=amount,
                currency=currency,
                status="pending" if when is None else "confirmed",
                created_at=now,
                confirmed_at=when,
                note=note,
            )
        )
        return _deposit_info(_deposit_row(c, deposit_id))


def _deposit_id_free(c: sa.Connection, deposit_id: str) -> None:
    if c.execute(
        sa.select(s.deposits.c.deposit_id).where(s.deposits.c.deposit_id == deposit_id)
    ).first():
        raise AlreadyExists(f"deposit {deposit_id!r} already exists")


def _deposit_row(c: sa.Connection, deposit_id: str) -> sa.Row[Any]:
    _check_id(deposit_id, "deposit id")
    row = c.execute(sa.select(s.deposits).where(s.deposits.c.deposit_id == deposit_id)).first()
    if row is None:
        raise NotFound(f"no deposit {deposit_id!r}")
    return row


def _check_confirmation_time(
    c: sa.Connection, when: datetime, now: datetime, recorded_at: datetime | None = None
) -> None:
    if when > now:
        raise InvalidRequest(f"confirmation time {_iso(when)} is in the future")
    if recorded_at is not None and when < recorded_at:
        raise InvalidRequest(
            f"confirmation time {_iso(when)} is before the deposit was recorded "
            f"({_iso(recorded_at)})"
        )
    _not_before_history(c, when, "confirmation time")


def confirm_deposit(
    ledger: LedgerLike,
    *,
    deposit_id: str,
    confirmed_at: datetime | None = None,
    now: datetime | None = None,
) -> DepositInfo:
    """pending → confirmed, once (a second confirmation is refused). ``confirmed_at`` defaults
    to now; it may not be in the future, before the deposit, or before allocated history."""
    now = _aware(now, "now", _utc_now())
    when = _aware(confirmed_at, "confirmation time", now)
    with _transaction(ledger) as c:
        row = _deposit_row(c, deposit_id)
        if row.status == "confirmed":
            raise Refused(
                f"deposit {deposit_id!r} was already confirmed at {_iso(row.confirmed_at)}"
            )
        _check_confirmation_time(c, when, now, row.created_at)
        updated = c.execute(
            s.deposits.update()
            .where(s.deposits.c.deposit_id == deposit_id, s.deposits.c.status == "pending")
            .values(status="confirmed", confirmed_at=when)
        )
        if updated.rowcount != 1:  # a concurrent confirmation won the race
            raise Refused(f"deposit {deposit_id!r} was already confirmed")
        return _deposit_info(_deposit_row(c, deposit_id))


def correct_deposit(
    ledger: LedgerLike,
    *,
    deposit_id: str,
    amount_cents: int,
    note: str,
    correction_id: str | None = None,
    confirmed_at: datetime | None = None,
    now: datetime | None = None,
) -> DepositInfo:
    """Add a confirmed ``kind='correction'`` row of signed ``amount_cents`` for a confirmed
    deposit (the deposit itself is never edited). Refused if the deposit with its corrections
    would become negative, or the client's remaining balance would."""
    now = _aware(now, "now", _utc_now())
    when = _aware(confirmed_at, "confirmation time", now)
    amount = _check_cents(amount_cents, "correction amount", allow_negative=True)
    note = _check_text(note, "reason")
    if not note:
        raise InvalidRequest("a correction needs a reason")
    correction_id = _check_id(
        correction_id or f"{deposit_id}-corr-{uuid.uuid4().hex[:8]}", "correction id"
    )
    with _transaction(ledger) as c:
        original = _deposit_row(c, deposit_id)
        if original.kind != "deposit":
            raise Refused(
                f"{deposit_id!r} is a correction; correct the original deposit "
                f"{original.corrects_deposit_id!r}"
            )
        if original.status != "confirmed":
            raise Refused(f"deposit {deposit_id!r} is pending: only a confirmed one is corrected")
        _deposit_id_free(c, correction_id)
        _check_confirmation_time(c, when, now)
        d = s.deposits.c
        corrected = int(
            c.execute(
                sa.select(sa.func.coalesce(sa.func.sum(d.amount_cents), 0)).where(
                    d.corrects_deposit_id == deposit_id
                )
            ).scalar_one()
        )
        net = int(original.amount_cents) + corrected + amount
        if net < 0:
            raise Refused(
                f"deposit {deposit_id!r} would become {format_cents(net)} after the correction"
            )
        balance = _balances(c, [original.client_id], None)[0]
        if balance.remaining_cents + amount < 0:
            raise Refused(
                f"client {original.client_id!r} has {format_cents(balance.remaining_cents)} "
                f"left; a correction of {format_cents(amount)} would make it negative"
            )
        c.execute(
            s.deposits.insert().values(
                deposit_id=correction_id,
                client_id=original.client_id,
                kind="correction",
                amount_cents=amount,
                currency=original.currency,
                status="confirmed",
                created_at=now,
                confirmed_at=when,
                corrects_deposit_id=deposit_id,
                note=note,
            )
        )
        return _deposit_info(_deposit_row(c, correction_id))


def list_deposits(
    ledger: LedgerLike,
    *,
    client_id: str | None = None,
    status: Literal["pending", "confirmed"] | None = None,
) -> list[DepositInfo]:
    """Deposits and corrections, in the order they were recorded."""
    if status not in (None, "pending", "confirmed"):
        raise InvalidRequest(f"status must be pending or confirmed, not {status!r}")
    with _reading(ledger) as c:
        query = sa.select(s.deposits).order_by(s.deposits.c.created_at, s.deposits.c.deposit_id)
        if client_id is not None:
            _client_row(c, client_id)
            query = query.where(s.deposits.c.client_id == client_id)
        if status is not None:
            query = query.where(s.deposits.c.status == status)
        return [_deposit_info(row) for row in c.execute(query)]


# --------------------------------------------------------------------------- commission
def set_commission(
    ledger: LedgerLike,
    *,
    recipients: Sequence[RecipientSpec],
    effective_at: datetime | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> CommissionInfo:
    """A new commission version effective at ``effective_at`` (default now): basis points
    must sum to exactly 10 000, recipient ids unique, every wallet and key well formed."""
    now = _aware(now, "now", _utc_now())
    effective = _aware(effective_at, "effective time", now)
    note = _check_text(note, "note")
    if not isinstance(recipients, Sequence) or not all(
        isinstance(r, RecipientSpec) for r in recipients
    ):
        raise InvalidRequest("recipients must be a list of RecipientSpec")
    for r in recipients:
        _check_id(r.recipient_id, "recipient id")
        _check_id(r.wallet_id, "wallet id")
        _check_key(r.invoice_key, f"recipient {r.recipient_id!r}")
        if not isinstance(r.basis_points, int) or isinstance(r.basis_points, bool):
            raise InvalidRequest(f"recipient {r.recipient_id!r}: basis points must be an integer")
    wallets = [r.wallet_id for r in recipients]
    if len(set(wallets)) != len(wallets):
        raise InvalidRequest("two recipients share a wallet; merge them into one")
    # Imported here: the domain's commission module loads numpy, which no other command needs.
    from dca_pipeline.domain.commission import (
        CommissionConfigError,
        CommissionRecipient,
        validate_recipients,
    )

    try:  # the domain's rule (one implementation): unique ids, 1..10000 each, Σ = 10000
        validate_recipients(
            tuple(
                CommissionRecipient(r.recipient_id, r.wallet_id, r.basis_points) for r in recipients
            )
        )
    except CommissionConfigError as exc:
        raise InvalidRequest(f"commission refused: {exc}") from None
    with _transaction(ledger) as c:
        v = s.commission_versions.c
        latest = c.execute(sa.select(sa.func.max(v.effective_at))).scalar()
        if latest is not None and effective <= latest:
            raise Refused(
                f"a commission version is already effective at {_iso(latest)}; "
                "a new one must take effect after it"
            )
        _not_before_history(c, effective, "effective time")
        version_id = c.execute(
            s.commission_versions.insert()
            .values(effective_at=effective, recorded_at=now, note=note)
            .returning(v.version_id)
        ).scalar_one()
        c.execute(
            s.commission_recipients.insert(),
            [
                dict(
                    version_id=version_id,
                    recipient_id=r.recipient_id,
                    wallet_id=r.wallet_id,
                    invoice_key=r.invoice_key,
                    basis_points=r.basis_points,
                )
                for r in recipients
            ],
        )
        return _commission(c, version_id)


def _commission(c: sa.Connection, version_id: int) -> CommissionInfo:
    version = c.execute(
        sa.select(s.commission_versions).where(s.commission_versions.c.version_id == version_id)
    ).one()
    r = s.commission_recipients.c
    recipients = c.execute(
        sa.select(r.recipient_id, r.wallet_id, r.basis_points)
        .where(r.version_id == version_id)
        .order_by(r.recipient_id)
    ).all()
    return CommissionInfo(
        version_id=int(version.version_id),
        effective_at=version.effective_at,
        recorded_at=version.recorded_at,
        note=version.note,
        recipients=tuple(
            RecipientInfo(x.recipient_id, x.wallet_id, x.basis_points) for x in recipients
        ),
    )


def get_commission(ledger: LedgerLike, *, at: datetime | None = None) -> CommissionInfo | None:
    """The commission version in force at ``at`` (default now), or None."""
    at = _aware(at, "at", _utc_now())
    with _reading(ledger) as c:
        return _commission_at(c, at)


def _commission_at(c: sa.Connection, at: datetime) -> CommissionInfo | None:
    v = s.commission_versions.c
    version_id = c.execute(
        sa.select(v.version_id).where(v.effective_at <= at).order_by(v.effective_at.desc()).limit(1)
    ).scalar()
    return None if version_id is None else _commission(c, version_id)


def commission_history(ledger: LedgerLike) -> list[CommissionInfo]:
    """Every commission version, oldest first (scheduled ones included)."""
    with _reading(ledger) as c:
        v = s.commission_versions.c
        ids = c.execute(sa.select(v.version_id).order_by(v.effective_at)).scalars().all()
        return [_commission(c, version_id) for version_id in ids]


# --------------------------------------------------------------------------- balances
def _balances(
    c: sa.Connection, client_ids: Sequence[str] | None, at: datetime | None
) -> list[Balance]:
    """:func:`dca_pipeline.ledger.balances.client_balances`, as admin's :class:`Balance`."""
    return [
        Balance(
            client_id=b.client_id,
            deposited_cents=b.deposited_cents,
            corrections_cents=b.corrections_cents,
            pending_cents=b.pending_cents,
            allocated_cents=b.allocated_cents,
            allocated_sats=b.allocated_sats,
            remaining_cents=b.remaining_cents,
        )
        for b in client_balances(c, client_ids, at=at)
    ]


def balances(
    ledger: LedgerLike, *, client_id: str | None = None, at: datetime | None = None
) -> list[Balance]:
    """Per client (by id): remaining = confirmed deposits incl. corrections − Σ fiat of its
    flow+fixed lines. With ``at``: deposits confirmed and events allocated at or before it."""
    at = None if at is None else _aware(at, "at", _utc_now())
    with _reading(ledger) as c:
        ids = None
        if client_id is not None:
            _client_row(c, client_id)
            ids = [client_id]
        return _balances(c, ids, at)


def status_summary(ledger: LedgerLike, *, at: datetime | None = None) -> StatusSummary:
    """Counts and totals for ``dca-pipeline status`` (settings and commission at ``at``)."""
    at = _aware(at, "at", _utc_now())
    with _reading(ledger) as c:
        rows = c.execute(sa.select(s.clients).order_by(s.clients.c.client_id)).all()
        clients = _client_infos(c, rows, at)
        all_balances = _balances(c, [x.client_id for x in clients], None)
        commission = _commission_at(c, at)
        d = s.deposits.c
        pending_count, pending_sum = c.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(d.amount_cents), 0)).where(
                d.status == "pending"
            )
        ).one()
        lines = s.allocation_lines.c
        by_kind = {
            row[0]: (int(row[1] or 0), int(row[2] or 0))
            for row in c.execute(
                sa.select(
                    lines.kind, sa.func.sum(lines.fiat_cents), sa.func.sum(lines.sats)
                ).group_by(lines.kind)
            )
        }
        events = int(
            c.execute(sa.select(sa.func.count()).select_from(s.allocation_events)).scalar_one()
        )
        last = _last_allocated_at(c)
        payouts = {status: count for status, (count, _) in payout_store.counts_by_status(c).items()}
    active = [x for x in clients if x.settings and x.settings.status == "active"]
    allocated = [by_kind.get(k, (0, 0)) for k in CLIENT_LINE_KINDS]
    return StatusSummary(
        at=at,
        clients=len(clients),
        clients_active_flow=sum(1 for x in active if x.settings and x.settings.mode == "flow"),
        clients_active_fixed=sum(1 for x in active if x.settings and x.settings.mode == "fixed"),
        clients_paused=sum(1 for x in clients if x.settings and x.settings.status == "paused"),
        clients_scheduled=sum(1 for x in clients if x.settings is None),
        pending_deposits=int(pending_count),
        pending_cents=int(pending_sum),
        confirmed_cents=sum(b.deposited_cents + b.corrections_cents for b in all_balances),
        allocated_cents=sum(f for f, _ in allocated),
        allocated_sats=sum(x for _, x in allocated),
        remaining_cents=sum(b.remaining_cents for b in all_balances),
        unallocated_cents=by_kind.get("unallocated", (0, 0))[0],
        unallocated_sats=by_kind.get("unallocated", (0, 0))[1],
        commission_sats=by_kind.get("commission", (0, 0))[1],
        allocation_events=events,
        last_allocated_event_at=last,
        commission=commission,
        payouts_by_status=payouts,
        balances=tuple(all_balances),
    )


# --------------------------------------------------------------------------- JSON
def to_jsonable(value: Any) -> Any:
    """Results → JSON-ready values: instants as ISO UTC text, ``*_cents`` also as GTQ text
    (``*_gtq``). No result type carries an invoice key, so none can leak here."""
    if is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in fields(value):
            item = getattr(value, f.name)
            out[f.name] = to_jsonable(item)
            if f.name.endswith("_cents") and isinstance(item, int):
                out[f.name[: -len("_cents")] + "_gtq"] = format_cents(item)
        return out
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


__all__ = [
    "AdminError",
    "AlreadyExists",
    "Balance",
    "ClientInfo",
    "ClientSettings",
    "CommissionInfo",
    "DepositInfo",
    "InvalidRequest",
    "LedgerUnavailable",
    "NotFound",
    "RecipientInfo",
    "RecipientSpec",
    "Refused",
    "StatusSummary",
    "add_client",
    "add_deposit",
    "balances",
    "client_history",
    "commission_history",
    "confirm_deposit",
    "correct_deposit",
    "get_client",
    "get_commission",
    "list_clients",
    "list_deposits",
    "parse_gtq",
    "pause_client",
    "resume_client",
    "set_commission",
    "set_limit",
    "set_mode",
    "set_wallet",
    "status_summary",
    "system_max_daily_cents",
    "to_jsonable",
]
