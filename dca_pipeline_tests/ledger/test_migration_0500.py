"""Migration 0500 (the §4a allocation sequence) on a ledger that already holds data.

The ledger is built at today's production heads — every head before 0410 and 0500 (``0100``,
``0210``, ``0300``, ``0400``) — and filled the way the allocator before 0500 wrote it (old
``allocation_events`` columns only, in-order days, a payout with its lines). Then
``migrate(engine)`` brings it to the heads, on SQLite and PostgreSQL, and the test checks that
nothing stored changed, that the new columns hold what the old events used, that the database
still guards the ledger, that the analyst views net, and that allocation goes on from there.

The old events are computed by the one engine on a scratch ledger (the old allocator ran the
same engine in order; in order, the two write the same lines) and written with the old
columns and the old ``inputs_json`` (no ``as_of``, with ``validated_at``).

On SQLite the batch rebuilds of tables that other rows and 0100's triggers reference need
SQLite's documented table-rebuild procedure (foreign keys off, legacy renames, then
``PRAGMA foreign_key_check``): ``migrations/env.py`` does it; the ``test_sqlite_*`` tests below
are the minimal cases that failed before it did.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.database import LedgerResource, ledger_engine, migrate
from dca_pipeline_tests.allocate.seeding import (
    Scenario,
    add_cash_outs,
    add_client,
    cash_out_row,
    change,
    deposit,
    seed_scenario,
)

RULES = BusinessRules()
LATER = datetime(2026, 1, 1, tzinfo=UTC)
ALLOCATED_AT = datetime(2025, 4, 6, 12, 0, tzinfo=UTC)
SCENARIO = Scenario(date(2025, 4, 1), date(2025, 4, 3), flow_clients=6, fixed_clients=2,
                    cash_outs_per_day=4)
NEW_DAY = date(2025, 4, 4)
#: Today's production heads: every head but 0410 and 0500.
OLD_HEADS = ("0100", "0210", "0300", "0400")
OLD_EVENT_COLUMNS = (
    "source_id", "source_kind", "event_time", "event_rank", "business_day", "fiat_cents",
    "principal_sats", "commission_sats", "inputs_json", "allocated_at", "dagster_run_id",
)
#: table → (columns before 0500/0410, order); byte-equal before and after the migration.
KEPT = {
    "allocation_events": (OLD_EVENT_COLUMNS, "source_id"),
    "allocation_lines": (
        ("line_id", "source_id", "line_no", "kind", "recipient_id", "wallet_id", "business_day",
         "fiat_cents", "sats", "compensates_line_id", "created_at"), "line_id"),
    "payouts": (
        ("payout_id", "wallet_id", "recipient_kind", "recipient_id", "sats", "fiat_cents", "memo",
         "status", "bolt11", "payment_hash", "attempts", "last_error", "created_at",
         "invoiced_at", "settled_at", "dagster_run_id"), "payout_id"),
    "payout_lines": (("line_id", "payout_id"), "line_id"),
    "payout_attempts": (
        ("payout_id", "attempt_no", "payment_hash", "bolt11", "created_at", "outcome",
         "outcome_detail", "outcome_at"), "payout_id, attempt_no"),
    "allocation_issues": (
        ("issue_id", "source_id", "kind", "business_day", "detail", "detected_at",
         "dagster_run_id", "closed_at", "resolution"), "issue_id"),
    "validated_cash_outs": (("id", "fiat_cents", "principal_sats", "eligible"), "id"),
    "deposits": (("deposit_id", "client_id", "kind", "amount_cents", "confirmed_at"),
                 "deposit_id"),
}
VIEWS = ("analyst_client_daily_allocations", "analyst_commission_daily",
         "analyst_cash_out_breakdown", "analyst_client_balance_history")


# --------------------------------------------------------------------------- building
def _old_ledger(url: str) -> sa.Engine:
    engine = ledger_engine(url)
    for revision in OLD_HEADS:
        migrate(engine, revision)
    assert _heads(engine) == set(OLD_HEADS)
    return engine


def _heads(engine: sa.Engine) -> set[str]:
    with engine.connect() as c:
        return set(MigrationContext.configure(c).get_current_heads())


def _seed(c: sa.Connection, *, changed: bool = False) -> None:
    """Clients (flow, fixed, one paused later), deposits (one mid-period, one corrected), a
    70/30 commission, cash-outs over three days and one that never became eligible."""
    seed_scenario(c, SCENARIO)
    add_client(c, "paused-0000")
    deposit(c, "dep-paused", "paused-0000", 300_000)
    change(c, "paused-0000", mode="flow", status="paused",
           effective_at=RULES.day_start_utc(date(2025, 4, 2)))
    deposit(c, "dep-fix", "flow-0001", 5_000, RULES.day_start_utc(date(2025, 4, 2)),
            corrects="dep-flow-0001")
    noon = RULES.day_start_utc(date(2025, 4, 2)) + timedelta(hours=12)
    add_cash_outs(c, [
        cash_out_row("tx-never", noon, 50_000, 6_500_000, eligible=False),
        cash_out_row("tx-noon", noon + timedelta(minutes=1), 80_000, 10_400_000,
                     commission_percentage="0.055", discount=10),
    ])


def _old_inputs(raw: str, validated_at: datetime | None) -> str:
    record = json.loads(raw)
    for new_key in ("as_of", "late", "rate_cash_out_ids"):
        record.pop(new_key, None)
    if validated_at is not None:
        record["validated_at"] = validated_at.isoformat()
    return json.dumps(record, sort_keys=True)


def _allocate_the_old_way(old: sa.Engine, scratch: sa.Engine) -> None:
    """The in-order days as the allocator before 0500 stored them, then a paid payout."""
    outcome = al.allocate_range(scratch, RULES, SCENARIO.first_day, SCENARIO.last_day,
                                now=LATER, settle_minutes=15)
    assert outcome.reproduced and not outcome.reports and outcome.events_written > 0
    e, line, v = s.allocation_events, s.allocation_lines, s.validated_cash_outs
    with scratch.connect() as c:
        events = c.execute(sa.select(e).order_by(e.c.seq)).all()
        lines = c.execute(sa.select(line).order_by(line.c.line_id)).all()
        validated = dict(c.execute(sa.select(v.c.id, v.c.validated_at)).all())
    with old.begin() as c:
        for ev in events:  # one event, then its lines: as the old writer appended them
            c.execute(e.insert().values(
                source_id=ev.source_id, source_kind=ev.source_kind, event_time=ev.event_time,
                event_rank=ev.event_rank, business_day=ev.business_day,
                fiat_cents=ev.fiat_cents, principal_sats=ev.principal_sats,
                commission_sats=ev.commission_sats,
                inputs_json=_old_inputs(ev.inputs_json, validated.get(ev.source_id)),
                allocated_at=ALLOCATED_AT, dagster_run_id="run-old",
            ))
            rows = [dict(source_id=x.source_id, line_no=x.line_no, kind=x.kind,
                         recipient_id=x.recipient_id, wallet_id=x.wallet_id,
                         business_day=x.business_day, fiat_cents=x.fiat_cents, sats=x.sats,
                         created_at=ALLOCATED_AT)
                    for x in lines if x.source_id == ev.source_id]
            if rows:
                c.execute(line.insert(), rows)
        paid = c.execute(
            sa.select(line.c.line_id, line.c.sats, line.c.fiat_cents).where(
                line.c.wallet_id == "wallet-flow-0000", line.c.business_day == SCENARIO.first_day
            )
        ).all()
        assert paid
        c.execute(s.payouts.insert().values(
            payout_id="po-old-1", wallet_id="wallet-flow-0000", recipient_kind="client",
            recipient_id="flow-0000", sats=sum(r.sats for r in paid),
            fiat_cents=sum(r.fiat_cents for r in paid), memo="DCA 2025-04-01",
            status="paid", bolt11="lnbc1old", payment_hash="hash-old-1", attempts=1,
            created_at=ALLOCATED_AT, invoiced_at=ALLOCATED_AT,
            settled_at=ALLOCATED_AT + timedelta(seconds=3), dagster_run_id="run-pay",
        ))
        c.execute(s.payout_lines.insert(), [dict(line_id=r.line_id, payout_id="po-old-1")
                                             for r in paid])
        c.execute(s.payout_attempts.insert().values(
            payout_id="po-old-1", attempt_no=1, payment_hash="hash-old-1", bolt11="lnbc1old",
            created_at=ALLOCATED_AT, outcome="paid", outcome_detail="settled",
            outcome_at=ALLOCATED_AT + timedelta(seconds=3),
        ))
        c.execute(s.allocation_issues.insert().values(
            source_id="tx-old-late", kind="late", business_day=SCENARIO.first_day,
            detail="an old late cash-out", detected_at=ALLOCATED_AT, dagster_run_id="run-old",
            closed_at=ALLOCATED_AT, resolution="acknowledged: refunded",
        ))


def _snapshot(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The stored values, as the driver returns them (text on SQLite: byte for byte)."""
    with engine.connect() as c:
        return {
            table: [tuple(r) for r in c.exec_driver_sql(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"
            ).all()]
            for table, (columns, order) in KEPT.items()
        }


