"""`dca-pipeline clients|deposits|commission|status`: the admin CLI over ``ledger/admin.py``.

Every command works on the ledger named by ``--ledger-url`` (else ``DCA_LEDGER_URL``, else the
embedded SQLite default), opened with :func:`dca_pipeline.ledger.database.open_ledger`. Output
is a human-readable table, or JSON with ``--json``. Any invalid command (or a bad ``DCA_*``
setting) prints ONE line on stderr, exits with status 2 and changes nothing (the API validates
first and writes in one transaction); an unreachable ledger exits with status 1.

Invoice keys are secrets: they are read from an environment variable the user names
(``--invoice-key-env VAR``) or from stdin (``--invoice-key-stdin``), never from argv, and are
never printed (``show``/``--json`` print a mask).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import sqlalchemy as sa

EXIT_REFUSED = 2
EXIT_UNAVAILABLE = 1
KEY_MASK = "********"
_BASIS_POINTS = re.compile(r"\d{1,6}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class AdminParser(argparse.ArgumentParser):
    """argparse with one-line errors that never echo stray values (they may be secrets)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No prefix matching: `--invoice-key=...` must not resolve to `--invoice-key-env`.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_REFUSED, f"{self.prog}: error: {' '.join(message.split())}\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def,override]
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            # Show option names only: a stray value could be a key typed on the command line.
            names = sorted({e.split("=", 1)[0] for e in extras if e.startswith("-")})
            shown = " ".join(names) if names else f"{len(extras)} extra value(s)"
            self.error(f"unrecognized arguments: {shown}")
        return parsed, extras


