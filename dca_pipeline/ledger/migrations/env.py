"""Alembic environment: the engine comes from dca_pipeline.ledger.database.migrate()."""

from __future__ import annotations

from alembic import context

from dca_pipeline.ledger.schema import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=True,
        compare_type=True,
    )
    context.run_migrations()
