"""A deterministic, realistic Lamassu v10 database: `dca-pipeline lamassu-fixture`, tests, benches.

``create_lamassu_database`` makes a PostgreSQL database with the real final-state schema
(``lamassu_schema_ddl.sql``, reconstructed from lamassu-server's migrations) and ``generate``
fills it with rows shaped like one Guatemalan two-way machine operator's (lamassu-schema.md §5):
GTQ, BTC and LN (plus a few ETH rows that are never eligible), the v8 cash-out formula computed
exactly with ``Decimal``, the observed status mix, and the ``cash_out_actions`` event log whose
``dispense`` row carries the only dispense time. Same seed → same rows, byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from dca_pipeline.sources.base import FetchWindow, LamassuTable
from dca_pipeline.sources.postgres import copy_export

ANONYMOUS_CUSTOMER_ID = "47ac1184-8102-11e7-9079-8f13a7117867"
GUATEMALA = timezone(timedelta(hours=-6), "America/Guatemala")  # no DST since 2006
BUSINESS_OPEN, BUSINESS_CLOSE = time(8, 0), time(20, 0)
FIAT_CODE = "GTQ"

_SATS_PER_BTC = Decimal(100_000_000)
_WEI_PER_ETH = Decimal(10**18)
_FIVE_PLACES = Decimal("0.00001")
_SIX_PLACES = Decimal("0.000001")
_DBNAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_CASH_OUT_AMOUNTS = (100, 200, 300, 400, 500, 800, 1000, 1500, 2000, 2500, 3000, 4000, 5000)
_CASH_OUT_WEIGHTS = (14, 12, 6, 6, 10, 8, 12, 5, 10, 4, 5, 6, 2)
_CASH_OUT_COMMISSIONS = (Decimal("0.03"), Decimal("0.045"), Decimal("0.055"))
_CASH_IN_COMMISSIONS = (Decimal("0.05"), Decimal("0.06"), Decimal("0.07"), Decimal("0.08"),
                        Decimal("0.10"))
_BILLS = (5, 10, 20, 50, 100, 200)
_BILL_WEIGHTS = (3, 5, 10, 17, 40, 25)
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


# -- exact Lamassu arithmetic (lamassu-machine lib/tx.js, BigNumber ROUND_HALF_EVEN) -----------

def effective_commission(commission: Decimal, discount: int | None) -> Decimal:
    return commission * (1 - Decimal(discount or 0) / 100)


def truncate_to_six_places(atoms: Decimal) -> int:
    """``t6``: floor to whole atoms, then round half-even to 6 BTC decimals (100 sats)."""
    with localcontext() as ctx:
        ctx.prec = 60
        whole = atoms.to_integral_value(ROUND_FLOOR)
        coins = (whole / _SATS_PER_BTC).quantize(_SIX_PLACES, ROUND_HALF_EVEN)
        return int(coins * _SATS_PER_BTC)


def cash_out_crypto_atoms(fiat: Decimal, ticker: Decimal, commission: Decimal,
                          discount: int | None) -> int:
    """Machine ≥ v8: ``t6(fiat * 1e8 / round5(P * (1 - c_eff)))``."""
    with localcontext() as ctx:
        ctx.prec = 60
        rate_out = (ticker * (1 - effective_commission(commission, discount))).quantize(
            _FIVE_PLACES, ROUND_HALF_EVEN
        )
        return truncate_to_six_places(fiat * _SATS_PER_BTC / rate_out)


def cash_in_crypto_atoms(bills: Sequence[int], cash_in_fee: Decimal, ticker: Decimal,
                         commission: Decimal, discount: int | None) -> int:
    """``t6(Σ t6((bill - fee_on_first_bill) * 1e8 / round5(P * (1 + c_eff))))``."""
    with localcontext() as ctx:
        ctx.prec = 60
        rate_in = (ticker * (1 + effective_commission(commission, discount))).quantize(
            _FIVE_PLACES, ROUND_HALF_EVEN
        )
        total = 0
        for position, bill in enumerate(bills):
            net = Decimal(bill) - (cash_in_fee if position == 0 else 0)
            total += truncate_to_six_places(max(net, Decimal(0)) * _SATS_PER_BTC / rate_in)
        return truncate_to_six_places(Decimal(total))


# -- database lifecycle -------------------------------------------------------------------------

def _check_dbname(dbname: str) -> str:
    if not _DBNAME.fullmatch(dbname):
        raise ValueError(f"database name must match {_DBNAME.pattern}: {dbname!r}")
    return dbname


def dsn_for_database(admin_dsn: str, dbname: str) -> str:
    params = psycopg2.extensions.parse_dsn(admin_dsn)
    params["dbname"] = _check_dbname(dbname)
    return psycopg2.extensions.make_dsn(**params)


def schema_ddl() -> str:
    return resources.files("dca_pipeline.demo").joinpath("lamassu_schema_ddl.sql").read_text()


def create_lamassu_database(admin_dsn: str, dbname: str) -> str:
    """Create ``dbname`` with the Lamassu v10.0.3 schema (+ the anonymous customer); its DSN."""
    admin = psycopg2.connect(admin_dsn)
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(
                _check_dbname(dbname))))
    finally:
        admin.close()
    dsn = dsn_for_database(admin_dsn, dbname)
    with _connection(dsn) as conn, conn.cursor() as cursor:
        cursor.execute(schema_ddl())
        # Migration 036 inserts this row; every transaction's customer_id defaults to it.
        cursor.execute(
            "INSERT INTO customers (id, name) VALUES (%s, 'anonymous')", (ANONYMOUS_CUSTOMER_ID,)
        )
    return dsn


def drop_database(admin_dsn: str, dbname: str) -> None:
    """Drop ``dbname`` if it exists, disconnecting its sessions."""
    admin = psycopg2.connect(admin_dsn)
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(_check_dbname(dbname))))
    finally:
        admin.close()


@contextmanager
def _connection(
    conn_or_dsn: psycopg2.extensions.connection | str,
) -> Iterator[psycopg2.extensions.connection]:
    """Commit on success; close only connections opened here."""
    if isinstance(conn_or_dsn, str):
        conn = psycopg2.connect(conn_or_dsn)
        try:
            with conn:
                yield conn
        finally:
            conn.close()
    else:
        with conn_or_dsn:
            yield conn_or_dsn


# -- row generation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class GeneratedSummary:
    start: date
    days: int
    seed: int
    window: FetchWindow  # covers every generated `created` (local business days, in UTC)
    cash_outs: int
    cash_out_actions: int
    cash_ins: int
    bills: int
    eligible_cash_out_ids: tuple[str, ...] = field(repr=False)
    authorized_unconfirmed_ids: tuple[str, ...] = field(repr=False)
    not_seen_ids: tuple[str, ...] = field(repr=False)
    other_coin_ids: tuple[str, ...] = field(repr=False)
    eligible_crypto_atoms: int = 0


class _Rows:
    """Rows per table as CSV text for ``COPY ... FROM STDIN`` (None → NULL, '' → "")."""

    def __init__(self) -> None:
        self.buffers: dict[str, io.StringIO] = {}
        self.counts: dict[str, int] = {}
        self.columns: dict[str, tuple[str, ...]] = {}

    @staticmethod
    def _field(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "t" if value else "f"
        if isinstance(value, datetime):
            return value.isoformat()
        text = str(value)
        if text == "" or any(ch in text for ch in ',"\n\r'):
            return '"' + text.replace('"', '""') + '"'
        return text

    def add(self, table: str, row: dict[str, Any]) -> None:
        buffer = self.buffers.setdefault(table, io.StringIO())
        if table not in self.counts:
            self.counts[table] = 0
            self.columns[table] = tuple(row)
        if len(row) != len(self.columns[table]):
            raise ValueError(f"{table} row has columns {sorted(row)}, expected the first row's")
        buffer.write(",".join(self._field(row[c]) for c in self.columns[table]) + "\n")
        self.counts[table] += 1

    def copy_into(self, cursor: psycopg2.extensions.cursor, table: str) -> None:
        if not self.counts.get(table):
            return
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in self.columns[table])
        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
            sql.Identifier(table), columns
        )
        buffer = self.buffers[table]
        buffer.seek(0)
        cursor.copy_expert(statement.as_string(cursor), buffer)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _btc_address(rng: random.Random) -> str:
    return "bc1q" + "".join(rng.choice(_BECH32) for _ in range(38))


def _ln_invoice(rng: random.Random, sats: int) -> str:
    return f"lnbc{sats * 10}n1p" + "".join(rng.choice(_BECH32) for _ in range(180))


def _eth_address(rng: random.Random) -> str:
    return "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(40))


def _business_moment(rng: random.Random, day: date) -> datetime:
    opening = datetime.combine(day, BUSINESS_OPEN, GUATEMALA)
    seconds = (datetime.combine(day, BUSINESS_CLOSE, GUATEMALA) - opening).total_seconds()
    offset = timedelta(seconds=rng.randrange(int(seconds)), microseconds=rng.randrange(1_000_000))
    return (opening + offset).astimezone(UTC)


def _seconds(rng: random.Random, low: int, high: int) -> timedelta:
    """A random duration in [low, high) seconds, to the microsecond."""
    return timedelta(microseconds=rng.randrange(low * 1_000_000, high * 1_000_000))


def _cash_out_row_base(
    tx_id: str, device_id: str, address: str, atoms: int, coin: str, fiat: Decimal,
    created: datetime, version: int, commission: Decimal, ticker: Decimal,
    discount: int | None, discount_source: str | None, hd_index: int | None,
) -> dict[str, Any]:
    return {
        "id": tx_id, "device_id": device_id, "to_address": address, "crypto_atoms": atoms,
        "crypto_code": coin, "fiat": f"{fiat:.5f}", "fiat_code": FIAT_CODE,
        "status": "notSeen", "dispense": False, "notified": False, "redeem": False,
        "phone": None, "error": None, "created": created, "confirmed_at": None,
        "hd_index": hd_index, "swept": False, "timedout": False, "dispense_confirmed": False,
        "provisioned_1": None, "provisioned_2": None, "denomination_1": None,
        "denomination_2": None, "error_code": None, "customer_id": ANONYMOUS_CUSTOMER_ID,
        "tx_version": version, "published_at": None, "terms_accepted": True,
        "layer_2_address": None, "commission_percentage": f"{commission:.5f}",
        "raw_ticker_price": f"{ticker:.5f}", "received_crypto_atoms": None,
        "discount": discount, "discount_source": discount_source,
        "provisioned_3": None, "provisioned_4": None, "denomination_3": None,
        "denomination_4": None,
    }  # fmt: skip


def _action(tx: dict[str, Any], action: str, at: datetime, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "tx_id": tx["id"], "action": action, "to_address": None, "error": None,
        "error_code": None, "provisioned_1": None, "provisioned_2": None, "dispensed_1": None,
        "dispensed_2": None, "rejected_1": None, "rejected_2": None, "denomination_1": None,
        "denomination_2": None, "redeem": False, "created": at, "device_id": tx["device_id"],
    }  # fmt: skip
    row.update(fields)
    return row


@dataclass
class _Market:
    """Daily GTQ/BTC reference drifting ±2 % a day inside 800k–900k (assumed, §5)."""

    rng: random.Random
    btc: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        self.btc = Decimal(self.rng.randrange(820_000_00, 880_000_00)) / 100

    def next_day(self) -> None:
        drift = Decimal(self.rng.randrange(-200, 201)) / 10_000
        self.btc = min(max(self.btc * (1 + drift), Decimal(800_000)), Decimal(900_000))

    def bid(self) -> Decimal:
        noise = Decimal(self.rng.randrange(-30, 31)) / 10_000
        return (self.btc * (1 + noise)).quantize(Decimal("0.01"))

    def ask(self) -> Decimal:
        return (self.bid() * Decimal("1.005")).quantize(Decimal("0.01"))

    def eth_bid(self) -> Decimal:
        return (self.btc / 34).quantize(Decimal("0.01"))


def _generate_cash_out(
    rng: random.Random, market: _Market, rows: _Rows, day: date, devices: Sequence[str],
    hd_counter: list[int], kinds: dict[str, list[str]], eligible_atoms: list[int],
) -> list[dict[str, Any]]:
    """Add one cash-out row; return its actions (inserted later, in global time order)."""
    created = _business_moment(rng, day)
    device_id = rng.choice(devices)
    coin_draw = rng.random()
    coin = "ETH" if coin_draw < 0.03 else ("LN" if coin_draw < 0.60 else "BTC")
    amount = rng.choices(_CASH_OUT_AMOUNTS, _CASH_OUT_WEIGHTS)[0]
    if amount < 5000 and rng.random() < 0.08:
        amount += 50  # the 50-note cassette
    fiat = Decimal(amount)
    commission = rng.choice(_CASH_OUT_COMMISSIONS)
    discount, discount_source = None, None
    if rng.random() < 0.05:
        discount = rng.choice((10, 20, 50))
        discount_source = "promoCode" if rng.random() < 0.7 else "individualDiscount"
    tx_id = _uuid(rng)
    hd_index = None
    if coin == "ETH":
        ticker = market.eth_bid()
        rate = (ticker * (1 - effective_commission(commission, discount))).quantize(_FIVE_PLACES)
        wei = int((fiat * _WEI_PER_ETH / rate).to_integral_value(ROUND_FLOOR))
        atoms = wei // 10**12 * 10**12  # the machine quotes ETH to 6 decimals
        address = _eth_address(rng)
        hd_index = hd_counter[0]
        hd_counter[0] += 1
    else:
        ticker = market.bid()
        atoms = cash_out_crypto_atoms(fiat, ticker, commission, discount)
        address = _ln_invoice(rng, atoms) if coin == "LN" else _btc_address(rng)
    tx = _cash_out_row_base(tx_id, device_id, address, atoms, coin, fiat, created,
                            rng.randrange(16, 27), commission, ticker, discount,
                            discount_source, hd_index)
    actions = [_action(tx, "provisionAddress", created + _seconds(rng, 1, 3),
                       to_address=address)]
    notes_100, notes_50 = divmod(amount, 100)
    provisioned = {"provisioned_1": notes_100, "provisioned_2": notes_50 // 50,
                   "denomination_1": 100, "denomination_2": 50}

    def provision_and_dispense(at: datetime, *, confirmed: bool = True) -> datetime:
        tx.update(provisioned, provisioned_3=0, provisioned_4=0, denomination_3=0,
                  denomination_4=0, dispense=True, dispense_confirmed=confirmed)
        actions.append(_action(tx, "provisionNotes", at, **provisioned))
        dispensed_at = at + _seconds(rng, 3, 40)
        dispensed = {"dispensed_1": provisioned["provisioned_1"],
                     "dispensed_2": provisioned["provisioned_2"], "rejected_1": 0,
                     "rejected_2": 0}
        if confirmed:
            actions.append(_action(tx, "dispense", dispensed_at, **provisioned, **dispensed))
        else:
            dispensed["dispensed_1"] = max(0, notes_100 - 1)
            actions.append(_action(tx, "dispenseError", dispensed_at, error="Bill jam",
                                   error_code="dispenseError", **provisioned, **dispensed))
        return dispensed_at

    def see(status: str, at: datetime) -> None:
        tx["status"] = status
        tx["received_crypto_atoms"] = atoms
        if tx["published_at"] is None:
            tx["published_at"] = at
        if status == "confirmed":
            tx["confirmed_at"] = at
        actions.append(_action(tx, status, at))

    outcome = rng.random()
    if outcome < 0.30:  # abandoned: nothing ever arrives
        kinds["not_seen"].append(tx_id)
    elif outcome < 0.32:  # stuck, then cancelled by the operator hours later
        cancelled_at = created + _seconds(rng, 3600, 4 * 3600)
        tx.update(dispense=True, error="Operator cancel", error_code="operatorCancel")
        actions.append(_action(tx, "operatorCompleted", cancelled_at, device_id="",
                               error="Operator cancel", error_code="operatorCancel"))
    elif outcome < 0.325:  # less than crypto_atoms arrived
        at = created + _seconds(rng, 60, 240)
        see("insufficientFunds", at)
        tx["received_crypto_atoms"] = atoms - rng.randrange(1, max(2, atoms // 10))
    elif outcome < 0.33:  # paid, but the dispenser jammed
        at = created + _seconds(rng, 20, 120)
        see("confirmed", at)
        tx.update(error="Bill jam", error_code="dispenseError")
        provision_and_dispense(at + _seconds(rng, 1, 5), confirmed=False)
    elif outcome < 0.37 and coin == "BTC":  # 0-conf dispensed, never confirmed afterwards
        published = created + _seconds(rng, 60, 180)
        see("published", published)
        authorized = published + _seconds(rng, 1, 5)
        see("authorized", authorized)
        provision_and_dispense(authorized + _seconds(rng, 1, 5))
        kinds["authorized"].append(tx_id)
    elif coin == "LN":  # the invoice is paid: published_at == confirmed_at
        paid = created + _seconds(rng, 20, 120)
        tx["published_at"] = paid
        see("confirmed", paid)
        provision_and_dispense(paid + _seconds(rng, 1, 5))
    elif rng.random() < 0.85:  # BTC 0-conf: dispense on authorization, confirmation later
        published = created + _seconds(rng, 90, 180)
        see("published", published)
        authorized = published + _seconds(rng, 1, 5)
        see("authorized", authorized)
        provision_and_dispense(authorized + _seconds(rng, 1, 5))
        see("confirmed", created + _seconds(rng, 8 * 60, 25 * 60))
    else:  # BTC above the zero-conf limit: redeem later, dispense after confirmation
        tx["redeem"] = True
        published = created + _seconds(rng, 90, 180)
        see("published", published)
        actions.append(_action(tx, "redeemLater", published + _seconds(rng, 5, 30), redeem=True))
        confirmed = created + _seconds(rng, 8 * 60, 25 * 60)
        see("confirmed", confirmed)
        provision_and_dispense(confirmed + _seconds(rng, 300, 3600))

    eligible = (
        tx["dispense"] and tx["dispense_confirmed"] is True and tx["error"] is None
        and tx["status"] in ("authorized", "instant", "confirmed") and coin in ("BTC", "LN")
    )
    if eligible:
        kinds["eligible"].append(tx_id)
        eligible_atoms[0] += atoms
    if coin == "ETH":
        kinds["other_coin"].append(tx_id)
    rows.add("cash_out_txs", tx)
    return actions


def _generate_cash_in(rng: random.Random, market: _Market, rows: _Rows, day: date,
                      devices: Sequence[str]) -> None:
    created = _business_moment(rng, day)
    device_id = rng.choice(devices)
    coin = "LN" if rng.random() < 0.55 else "BTC"
    bills = rng.choices(_BILLS, _BILL_WEIGHTS, k=rng.randint(1, 10))
    cash_in_fee = Decimal(0) if rng.random() < 0.7 else Decimal(rng.randint(5, 10))
    commission = rng.choice(_CASH_IN_COMMISSIONS)
    ticker = market.ask()
    tx_id = _uuid(rng)
    atoms = cash_in_crypto_atoms(bills, cash_in_fee, ticker, commission, None)
    fiat = Decimal(sum(bills))
    row: dict[str, Any] = {
        "id": tx_id, "device_id": device_id,
        "to_address": _ln_invoice(rng, atoms) if coin == "LN" else _btc_address(rng),
        "crypto_atoms": atoms, "crypto_code": coin, "fiat": fiat, "fiat_code": FIAT_CODE,
        "fee": None, "tx_hash": None, "error": None, "created": created, "send": False,
        "send_confirmed": False, "timedout": False, "send_time": None, "error_code": None,
        "operator_completed": False, "send_pending": False,
        "cash_in_fee": f"{cash_in_fee:.5f}", "minimum_tx": 5,
        "customer_id": ANONYMOUS_CUSTOMER_ID, "tx_version": len(bills) + 2,
        "terms_accepted": True, "commission_percentage": f"{commission:.5f}",
        "raw_ticker_price": f"{ticker:.5f}", "is_paper_wallet": False,
    }  # fmt: skip
    sent_at = created + timedelta(seconds=8 * len(bills)) + _seconds(rng, 5, 30)
    outcome = rng.random()
    if outcome < 0.07:  # scanned an address, inserted nothing
        row.update(fiat=Decimal(0), crypto_atoms=0, tx_version=1)
        bills = []
    elif outcome < 0.10:  # bills inserted, never sent: expired; crypto_atoms never written
        row.update(crypto_atoms=0)
    elif outcome < 0.12:  # the wallet refused to send
        row.update(send=True, error="Insufficient funds", error_code="InsufficientFundsError")
    elif outcome < 0.125:
        row.update(send=True, operator_completed=True, error="Operator cancel",
                   error_code="operatorCancel")
    else:
        row.update(send=True, send_confirmed=True, send_time=sent_at,
                   tx_hash="".join(rng.choice("0123456789abcdef") for _ in range(64)),
                   fee=rng.randint(200, 5000) if coin == "BTC" else 0)
    row["fiat"] = f"{row['fiat']:.5f}"
    rows.add("cash_in_txs", row)
    for position, bill in enumerate(bills):
        inserted = created + timedelta(seconds=8 * position + 3)
        rows.add("bills", {
            "id": _uuid(rng), "fiat": bill, "fiat_code": FIAT_CODE, "cash_in_txs_id": tx_id,
            "device_time": int(inserted.timestamp() * 1000), "created": inserted,
            "crypto_code": coin, "cash_in_fee": f"{cash_in_fee if position == 0 else 0:.5f}",
        })  # fmt: skip


def generate(
    conn_or_dsn: psycopg2.extensions.connection | str,
    *,
    start: date,
    days: int,
    cash_outs_per_day: int,
    seed: int,
    cash_ins_per_day: int | None = None,
    machines: int = 2,
) -> GeneratedSummary:
    """Insert ``days`` business days of Lamassu activity from ``start``; deterministic per seed.

    ``cash_ins_per_day`` defaults to half the cash-outs. Rows of a day are created between
    08:00 and 20:00 Guatemala time; actions may follow hours later (cancellations, redeems).
    """
    if days < 1 or cash_outs_per_day < 0:
        raise ValueError("days must be ≥ 1 and cash_outs_per_day ≥ 0")
    cash_ins = cash_outs_per_day // 2 if cash_ins_per_day is None else cash_ins_per_day
    rng = random.Random(seed)
    market = _Market(rng)
    devices = [hashlib.sha256(f"lamassu-machine-{seed}-{n}".encode()).hexdigest()
               for n in range(machines)]
    rows = _Rows()
    kinds: dict[str, list[str]] = {"eligible": [], "authorized": [], "not_seen": [],
                                   "other_coin": []}
    eligible_atoms = [0]
    all_actions: list[dict[str, Any]] = []
    with _connection(conn_or_dsn) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(hd_index) + 1, 0) FROM cash_out_txs")
        hd_counter = [int(cursor.fetchone()[0])]
        for offset in range(days):
            day = start + timedelta(days=offset)
            for _ in range(cash_outs_per_day):
                all_actions += _generate_cash_out(rng, market, rows, day, devices, hd_counter,
                                                  kinds, eligible_atoms)
            for _ in range(cash_ins):
                _generate_cash_in(rng, market, rows, day, devices)
            market.next_day()
        # Insert the event log in time order so the serial ids follow time, as on a server.
        all_actions.sort(key=lambda action: (action["created"], action["tx_id"]))
        for action in all_actions:
            rows.add("cash_out_actions", action)
        for device_number, device_id in enumerate(devices):
            cursor.execute(
                "INSERT INTO devices (device_id, name) VALUES (%s, %s) "
                "ON CONFLICT (device_id) DO NOTHING",
                (device_id, f"ATM {device_number + 1}"),
            )
        for table in ("cash_out_txs", "cash_out_actions", "cash_in_txs", "bills"):
            rows.copy_into(cursor, table)
    first = datetime.combine(start, time(0), GUATEMALA).astimezone(UTC)
    last = datetime.combine(start + timedelta(days=days), time(0), GUATEMALA).astimezone(UTC)
    return GeneratedSummary(
        start=start, days=days, seed=seed, window=FetchWindow(first, last),
        cash_outs=rows.counts.get("cash_out_txs", 0),
        cash_out_actions=rows.counts.get("cash_out_actions", 0),
        cash_ins=rows.counts.get("cash_in_txs", 0), bills=rows.counts.get("bills", 0),
        eligible_cash_out_ids=tuple(kinds["eligible"]),
        authorized_unconfirmed_ids=tuple(kinds["authorized"]),
        not_seen_ids=tuple(kinds["not_seen"]), other_coin_ids=tuple(kinds["other_coin"]),
        eligible_crypto_atoms=eligible_atoms[0],
    )


# -- rows changing after creation (Lamassu rows are mutable for ~24 h) -----------------------

_UPDATABLE = ("status", "confirmed_at", "published_at", "error", "error_code", "dispense",
              "dispense_confirmed", "received_crypto_atoms", "redeem")


def update_later(
    conn_or_dsn: psycopg2.extensions.connection | str,
    tx_id: str,
    *,
    at: datetime,
    action: str | None = None,
    action_fields: dict[str, Any] | None = None,
    **changes: Any,
) -> None:
    """Change a cash-out as Lamassu would later (bumping ``tx_version``), logging ``action``."""
    unknown = set(changes) - set(_UPDATABLE)
    if unknown:
        raise ValueError(f"not an updatable cash_out_txs column: {sorted(unknown)}")
    assignments = [sql.SQL("{} = %s").format(sql.Identifier(name)) for name in changes]
    assignments.append(sql.SQL("tx_version = tx_version + 1"))
    with _connection(conn_or_dsn) as conn, conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("UPDATE cash_out_txs SET {} WHERE id = %s RETURNING device_id").format(
                sql.SQL(", ").join(assignments)
            ),
            (*changes.values(), tx_id),
        )
        found = cursor.fetchone()
        if found is None:
            raise LookupError(f"no cash-out {tx_id}")
        if action is not None:
            fields = {"device_id": found[0], **(action_fields or {})}
            names = ["tx_id", "action", "created", *fields]
            cursor.execute(
                sql.SQL("INSERT INTO cash_out_actions ({}) VALUES ({})").format(
                    sql.SQL(", ").join(sql.Identifier(n) for n in names),
                    sql.SQL(", ").join(sql.Placeholder() * len(names)),
                ),
                (tx_id, action, at, *fields.values()),
            )


def confirm_later(conn_or_dsn: psycopg2.extensions.connection | str, tx_id: str,
                  at: datetime) -> None:
    """A 0-conf (``authorized``) cash-out gets its on-chain confirmation."""
    update_later(conn_or_dsn, tx_id, at=at, action="confirmed", status="confirmed",
                 confirmed_at=at)


def fail_after_dispense(conn_or_dsn: psycopg2.extensions.connection | str, tx_id: str,
                        at: datetime, error: str = "Bill jam") -> None:
    """The machine reports a partial dispense after the row was first exported."""
    update_later(conn_or_dsn, tx_id, at=at, action="dispenseError",
                 action_fields={"error": error, "error_code": "dispenseError"},
                 error=error, error_code="dispenseError", dispense_confirmed=False)


def operator_cancel_later(conn_or_dsn: psycopg2.extensions.connection | str, tx_id: str,
                          at: datetime) -> None:
    """The operator cancels (``cash-out-tx.js`` ``cancel``): error set, dispense forced true."""
    update_later(conn_or_dsn, tx_id, at=at, action="operatorCompleted",
                 action_fields={"device_id": "", "error": "Operator cancel",
                                "error_code": "operatorCancel"},
                 error="Operator cancel", error_code="operatorCancel", dispense=True)


# -- folder export (what the SSH source downloads) --------------------------------------------

def export_folder(dsn: str, directory: Path | str, window: FetchWindow) -> dict[LamassuTable, Path]:
    """Write ``<directory>/<table>.csv`` for the three tables with the sources' own COPY path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[LamassuTable, Path] = {}
    conn = psycopg2.connect(dsn)
    try:
        for table in LamassuTable:
            data = copy_export(conn, table, window)
            target = directory / f"{table.value}.csv"
            partial = target.with_suffix(".csv.partial")
            partial.write_bytes(data)
            partial.replace(target)  # readers never see a half-written export
            written[table] = target
    finally:
        conn.close()
    return written