@pytest.fixture
def scratch(tmp_path: Path) -> sa.Engine:
    engine = LedgerResource(url=f"sqlite:///{tmp_path / 'scratch.sqlite'}").engine()
    yield engine
    engine.dispose()


#: Found by these tests, not fixed here (see the module's docstring).


@pytest.fixture
def old_engine(ledger_url: str, request: pytest.FixtureRequest) -> sa.Engine:
    engine = _old_ledger(ledger_url)
    yield engine
    engine.dispose()  # PostgreSQL drops the database at teardown


# --------------------------------------------------------------------------- the tests
def test_0500_keeps_every_value_fills_the_sequence_and_allocation_goes_on(  # type: ignore[no-untyped-def]
    old_engine, scratch
) -> None:
    engine = old_engine
    for target in (engine, scratch):
        with target.begin() as c:
            _seed(c)
    _allocate_the_old_way(engine, scratch)
    before = _snapshot(engine)
    assert len(before["allocation_events"]) == 1 + 3 * 4 + 1 + 3 and before["payout_lines"]

    migrate(engine)

    assert _heads(engine) == {"0100", "0210", "0410", "0510"}
    with engine.connect() as c:  # the schema is exactly the schema module's
        assert compare_metadata(MigrationContext.configure(c), s.metadata) == []
    assert _snapshot(engine) == before  # every event, line, payout and issue, byte-equal
    with engine.connect() as c:  # 0510: the running totals start from every line already there
        assert al.check_running_totals(c).passed
        assert al.store.client_allocated(c)

    e, v = s.allocation_events, s.validated_cash_outs
    with engine.connect() as c:
        events = c.execute(sa.select(e).order_by(e.c.seq)).all()
        validated = {r.id: r for r in c.execute(sa.select(v)).all()}
    # seq 1..n in (event_time, rank, source_id) order; as_of = event_time.
    assert [r.seq for r in events] == list(range(1, len(events) + 1))
    assert [r.source_id for r in events] == [
        r.source_id for r in sorted(events, key=lambda r: (r.event_time, r.event_rank,
                                                           r.source_id))
    ]
    with scratch.connect() as c:  # the order the engine allocated them in
        assert [r.source_id for r in events] == list(
            c.execute(sa.select(e.c.source_id).order_by(e.c.seq)).scalars()
        )
    assert all(r.as_of == r.event_time for r in events)
    kinds = {r.source_kind for r in events}
    assert kinds == {"cash_out", "fixed"}
    for r in events:
        if r.source_kind == "cash_out":
            row = validated[r.source_id]
            assert r.cash_out_id == r.source_id
            assert (r.commission_percentage, r.discount) == (
                row.commission_percentage, row.discount
            )
        else:
            assert r.cash_out_id is None and r.commission_percentage is None
            assert r.discount is None
        assert r.compensates_source_id is None and r.landed_revision is None
    assert validated["tx-noon"].discount == 10
    assert any(r.source_id == "tx-noon" and r.discount == 10 for r in events)

    _still_append_only(engine)
    _views_net(engine)

    # Allocation replays the migrated days (no mismatch, nothing to append) ...
    again = al.allocate_range(engine, RULES, SCENARIO.first_day, SCENARIO.last_day, now=LATER,
                              settle_minutes=15)
    assert again.reproduced and again.events_verified == len(events)
    assert again.events_written == 0 and not again.reports
    # ... and appends a new day after them, numbered on.
    with engine.begin() as c:
        add_cash_outs(c, [
            cash_out_row("tx-new-1", RULES.day_start_utc(NEW_DAY) + timedelta(hours=14),
                         60_000, 7_800_000),
            cash_out_row("tx-new-2", RULES.day_start_utc(NEW_DAY) + timedelta(hours=16),
                         30_000, 3_900_000, discount=10),
        ])
    new = al.allocate_range(engine, RULES, NEW_DAY, NEW_DAY, now=LATER, settle_minutes=15)
    assert new.reproduced and not new.reports
    assert new.events_written == 3 and new.lines_written > 0  # two cash-outs, one fixed run
    with engine.connect() as c:
        appended = c.execute(sa.select(e).where(e.c.seq > len(events)).order_by(e.c.seq)).all()
        unique_lines = c.execute(
            sa.select(sa.func.count(sa.distinct(s.allocation_lines.c.line_id)))
        ).scalar_one()
        total_lines = c.execute(
            sa.select(sa.func.count()).select_from(s.allocation_lines)
        ).scalar_one()
    assert [r.seq for r in appended] == [len(events) + 1, len(events) + 2, len(events) + 3]
    assert [r.source_id for r in appended] == ["fixed:2025-04-04", "tx-new-1", "tx-new-2"]
    assert all(r.as_of == r.event_time for r in appended)
    assert unique_lines == total_lines
    whole = al.allocate_range(engine, RULES, SCENARIO.first_day, NEW_DAY, now=LATER,
                              settle_minutes=15)
    assert whole.reproduced and whole.events_written == 0
    assert whole.events_verified == len(events) + 3
    _views_net(engine)
    assert _snapshot(engine)["payouts"] == before["payouts"]


