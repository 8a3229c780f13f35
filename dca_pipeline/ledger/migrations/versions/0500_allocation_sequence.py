"""The allocation sequence (business-rules §4a): numbered events, compensations, net views.

Revision ID: 0500
Revises: 0300
Create Date: 2026-12-01

Events get a strictly increasing ``seq`` (existing events numbered in their (event_time, rank,
source_id) order, which is the order they were allocated in), the ``cash_out_id`` they concern,
their ``as_of`` instant (= event_time for everything allocated before this revision), the
commission inputs they used, and a ``compensates_source_id`` for compensations. New kinds:
``fixed_skipped`` and ``compensation``; new report kinds: ``changed``, ``moved``, ``skipped``.
A line is compensated at most once. The analyst views net by cash-out.

Existing events keep every value; the append-only triggers are lifted only while the new
columns are filled, inside this migration's transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dca_pipeline.ledger.types

revision = "0500"
down_revision = "0300"
branch_labels = None
depends_on = None

UtcDateTime = dca_pipeline.ledger.types.UtcDateTime
SurrogateKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

OLD_VIEWS = (
    "analyst_client_daily_allocations",
    "analyst_commission_daily",
    "analyst_cash_out_breakdown",
    "analyst_client_balance_history",
)

#: name → SELECT. Sums are cast to BIGINT: PostgreSQL's SUM(bigint) is NUMERIC. Compensating
#: lines carry the business day of the line they reverse, so every view nets per day too.
ANALYST_VIEWS = {
    "analyst_client_daily_allocations": """
SELECT l.business_day AS business_day,
       l.recipient_id AS client_id,
       l.kind AS kind,
       l.wallet_id AS wallet_id,
       COUNT(*) AS lines,
       CAST(SUM(l.fiat_cents) AS BIGINT) AS fiat_cents,
       CAST(SUM(l.sats) AS BIGINT) AS sats
FROM allocation_lines l
WHERE l.kind IN ('flow', 'fixed')
GROUP BY l.business_day, l.recipient_id, l.kind, l.wallet_id
""",
    "analyst_commission_daily": """
SELECT l.business_day AS business_day,
       l.recipient_id AS recipient_id,
       l.wallet_id AS wallet_id,
       COUNT(*) AS lines,
       CAST(SUM(l.sats) AS BIGINT) AS sats
FROM allocation_lines l
WHERE l.kind = 'commission'
GROUP BY l.business_day, l.recipient_id, l.wallet_id
""",
    # One row per cash-out ever allocated: the NET of its allocations and compensations (a
    # revoked cash-out nets to zero), with the event time and day of its latest allocation.
    "analyst_cash_out_breakdown": """
WITH latest AS (
    SELECT cash_out_id, MAX(seq) AS seq
    FROM allocation_events
    WHERE source_kind = 'cash_out'
    GROUP BY cash_out_id
),
nets AS (
    SELECT cash_out_id,
           CAST(SUM(fiat_cents) AS BIGINT) AS fiat_cents,
           CAST(SUM(principal_sats) AS BIGINT) AS principal_sats,
           CAST(SUM(commission_sats) AS BIGINT) AS commission_sats,
           COUNT(CASE WHEN source_kind = 'cash_out' THEN 1 END) AS allocations,
           COUNT(CASE WHEN source_kind = 'compensation' THEN 1 END) AS compensations
    FROM allocation_events
    WHERE cash_out_id IS NOT NULL
    GROUP BY cash_out_id
),
line_nets AS (
    SELECT e.cash_out_id AS cash_out_id, l.kind AS kind, l.recipient_id AS recipient_id,
           SUM(l.fiat_cents) AS fiat_cents, SUM(l.sats) AS sats
    FROM allocation_lines l
    JOIN allocation_events e ON e.source_id = l.source_id
    WHERE e.cash_out_id IS NOT NULL
    GROUP BY e.cash_out_id, l.kind, l.recipient_id
)
SELECT n.cash_out_id AS cash_out_id,
       le.event_time AS event_time,
       le.business_day AS business_day,
       n.fiat_cents AS fiat_cents,
       n.principal_sats AS principal_sats,
       n.commission_sats AS commission_sats,
       COUNT(CASE WHEN ln.kind = 'flow' AND (ln.fiat_cents <> 0 OR ln.sats <> 0) THEN 1 END)
           AS clients,
       CAST(COALESCE(SUM(CASE WHEN ln.kind = 'flow' THEN ln.fiat_cents END), 0) AS BIGINT)
           AS client_fiat_cents,
       CAST(COALESCE(SUM(CASE WHEN ln.kind = 'flow' THEN ln.sats END), 0) AS BIGINT)
           AS client_sats,
       CAST(COALESCE(SUM(CASE WHEN ln.kind = 'unallocated' THEN ln.fiat_cents END), 0) AS BIGINT)
           AS unallocated_fiat_cents,
       CAST(COALESCE(SUM(CASE WHEN ln.kind = 'unallocated' THEN ln.sats END), 0) AS BIGINT)
           AS unallocated_sats,
       CAST(COALESCE(SUM(CASE WHEN ln.kind = 'commission' THEN ln.sats END), 0) AS BIGINT)
           AS commission_paid_sats,
       n.allocations AS allocations,
       n.compensations AS compensations
