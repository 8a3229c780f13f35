"""docs/analysts.md on a ledger with a revoked and a changed cash-out (business-rules §4a).

``test_analyst_views.py`` runs every example on in-order data, where nothing was compensated;
here every example runs again after one cash-out was revoked and one changed: the examples
about compensations, late events and reports find them, the reconciliations still find
nothing, and the views net (a revoked cash-out is zero, the balance history ends at the
balances).
"""

from __future__ import annotations

import re
from datetime import date

import pytest
import sqlalchemy as sa

from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import schema as s
from dca_pipeline_tests.allocate.conftest import LATER
from dca_pipeline_tests.allocate.seeding import seed_scenario
from dca_pipeline_tests.allocate.test_analyst_views import QUERIES, SCENARIO

RULES = BusinessRules()
#: Examples that find the compensations, the late re-allocation and the open reports.
FIND_THEM = ("WHERE compensations > 0", "WHERE k.source_kind = 'compensation'",
             "WHERE as_of > event_time", "WHERE i.kind <> 'mismatch'")


def _query(marker: str) -> str:
    (found,) = [q for q in QUERIES if marker in q]
    return found


@pytest.fixture
def compensated(engine):  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    al.allocate_range(engine, RULES, SCENARIO.first_day, SCENARIO.last_day, now=LATER,
                      settle_minutes=15)
    v = s.validated_cash_outs
    with engine.begin() as c:
        revoked, changed = c.execute(
            sa.select(v.c.id).where(v.c.business_day == date(2025, 4, 2), v.c.eligible)
            .order_by(v.c.id).limit(2)
        ).scalars().all()
        c.execute(v.update().where(v.c.id == revoked).values(
            eligible=False, error="dispense failed", ineligible_reason="has error"))
        c.execute(v.update().where(v.c.id == changed).values(fiat_cents=v.c.fiat_cents + 100))
    out = al.allocate_range(engine, RULES, SCENARIO.first_day, SCENARIO.last_day, now=LATER,
                            settle_minutes=15)
    assert out.reproduced
    assert sorted(r.kind for r in out.reports) == ["changed", "late", "revoked"]
    return engine, revoked, changed


@pytest.mark.parametrize("query", QUERIES, ids=[q.splitlines()[1][:40] for q in QUERIES])
def test_every_example_on_compensated_data(compensated, query: str) -> None:  # type: ignore[no-untyped-def]
    engine, _, _ = compensated
    expect = re.match(r"-- expect: (rows|none)\n", query)
    assert expect
    with engine.connect() as c:
        rows = c.execute(sa.text(query)).all()
    wanted = expect.group(1) == "rows" or any(marker in query for marker in FIND_THEM)
    assert bool(rows) == wanted


def test_revoked_and_changed_cash_outs_example(compensated) -> None:  # type: ignore[no-untyped-def]
    engine, revoked, changed = compensated
    with engine.connect() as c:
        rows = {r.cash_out_id: r for r in c.execute(sa.text(
            _query("WHERE compensations > 0"))).all()}
        fiat = c.execute(sa.select(s.validated_cash_outs.c.fiat_cents).where(
            s.validated_cash_outs.c.id == changed)).scalar_one()
    assert set(rows) == {revoked, changed}
    gone = rows[revoked]
    assert (gone.allocations, gone.compensations, gone.live) == (1, 1, 0)
    assert (gone.fiat_cents, gone.client_fiat_cents, gone.client_sats) == (0, 0, 0)
    again = rows[changed]
    assert (again.allocations, again.compensations, again.live) == (2, 1, 1)
    assert again.fiat_cents == fiat


def test_balance_history_in_sequence_order_ends_at_the_balances(compensated) -> None:  # type: ignore[no-untyped-def]
    engine, revoked, _ = compensated
    example = _query("FROM analyst_client_balance_history h")
    with engine.connect() as c:
        balances = {cid: rem for cid, _, _, rem in al.client_balances(c)}
        for client_id in balances:
            rows = c.execute(sa.text(example.replace("'flow-0000'", f"'{client_id}'"))).all()
            running = 0
            for row in rows:  # in the example's order, each balance follows from the last
                running += int(row.delta_cents)
                assert int(row.balance_cents) == running >= 0
            assert running == balances[client_id]
        back = c.execute(sa.text(
            "SELECT COUNT(*) FROM analyst_client_balance_history "
            "WHERE movement = 'compensation' AND source_id = :undo AND delta_cents > 0"
        ), {"undo": f"undo:{revoked}"}).scalar_one()
    assert back > 0  # the revoked cash-out's clients got their fiat back