def test_0500_leaves_commission_inputs_null_where_the_validated_row_changed(  # type: ignore[no-untyped-def]
    old_engine, scratch
) -> None:
    """An event whose cash-out changed in Lamassu after allocation gets no commission inputs
    (they would not be the ones it used); the next run reports it changed and re-allocates."""
    engine = old_engine
    for target in (engine, scratch):
        with target.begin() as c:
            _seed(c)
    _allocate_the_old_way(engine, scratch)
    with engine.begin() as c:
        c.execute(s.validated_cash_outs.update().where(s.validated_cash_outs.c.id == "tx-noon")
                  .values(fiat_cents=80_100))
    migrate(engine)
    e = s.allocation_events
    with engine.connect() as c:
        row = c.execute(sa.select(e).where(e.c.source_id == "tx-noon")).one()
        filled = c.execute(sa.select(sa.func.count()).where(
            e.c.source_kind == "cash_out", e.c.commission_percentage.is_not(None)
        )).scalar_one()
        cash_outs = c.execute(sa.select(sa.func.count()).where(
            e.c.source_kind == "cash_out")).scalar_one()
    assert (row.commission_percentage, row.discount) == (None, None)
    assert filled == cash_outs - 1
    out = al.allocate_range(engine, RULES, SCENARIO.first_day, SCENARIO.last_day, now=LATER,
                            settle_minutes=15)
    assert out.reproduced
    assert [(r.kind, r.source_id) for r in out.reports] == [
        ("changed", "undo:tx-noon"), ("late", "tx-noon~2")
    ]
    with engine.connect() as c:
        (breakdown,) = c.execute(sa.text(
            "SELECT fiat_cents, allocations, compensations FROM analyst_cash_out_breakdown "
            "WHERE cash_out_id = 'tx-noon'"
        )).all()
    assert tuple(breakdown) == (80_100, 2, 1)
    _views_net(engine)
    again = al.allocate_range(engine, RULES, SCENARIO.first_day, SCENARIO.last_day, now=LATER,
                              settle_minutes=15)
    assert again.reproduced and again.events_written == 0


