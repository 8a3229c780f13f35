"""A live Lamassu folder whose exports change between runs, and the real ingest + allocation runs.

Shared by ``test_live_arrivals.py`` (business-rules §4a, §5, §8 through Dagster). The export
starts from the bundled sample week (``data/sample/lamassu/``, real Lamassu rows): a test picks
the cash-outs Lamassu has shown so far, changes what Lamassu changed (a late row, a dispense
action that arrives later, a duplicated id), and rewrites the three CSV files as a fresh
``psql \\copy`` export would. Each run materializes the real raw multi-asset,
``validated_cash_outs`` and the ``allocations`` multi-asset over a day (or a range) as ONE run,
with the ingest fetch window of the settings (the run's days − ``overlap_hours``).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from dca_pipeline.defs.allocate.assets import allocations
from dca_pipeline.defs.allocate.checks import MONEY_CHECK_KEYS
from dca_pipeline.defs.settings import BusinessSettings
from dca_pipeline.domain.money import parse_cents
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.database import LedgerResource
from dca_pipeline.sources import FolderLamassuSource
from dca_pipeline_tests.allocate.seeding import add_client, commission, deposit
from dca_pipeline_tests.ingest.conftest import INGEST_ASSETS

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
LAMASSU = SAMPLE / "lamassu"
TABLES = ("cash_out_txs", "cash_out_actions", "cash_in_txs")

#: DCA-like settings (the production defaults, spelled out): settle 15 min, fixed run 09:00
#: local, fetch overlap 48 h. Every day used is in June 2025, so everything has settled.
SETTINGS = BusinessSettings(
    timezone="America/Guatemala", currency="GTQ", fixed_run_time="09:00",
    max_daily_gtq="2000.00", overlap_hours=48, settle_minutes=15,
)
RULES = SETTINGS.rules()


# --------------------------------------------------------------------------- the sample export
def _read(name: str) -> tuple[list[str], list[dict[str, str]]]:
    with (LAMASSU / f"{name}.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


_SAMPLE = {name: _read(name) for name in TABLES}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("+00", "+00:00")).astimezone(UTC)


def lamassu_stamp(at: datetime) -> str:
    """An instant as Lamassu's export writes it (UTC, microseconds, ``+00``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def sample_tx(prefix: str) -> dict[str, str]:
    """A copy of the sample cash-out whose id starts with ``prefix``."""
    (row,) = [r for r in _SAMPLE["cash_out_txs"][1] if r["id"].startswith(prefix)]
    return dict(row)


def _sample_event_time(tx: Mapping[str, str]) -> datetime:
    dispense = [a["created"] for a in _SAMPLE["cash_out_actions"][1]
                if a["tx_id"] == tx["id"] and a["action"] == "dispense"]  # fmt: skip
    return _utc(dispense[0] if dispense else tx["confirmed_at"] or tx["created"])


def sample_day_ids(first: date, last: date | None = None) -> list[str]:
    """Every sample cash-out (eligible or not) of the business days [first, last], in time order."""
    last = last or first
    rows = [(r, _sample_event_time(r)) for r in _SAMPLE["cash_out_txs"][1]]
    return [r["id"] for r, at in sorted(rows, key=lambda x: (x[1], x[0]["id"]))
            if first <= RULES.business_day(at) <= last]  # fmt: skip


def is_eligible(tx: Mapping[str, str]) -> bool:
    """§2 on a raw row (what the sample's rows need; validation is the real judge)."""
    return (tx["dispense"] == "t" and tx["dispense_confirmed"] == "t" and not tx["error"]
            and tx["status"] in ("authorized", "instant", "confirmed"))  # fmt: skip