FROM nets n
JOIN latest lt ON lt.cash_out_id = n.cash_out_id
JOIN allocation_events le ON le.seq = lt.seq
LEFT JOIN line_nets ln ON ln.cash_out_id = n.cash_out_id
GROUP BY n.cash_out_id, le.event_time, le.business_day, n.fiat_cents, n.principal_sats,
         n.commission_sats, n.allocations, n.compensations
""",
    # Deposits count for events at or after confirmed_at, hence deposits sort first (ord 0).
    # An allocation moves the balance at its as-of instant, in sequence order.
    "analyst_client_balance_history": """
WITH movements AS (
    SELECT d.client_id AS client_id,
           d.confirmed_at AS at_utc,
           0 AS ord,
           CAST(0 AS BIGINT) AS seq,
           CAST(NULL AS DATE) AS business_day,
           d.kind AS movement,
           d.deposit_id AS source_id,
           d.amount_cents AS delta_cents
    FROM deposits d
    WHERE d.status = 'confirmed'
    UNION ALL
    SELECT l.recipient_id, e.as_of, 1, e.seq, l.business_day,
           CASE WHEN e.source_kind = 'compensation' THEN 'compensation' ELSE l.kind END,
           l.source_id, -CAST(SUM(l.fiat_cents) AS BIGINT)
    FROM allocation_lines l
    JOIN allocation_events e ON e.source_id = l.source_id
    WHERE l.kind IN ('flow', 'fixed')
    GROUP BY l.recipient_id, e.as_of, e.seq, l.business_day, e.source_kind, l.kind, l.source_id
)
SELECT client_id, at_utc, business_day, movement, source_id, delta_cents,
       CAST(SUM(delta_cents) OVER (
           PARTITION BY client_id ORDER BY at_utc, ord, seq, source_id
           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
       ) AS BIGINT) AS balance_cents
