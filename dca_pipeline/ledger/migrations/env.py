"""Alembic environment: the engine comes from dca_pipeline.ledger.database.migrate()."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from dca_pipeline.ledger.schema import metadata

engine = context.config.attributes["engine"]


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if engine.dialect.name == "sqlite":
    # A batch copy drops and renames a table that others reference (allocation_lines →
    # allocation_events, payout_lines → payouts) and that triggers name. SQLite's documented
    # way (https://sqlite.org/lang_altertable.html, "other kinds of table schema changes"):
    # foreign keys off outside the transaction, legacy renames (triggers and views keep the
    # name), then prove every reference still holds before turning them back on.
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.exec_driver_sql("PRAGMA legacy_alter_table=ON")
        connection.commit()
        try:
            _run(connection)
            connection.commit()
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"ledger migration broke foreign keys: {broken[:5]}")
        finally:
            connection.exec_driver_sql("PRAGMA legacy_alter_table=OFF")
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
else:
    with engine.begin() as connection:
        _run(connection)