@dataclass
class LamassuExport:
    """What Lamassu shows now: cash-outs by id (in export order), and their actions.

    ``duplicates`` are extra copies of a cash-out row in the export (the same id twice).
    """

    folder: Path
    txs: dict[str, dict[str, str]] = field(default_factory=dict)
    actions: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    _next_action_id: int = 900_000

    def add_sample(self, ids: Iterable[str], *, with_actions: bool = True) -> None:
        """Sample cash-outs (full ids or prefixes) and, unless told not to, all their actions."""
        for prefix in ids:
            tx = sample_tx(prefix)
            self.txs[tx["id"]] = tx
            self.actions[tx["id"]] = (
                [dict(a) for a in _SAMPLE["cash_out_actions"][1] if a["tx_id"] == tx["id"]]
                if with_actions else []
            )

    def remove(self, tx_id: str) -> dict[str, str]:
        """Take a cash-out out of the export (it has not reached it yet); returns its row."""
        self.actions.pop(tx_id, None)
        return self.txs.pop(tx_id)

    def add_copy(
        self, template: str, new_id: str, *, created: datetime, confirmed: datetime,
        dispensed: datetime | None,
    ) -> dict[str, str]:
        """A cash-out shaped like sample ``template`` (every column Lamassu sends) at other
        instants; its sample actions are re-dated (``dispensed=None``: no dispense action yet)."""
        tx = sample_tx(template)
        old_id = tx["id"]
        tx.update(id=new_id, created=lamassu_stamp(created), confirmed_at=lamassu_stamp(confirmed),
                  published_at=lamassu_stamp(confirmed))  # fmt: skip
        self.txs[new_id] = tx
        self.actions[new_id] = []
        for action in (a for a in _SAMPLE["cash_out_actions"][1] if a["tx_id"] == old_id):
            if action["action"] == "dispense":
                if dispensed is not None:
                    self.add_dispense(new_id, dispensed, template=action)
                continue
            row = dict(action, tx_id=new_id, id=self._action_id(), device_time="")
            row["created"] = lamassu_stamp(min(confirmed, created))
            self.actions[new_id].append(row)
        return tx

    def add_dispense(
        self, tx_id: str, at: datetime, *, template: Mapping[str, str] | None = None
    ) -> None:
        """The cash-out's dispense action, created at ``at``."""
        if template is None:
            template = next(a for a in _SAMPLE["cash_out_actions"][1] if a["action"] == "dispense")
        row = dict(template, id=self._action_id(), tx_id=tx_id, created=lamassu_stamp(at),
                   device_time="")  # fmt: skip
        self.actions.setdefault(tx_id, []).append(row)

    def _action_id(self) -> str:
        self._next_action_id += 1
        return str(self._next_action_id)

    def write(self) -> None:
        """Rewrite the three CSV files (each replaced whole: a reader never sees half a file)."""
        tx_fields, _ = _SAMPLE["cash_out_txs"]
        action_fields, _ = _SAMPLE["cash_out_actions"]
        cash_in_fields, cash_ins = _SAMPLE["cash_in_txs"]
        rows = {
            "cash_out_txs": (tx_fields, [*self.txs.values(), *self.duplicates]),
            # Actions in their own order (by id), as Lamassu's sequence numbers them.
            "cash_out_actions": (action_fields, sorted(
                (a for acts in self.actions.values() for a in acts), key=lambda a: int(a["id"])
            )),
            "cash_in_txs": (cash_in_fields, cash_ins),
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, (fields, table) in rows.items():
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(table)
            tmp = self.folder / f".{name}.csv.tmp"
            tmp.write_text(buffer.getvalue())
            os.replace(tmp, self.folder / f"{name}.csv")


# --------------------------------------------------------------------------- admin (the sample's)
def _admin(name: str) -> list[dict[str, str]]:
    with (SAMPLE / name).open(newline="") as f:
        return list(csv.DictReader(f))


def seed_sample_admin(ledger: LedgerResource) -> None:
    """The sample's clients, confirmed deposits and 70/30 commission (data/sample/*.csv),
    through the seeding helpers: the same inputs ``simulate`` reads from those files."""
    with ledger.engine().begin() as c:
        for row in _admin("clients.csv"):
            limit = parse_cents(row["daily_limit"]) if row["daily_limit"] else None
            add_client(c, row["client_id"], mode=row["mode"], status=row["status"],
                       daily_limit_cents=limit)  # fmt: skip
        for row in _admin("deposits.csv"):
            if row["status"] == "confirmed":
                deposit(c, row["deposit_id"], row["client_id"], parse_cents(row["amount"]),
                        _utc(row["confirmed_at"]))  # fmt: skip
        commission(c, {r["recipient_id"]: int(r["basis_points"])
                       for r in _admin("commission.csv")})  # fmt: skip


# --------------------------------------------------------------------------- the runs
@dataclass
class Pipeline:
    """Real ingest + allocation runs over a folder source, one Dagster instance per test."""

    ledger: LedgerResource
    export: LamassuExport
    settings: BusinessSettings = field(default_factory=lambda: SETTINGS)
    instance: dg.DagsterInstance = field(default_factory=dg.DagsterInstance.ephemeral)

    def run(self, first: date, last: date | None = None) -> dg.ExecuteInProcessResult:
        """Write the export, then raw → validated → allocations over [first, last] as ONE run."""
        self.export.write()
        last = last or first
        return dg.materialize(
            [*INGEST_ASSETS, allocations],
            resources={
                "lamassu": FolderLamassuSource(directory=str(self.export.folder)),
                "ledger": self.ledger,
                "settings": self.settings,
            },
            instance=self.instance,
            tags={"dagster/asset_partition_range_start": first.isoformat(),
                  "dagster/asset_partition_range_end": last.isoformat()},  # fmt: skip
            raise_on_error=False,
        )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    (failure,) = result.get_step_failure_events()
    data = failure.step_failure_data
    return (data.user_failure_data.description if data.user_failure_data else None) or (
        data.error.message if data.error else ""
    )


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """``asset:check`` → its evaluation in this run."""
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e
        for e in result.get_asset_check_evaluations()
    }


