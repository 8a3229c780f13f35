"""Connecting to the ledger and bringing its schema up to date.

The URL is a SQLAlchemy URL: ``sqlite:///path/ledger.sqlite`` (the embedded default) or
``postgresql+psycopg2://user:pw@host/db`` (production). The same Alembic migrations build both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import ClassVar

import dagster as dg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from pydantic import Field

from dca_pipeline.sources.base import SecretMaskingMixin

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
DEFAULT_LEDGER_URL = "sqlite:///.dca/ledger.sqlite"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # Foreign keys are off by default in SQLite; WAL lets the UI/analysts read while we write;
    # the busy timeout makes a second writer wait instead of failing at once.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@cache
def ledger_engine(url: str) -> sa.Engine:
    """One engine (connection pool) per URL per process."""
    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        database = sa_url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(sa_url)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if sa_url.get_backend_name() == "postgresql" and sa_url.drivername == "postgresql":
        # SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3; we ship psycopg2.
        sa_url = sa_url.set(drivername="postgresql+psycopg2")
    return sa.create_engine(sa_url, pool_pre_ping=True)


def alembic_config(engine: sa.Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def migrate(engine: sa.Engine, revision: str = "heads") -> None:
    """Upgrade the ledger schema to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


class LedgerResource(SecretMaskingMixin, dg.ConfigurableResource):
    """The ledger database. Set ``url`` from ``EnvVar("DCA_LEDGER_URL")`` in production."""

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"url"})

    url: str = Field(
        default=DEFAULT_LEDGER_URL,
        description="SQLAlchemy URL of the ledger (may hold a password: use an EnvVar).",
    )

    def engine(self) -> sa.Engine:
        engine = ledger_engine(self.url)
        _migrated_once(engine)
        return engine

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """One transaction: committed on success, rolled back on any exception."""
        with self.engine().begin() as connection:
            yield connection


@cache
def _migrated_once(engine: sa.Engine) -> None:
    migrate(engine)
