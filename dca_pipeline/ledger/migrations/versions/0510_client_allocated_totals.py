"""Running totals: Σ flow + fixed fiat allocated per client, kept by the database itself.

Revision ID: 0510
Revises: 0500
Create Date: 2026-12-01

A live tick must not re-add every line the ledger ever held to know a client's balance. The
totals are kept by a trigger in the same transaction as the lines they derive from, so every
writer (the allocation run, an admin tool, a test) keeps them right; a full re-aggregation is
one asset check off the hot path (``running_totals_match_lines``). PostgreSQL: one statement-
level trigger with a transition table (a COPY of 10⁵ lines updates each client once); SQLite:
a row trigger (an UPSERT per client line).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0510"
down_revision = "0500"
branch_labels = None
depends_on = None

Money = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "client_allocated_totals",
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("allocated_cents", Money, nullable=False),
        sa.Column("allocated_sats", Money, nullable=False),
        sa.Column("lines", Money, nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_client_allocated_totals")),
    )
    op.execute(
        "INSERT INTO client_allocated_totals (client_id, allocated_cents, allocated_sats, lines) "
        "SELECT recipient_id, SUM(fiat_cents), SUM(sats), COUNT(*) FROM allocation_lines "
        "WHERE kind IN ('flow', 'fixed') GROUP BY recipient_id"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION dca_add_client_totals() RETURNS trigger AS $$ BEGIN "
            "INSERT INTO client_allocated_totals (client_id, allocated_cents, allocated_sats, "
            "lines) SELECT recipient_id, SUM(fiat_cents), SUM(sats), COUNT(*) FROM new_lines "
            "WHERE kind IN ('flow', 'fixed') GROUP BY recipient_id "
            "ON CONFLICT (client_id) DO UPDATE SET "
            "allocated_cents = client_allocated_totals.allocated_cents "
            "+ EXCLUDED.allocated_cents, "
            "allocated_sats = client_allocated_totals.allocated_sats + EXCLUDED.allocated_sats, "
            "lines = client_allocated_totals.lines + EXCLUDED.lines; "
            "RETURN NULL; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER allocation_lines_client_totals AFTER INSERT ON allocation_lines "
            "REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT "
            "EXECUTE FUNCTION dca_add_client_totals()"
        )
    else:
        op.execute(
            "CREATE TRIGGER allocation_lines_client_totals AFTER INSERT ON allocation_lines "
            "WHEN NEW.kind IN ('flow', 'fixed') BEGIN "
            "INSERT INTO client_allocated_totals (client_id, allocated_cents, allocated_sats, "
            "lines) VALUES (NEW.recipient_id, NEW.fiat_cents, NEW.sats, 1) "
            "ON CONFLICT (client_id) DO UPDATE SET "
            "allocated_cents = allocated_cents + excluded.allocated_cents, "
            "allocated_sats = allocated_sats + excluded.allocated_sats, "
            "lines = lines + 1; END"
        )
    # What a live tick looks up instead of scanning: the sequence's end, and what changed.
    op.create_index(op.f("ix_allocation_events_as_of"), "allocation_events", ["as_of"])
    op.create_index(op.f("ix_allocation_events_allocated_at"), "allocation_events",
                    ["allocated_at"])
    op.create_index(op.f("ix_validated_cash_outs_validated_at"), "validated_cash_outs",
                    ["validated_at"])
    op.create_index(op.f("ix_quarantine_last_seen_at"), "quarantine", ["last_seen_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_quarantine_last_seen_at"), table_name="quarantine")
    op.drop_index(op.f("ix_validated_cash_outs_validated_at"), table_name="validated_cash_outs")
    op.drop_index(op.f("ix_allocation_events_allocated_at"), table_name="allocation_events")
    op.drop_index(op.f("ix_allocation_events_as_of"), table_name="allocation_events")
    on = " ON allocation_lines" if op.get_bind().dialect.name == "postgresql" else ""
    op.execute(f"DROP TRIGGER IF EXISTS allocation_lines_client_totals{on}")
    op.drop_table("client_allocated_totals")
