"""Payouts: invoice attempts, the writer lease, the pause switch and dry-run plans.

Revision ID: 0400
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dca_pipeline.ledger.types

revision = "0400"
down_revision = "0001"
branch_labels = None
depends_on = None

UtcDateTime = dca_pipeline.ledger.types.UtcDateTime
SurrogateKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payout_attempts",
        sa.Column("payout_id", sa.Text(), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("payment_hash", sa.Text(), nullable=False),
        sa.Column("bolt11", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("outcome_detail", sa.Text(), nullable=True),
        sa.Column("outcome_at", UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('paid', 'dead', 'failed')",
            name=op.f("ck_payout_attempts_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["payout_id"],
            ["payouts.payout_id"],
            name=op.f("fk_payout_attempts_payout_id_payouts"),
        ),
        sa.PrimaryKeyConstraint("payout_id", "attempt_no", name=op.f("pk_payout_attempts")),
        sa.UniqueConstraint("payment_hash", name=op.f("uq_payout_attempts_payment_hash")),
    )
    op.create_table(
        "payout_lease",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=True),
        sa.Column("acquired_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_payout_lease")),
    )
    op.create_table(
        "payout_control",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_payout_control")),
    )
    op.create_table(
        "payout_dry_runs",
        sa.Column("row_id", SurrogateKey, autoincrement=True, nullable=False),
        sa.Column("plan_id", sa.Text(), nullable=False),
        sa.Column("payout_id", sa.Text(), nullable=True),
        sa.Column("wallet_id", sa.Text(), nullable=False),
        sa.Column("recipient_kind", sa.Text(), nullable=False),
        sa.Column("recipient_id", sa.Text(), nullable=False),
        sa.Column("sats", sa.BigInteger(), nullable=False),
        sa.Column("fiat_cents", sa.BigInteger(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("funded", sa.Boolean(), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("dagster_run_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("row_id", name=op.f("pk_payout_dry_runs")),
    )
    op.create_index(
        op.f("ix_payout_dry_runs_plan_id"), "payout_dry_runs", ["plan_id"], unique=False
    )
    # The lease row exists from the start, so taking it is always one conditional UPDATE.
    op.execute("INSERT INTO payout_lease (name) VALUES ('payouts')")


def downgrade() -> None:
    op.drop_index(op.f("ix_payout_dry_runs_plan_id"), table_name="payout_dry_runs")
    op.drop_table("payout_dry_runs")
    op.drop_table("payout_control")
    op.drop_table("payout_lease")
    op.drop_table("payout_attempts")
