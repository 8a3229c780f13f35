"""docs/analysts.md: every example query runs on SQLite and PostgreSQL and gives what it says."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import schema as s
from dca_pipeline_tests.allocate.conftest import LATER
from dca_pipeline_tests.allocate.seeding import Scenario, seed_scenario

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"
SCENARIO = Scenario(date(2025, 4, 1), date(2025, 4, 5), flow_clients=8, fixed_clients=2,
                    cash_outs_per_day=4)
QUERIES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def allocated(engine):  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        seed_scenario(c, SCENARIO)
    al.allocate_range(engine, BusinessRules(), SCENARIO.first_day, SCENARIO.last_day,
                      now=LATER, settle_minutes=15)
    return engine


def test_the_doc_has_examples_for_every_view() -> None:
    text = "\n".join(QUERIES)
    assert len(QUERIES) >= 8
    for view in ("analyst_client_daily_allocations", "analyst_commission_daily",
                 "analyst_cash_out_breakdown", "analyst_client_balance_history"):
        assert view in text


@pytest.mark.parametrize("query", QUERIES, ids=[q.splitlines()[1][:40] for q in QUERIES])
def test_example_query_runs_and_returns_what_it_says(allocated, query: str) -> None:  # type: ignore[no-untyped-def]
    expect = re.match(r"-- expect: (rows|none)\n", query)
    assert expect, "every example states what it returns"
    with allocated.connect() as c:
        rows = c.execute(sa.text(query)).all()
    assert bool(rows) == (expect.group(1) == "rows")


def test_views_agree_with_the_lines(allocated) -> None:  # type: ignore[no-untyped-def]
    line = s.allocation_lines
    with allocated.connect() as c:
        per_client = {
            (str(day), cid, kind): (int(f), int(sats))
            for day, cid, kind, f, sats in c.execute(sa.text(
                "SELECT business_day, client_id, kind, fiat_cents, sats "
                "FROM analyst_client_daily_allocations"
            )).all()
        }
        expected = {
            (str(day), cid, kind): (int(f), int(sats))
            for day, cid, kind, f, sats in c.execute(
                sa.select(line.c.business_day, line.c.recipient_id, line.c.kind,
                          sa.func.sum(line.c.fiat_cents), sa.func.sum(line.c.sats))
                .where(line.c.kind.in_(["flow", "fixed"]))
                .group_by(line.c.business_day, line.c.recipient_id, line.c.kind)
            ).all()
        }
        last_balance = dict(c.execute(sa.text(
            "SELECT client_id, balance_cents FROM ("
            " SELECT client_id, balance_cents, ROW_NUMBER() OVER ("
            "  PARTITION BY client_id ORDER BY at_utc DESC, source_id DESC) AS n"
            " FROM analyst_client_balance_history) t WHERE n = 1"
        )).all())
        balances = {cid: rem for cid, _, _, rem in al.client_balances(c)}
    assert per_client == expected and per_client
    assert {k: int(v) for k, v in last_balance.items()} == balances