def assert_blocking_checks_pass(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """Every blocking money check was evaluated in the run and passed; returns all of them."""
    evaluations = check_evaluations(result)
    money = {k.to_user_string() for k in MONEY_CHECK_KEYS}
    assert money <= set(evaluations), money - set(evaluations)
    failed = {k: evaluations[k].description for k in money if not evaluations[k].passed}
    assert not failed, failed
    return evaluations


def report_checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    """The WARN report checks by name → passed; each failing one is WARN severity."""
    out = {}
    for key, e in check_evaluations(result).items():
        if key.split(":")[1] in ("late_events", "revoked_cash_outs", "changed_cash_outs",
                                 "moved_cash_outs", "skipped_fixed_runs"):  # fmt: skip
            assert e.severity == dg.AssetCheckSeverity.WARN, key
            out[key.split(":")[1]] = e.passed
    return out


def allocation_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    events = [e for e in result.get_asset_materialization_events()
              if e.asset_key.to_user_string() == "flow_allocations"]  # fmt: skip
    return {k: getattr(v, "value", v) for k, v in events[-1].materialization.metadata.items()}


# --------------------------------------------------------------------------- the ledger
def events(ledger: LedgerResource) -> list[Any]:
    e = s.allocation_events
    with ledger.engine().connect() as c:
        return list(c.execute(sa.select(e).order_by(e.c.seq)).all())


def lines(ledger: LedgerResource) -> list[Any]:
    line = s.allocation_lines
    with ledger.engine().connect() as c:
        return list(c.execute(sa.select(line).order_by(line.c.line_id)).all())


def issues(ledger: LedgerResource) -> list[Any]:
    i = s.allocation_issues
    with ledger.engine().connect() as c:
        return list(c.execute(sa.select(i).order_by(i.c.issue_id)).all())


def counts(ledger: LedgerResource) -> tuple[int, int, int]:
    """(events, lines, issues) in the ledger."""
    with ledger.engine().connect() as c:
        return tuple(  # type: ignore[return-value]
            c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (s.allocation_events, s.allocation_lines, s.allocation_issues)
        )


def net_by_cash_out(ledger: LedgerResource) -> dict[str, tuple[int, int]]:
    """cash_out_id → (Σ flow+unallocated fiat, Σ flow+unallocated sats) over all its events
    (allocations, re-allocations and compensations)."""
    e, line = s.allocation_events, s.allocation_lines
    with ledger.engine().connect() as c:
        rows = c.execute(
            sa.select(e.c.cash_out_id, sa.func.sum(line.c.fiat_cents), sa.func.sum(line.c.sats))
            .select_from(line.join(e, e.c.source_id == line.c.source_id))
            .where(e.c.cash_out_id.is_not(None), line.c.kind.in_(("flow", "unallocated")))
            .group_by(e.c.cash_out_id)
        ).all()
    return {cid: (int(fiat), int(sats)) for cid, fiat, sats in rows}


def live_allocations(ledger: LedgerResource) -> dict[str, list[str]]:
    """cash_out_id → its cash-out allocations no compensation reversed (at most one, §4a)."""
    all_events = events(ledger)
    undone = {ev.compensates_source_id for ev in all_events if ev.compensates_source_id}
    out: dict[str, list[str]] = {}
    for ev in all_events:
        if ev.source_kind == "cash_out" and ev.source_id not in undone:
            out.setdefault(ev.cash_out_id, []).append(ev.source_id)
    return out


def validated(ledger: LedgerResource, cash_out_id: str) -> Any:
    v = s.validated_cash_outs
    with ledger.engine().connect() as c:
        return c.execute(sa.select(v).where(v.c.id == cash_out_id)).one()


def balances(ledger: LedgerResource) -> dict[str, int]:
    with ledger.engine().connect() as c:
        return {cid: remaining for cid, _, _, remaining in al.client_balances(c)}
