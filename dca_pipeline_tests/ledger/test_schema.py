"""The migrations build exactly ``schema.metadata``, and the database itself guards the money."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.database import migrate
from dca_pipeline.ledger.sequence import next_seq

NOW = datetime(2025, 6, 1, 15, 0, tzinfo=UTC)


def _event(source_id: str = "e1") -> dict[str, object]:
    return dict(
        source_id=source_id,
        source_kind="cash_out",
        event_time=NOW,
        event_rank=0,
        business_day=date(2025, 6, 1),
        fiat_cents=200_000,
        principal_sats=258_796,
        commission_sats=8_004,
        inputs_json="{}",
        seq=next_seq(),
        cash_out_id=source_id,
        as_of=NOW,
        allocated_at=NOW,
    )


def test_migrations_match_the_schema_module(ledger) -> None:  # type: ignore[no-untyped-def]
    engine = ledger.engine()
    migrate(engine)  # a second upgrade is a no-op
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), s.metadata)
    assert diff == []


def test_instants_come_back_aware_utc_and_naive_is_refused(ledger) -> None:  # type: ignore[no-untyped-def]
    local = NOW.astimezone(timezone(timedelta(hours=-6)))
    with ledger.begin() as c:
        c.execute(s.allocation_events.insert().values(_event() | {"event_time": local}))
        stored = c.execute(sa.select(s.allocation_events.c.event_time)).scalar_one()
    assert stored == NOW and stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), ledger.begin() as c:
        c.execute(
            s.allocation_events.insert().values(_event("e2") | {"event_time": datetime(2025, 1, 1)})
        )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE allocation_lines SET sats = sats + 1",
        "DELETE FROM allocation_lines",
        "DELETE FROM allocation_events",
    ],
)
def test_allocation_ledger_is_append_only(ledger, statement: str) -> None:  # type: ignore[no-untyped-def]
    with ledger.begin() as c:
        c.execute(s.allocation_events.insert().values(_event()))
        c.execute(
            s.allocation_lines.insert().values(
                source_id="e1",
                line_no=1,
                kind="flow",
                recipient_id="alice",
                wallet_id="w1",
                business_day=date(2025, 6, 1),
                fiat_cents=200_000,
                sats=258_796,
                created_at=NOW,
            )
        )
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), ledger.begin() as c:
        c.execute(sa.text(statement))
    with ledger.engine().connect() as c:
        assert c.execute(sa.select(s.allocation_lines.c.sats)).scalar_one() == 258_796


@pytest.mark.parametrize(
    ("table", "values"),
    [
        (s.allocation_lines, dict(kind="unallocated", recipient_id="alice", wallet_id=None)),
        (s.allocation_lines, dict(kind="flow", recipient_id="alice", wallet_id=None)),
        (s.allocation_lines, dict(kind="bonus", recipient_id="alice", wallet_id="w1")),
        (s.allocation_lines, dict(kind="flow", recipient_id="a", wallet_id="w", sats=-1)),
        (s.allocation_lines, dict(source_id="no-such-event")),
    ],
)
def test_database_refuses_malformed_lines(ledger, table, values) -> None:  # type: ignore[no-untyped-def]
    row = (
        dict(
            source_id="e1",
            line_no=1,
            kind="flow",
            recipient_id="alice",
            wallet_id="w1",
            business_day=date(2025, 6, 1),
            fiat_cents=1,
            sats=1,
            created_at=NOW,
        )
        | values
    )
    with ledger.begin() as c:
        c.execute(s.allocation_events.insert().values(_event()))
    with pytest.raises(sa.exc.IntegrityError), ledger.begin() as c:
        c.execute(table.insert().values(row))


def test_database_refuses_inconsistent_deposits_and_settings(ledger) -> None:  # type: ignore[no-untyped-def]
    with ledger.begin() as c:
        c.execute(
            s.clients.insert().values(
                client_id="alice",
                lnbits_user_id="u",
                wallet_id="w",
                invoice_key="k",
                created_at=NOW,
            )
        )
    bad_rows = [
        (
            s.deposits,
            dict(
                deposit_id="d1",
                client_id="alice",
                amount_cents=0,
                currency="GTQ",
                status="pending",
                created_at=NOW,
            ),
        ),
        (
            s.deposits,
            dict(
                deposit_id="d2",
                client_id="alice",
                amount_cents=100,
                currency="GTQ",
                status="confirmed",
                created_at=NOW,
            ),
        ),  # confirmed without a time
        (
            s.deposits,
            dict(
                deposit_id="d3",
                client_id="bob",
                amount_cents=100,
                currency="GTQ",
                status="pending",
                created_at=NOW,
            ),
        ),  # unknown client
        (
            s.client_settings,
            dict(
                client_id="alice", effective_at=NOW, mode="fixed", status="active", recorded_at=NOW
            ),
        ),  # fixed without a limit
        (
            s.client_settings,
            dict(
                client_id="alice", effective_at=NOW, mode="flow", status="sleeping", recorded_at=NOW
            ),
        ),
    ]
    for table, row in bad_rows:
        with pytest.raises(sa.exc.IntegrityError), ledger.begin() as c:
            c.execute(table.insert().values(row))
            pytest.fail(f"accepted {row}")
