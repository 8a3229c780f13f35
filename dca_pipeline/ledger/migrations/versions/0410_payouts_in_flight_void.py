"""Payouts: in-flight and void payouts, released lines, wallet debts (business-rules §7).

Revision ID: 0410
Revises: 0400
Create Date: 2026-12-01

- ``payouts.status`` gains ``in_flight`` (a pay request was sent and LNbits gave no definite
  answer: asked again by payment hash, never re-invoiced until LNbits says unpaid) and ``void``
  (its lines were compensated and LNbits proved it unpaid); an in-flight payout has its invoice.
- ``payout_attempts.pay_sent_at``: written before the first pay request of an invoice is sent;
  outcome ``void`` for the invoices of a void payout.
- ``payout_released_lines``: the lines a void payout had claimed (moved out of payout_lines).
- ``payout_wallet_debts``: wallets whose unclaimed lines net below zero, and what they owe.

Existing rows keep every value.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dca_pipeline.ledger.types

revision = "0410"
down_revision = "0400"
branch_labels = None
depends_on = None

UtcDateTime = dca_pipeline.ledger.types.UtcDateTime
SurrogateKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

OLD_STATUS = "status IN ('planned', 'invoiced', 'paid', 'failed', 'dry_run')"
NEW_STATUS = "status IN ('planned', 'invoiced', 'in_flight', 'paid', 'failed', 'void', 'dry_run')"
OLD_INVOICE = (
    "status NOT IN ('invoiced', 'paid') OR (bolt11 IS NOT NULL AND payment_hash IS NOT NULL)"
)
NEW_INVOICE = (
    "status NOT IN ('invoiced', 'in_flight', 'paid') OR "
    "(bolt11 IS NOT NULL AND payment_hash IS NOT NULL)"
)
OLD_OUTCOME = "outcome IS NULL OR outcome IN ('paid', 'dead', 'failed')"
NEW_OUTCOME = "outcome IS NULL OR outcome IN ('paid', 'dead', 'failed', 'void')"


def _checks(status: str, invoice: str, outcome: str) -> None:
    with op.batch_alter_table("payouts", schema=None) as batch:
        batch.drop_constraint(batch.f("ck_payouts_status"), type_="check")
        batch.drop_constraint(batch.f("ck_payouts_invoice_before_pay"), type_="check")
        batch.create_check_constraint(batch.f("ck_payouts_status"), status)
        batch.create_check_constraint(batch.f("ck_payouts_invoice_before_pay"), invoice)
    with op.batch_alter_table("payout_attempts", schema=None) as batch:
        batch.drop_constraint(batch.f("ck_payout_attempts_outcome"), type_="check")
        batch.create_check_constraint(batch.f("ck_payout_attempts_outcome"), outcome)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # The batch copy drops and renames payouts, which payout_lines and payout_attempts
        # reference; deferred, the foreign keys are checked at commit, when the table is back.
        op.execute("PRAGMA defer_foreign_keys = ON")
    with op.batch_alter_table("payout_attempts", schema=None) as batch:
        batch.add_column(sa.Column("pay_sent_at", UtcDateTime(timezone=True), nullable=True))
    _checks(NEW_STATUS, NEW_INVOICE, NEW_OUTCOME)
    op.create_table(
        "payout_released_lines",
        sa.Column("payout_id", sa.Text(), nullable=False),
        sa.Column("line_id", SurrogateKey, nullable=False),
        sa.Column("released_at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["allocation_lines.line_id"],
            name=op.f("fk_payout_released_lines_line_id_allocation_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["payout_id"],
            ["payouts.payout_id"],
            name=op.f("fk_payout_released_lines_payout_id_payouts"),
        ),
        sa.PrimaryKeyConstraint("payout_id", "line_id", name=op.f("pk_payout_released_lines")),
    )
    op.create_table(
        "payout_wallet_debts",
        sa.Column("wallet_id", sa.Text(), nullable=False),
        sa.Column("recipient_id", sa.Text(), nullable=False),
        sa.Column("owed_sats", sa.BigInteger(), nullable=False),
        sa.Column("owed_fiat_cents", sa.BigInteger(), nullable=False),
        sa.Column("since", UtcDateTime(timezone=True), nullable=False),
        sa.Column("alerted_at", UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("owed_sats > 0", name=op.f("ck_payout_wallet_debts_positive_debt")),
        sa.PrimaryKeyConstraint("wallet_id", name=op.f("pk_payout_wallet_debts")),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA defer_foreign_keys = ON")
    op.drop_table("payout_wallet_debts")
    op.drop_table("payout_released_lines")
    # Downgrading with in-flight or void payouts would break the old checks: refuse instead.
    remaining = op.get_bind().execute(
        sa.text("SELECT COUNT(*) FROM payouts WHERE status IN ('in_flight', 'void')")
    )
    if remaining.scalar_one():
        raise RuntimeError("in-flight or void payouts exist: 0410 cannot be downgraded")
    _checks(OLD_STATUS, OLD_INVOICE, OLD_OUTCOME)
    with op.batch_alter_table("payout_attempts", schema=None) as batch:
        batch.drop_column("pay_sent_at")
