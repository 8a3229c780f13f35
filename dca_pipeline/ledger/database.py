"""Opening the ledger and bringing its schema up to date (plain SQLAlchemy, no Dagster).

:func:`open_ledger` is the one way to open it: the URL is the argument, else ``DCA_LEDGER_URL``
(:mod:`dca_pipeline.config`), else the embedded SQLite default; one engine (connection pool)
per URL per process, migrated to the heads once per engine per process. The URL is a
SQLAlchemy URL: ``sqlite:///path/ledger.sqlite`` (the embedded default) or
``postgresql+psycopg2://user:pw@host/db`` (production). The same Alembic migrations build both.

The Dagster resource is :class:`dca_pipeline.ledger.resource.LedgerResource` (it delegates to
:func:`open_ledger`).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dca_pipeline.config import DEFAULT_LEDGER_URL, config

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["DEFAULT_LEDGER_URL", "MIGRATIONS_DIR", "ledger_engine", "migrate", "open_ledger"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def open_ledger(url: str | None = None) -> sa.Engine:
    """The ledger's engine, its schema at the heads (migrated at most once per process)."""
    engine = ledger_engine((url or "").strip() or config().resolved_ledger_url())
    _migrated_once(engine)
    return engine


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
    """The one engine per URL per process, as it is: NOT migrated (:func:`open_ledger` is).
    For migration tests and for ``dispose()``."""
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
    from alembic.config import Config

    alembic = Config()
    alembic.set_main_option("script_location", str(MIGRATIONS_DIR))
    alembic.attributes["engine"] = engine
    return alembic


def migrate(engine: sa.Engine, revision: str = "heads") -> None:
    """Upgrade the ledger schema to ``revision`` (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


_ASSIGNMENT = re.compile(r"^(revision|down_revision)\b[^=\n]*=\s*(.+)$", re.M)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


@cache
def migration_heads() -> frozenset[str]:
    """The head revisions of ``migrations/versions``, read from the files' ``revision`` and
    ``down_revision`` lines (importing Alembic costs more than a whole admin command)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for key, value in _ASSIGNMENT.findall(path.read_text()):
            (revisions if key == "revision" else parents).update(_QUOTED.findall(value))
    return frozenset(revisions - parents)


def _stored_revisions(engine: sa.Engine) -> frozenset[str] | None:
    try:
        with engine.connect() as c:
            rows: Any = c.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        return None  # a new ledger (or one that cannot be reached: migrate says which)
    return frozenset(row[0] for row in rows)


@cache
def _migrated_once(engine: sa.Engine) -> None:
    if _stored_revisions(engine) != migration_heads():
        migrate(engine)


def __getattr__(name: str) -> Any:
    # Old import path of the Dagster resource, resolved only when asked for (no Dagster here).
    if name == "LedgerResource":
        from dca_pipeline.ledger.resource import LedgerResource

        return LedgerResource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