class _RefuseSecretOnArgv(argparse.Action):
    """`--invoice-key VALUE` is refused outright (argv is visible in `ps` and shell history)."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        parser.error(
            "invoice keys are never accepted on the command line: "
            "use --invoice-key-env VAR or --invoice-key-stdin"
        )


# --------------------------------------------------------------------------- argument types
def _instant(text: str) -> datetime:
    """``now`` or ISO 8601 with a UTC offset (``2025-06-01T09:00-06:00``, ``...Z``)."""
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"time {text!r} has no UTC offset (write e.g. 2025-06-01T09:00-06:00 or ...Z)"
        )
    return value.astimezone(UTC)


def _gtq(text: str) -> int:
    from dca_pipeline.ledger.admin import InvalidRequest, parse_gtq

    try:
        return parse_gtq(text)
    except InvalidRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _signed_gtq(text: str) -> int:
    from dca_pipeline.ledger.admin import InvalidRequest, parse_gtq

    try:
        return parse_gtq(text, allow_negative=True)
    except InvalidRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _env_name(text: str) -> str:
    if not _ENV_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not an environment variable name: {text!r}")
    return text


# --------------------------------------------------------------------------- registration
def _add_parser(subparsers: argparse._SubParsersAction, name: str, **kwargs: Any) -> AdminParser:
    # The top-level parser is shared; only our own subtree uses AdminParser.
    original = subparsers._parser_class
    subparsers._parser_class = AdminParser
    try:
        return subparsers.add_parser(name, **kwargs)
    finally:
        subparsers._parser_class = original


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--ledger-url",
        default=None,
        metavar="URL",
        help="SQLAlchemy URL of the ledger (default: $DCA_LEDGER_URL, else the SQLite default)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable JSON output")
    return common


def _key_source(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--invoice-key-env",
        type=_env_name,
        metavar="VAR",
        help="read the wallet's invoice key from environment variable VAR",
    )
    group.add_argument(
        "--invoice-key-stdin",
        action="store_true",
        help="read the wallet's invoice key from the first line of stdin",
    )
    parser.add_argument(
        "--invoice-key", nargs="?", action=_RefuseSecretOnArgv, help=argparse.SUPPRESS
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    common = _common()

    def leaf(group: argparse._SubParsersAction, name: str, handler: Handler, **kw: Any):  # type: ignore[no-untyped-def]
        p = group.add_parser(name, parents=[common], **kw)
        p.set_defaults(func=_runner(handler))
        return p

    # clients ------------------------------------------------------------------------------
    clients = _add_parser(subparsers, "clients", help="add, list and change DCA clients")
    cs = clients.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = leaf(cs, "add", _clients_add, help="add a client (flow by default)")
    p.add_argument("client_id", metavar="CLIENT_ID")
    p.add_argument("--user-id", required=True, help="the client's LNbits user id")
    p.add_argument("--wallet-id", required=True, help="the LNbits wallet payouts go to")
    p.add_argument("--name", help="display name")
    p.add_argument("--mode", choices=("flow", "fixed"), default="flow")
    p.add_argument("--limit", type=_gtq, metavar="GTQ", help="daily limit (fixed mode)")
    p.add_argument("--paused", action="store_true", help="create the client paused")
    p.add_argument("--effective", type=_instant, metavar="TIME", help="default: now")
    _key_source(p)

    p = leaf(cs, "list", _clients_list, help="list clients with their settings and balance")
    p.add_argument("--at", type=_instant, metavar="TIME", help="settings in force at TIME")

    p = leaf(cs, "show", _clients_show, help="one client: settings history, deposits, balance")
    p.add_argument("client_id", metavar="CLIENT_ID")

    for name, handler, text in (
        ("pause", _clients_pause, "pause a client from now (or --effective TIME)"),
        ("resume", _clients_resume, "resume a paused client from now (or --effective TIME)"),
    ):
        p = leaf(cs, name, handler, help=text)
        p.add_argument("client_id", metavar="CLIENT_ID")
        p.add_argument("--effective", type=_instant, metavar="TIME", help="default: now")
        p.add_argument("--note")

    p = leaf(cs, "set-mode", _clients_set_mode, help="switch a client between flow and fixed")
    p.add_argument("client_id", metavar="CLIENT_ID")
    p.add_argument("mode", choices=("flow", "fixed"))
    p.add_argument("--limit", type=_gtq, metavar="GTQ", help="daily limit (needed for fixed)")
    p.add_argument("--effective", type=_instant, metavar="TIME", help="default: now")
    p.add_argument("--note")

    p = leaf(cs, "set-limit", _clients_set_limit, help="change a fixed client's daily limit")
    p.add_argument("client_id", metavar="CLIENT_ID")
    p.add_argument("limit", type=_gtq, metavar="GTQ")
    p.add_argument("--effective", type=_instant, metavar="TIME", help="default: now")
    p.add_argument("--note")

    p = leaf(
        cs,
        "set-wallet",
        _clients_set_wallet,
        help="change the payout wallet (refused once the client has allocations) or its key",
    )
    p.add_argument("client_id", metavar="CLIENT_ID")
    p.add_argument("--wallet-id", required=True)
    _key_source(p)

    # deposits -----------------------------------------------------------------------------
    deposits = _add_parser(subparsers, "deposits", help="record, confirm and correct deposits")
    ds = deposits.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = leaf(ds, "add", _deposits_add, help="record a pending deposit")
    p.add_argument("client_id", metavar="CLIENT_ID")
    p.add_argument("amount", type=_gtq, metavar="GTQ")
    p.add_argument("--id", dest="deposit_id", help="deposit id (default: generated)")
    p.add_argument("--note")
    p.add_argument("--confirm", action="store_true", help="record it as confirmed now")

    p = leaf(ds, "confirm", _deposits_confirm, help="confirm a pending deposit (once)")
    p.add_argument("deposit_id", metavar="DEPOSIT_ID")
    p.add_argument("--at", type=_instant, metavar="TIME", help="confirmation time (default now)")

    p = leaf(ds, "correct", _deposits_correct, help="add a compensating correction (±GTQ)")
    p.add_argument("deposit_id", metavar="DEPOSIT_ID")
    p.add_argument("amount", type=_signed_gtq, metavar="±GTQ", help="e.g. -50.00 or 25.00")
    p.add_argument("--reason", required=True)
    p.add_argument("--id", dest="correction_id", help="correction id (default: generated)")

    p = leaf(ds, "list", _deposits_list, help="list deposits and corrections")
    p.add_argument("--client", dest="client_id")
    p.add_argument("--status", choices=("pending", "confirmed"))

    # commission ---------------------------------------------------------------------------
    commission = _add_parser(subparsers, "commission", help="the commission split")
    ms = commission.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = leaf(
        ms,
        "set",
        _commission_set,
        help="a new commission version (basis points must sum to 10000)",
    )
    p.add_argument(
        "--recipient",
        nargs=3,
        action="append",
        required=True,
        metavar=("RECIPIENT_ID", "WALLET_ID", "BASIS_POINTS"),
        help="repeat once per recipient",
    )
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument(
        "--invoice-key-env",
        action="append",
        metavar="RECIPIENT_ID=VAR",
        help="read a recipient's invoice key from environment variable VAR (repeat)",
    )
    keys.add_argument(
        "--invoice-keys-stdin",
        action="store_true",
        help="read 'RECIPIENT_ID INVOICE_KEY' lines from stdin",
    )
    p.add_argument("--invoice-key", nargs="?", action=_RefuseSecretOnArgv, help=argparse.SUPPRESS)
    p.add_argument("--effective", type=_instant, metavar="TIME", help="default: now")
    p.add_argument("--note")

    p = leaf(ms, "show", _commission_show, help="the version in force (or --all versions)")
    p.add_argument("--at", type=_instant, metavar="TIME")
    p.add_argument("--all", action="store_true", help="every version, scheduled ones too")

    # status -------------------------------------------------------------------------------
    p = _add_parser(
        subparsers,
        "status",
        parents=[common],
        help="clients, deposits, balances, allocation and payout totals",
    )
    p.add_argument("--at", type=_instant, metavar="TIME", help="settings in force at TIME")
    p.set_defaults(func=_runner(_status), action=None)


# --------------------------------------------------------------------------- running
@dataclass(frozen=True)
class Output:
    data: Any  # JSON-ready
    text: str


Handler = Callable[["sa.Engine", argparse.Namespace], Output]


def _runner(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from dca_pipeline.config import ConfigError
        from dca_pipeline.ledger.admin import AdminError, LedgerUnavailable

        name = " ".join(x for x in ("dca-pipeline", args.command, args.action) if x)
        try:
            ledger = _open_ledger(args.ledger_url)
        except ConfigError as exc:  # one line naming the variable, never a secret's value
            print(f"{name}: error: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except Exception as exc:  # noqa: BLE001 - any failure to open is reported in one line
            # Never the URL itself: it may carry a password.
            print(f"{name}: error: cannot open the ledger ({type(exc).__name__})", file=sys.stderr)
            return EXIT_UNAVAILABLE
        try:
            out = handler(ledger, args)
        except LedgerUnavailable as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        except AdminError as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except _InputError as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except Exception as exc:  # noqa: BLE001
            import sqlalchemy as sa

            if isinstance(exc, sa.exc.DBAPIError | sa.exc.OperationalError):
                print(
                    f"{name}: error: the ledger failed ({type(exc.orig).__name__}); "
                    "nothing was changed",
                    file=sys.stderr,
                )
                return EXIT_UNAVAILABLE
            raise
        if args.json:
            print(json.dumps(out.data, indent=2, sort_keys=False))
        else:
            print(out.text)
        return 0

    return run


class _InputError(Exception):
    """A CLI-level input problem (missing env var, bad stdin); one line, no secrets."""


def _open_ledger(url: str | None) -> sa.Engine:
    """Connect and migrate now, so failures are reported as "cannot open"."""
    from dca_pipeline.ledger.database import open_ledger

    return open_ledger(url)


def _read_key(args: argparse.Namespace) -> str:
    if args.invoice_key_env:
        value = os.environ.get(args.invoice_key_env, "").strip()
        if not value:
            raise _InputError(f"environment variable {args.invoice_key_env} is not set or empty")
        return value
    if sys.stdin.isatty():  # typed by hand: do not echo it on the terminal
        value = getpass.getpass("invoice key (not echoed): ").strip()
    else:
        lines = sys.stdin.read().splitlines()
        value = lines[0].strip() if lines else ""
    if not value:
        raise _InputError("no invoice key on stdin")
    return value


def _recipient_keys(args: argparse.Namespace, ids: Sequence[str]) -> dict[str, str]:
    keys: dict[str, str] = {}
    if args.invoice_keys_stdin:
        if sys.stdin.isatty():  # typed by hand: prompt per recipient, without echo
            text = "\n".join(
                f"{r} {getpass.getpass(f'invoice key of {r} (not echoed): ').strip()}" for r in ids
            )
        else:
            text = sys.stdin.read()
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise _InputError(f"stdin line {number}: expected 'RECIPIENT_ID INVOICE_KEY'")
            if parts[0] in keys:
                raise _InputError(f"stdin line {number}: a second key for {parts[0]!r}")
            keys[parts[0]] = parts[1]
    else:
        for item in args.invoice_key_env:
            recipient, sep, var = item.partition("=")
            if not sep or not recipient or not _ENV_NAME.fullmatch(var):
                raise _InputError(f"--invoice-key-env expects RECIPIENT_ID=VAR, not {item!r}")
            if recipient in keys:
                raise _InputError(f"two --invoice-key-env for {recipient!r}")
            value = os.environ.get(var, "").strip()
            if not value:
                raise _InputError(f"environment variable {var} is not set or empty")
            keys[recipient] = value
    unknown = sorted(set(keys) - set(ids))
    if unknown:
        raise _InputError(f"an invoice key is given for {unknown[0]!r}, which is no --recipient")
    missing = [r for r in ids if r not in keys]
    if missing:
        raise _InputError(f"no invoice key for recipient {missing[0]!r}")
    return keys


# --------------------------------------------------------------------------- formatting
def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _money(cents: int | None) -> str:
    from dca_pipeline.domain.money import format_cents

    return "-" if cents is None else format_cents(cents)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _client_json(client: Any, balance: Any | None = None) -> dict[str, Any]:
    from dca_pipeline.ledger.admin import to_jsonable

    data = to_jsonable(client)
    data["invoice_key"] = KEY_MASK  # it exists, and is never shown
    if balance is not None:
        data["balance"] = to_jsonable(balance)
    return data


def _settings_text(settings: Any) -> tuple[str, str, str]:
    if settings is None:
        return ("-", "scheduled", "-")
    return (settings.mode, settings.status, _money(settings.daily_limit_cents))


# --------------------------------------------------------------------------- handlers
def _clients_add(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    key = _read_key(args)
    client = admin.add_client(
        ledger,
        client_id=args.client_id,
        lnbits_user_id=args.user_id,
        wallet_id=args.wallet_id,
        invoice_key=key,
        display_name=args.name,
        mode=args.mode,
        status="paused" if args.paused else "active",
        daily_limit_cents=args.limit,
        effective_at=args.effective,
    )
    mode, status, limit = _settings_text(client.settings)
    if client.settings is None and client.next_change is not None:
        mode, status, limit = _settings_text(client.next_change)
        status += f" from {_when(client.next_change.effective_at)}"
    return Output(
        _client_json(client),
        f"added client {client.client_id}: {mode}, {status}, limit {limit}, "
        f"wallet {client.wallet_id}",
    )


def _clients_list(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    clients = admin.list_clients(ledger, at=args.at)
    balances = {b.client_id: b for b in admin.balances(ledger)}
    rows = []
    for c in clients:
        mode, status, limit = _settings_text(c.settings)
        b = balances[c.client_id]
        nxt = c.next_change
        rows.append(
            (
                c.client_id,
                c.display_name,
                mode,
                status,
                limit,
                c.wallet_id,
                KEY_MASK,
                _money(b.remaining_cents),
                _money(b.pending_cents),
                f"{nxt.mode}/{nxt.status} at {_when(nxt.effective_at)}" if nxt else None,
            )
        )
    text = _table(
        (
            "CLIENT",
            "NAME",
            "MODE",
            "STATUS",
            "LIMIT",
            "WALLET",
            "KEY",
            "REMAINING",
            "PENDING",
            "NEXT CHANGE",
        ),
        rows,
    )
    return Output([_client_json(c, balances[c.client_id]) for c in clients], text)


def _clients_show(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    client = admin.get_client(ledger, client_id=args.client_id)
    history = admin.client_history(ledger, client_id=args.client_id)
    deposits = admin.list_deposits(ledger, client_id=args.client_id)
    balance = admin.balances(ledger, client_id=args.client_id)[0]
    mode, status, limit = _settings_text(client.settings)
    lines = [
        f"client        {client.client_id}"
        + (f" ({client.display_name})" if client.display_name else ""),
        f"LNbits user   {client.lnbits_user_id}",
        f"wallet        {client.wallet_id} (invoice key {KEY_MASK})"
        + ("; immutable: the client has allocation lines" if client.has_allocations else ""),
        f"now           {mode}, {status}, daily limit {limit}",
        f"balance       remaining {_money(balance.remaining_cents)} = deposits "
        f"{_money(balance.deposited_cents)} + corrections {_money(balance.corrections_cents)} "
        f"- allocated {_money(balance.allocated_cents)} ({balance.allocated_sats} sats); "
        f"pending {_money(balance.pending_cents)}",
        "",
        "settings history:",
        _table(
            ("EFFECTIVE", "MODE", "STATUS", "LIMIT", "RECORDED", "NOTE"),
            [
                (
                    _when(h.effective_at),
                    h.mode,
                    h.status,
                    _money(h.daily_limit_cents),
                    _when(h.recorded_at),
                    h.note,
                )
                for h in history
            ],
        ),
        "",
        "deposits:",
        _deposit_table(deposits),
    ]
    data = _client_json(client, balance)
    data["history"] = admin.to_jsonable(history)
    data["deposits"] = admin.to_jsonable(deposits)
    return Output(data, "\n".join(lines))


def _settings_output(client_id: str, verb: str, row: Any) -> Output:
    from dca_pipeline.ledger.admin import to_jsonable

    data = {"client_id": client_id, **to_jsonable(row)}
    return Output(
        data,
        f"client {client_id} {verb} from {_when(row.effective_at)}: {row.mode}, {row.status}, "
        f"daily limit {_money(row.daily_limit_cents)}",
    )


def _clients_pause(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    row = admin.pause_client(
        ledger, client_id=args.client_id, effective_at=args.effective, note=args.note
    )
    return _settings_output(args.client_id, "paused", row)


def _clients_resume(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    row = admin.resume_client(
        ledger, client_id=args.client_id, effective_at=args.effective, note=args.note
    )
    return _settings_output(args.client_id, "resumed", row)


def _clients_set_mode(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    row = admin.set_mode(
        ledger,
        client_id=args.client_id,
        mode=args.mode,
        daily_limit_cents=args.limit,
        effective_at=args.effective,
        note=args.note,
    )
    return _settings_output(args.client_id, f"set to {args.mode} mode", row)


def _clients_set_limit(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    row = admin.set_limit(
        ledger,
        client_id=args.client_id,
        daily_limit_cents=args.limit,
        effective_at=args.effective,
        note=args.note,
    )
    return _settings_output(args.client_id, "has a new limit", row)


def _clients_set_wallet(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    key = _read_key(args)
    client = admin.set_wallet(
        ledger, client_id=args.client_id, wallet_id=args.wallet_id, invoice_key=key
    )
    return Output(
        _client_json(client), f"client {client.client_id}: wallet {client.wallet_id} (key set)"
    )


def _deposit_table(deposits: Sequence[Any]) -> str:
    return _table(
        (
            "DEPOSIT",
            "CLIENT",
            "KIND",
            "AMOUNT",
            "STATUS",
            "CREATED",
            "CONFIRMED",
            "CORRECTS",
            "NOTE",
        ),
        [
            (
                d.deposit_id,
                d.client_id,
                d.kind,
                f"{_money(d.amount_cents)} {d.currency}",
                d.status,
                _when(d.created_at),
                _when(d.confirmed_at),
                d.corrects_deposit_id,
                d.note,
            )
            for d in deposits
        ],
    )


def _deposit_output(verb: str, deposit: Any) -> Output:
    from dca_pipeline.ledger.admin import to_jsonable

    when = f" at {_when(deposit.confirmed_at)}" if deposit.confirmed_at else ""
    return Output(
        to_jsonable(deposit),
        f"{verb} {deposit.kind} {deposit.deposit_id} of client {deposit.client_id}: "
        f"{_money(deposit.amount_cents)} {deposit.currency}, {deposit.status}{when}",
    )


def _deposits_add(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    deposit = admin.add_deposit(
        ledger,
        client_id=args.client_id,
        amount_cents=args.amount,
        deposit_id=args.deposit_id,
        note=args.note,
        confirm=args.confirm,
    )
    return _deposit_output("recorded", deposit)


def _deposits_confirm(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    deposit = admin.confirm_deposit(ledger, deposit_id=args.deposit_id, confirmed_at=args.at)
    return _deposit_output("confirmed", deposit)


def _deposits_correct(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    deposit = admin.correct_deposit(
        ledger,
        deposit_id=args.deposit_id,
        amount_cents=args.amount,
        note=args.reason,
        correction_id=args.correction_id,
    )
    return _deposit_output(f"recorded for {args.deposit_id} the", deposit)


def _deposits_list(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    deposits = admin.list_deposits(ledger, client_id=args.client_id, status=args.status)
    return Output(admin.to_jsonable(deposits), _deposit_table(deposits))


def _commission_set(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    specs = []
    for recipient_id, wallet_id, bp in args.recipient:
        if not _BASIS_POINTS.fullmatch(bp):
            raise _InputError(f"basis points of {recipient_id!r} must be a whole number: {bp!r}")
        specs.append((recipient_id, wallet_id, int(bp)))
    keys = _recipient_keys(args, [r for r, _, _ in specs])
    version = admin.set_commission(
        ledger,
        recipients=[admin.RecipientSpec(r, w, bp, keys[r]) for r, w, bp in specs],
        effective_at=args.effective,
        note=args.note,
    )
    return Output(
        admin.to_jsonable(version),
        f"commission version {version.version_id} effective {_when(version.effective_at)}:\n"
        + _commission_table(version),
    )


def _commission_table(version: Any) -> str:
    return _table(
        ("RECIPIENT", "WALLET", "BASIS POINTS", "KEY"),
        [(r.recipient_id, r.wallet_id, r.basis_points, KEY_MASK) for r in version.recipients],
    )


def _commission_show(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    if args.all:
        versions = admin.commission_history(ledger)
        text = "\n\n".join(
            f"version {v.version_id} effective {_when(v.effective_at)}"
            + (f" ({v.note})" if v.note else "")
            + ":\n"
            + _commission_table(v)
            for v in versions
        )
        return Output(admin.to_jsonable(versions), text or "no commission configured")
    version = admin.get_commission(ledger, at=args.at)
    if version is None:
        return Output(None, "no commission version in force")
    return Output(
        admin.to_jsonable(version),
        f"version {version.version_id} effective {_when(version.effective_at)}:\n"
        + _commission_table(version),
    )


def _status(ledger: sa.Engine, args: argparse.Namespace) -> Output:
    from dca_pipeline.ledger import admin

    st = admin.status_summary(ledger, at=args.at)
    commission = (
        "none"
        if st.commission is None
        else f"version {st.commission.version_id} ("
        + ", ".join(f"{r.recipient_id} {r.basis_points} bp" for r in st.commission.recipients)
        + ")"
    )
    payouts = ", ".join(f"{k} {v}" for k, v in sorted(st.payouts_by_status.items())) or "none"
    lines = [
        f"at            {_when(st.at)}",
        f"clients       {st.clients}: {st.clients_active_flow} active flow, "
        f"{st.clients_active_fixed} active fixed, {st.clients_paused} paused, "
        f"{st.clients_scheduled} scheduled",
        f"deposits      confirmed {_money(st.confirmed_cents)}; pending {st.pending_deposits} "
        f"({_money(st.pending_cents)})",
        f"allocated     {_money(st.allocated_cents)} ({st.allocated_sats} sats) over "
        f"{st.allocation_events} events; last event {_when(st.last_allocated_event_at)}",
        f"remaining     {_money(st.remaining_cents)}",
        f"unallocated   {_money(st.unallocated_cents)} ({st.unallocated_sats} sats)",
        f"commission    {commission}; {st.commission_sats} sats allocated",
        f"payouts       {payouts}",
        "",
        _table(
            ("CLIENT", "DEPOSITS", "CORRECTIONS", "ALLOCATED", "SATS", "REMAINING", "PENDING"),
            [
                (
                    b.client_id,
                    _money(b.deposited_cents),
                    _money(b.corrections_cents),
                    _money(b.allocated_cents),
                    b.allocated_sats,
                    _money(b.remaining_cents),
                    _money(b.pending_cents),
                )
                for b in st.balances
            ],
        ),
    ]
    return Output(admin.to_jsonable(st), "\n".join(lines))