FROM movements
""",
}


def _triggers(table: str, create: bool) -> None:
    dialect = op.get_bind().dialect.name
    for action in ("UPDATE", "DELETE"):
        name = f"{table}_no_{action.lower()}"
        if not create:
            on = f" ON {table}" if dialect == "postgresql" else ""
            op.execute(f"DROP TRIGGER IF EXISTS {name}{on}")
        elif dialect == "postgresql":
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {action} ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION dca_refuse_change()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {action} ON {table} BEGIN "
                f"SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
            )


def upgrade() -> None:
    # (SQLite: env.py runs the batch copies with foreign keys off and checks them after.)
    for name in OLD_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for table in ("allocation_events", "allocation_lines"):
        _triggers(table, create=False)

    with op.batch_alter_table("allocation_events", schema=None) as batch:
        batch.add_column(sa.Column("seq", SurrogateKey, nullable=True))
        batch.add_column(sa.Column("cash_out_id", sa.Text(), nullable=True))
        batch.add_column(sa.Column("as_of", UtcDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("commission_percentage", sa.Text(), nullable=True))
        batch.add_column(sa.Column("discount", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("landed_revision", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("compensates_source_id", sa.Text(), nullable=True))
        batch.drop_constraint(batch.f("ck_allocation_events_source_kind"), type_="check")
        batch.drop_constraint(batch.f("ck_allocation_events_rank_by_kind"), type_="check")

    # Number the existing events in the order they were allocated, and fill what they used.
    op.execute(
        "UPDATE allocation_events SET seq = n.seq FROM (SELECT source_id, ROW_NUMBER() OVER "
        "(ORDER BY event_time, event_rank, source_id) AS seq FROM allocation_events) AS n "
        "WHERE n.source_id = allocation_events.source_id"
    )
    op.execute("UPDATE allocation_events SET as_of = event_time")
    op.execute(
        "UPDATE allocation_events SET cash_out_id = source_id WHERE source_kind = 'cash_out'"
    )
    # The commission inputs, where the validated row still has the amounts that were allocated.
    for column in ("commission_percentage", "discount"):
        op.execute(
            f"UPDATE allocation_events SET {column} = (SELECT v.{column} "
            "FROM validated_cash_outs v WHERE v.id = allocation_events.source_id "
            "AND v.fiat_cents = allocation_events.fiat_cents "
            "AND v.principal_sats = allocation_events.principal_sats "
            "AND v.commission_sats = allocation_events.commission_sats) "
            "WHERE source_kind = 'cash_out'"
        )

    with op.batch_alter_table("allocation_events", schema=None) as batch:
        batch.alter_column("seq", existing_type=SurrogateKey, nullable=False)
        batch.alter_column("as_of", existing_type=UtcDateTime(timezone=True), nullable=False)
        batch.create_unique_constraint(batch.f("uq_allocation_events_seq"), ["seq"])
        batch.create_unique_constraint(
            batch.f("uq_allocation_events_compensates_source_id"), ["compensates_source_id"]
        )
        batch.create_foreign_key(
            batch.f("fk_allocation_events_compensates_source_id_allocation_events"),
            "allocation_events",
            ["compensates_source_id"],
            ["source_id"],
        )
        batch.create_index(batch.f("ix_allocation_events_cash_out_id"), ["cash_out_id"])
        batch.create_check_constraint(
            batch.f("ck_allocation_events_source_kind"),
            "source_kind IN ('cash_out', 'fixed', 'fixed_skipped', 'compensation')",
        )
        batch.create_check_constraint(
            batch.f("ck_allocation_events_rank_by_kind"),
            "(source_kind IN ('cash_out', 'compensation') AND event_rank = 0) OR "
            "(source_kind IN ('fixed', 'fixed_skipped') AND event_rank = 1)",
        )
        batch.create_check_constraint(
            batch.f("ck_allocation_events_cash_out_by_kind"),
            "(source_kind IN ('cash_out', 'compensation')) = (cash_out_id IS NOT NULL)",
        )
        batch.create_check_constraint(
            batch.f("ck_allocation_events_compensation_names_its_event"),
            "(source_kind = 'compensation') = (compensates_source_id IS NOT NULL)",
        )
        batch.create_check_constraint(batch.f("ck_allocation_events_seq_positive"), "seq > 0")

    with op.batch_alter_table("allocation_lines", schema=None) as batch:
        batch.create_unique_constraint(
            batch.f("uq_allocation_lines_compensates_line_id"), ["compensates_line_id"]
        )

    with op.batch_alter_table("allocation_issues", schema=None) as batch:
        batch.drop_constraint(batch.f("ck_allocation_issues_kind"), type_="check")
        batch.create_check_constraint(
            batch.f("ck_allocation_issues_kind"),
            "kind IN ('mismatch', 'late', 'revoked', 'changed', 'moved', 'skipped')",
        )

    for table in ("allocation_events", "allocation_lines"):
        _triggers(table, create=True)
    for name, select in ANALYST_VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {select}")


def downgrade() -> None:
    raise NotImplementedError(
        "0500 is not reversible: compensations and re-allocations have no place in 0300"
    )
