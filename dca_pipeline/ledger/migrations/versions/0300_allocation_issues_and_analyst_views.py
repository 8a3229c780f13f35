"""Allocation issues (what re-materializing found) and the analyst views.

Revision ID: 0300
Revises: 0001
Create Date: 2026-11-25

The views are the stable, documented interface for analysts (docs/analysts.md); the same SQL
runs on SQLite and PostgreSQL. Nothing here alters the append-only allocation tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dca_pipeline.ledger.types

revision = "0300"
down_revision = "0001"
branch_labels = None
depends_on = None

UtcDateTime = dca_pipeline.ledger.types.UtcDateTime
SurrogateKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: name → SELECT. Sums are cast to BIGINT: PostgreSQL's SUM(bigint) is NUMERIC.
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
    "analyst_cash_out_breakdown": """
SELECT e.source_id AS cash_out_id,
       e.event_time AS event_time,
       e.business_day AS business_day,
       e.fiat_cents AS fiat_cents,
       e.principal_sats AS principal_sats,
       e.commission_sats AS commission_sats,
       COUNT(CASE WHEN l.kind = 'flow' THEN 1 END) AS clients,
       CAST(COALESCE(SUM(CASE WHEN l.kind = 'flow' THEN l.fiat_cents END), 0) AS BIGINT)
           AS client_fiat_cents,
       CAST(COALESCE(SUM(CASE WHEN l.kind = 'flow' THEN l.sats END), 0) AS BIGINT)
           AS client_sats,
       CAST(COALESCE(SUM(CASE WHEN l.kind = 'unallocated' THEN l.fiat_cents END), 0) AS BIGINT)
           AS unallocated_fiat_cents,
       CAST(COALESCE(SUM(CASE WHEN l.kind = 'unallocated' THEN l.sats END), 0) AS BIGINT)
           AS unallocated_sats,
       CAST(COALESCE(SUM(CASE WHEN l.kind = 'commission' THEN l.sats END), 0) AS BIGINT)
           AS commission_paid_sats
FROM allocation_events e
LEFT JOIN allocation_lines l ON l.source_id = e.source_id
WHERE e.source_kind = 'cash_out'
GROUP BY e.source_id, e.event_time, e.business_day, e.fiat_cents, e.principal_sats,
         e.commission_sats
""",
    # Deposits count for events at or after confirmed_at, hence deposits sort first (ord 0).
    "analyst_client_balance_history": """
WITH movements AS (
    SELECT d.client_id AS client_id,
           d.confirmed_at AS at_utc,
           0 AS ord,
           CAST(NULL AS DATE) AS business_day,
           d.kind AS movement,
           d.deposit_id AS source_id,
           d.amount_cents AS delta_cents
    FROM deposits d
    WHERE d.status = 'confirmed'
    UNION ALL
    SELECT l.recipient_id, e.event_time, 1, l.business_day, l.kind, l.source_id,
           -CAST(SUM(l.fiat_cents) AS BIGINT)
    FROM allocation_lines l
    JOIN allocation_events e ON e.source_id = l.source_id
    WHERE l.kind IN ('flow', 'fixed')
    GROUP BY l.recipient_id, e.event_time, l.business_day, l.kind, l.source_id
)
SELECT client_id, at_utc, business_day, movement, source_id, delta_cents,
       CAST(SUM(delta_cents) OVER (
           PARTITION BY client_id ORDER BY at_utc, ord, source_id
           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
       ) AS BIGINT) AS balance_cents
FROM movements
""",
}


def upgrade() -> None:
    op.create_table(
        "allocation_issues",
        sa.Column("issue_id", SurrogateKey, autoincrement=True, nullable=False),
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("business_day", sa.Date(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("detected_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("dagster_run_id", sa.Text(), nullable=True),
        sa.Column("closed_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(closed_at IS NULL) = (resolution IS NULL)",
            name=op.f("ck_allocation_issues_closed_has_resolution"),
        ),
        sa.CheckConstraint(
            "kind IN ('mismatch', 'late', 'revoked')", name=op.f("ck_allocation_issues_kind")
        ),
        sa.PrimaryKeyConstraint("issue_id", name=op.f("pk_allocation_issues")),
    )
    op.create_index(
        op.f("ix_allocation_issues_source_id"), "allocation_issues", ["source_id"], unique=False
    )
    for name, select in ANALYST_VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {select}")


def downgrade() -> None:
    for name in ANALYST_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_index(op.f("ix_allocation_issues_source_id"), table_name="allocation_issues")
    op.drop_table("allocation_issues")
