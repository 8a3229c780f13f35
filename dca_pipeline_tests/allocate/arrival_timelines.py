"""Random arrival timelines of one final Lamassu export, and the real pipeline driven tick by tick.

Used by ``test_arrival_properties.py`` (the property of issue "Live allocation that never
stops"). Three parts:

* **The final export** (:class:`Scenario`): a few business days of Lamassu ``cash_out_txs`` and
  ``cash_out_actions`` rows in Lamassu's CSV shape (every column of the bundled sample export),
  some cash-outs ineligible in their final form, flow and fixed clients with deposits (some
  confirmed mid-period) and a commission split.
* **An arrival timeline** of that export: for each tick, which version of each row a fetch sees
  (absent; an earlier version — not dispensed yet, errored, another currency, other amounts;
  the same id twice with different content; the dispense action a few ticks after its row, which
  may move the event time across midnight) and which business days the tick materializes
  (random order, repeats, ranges). After the last tick every row is in its final form.
* **The pipeline** (:class:`Pipeline`): each tick lands its export exactly as the raw ingest
  asset does (``fetch_tables`` → ``read_export`` → ``window_rows`` → ``land_export`` ×3 +
  ``record_fetch`` in one transaction), validates it as ``validated_cash_outs`` does
  (``landed_cash_outs`` / ``landed_actions`` → ``validate_cash_outs`` → ``store_validation``),
  then runs ``allocate_range(start_day=<first day>, only_landed=True)`` with a ``now`` long
  after everything (settle passes) and the blocking money checks of the allocation asset. A run
  refused because an earlier day has due in-order events is materialized again from the day it
  names, as an operator would; before every run an independent oracle (plain SQL over the
  ledger) says whether §4a requires that refusal, and which day it must name.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from hypothesis import strategies as st

from dca_pipeline.defs.ingest.assets import landed_window, window_rows
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.lamassu.columns import REQUIRED_COLUMNS
from dca_pipeline.lamassu.csv_io import read_export
from dca_pipeline.lamassu.validation import validate_cash_outs
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import landing
from dca_pipeline.ledger import schema as s
from dca_pipeline.sources import FetchWindow, LamassuTable, fetch_tables
from dca_pipeline_tests.allocate.seeding import add_client, change, commission, deposit

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "lamassu"
RULES = BusinessRules()
#: The ingest asset's look-back (BusinessSettings.overlap_hours) and the settle time.
OVERLAP = timedelta(hours=48)
SETTLE_MINUTES = 15
FIRST_DAY = date(2025, 6, 2)
#: Client settings and the commission split hold from here (as simulate's files do).
SINCE_ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)
#: Every run happens long after every cash-out: everything has settled.
BASE_NOW = datetime(2026, 1, 1, tzinfo=UTC)

#: Versions a row may show before its final form.
EARLIER_KINDS = ("final", "eligible", "errored", "undispensed", "changed", "other_currency")
FINAL_STATES = (
    "eligible",
    "eligible",
    "eligible",
    "not_seen",
    "cancelled",
    "errored",
    "other_coin",
)


# --------------------------------------------------------------------------- row shapes
def _sample(name: str, match: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    with (SAMPLE / name).open(newline="") as f:
        reader = csv.DictReader(f)
        row = next(r for r in reader if all(r[k] == v for k, v in match.items()))
        return list(reader.fieldnames or []), row


TX_FIELDS, TX_TEMPLATE = _sample(
    "cash_out_txs.csv", {"status": "confirmed", "dispense": "t", "crypto_code": "BTC"}
)
ACTION_FIELDS, ACTION_TEMPLATE = _sample("cash_out_actions.csv", {"action": "dispense"})
with (SAMPLE / "cash_in_txs.csv").open(newline="") as _f:
    CASH_IN_FIELDS = next(csv.reader(_f))


def stamp(at: datetime) -> str:
    """A timestamptz as ``psql`` exports it (UTC, ``+00``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def gtq(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def csv_bytes(fields: list[str], rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


# --------------------------------------------------------------------------- the scenario
@dataclass(frozen=True)
class CashOutTimeline:
    """One cash-out: its final row, and the versions the fetches see before it is final."""

    index: int
    created: datetime
    confirmed_at: datetime
    #: ``created`` of its dispense action; None: no dispense action (event time = confirmed_at).
    dispense_at: datetime | None
    fiat_cents: int
    crypto_atoms: int
    commission_percentage: str | None
    discount: str | None
    status: str  # status of its eligible versions (confirmed, instant, authorized)
    final_state: str  # one of FINAL_STATES
    #: (first tick, version kind) in tick order; the first entry is when the row first appears.
    phases: tuple[tuple[int, str], ...] = ()
    #: Ticks whose export holds the row twice with different content.
    duplicate_ticks: frozenset[int] = frozenset()
    #: The first tick whose export holds the dispense action.
    action_from: int = 0
    #: How a "changed" version differs: (Δ crypto_atoms, another commission percentage).
    change: tuple[int, str | None] = (1, None)

    @property
    def id(self) -> str:
        return f"{self.index:08x}-0000-4000-8000-{self.index * 7919:012x}"

    def kind_at(self, tick: int, final_tick: int) -> str | None:
        """The version a fetch at ``tick`` sees (None: not in Lamassu's table yet)."""
        if tick >= final_tick:
            return "final"
        current = None
        for first, kind in self.phases:
            if first <= tick:
                current = kind
        return current

    def row(self, kind: str) -> dict[str, str]:
        row = dict(TX_TEMPLATE)
        row.update(
            id=self.id, fiat=gtq(self.fiat_cents) + "000", crypto_atoms=str(self.crypto_atoms),
            received_crypto_atoms=str(self.crypto_atoms), crypto_code="BTC", fiat_code="GTQ",
            created=stamp(self.created), confirmed_at=stamp(self.confirmed_at),
            published_at=stamp(self.confirmed_at), status=self.status, dispense="t",
            dispense_confirmed="t", error="", error_code="",
            commission_percentage=self.commission_percentage or "", discount=self.discount or "",
            raw_ticker_price=f"{self.fiat_cents * 10**6 // self.crypto_atoms}.00000",
        )  # fmt: skip
        if kind == "final":
            kind = self.final_state
        if kind == "eligible":
            pass
        elif kind in ("not_seen", "undispensed"):
            row.update(
                status="notSeen" if kind == "not_seen" else "authorized",
                dispense="f",
                dispense_confirmed="f",
                confirmed_at="",
                published_at="",
            )
        elif kind == "cancelled":
            row.update(status="notSeen", dispense_confirmed="f", error="Operator cancel")
        elif kind == "errored":
            row.update(error="Operator cancel")
        elif kind == "other_coin":
            row.update(crypto_code="ETH")
        elif kind == "other_currency":
            row.update(fiat_code="USD")
        elif kind == "changed":
            atoms = max(1, self.crypto_atoms + self.change[0])
            row.update(crypto_atoms=str(atoms), received_crypto_atoms=str(atoms))
            if self.change[1] is not None:
                row.update(commission_percentage=self.change[1])
        else:
            raise ValueError(kind)
        return row

    def duplicate_of(self, row: dict[str, str]) -> dict[str, str]:
        """Another copy of the same id with different content (one more GTQ)."""
        return {**row, "fiat": gtq(self.fiat_cents + 100) + "000"}

    def action(self) -> dict[str, str]:
        assert self.dispense_at is not None
        row = dict(ACTION_TEMPLATE)
        row.update(
            id=str(100_000 + self.index),
            tx_id=self.id,
            created=stamp(self.dispense_at),
            device_time="",
        )
        return row


@dataclass(frozen=True)
class Client:
    client_id: str
    mode: str
    status: str
    daily_limit_cents: int | None
    deposits: tuple[tuple[int, datetime], ...]  # (amount, confirmed_at)
    #: (effective_at, status) changes after the initial settings, in time order.
    status_changes: tuple[tuple[datetime, str], ...] = ()

    def status_at(self, instant: datetime) -> str:
        status = self.status
        for at, changed in self.status_changes:
            if at <= instant:
                status = changed
        return status


@dataclass(frozen=True)
class Scenario:
    days: int
    clients: tuple[Client, ...]
    commission_bp: tuple[tuple[str, int], ...]
    cash_outs: tuple[CashOutTimeline, ...]
    #: (first day number, last day number) per tick, 1-based; the final tick comes after them.
    ticks: tuple[tuple[int, int], ...]
    #: Every row is in its final form from tick 0 and the first fetch covers the first day.
    in_order: bool = False
    #: Later commission versions: (effective_at, shares).
    commission_changes: tuple[tuple[datetime, tuple[tuple[str, int], ...]], ...] = ()

    @property
    def simulatable(self) -> bool:
        """simulate's admin files hold no history: only scenarios without settings changes."""
        return not self.commission_changes and not any(c.status_changes for c in self.clients)

    def commission_version_at(self, instant: datetime) -> datetime:
        """effective_at of the commission version in force at ``instant``."""
        found = SINCE_ALWAYS
        for at, _ in self.commission_changes:
            if at <= instant:
                found = max(found, at)
        return found

    @property
    def final_tick(self) -> int:
        return len(self.ticks)

    @property
    def first_day(self) -> date:
        return FIRST_DAY

    @property
    def last_day(self) -> date:
        return FIRST_DAY + timedelta(days=self.days - 1)

    def day(self, number: int) -> date:
        return FIRST_DAY + timedelta(days=number - 1)

    def export_at(self, tick: int) -> dict[LamassuTable, bytes]:
        """The three Lamassu tables as a fetch at ``tick`` sees them (whole tables; the
        window is cut by the ingest code)."""
        rows, actions = [], []
        for co in self.cash_outs:
            kind = co.kind_at(tick, self.final_tick)
            if kind is None:
                continue
            row = co.row(kind)
            rows.append(row)
            if tick < self.final_tick and tick in co.duplicate_ticks:
                rows.append(co.duplicate_of(row))
            if co.dispense_at is not None and (tick >= self.final_tick or co.action_from <= tick):
                actions.append(co.action())
        return {
            LamassuTable.CASH_OUT_TXS: csv_bytes(TX_FIELDS, rows),
            LamassuTable.CASH_OUT_ACTIONS: csv_bytes(ACTION_FIELDS, actions),
            LamassuTable.CASH_IN_TXS: csv_bytes(CASH_IN_FIELDS, []),
        }

    def final_export(self) -> dict[LamassuTable, bytes]:
        return self.export_at(self.final_tick)

    def describe(self) -> str:
        """A readable account of the example (for failure reports)."""
        out = [
            "(local times, America/Guatemala)",
            f"{self.days} days from {FIRST_DAY}, ticks {list(self.ticks)}"
            f"{' (in order)' if self.in_order else ''}",
        ]
        for c in self.clients:
            deps = ", ".join(f"{gtq(a)} @ {_lt(t)}" for a, t in c.deposits)
            out.append(
                f"  client {c.client_id} {c.mode}/{c.status} limit "
                f"{c.daily_limit_cents} deposits [{deps}] changes "
                f"{[(_lt(at), status) for at, status in c.status_changes]}"
            )
        changes = [(_lt(at), list(shares)) for at, shares in self.commission_changes]
        out.append(f"  commission {list(self.commission_bp)}, then {changes}")
        for co in self.cash_outs:
            disp = _lt(co.dispense_at) if co.dispense_at else "-"
            out.append(
                f"  {co.id} created {_lt(co.created)} dispense {disp} "
                f"(from tick {co.action_from}) fiat {gtq(co.fiat_cents)} atoms {co.crypto_atoms} "
                f"{co.commission_percentage}/{co.discount} final {co.final_state} "
                f"phases {list(co.phases)} dups {sorted(co.duplicate_ticks)} change {co.change}"
            )
        return "\n".join(out)


def _lt(at: datetime) -> str:
    return f"{at.astimezone(RULES.zone):%m-%d %H:%M:%S}"


# --------------------------------------------------------------------------- strategies
def _local(day: date, seconds: int) -> datetime:
    return datetime.combine(day, time(0), RULES.zone).astimezone(UTC) + timedelta(seconds=seconds)


def _instant(draw: st.DrawFn, days: int) -> datetime:
    day = FIRST_DAY + timedelta(days=draw(st.integers(0, days - 1)))
    return _local(day, draw(st.integers(0, 86_399)))


@st.composite
def clients_strategy(draw: st.DrawFn, days: int, with_changes: bool = False) -> tuple[Client, ...]:
    def confirmed_at() -> datetime:
        choice = draw(st.integers(0, 5))
        if choice < 3:
            return _local(FIRST_DAY - timedelta(days=1), 12 * 3600)
        if choice == 3:  # exactly at a fixed run (and maybe a cash-out): "at or before" counts
            return RULES.fixed_run_at(FIRST_DAY + timedelta(days=draw(st.integers(0, days - 1))))
        return _instant(draw, days)

    def changes() -> tuple[tuple[datetime, str], ...]:
        if not with_changes or draw(st.integers(0, 2)) > 0:
            return ()
        instants = sorted({_instant(draw, days) for _ in range(draw(st.integers(1, 2)))})
        return tuple((at, draw(st.sampled_from(["active", "paused"]))) for at in instants)

    out = []
    for i in range(draw(st.integers(1, 3))):
        deposits = tuple(
            (draw(st.integers(100, 20_000)) * 100, confirmed_at())
            for _ in range(draw(st.integers(1, 2)))
        )
        status = draw(st.sampled_from(["active", "active", "active", "paused"]))
        out.append(Client(f"flow-{i}", "flow", status, None, deposits, changes()))
    for i in range(draw(st.integers(0, 2))):
        deposits = ((draw(st.integers(100, 3_000)) * 100, confirmed_at()),)
        limit = draw(st.integers(50, 500)) * 100
        out.append(Client(f"fixed-{i}", "fixed", "active", limit, deposits, changes()))
    return tuple(out)


@st.composite
def commission_strategy(draw: st.DrawFn) -> tuple[tuple[str, int], ...]:
    names = ["operator", "partner", "agent"][: draw(st.integers(1, 3))]
    cuts = sorted(
        draw(
            st.lists(
                st.integers(1, 9_999), min_size=len(names) - 1, max_size=len(names) - 1, unique=True
            )
        )
    )
    bounds = [0, *cuts, 10_000]
    return tuple((n, bounds[i + 1] - bounds[i]) for i, n in enumerate(names))


@st.composite
def cash_out_strategy(
    draw: st.DrawFn, index: int, day_number: int, days: int, ticks: int, in_order: bool
) -> CashOutTimeline:
    day = FIRST_DAY + timedelta(days=day_number - 1)
    last = day_number == days  # nothing may move past the last day
    near_midnight = not last and draw(st.integers(0, 2)) == 0
    seconds = (
        draw(st.integers(86_400 - 900, 86_400 - 60)) if near_midnight
        else draw(st.integers(0, 86_400 - 3_600))
    )  # fmt: skip
    created = _local(day, seconds)
    confirmed_at = created + timedelta(seconds=draw(st.integers(1, 40)))
    has_action = draw(st.integers(0, 4)) > 0
    dispense_at = (
        confirmed_at + timedelta(seconds=draw(st.integers(0, 1_500))) if has_action else None
    )
    if near_midnight and has_action and draw(st.booleans()):
        # Dispensed after midnight: the event time (and business day) moves to the next day.
        midnight = _local(day + timedelta(days=1), 0)
        dispense_at = max(confirmed_at, midnight) + timedelta(seconds=draw(st.integers(0, 600)))
    if not near_midnight and draw(st.integers(0, 7)) == 0:
        # Exactly at the fixed run's instant (a cash-out goes first, then ids decide, §10).
        run_at = RULES.fixed_run_at(day)
        created = run_at - timedelta(seconds=draw(st.integers(1, 60)))
        confirmed_at = run_at if dispense_at is None else created + timedelta(seconds=1)
        dispense_at = run_at if dispense_at is not None else None
    fiat_gtq = draw(st.integers(20, 3_000))
    atoms = fiat_gtq * draw(st.integers(110, 140)) + draw(st.integers(0, 99))
    final_state = draw(st.sampled_from(FINAL_STATES))
    if final_state in ("not_seen", "cancelled"):
        dispense_at = None  # never dispensed: no dispense action
    common = dict(
        index=index, created=created, confirmed_at=confirmed_at, dispense_at=dispense_at,
        fiat_cents=fiat_gtq * 100, crypto_atoms=atoms,
        commission_percentage=draw(st.sampled_from(["0.03000", "0.05500", "0.08000", None])),
        discount=draw(st.sampled_from([None, None, "10", "50"])),
        status=draw(st.sampled_from(["confirmed", "confirmed", "instant", "authorized"])),
        final_state=final_state,
    )  # fmt: skip
    if in_order:
        return CashOutTimeline(**common, phases=((0, "final"),), action_from=0)
    appear = draw(st.integers(0, ticks))
    phases: list[tuple[int, str]] = []
    duplicates: frozenset[int] = frozenset()
    if appear < ticks:
        phases.append((appear, draw(st.sampled_from(EARLIER_KINDS))))
        for at in sorted(draw(st.lists(st.integers(appear, ticks - 1), max_size=2))):
            phases.append((at, draw(st.sampled_from(EARLIER_KINDS))))
        duplicates = frozenset(draw(st.sets(st.integers(appear, ticks - 1), max_size=2)))
    change = (
        draw(st.one_of(st.integers(-1_000, -1), st.integers(1, 1_000))),
        draw(st.sampled_from([None, "0.08000", "0.01000"])),
    )
    return CashOutTimeline(
        **common, phases=tuple(phases), duplicate_ticks=duplicates,
        action_from=draw(st.one_of(st.just(appear + 1), st.integers(0, ticks))),
        change=change,
    )  # fmt: skip


def _window_start_day(first_number: int) -> date:
    start = RULES.day_start_utc(FIRST_DAY + timedelta(days=first_number - 1)) - OVERLAP
    return RULES.business_day(start)


@st.composite
def scenarios(draw: st.DrawFn, in_order: bool | None = None) -> Scenario:
    """A final export, its clients and commission, and an arrival timeline of it."""
    if in_order is None:
        in_order = draw(st.integers(0, 2)) == 0
    days = draw(st.integers(3, 4))
    n_ticks = draw(st.integers(1, 5))
    ranges = []
    for _ in range(n_ticks):
        a = draw(st.integers(1, days))
        ranges.append((a, draw(st.integers(a, days))))
    if in_order and _window_start_day(ranges[0][0]) > FIRST_DAY:
        # "Nothing arrives late": the first fetch window reaches back to the first day.
        ranges[0] = (1, ranges[0][1])
    cash_outs = []
    # Sparse days (0 or 1 cash-out) make the effective start, the first sale and empty days
    # matter; busy days make late rows and compensations interleave.
    per_day = draw(st.sampled_from([1, 5, 5]))
    for day_number in range(1, days + 1):
        for _ in range(draw(st.integers(0, per_day))):
            cash_outs.append(
                draw(cash_out_strategy(len(cash_outs), day_number, days, n_ticks, in_order))
            )
    # Settings that change mid-period (as-of rules), only where simulate is not compared.
    with_changes = not in_order and draw(st.booleans())
    commission_changes = ()
    if with_changes and draw(st.booleans()):
        commission_changes = ((_instant(draw, days), draw(commission_strategy())),)
    return Scenario(
        days=days,
        clients=draw(clients_strategy(days, with_changes)),
        commission_bp=draw(commission_strategy()),
        cash_outs=tuple(cash_outs),
        ticks=tuple(ranges),
        in_order=in_order,
        commission_changes=commission_changes,
    )


# --------------------------------------------------------------------------- seeding
def seed_admin(engine: sa.Engine, sc: Scenario) -> None:
    """Clients, deposits and the commission split, as the admin CLI records them."""
    with engine.begin() as c:
        for client in sc.clients:
            add_client(
                c,
                client.client_id,
                mode=client.mode,
                status=client.status,
                daily_limit_cents=client.daily_limit_cents,
                effective_at=SINCE_ALWAYS,
            )
            for at, status in client.status_changes:
                change(
                    c, client.client_id, mode=client.mode, status=status, effective_at=at,
                    daily_limit_cents=client.daily_limit_cents,
                )  # fmt: skip
            for k, (amount, at) in enumerate(client.deposits):
                deposit(c, f"dep-{client.client_id}-{k}", client.client_id, amount, at)
        commission(c, dict(sc.commission_bp), SINCE_ALWAYS)
        for at, shares in sc.commission_changes:
            commission(c, dict(shares), at)


def write_simulate_inputs(sc: Scenario, folder: Path) -> dict[str, Path]:
    """The final export and the admin files in ``dca-pipeline simulate``'s formats."""
    final = sc.final_export()
    paths = {
        "cash_outs": folder / "cash_out_txs.csv",
        "cash_out_actions": folder / "cash_out_actions.csv",
        "clients": folder / "clients.csv",
        "deposits": folder / "deposits.csv",
        "commission": folder / "commission.csv",
    }
    paths["cash_outs"].write_bytes(final[LamassuTable.CASH_OUT_TXS])
    paths["cash_out_actions"].write_bytes(final[LamassuTable.CASH_OUT_ACTIONS])
    paths["clients"].write_bytes(csv_bytes(
        ["client_id", "mode", "status", "daily_limit", "wallet_id"],
        [{"client_id": c.client_id, "mode": c.mode, "status": c.status,
          "daily_limit": gtq(c.daily_limit_cents) if c.daily_limit_cents else "",
          "wallet_id": f"wallet-{c.client_id}"} for c in sc.clients],
    ))  # fmt: skip
    paths["deposits"].write_bytes(csv_bytes(
        ["deposit_id", "client_id", "amount", "status", "confirmed_at"],
        [{"deposit_id": f"dep-{c.client_id}-{k}", "client_id": c.client_id, "amount": gtq(a),
          "status": "confirmed", "confirmed_at": stamp(at)}
         for c in sc.clients for k, (a, at) in enumerate(c.deposits)],
    ))  # fmt: skip
    paths["commission"].write_bytes(csv_bytes(
        ["recipient_id", "wallet_id", "basis_points"],
        [{"recipient_id": r, "wallet_id": f"wallet-{r}", "basis_points": str(bp)}
         for r, bp in sc.commission_bp],
    ))  # fmt: skip
    return paths


def final_validation(sc: Scenario) -> Any:
    """The final export through the one validation (what "eligible in the final export" is)."""
    final = sc.final_export()
    return validate_cash_outs(
        read_export(final[LamassuTable.CASH_OUT_TXS], "cash_out_txs"),
        read_export(final[LamassuTable.CASH_OUT_ACTIONS], "cash_out_actions"),
        rules=RULES,
        now=BASE_NOW,
    ).valid


# --------------------------------------------------------------------------- the oracle
_REFUSAL = re.compile(
    r"^(\d{4}-\d{2}-\d{2}) has due events that are not allocated yet: materialize from "
    r"(\d{4}-\d{2}-\d{2}) "
)


def refused_day(message: str) -> date | None:
    """The day a §4a "One run" refusal names, or None for any other message."""
    match = _REFUSAL.match(message)
    if match is None or match.group(1) != match.group(2):
        return None
    return date.fromisoformat(match.group(1))


def _covered_through(c: sa.Connection, start: datetime) -> datetime | None:
    """End of the contiguous landed fetch windows from ``start`` (computed here, not by
    ``landing.landed_through``)."""
    f = s.lamassu_fetches.c
    windows = sorted(c.execute(sa.select(f.window_start, f.window_end)).tuples())
    reach = None
    changed = True
    while changed:  # a fixed point over the windows, in any order
        changed = False
        for lo, hi in windows:
            at = reach or start
            if lo <= at < hi and (reach is None or hi > reach):
                reach, changed = hi, True
    return reach


def _event_key_max(c: sa.Connection) -> tuple[datetime, int, str] | None:
    e = s.allocation_events.c
    rows = c.execute(
        sa.select(e.event_time, e.event_rank, e.cash_out_id, e.source_id).where(
            e.source_kind != "compensation"
        )
    ).all()
    keys = [(r.event_time, int(r.event_rank), r.cash_out_id or r.source_id) for r in rows]
    return max(keys) if keys else None


@dataclass(frozen=True)
class Due:
    """What §4a says is due and not in the sequence yet, computed by plain SQL (the oracle)."""

    #: (event key, business day) of due events without a live allocation: settled eligible
    #: cash-outs from the effective start on (of any day) and missing fixed runs up to the day
    #: asked for.
    events: list[tuple[tuple[datetime, int, str], date]]
    #: The largest (event time, rank, id) in the sequence.
    last_key: tuple[datetime, int, str] | None
    #: Live allocations that §4a must compensate: revoked, quarantined or changed.
    stale: list[str]

    def in_order_days(self, last_day: date) -> set[date]:
        return {
            day for key, day in self.events
            if day <= last_day and (self.last_key is None or key > self.last_key)
        }  # fmt: skip

    def left_after_a_run(self, last_day: date) -> list[tuple[tuple[datetime, int, str], date]]:
        """Due events a run over …``last_day`` must have taken: every late cash-out (whatever
        its day) and every in-order event up to ``last_day``."""
        return [
            (key, day) for key, day in self.events
            if day <= last_day or (self.last_key is not None and key <= self.last_key)
        ]  # fmt: skip


def _stands(allocation: Any, version: Any) -> bool:
    """A live allocation stands when its cash-out's latest version has the amounts it stored
    (a moved event time changes nothing)."""
    return (allocation.fiat_cents, allocation.principal_sats, allocation.commission_sats) == (
        version.fiat_cents, version.principal_sats, version.commission_sats
    ) and (
        allocation.commission_percentage is None
        or (allocation.commission_percentage, allocation.discount)
        == (version.commission_percentage, version.discount)
    )  # fmt: skip


def due(engine: sa.Engine, start_day: date, last_day: date, now: datetime) -> Due:
    """The oracle: what is due (§4a Due, One run) before a run over …``last_day``."""
    e, v, q = s.allocation_events.c, s.validated_cash_outs.c, s.quarantine.c
    with engine.connect() as c:
        last_key = _event_key_max(c)
        compensated = set(
            c.execute(
                sa.select(e.compensates_source_id).where(e.compensates_source_id.is_not(None))
            ).scalars()
        )
        live = {
            r.cash_out_id: r for r in c.execute(
                sa.select(e.source_id, e.cash_out_id, e.fiat_cents, e.principal_sats,
                          e.commission_sats, e.commission_percentage, e.discount)
                .where(e.source_kind == "cash_out")
            ).all() if r.source_id not in compensated
        }  # fmt: skip
        quarantined = set(
            c.execute(
                sa.select(q.source_id).where(
                    q.source_table == "cash_out_txs", q.resolved_at.is_(None)
                )
            ).scalars()
        )
        versions = {
            r.id: r for r in c.execute(
                sa.select(v.id, v.event_time, v.business_day, v.eligible, v.fiat_cents,
                          v.principal_sats, v.commission_sats, v.commission_percentage,
                          v.discount)
            ).all()
        }  # fmt: skip
        stale = sorted(
            cash_out_id for cash_out_id, allocation in live.items()
            if (version := versions.get(cash_out_id)) is None or not version.eligible
            or cash_out_id in quarantined or not _stands(allocation, version)
        )  # fmt: skip
        first_event = c.execute(sa.select(sa.func.min(e.business_day))).scalar()
        first_eligible = min(
            (
                r.business_day
                for r in versions.values()
                if r.eligible and r.business_day >= start_day
            ),
            default=None,
        )
        found = [d for d in (first_event, first_eligible) if d is not None]
        if not found:
            return Due([], last_key, stale)
        start = max(start_day, min(found))
        cutoff = now - timedelta(minutes=SETTLE_MINUTES)
        if c.execute(sa.select(sa.func.count()).select_from(s.lamassu_fetches)).scalar_one():
            covered = _covered_through(c, RULES.day_start_utc(start))
            if covered is None:
                return Due([], last_key, stale)
            cutoff = min(cutoff, covered)
        events: list[tuple[tuple[datetime, int, str], date]] = []
        for r in versions.values():
            if not r.eligible or r.id in quarantined or r.business_day < start:
                continue
            if r.event_time > cutoff:
                continue
            allocation = live.get(r.id)
            if allocation is not None and _stands(allocation, r):
                continue  # allocated, and it stands
            events.append(((r.event_time, 0, r.id), r.business_day))
        fixed_days = set(
            c.execute(
                sa.select(e.business_day).where(e.source_kind.in_(("fixed", "fixed_skipped")))
            ).scalars()
        )
        if start <= last_day:
            for day in al.days_between(start, last_day):
                run_at = RULES.fixed_run_at(day)
                if day not in fixed_days and run_at <= cutoff:
                    events.append(((run_at, 1, f"fixed:{day.isoformat()}"), day))
    return Due(sorted(events), last_key, stale)


# --------------------------------------------------------------------------- the pipeline
class ExportSource:
    """A Lamassu source answering every fetch with the tick's whole tables (like a folder)."""

    def __init__(self, tables: dict[LamassuTable, bytes]) -> None:
        self.tables = tables

    def fetch_csv(self, table: LamassuTable, window: FetchWindow) -> bytes:
        return self.tables[LamassuTable(table)]


@dataclass
class RunRecord:
    tick: int
    first_day: date
    last_day: date
    result: str  # "ok" | "refused <day>" | "known bug …: <what>"
    events_written: int = 0


def _never(*_args: object) -> bool:
    return False


@dataclass(frozen=True)
class KnownBugs:
    """Product bugs the property found, each pinned by a strict-xfail test: the property lets
    exactly their signature pass so that it keeps checking everything else.

    ``refusal(message, first_day, last_day)``: a refusal §4a does not allow (nothing was
    written; the tick ends there). ``incomplete(outcome, first_day, last_day)``: a successful
    run that left pending compensations or late cash-outs behind (a later run takes them).
    """

    refusal: Callable[[str, date, date], bool] = _never
    incomplete: Callable[[al.RangeOutcome, date, date], bool] = _never


@dataclass
class Pipeline:
    """The ingest and allocation steps of the Dagster assets, called directly, tick by tick."""

    engine: sa.Engine
    scenario: Scenario
    known: KnownBugs = KnownBugs()
    runs: list[RunRecord] = field(default_factory=list)
    _clock: int = 0

    def now(self) -> datetime:
        self._clock += 1
        return BASE_NOW + timedelta(minutes=self._clock)

    def ingest(self, tables: dict[LamassuTable, bytes], first: date, last: date) -> None:
        """``lamassu_raw`` then ``validated_cash_outs`` for business days [first, last]."""
        window = FetchWindow.covering(
            RULES.day_start_utc(first) - OVERLAP, RULES.day_start_utc(last + timedelta(days=1))
        )
        fetched_at = self.now()
        exports = fetch_tables(ExportSource(tables), window)
        frames = {t: read_export(exports[t], t.value, name=f"{t.value} export")
                  for t in LamassuTable}  # fmt: skip
        frames = window_rows(frames, window)
        now = self.now()
        covered = landed_window(window, fetched_at)
        with self.engine.begin() as c:
            for t in LamassuTable:
                landing.land_export(c, t.value, frames[t], rules=RULES, now=now)
            if covered is not None:
                landing.record_fetch(
                    c,
                    covered.start,
                    covered.end,
                    now,
                    None,
                    rows={t.value: len(frames[t]) for t in LamassuTable},
                )
        now = self.now()
        with self.engine.begin() as c:
            cash_outs, row_hashes = landing.landed_cash_outs(c, window.start, window.end)
            if cash_outs.empty:
                cash_outs = _empty_cash_outs()
            actions = landing.landed_actions(c, window.start)
            result = validate_cash_outs(cash_outs, actions, rules=RULES, now=now)
            landing.store_validation(
                c, result.valid, result.quarantine, row_hashes, rules=RULES, now=now
            )

    def materialize(self, tick: int, first: date, last: date) -> None:
        """Ingest and allocate [first, last]; a §4a refusal is answered by materializing again
        from the day it names (which must be the earliest day with a due in-order event)."""
        tables = self.scenario.export_at(tick)
        for _ in range(self.scenario.days + 2):
            self.ingest(tables, first, last)
            now = self.now()
            before = due(self.engine, FIRST_DAY, last, now)
            earlier = {d for d in before.in_order_days(last) if d < first}
            try:
                outcome = al.allocate_range(
                    self.engine,
                    RULES,
                    first,
                    last,
                    now=now,
                    settle_minutes=SETTLE_MINUTES,
                    start_day=FIRST_DAY,
                    only_landed=True,
                )
            except al.AllocationRefused as refused:
                message = str(refused)
                named = refused_day(message)
                if named is None and self.known.refusal(message, first, last):
                    assert not earlier, f"tick {tick}: {sorted(earlier)} due before {first}"
                    self.runs.append(RunRecord(tick, first, last, f"known bug refusal: {message}"))
                    return
                assert named is not None, (
                    f"tick {tick}: run {first}…{last} refused, but not because an earlier day "
                    f"is due (§4a says it must succeed): {message}"
                )
                assert earlier and named == min(earlier), (
                    f"tick {tick}: run {first}…{last} refused naming {named}; the earliest "
                    f"earlier day with due in-order events is {min(earlier, default=None)}"
                )
                self.runs.append(RunRecord(tick, first, last, f"refused {named}"))
                first = named  # as an operator would: materialize from the day named
                continue
            assert not earlier, (
                f"tick {tick}: run {first}…{last} succeeded although {sorted(earlier)} before "
                "it hold due in-order events never allocated (§4a One run: it must refuse)"
            )
            assert outcome.reproduced, f"tick {tick}: replay mismatch: {outcome.mismatches}"
            record = RunRecord(tick, first, last, "ok", outcome.events_written)
            self.runs.append(record)
            where = f"tick {tick} {first}…{last}"
            assert_money_checks(self.engine, first, last, where)
            # §4a One run: it took every pending compensation and late cash-out, whatever days
            # it was asked for, and every in-order event due up to the end of its last day.
            after = due(self.engine, FIRST_DAY, last, now)
            left = after.left_after_a_run(last)
            if (after.stale or left) and self.known.incomplete(outcome, first, last):
                assert all(day > last for _, day in left), f"{where}: left {left}"
                record.result = f"known bug incomplete: left {len(after.stale) + len(left)}"
                return
            assert not after.stale, f"{where}: not compensated: {after.stale}"
            assert not left, f"{where}: still due after the run: {left}"
            return
        raise AssertionError(f"tick {tick}: refused more often than there are days: {self.runs}")

    def run(self) -> None:
        sc = self.scenario
        for tick, (a, b) in enumerate(sc.ticks):
            self.materialize(tick, sc.day(a), sc.day(b))
        self.materialize(sc.final_tick, sc.first_day, sc.last_day)
        assert self.runs[-1].result == "ok", self.runs


def _empty_cash_outs() -> pd.DataFrame:
    return pd.DataFrame(columns=list(REQUIRED_COLUMNS["cash_out_txs"]), dtype=object)


def assert_money_checks(engine: sa.Engine, first: date, last: date, where: str) -> None:
    """The allocation asset's blocking checks (MONEY_CHECK_KEYS) for the run's days, plus one
    live allocation per cash-out at most and a gap-free sequence."""
    days = al.days_between(first, last)
    e = s.allocation_events.c
    with engine.connect() as c:
        sums = al.line_sums(c, days)
        for outcome in (
            al.check_lines_sum(c, days, "flow", sums),
            al.check_lines_sum(c, days, "fixed", sums),
            al.check_lines_sum(c, days, "commission", sums),
            al.check_commission_basis_points(c),
            al.check_no_negative_balance(c),
            al.check_no_client_above_remaining(c, days),
        ):
            assert outcome.passed, f"{where}: {outcome.description}"
        events = c.execute(
            sa.select(e.seq, e.source_id, e.source_kind, e.event_time, e.as_of, e.business_day)
            .order_by(e.seq)
        ).all()  # fmt: skip
        seqs = [r.seq for r in events]
        assert seqs == list(range(1, len(seqs) + 1)), f"{where}: sequence has gaps: {seqs}"
        # §4a As-of: its own event time, or the latest event time already allocated; so as-of
        # instants never decrease, and an event keeps its own event time and business day.
        for before, after in zip(events, events[1:], strict=False):
            assert before.as_of <= after.as_of, f"{where}: as-of goes back at {after}"
        for r in events:
            assert r.as_of >= r.event_time, f"{where}: as-of before the event time: {r}"
            if r.source_kind == "cash_out":
                assert r.business_day == RULES.business_day(r.event_time), f"{where}: {r}"
        compensated = set(
            c.execute(
                sa.select(e.compensates_source_id).where(e.compensates_source_id.is_not(None))
            ).scalars()
        )
        live: dict[str, int] = {}
        for source_id, cash_out_id in c.execute(
            sa.select(e.source_id, e.cash_out_id).where(e.source_kind == "cash_out")
        ).all():
            if source_id not in compensated:
                live[cash_out_id] = live.get(cash_out_id, 0) + 1
        assert all(n == 1 for n in live.values()), f"{where}: several live allocations: {live}"