# --------------------------------------------------------------------------- helpers
def _still_append_only(engine: sa.Engine) -> None:
    for statement in (
        "UPDATE allocation_events SET fiat_cents = fiat_cents + 1",
        "UPDATE allocation_events SET seq = seq + 1000",
        "DELETE FROM allocation_events",
        "UPDATE allocation_lines SET sats = sats + 1",
        "DELETE FROM allocation_lines",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as c:
            c.execute(sa.text(statement))


def _views_net(engine: sa.Engine) -> None:
    """Each view exists and agrees with the lines and events it summarizes."""
    line, e = s.allocation_lines, s.allocation_events
    with engine.connect() as c:
        assert set(VIEWS) <= set(sa.inspect(c).get_view_names())
        daily = {
            (str(day), cid, kind): (int(f), int(x))
            for day, cid, kind, f, x in c.execute(sa.text(
                "SELECT business_day, client_id, kind, fiat_cents, sats "
                "FROM analyst_client_daily_allocations")).all()
        }
        expected = {
            (str(day), cid, kind): (int(f), int(x))
            for day, cid, kind, f, x in c.execute(
                sa.select(line.c.business_day, line.c.recipient_id, line.c.kind,
                          sa.func.sum(line.c.fiat_cents), sa.func.sum(line.c.sats))
                .where(line.c.kind.in_(["flow", "fixed"]))
                .group_by(line.c.business_day, line.c.recipient_id, line.c.kind)).all()
        }
        assert daily == expected and daily
        commission = c.execute(sa.text(
            "SELECT COALESCE(SUM(sats), 0) FROM analyst_commission_daily")).scalar_one()
        assert int(commission) == int(c.execute(
            sa.select(sa.func.sum(line.c.sats)).where(line.c.kind == "commission")
        ).scalar_one())
        breakdown = c.execute(sa.text(
            "SELECT cash_out_id, fiat_cents, principal_sats, client_fiat_cents, "
            "unallocated_fiat_cents, client_sats, unallocated_sats, allocations, compensations "
            "FROM analyst_cash_out_breakdown")).all()
        net = {
            cid: (int(f), int(p)) for cid, f, p in c.execute(
                sa.select(e.c.cash_out_id, sa.func.sum(e.c.fiat_cents),
                          sa.func.sum(e.c.principal_sats))
                .where(e.c.cash_out_id.is_not(None)).group_by(e.c.cash_out_id)).all()
        }
        assert {r.cash_out_id: (int(r.fiat_cents), int(r.principal_sats))
                for r in breakdown} == net
        for r in breakdown:
            assert r.client_fiat_cents + r.unallocated_fiat_cents == r.fiat_cents
            assert r.client_sats + r.unallocated_sats == r.principal_sats
            assert r.allocations - r.compensations == 1
        history = c.execute(sa.text(
            "SELECT h.client_id, h.balance_cents FROM analyst_client_balance_history h "
            "LEFT JOIN allocation_events e ON e.source_id = h.source_id "
            "AND h.movement NOT IN ('deposit', 'correction') "
            "ORDER BY h.client_id, h.at_utc, COALESCE(e.seq, 0), h.source_id")).all()
        last = {cid: int(balance) for cid, balance in history}
        balances = {cid: rem for cid, _, _, rem in al.client_balances(c)}
        assert {cid: last.get(cid, 0) for cid in balances} == balances
        assert all(int(b) >= 0 for _, b in history)


# --------------------------------------------------------------------------- minimal SQLite bugs
def _sqlite_ledger(tmp_path: Path, *heads: str) -> sa.Engine:
    engine = ledger_engine(f"sqlite:///{tmp_path / 'minimal.sqlite'}")
    for revision in heads:
        migrate(engine, revision)
    return engine


def _one_event_and_line(c: sa.Connection) -> None:
    e = sa.table("allocation_events", *[sa.column(n) for n in OLD_EVENT_COLUMNS])
    c.execute(e.insert().values(
        source_id="tx1", source_kind="cash_out", event_time="2025-04-01 15:00:00.000000",
        event_rank=0, business_day="2025-04-01", fiat_cents=100, principal_sats=10,
        commission_sats=0, inputs_json="{}", allocated_at="2025-04-01 15:01:00.000000",
    ))
    c.execute(sa.text(
        "INSERT INTO allocation_lines (source_id, line_no, kind, business_day, fiat_cents, sats, "
        "created_at) VALUES ('tx1', 1, 'unallocated', '2025-04-01', 100, 10, "
        "'2025-04-01 15:01:00.000000')"
    ))


def test_sqlite_0500_upgrades_an_empty_ledger_that_has_0100(tmp_path: Path) -> None:
    engine = _sqlite_ledger(tmp_path, "0100", "0300")  # no data at all
    try:
        migrate(engine, "0500")  # a trigger of 0100 names allocation_lines (legacy rename)
    finally:
        engine.dispose()


def test_sqlite_0500_upgrades_when_lines_reference_the_events(tmp_path: Path) -> None:
    engine = _sqlite_ledger(tmp_path, "0300")  # without 0100's trigger: only the FK cause
    try:
        with engine.begin() as c:
            _one_event_and_line(c)
        migrate(engine, "0500")  # lines reference the rebuilt events (foreign keys off, checked)
    finally:
        engine.dispose()


def test_sqlite_0410_upgrades_when_payout_lines_reference_a_payout(tmp_path: Path) -> None:
    engine = _sqlite_ledger(tmp_path, "0400")
    try:
        with engine.begin() as c:
            _one_event_and_line(c)
            c.execute(sa.text(
                "INSERT INTO payouts (payout_id, wallet_id, recipient_kind, recipient_id, sats, "
                "fiat_cents, memo, status, created_at) VALUES ('po1', 'w', 'client', 'a', 10, "
                "100, 'm', 'planned', '2025-04-01 15:02:00.000000')"
            ))
            c.execute(sa.text("INSERT INTO payout_lines (line_id, payout_id) VALUES (1, 'po1')"))
        migrate(engine, "0410")  # payout_lines reference the rebuilt payouts
    finally:
        engine.dispose()
