"""Landing: the fetch windows that landed (business-rules §4a "only landed data counts").

Revision ID: 0210
Revises: 0001
Create Date: 2026-12-01

One row per fetch, written in the transaction that lands its rows, so the ledger knows up to
which instant every fetch since the start day has landed (``landing.landed_through``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dca_pipeline.ledger.types

revision = "0210"
down_revision = "0001"
branch_labels = None
depends_on = None

UtcDateTime = dca_pipeline.ledger.types.UtcDateTime
SurrogateKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "lamassu_fetches",
        sa.Column("fetch_id", SurrogateKey, autoincrement=True, nullable=False),
        sa.Column("window_start", UtcDateTime(timezone=True), nullable=False),
        sa.Column("window_end", UtcDateTime(timezone=True), nullable=False),
        sa.Column("landed_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("dagster_run_id", sa.Text(), nullable=True),
        sa.Column("cash_out_txs_rows", sa.Integer(), nullable=True),
        sa.Column("cash_out_actions_rows", sa.Integer(), nullable=True),
        sa.Column("cash_in_txs_rows", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "window_start < window_end", name=op.f("ck_lamassu_fetches_window_order")
        ),
        sa.PrimaryKeyConstraint("fetch_id", name=op.f("pk_lamassu_fetches")),
    )
    op.create_index(
        op.f("ix_lamassu_fetches_window_end"), "lamassu_fetches", ["window_end"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_lamassu_fetches_window_end"), table_name="lamassu_fetches")
    op.drop_table("lamassu_fetches")
