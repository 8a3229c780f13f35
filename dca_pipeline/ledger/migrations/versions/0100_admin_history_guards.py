"""Admin guards in the database: history rows are append-only, a confirmed deposit is never
edited or deleted, a client's wallet is immutable once the client has an allocation line.

Revision ID: 0100
Revises: 0001
Create Date: 2026-11-25

``ledger/admin.py`` checks the same rules first (with friendly errors); these triggers make
them hold for every writer, e.g. an analyst's SQL session. Triggers only: no table is altered.
"""

from __future__ import annotations

from alembic import op

revision = "0100"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Settings and commission history are appended to, never rewritten.
HISTORY_TABLES = ("client_settings", "commission_versions", "commission_recipients")

_CLIENT_HAS_LINES = (
    "EXISTS (SELECT 1 FROM allocation_lines WHERE allocation_lines.recipient_id = OLD.client_id "
    "AND allocation_lines.kind IN ('flow', 'fixed'))"
)
_WALLET_MESSAGE = "clients.wallet_id is immutable once the client has allocation lines"
_DEPOSIT_MESSAGE = "a confirmed deposit is never edited or deleted (add a correction)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()


def _upgrade_postgresql() -> None:
    # dca_refuse_change() comes from 0001 (the allocation ledger's append-only triggers).
    for table in HISTORY_TABLES:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION dca_refuse_change()"
            )
    op.execute(
        "CREATE OR REPLACE FUNCTION dca_confirmed_deposit_immutable() RETURNS trigger AS $$ "
        "BEGIN IF OLD.status = 'confirmed' THEN "
        f"RAISE EXCEPTION '{_DEPOSIT_MESSAGE}: % refused', TG_OP; END IF; "
        "IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; END; $$ LANGUAGE plpgsql"
    )
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER deposits_confirmed_no_{action.lower()} BEFORE {action} ON deposits "
            "FOR EACH ROW EXECUTE FUNCTION dca_confirmed_deposit_immutable()"
        )
    op.execute(
        "CREATE OR REPLACE FUNCTION dca_client_wallet_immutable() RETURNS trigger AS $$ "
        f"BEGIN IF NEW.wallet_id IS DISTINCT FROM OLD.wallet_id AND {_CLIENT_HAS_LINES} THEN "
        f"RAISE EXCEPTION '{_WALLET_MESSAGE}'; END IF; RETURN NEW; END; $$ LANGUAGE plpgsql"
    )
    op.execute(
        "CREATE TRIGGER clients_wallet_immutable BEFORE UPDATE ON clients "
        "FOR EACH ROW EXECUTE FUNCTION dca_client_wallet_immutable()"
    )


def _upgrade_sqlite() -> None:
    for table in HISTORY_TABLES:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} BEGIN "
                f"SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
            )
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER deposits_confirmed_no_{action.lower()} BEFORE {action} ON deposits "
            f"WHEN OLD.status = 'confirmed' BEGIN "
            f"SELECT RAISE(ABORT, '{_DEPOSIT_MESSAGE}: {action} refused'); END"
        )
    op.execute(
        "CREATE TRIGGER clients_wallet_immutable BEFORE UPDATE OF wallet_id ON clients "
        f"WHEN NEW.wallet_id IS NOT OLD.wallet_id AND {_CLIENT_HAS_LINES} BEGIN "
        f"SELECT RAISE(ABORT, '{_WALLET_MESSAGE}'); END"
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    names = [
        (f"{table}_no_{action}", table)
        for table in HISTORY_TABLES
        for action in ("update", "delete")
    ]
    names += [
        ("deposits_confirmed_no_update", "deposits"),
        ("deposits_confirmed_no_delete", "deposits"),
    ]
    names += [("clients_wallet_immutable", "clients")]
    for name, table in names:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS dca_confirmed_deposit_immutable()")
        op.execute("DROP FUNCTION IF EXISTS dca_client_wallet_immutable()")
