"""Root test configuration: only generic things (area fixtures live in each folder's conftest).

- hypothesis profiles: ``ci`` (default) and ``dev`` (``HYPOTHESIS_PROFILE=dev``);
- ``postgres_server_dsn``: the real PostgreSQL server (``DCA_TEST_PG_DSN`` overrides it);
- ``fresh_pg_database``: a factory of uniquely named throwaway databases, dropped at teardown.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from hypothesis import HealthCheck, settings
from psycopg2 import sql

# CI: deterministic and thorough; money code deserves a few hundred examples per property.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=200,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def dsn_for_database(server_dsn: str, dbname: str) -> str:
    """The server DSN with its database (the URL path) replaced by ``dbname``."""
    parts = urlsplit(server_dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def postgres_server_dsn() -> str:
    """DSN of the maintenance database of the test server; fails loudly if it does not answer."""
    dsn = os.environ.get("DCA_TEST_PG_DSN", DEFAULT_PG_DSN)
    try:
        psycopg2.connect(dsn, connect_timeout=5).close()
        return dsn
    except psycopg2.OperationalError as exc:
        # Only the first line: enough to act on, and a DSN password can never reach the log.
        reason = str(exc).strip().splitlines()[0]
    location = f"{urlsplit(dsn).hostname}:{urlsplit(dsn).port or 5432}"
    pytest.fail(
        f"PostgreSQL at {location} does not answer ({reason}). Start it (e.g. "
        "`pg_ctlcluster 15 main start`) or point DCA_TEST_PG_DSN at a server with trust auth.",
        pytrace=False,
    )


@pytest.fixture
def fresh_pg_database(postgres_server_dsn: str) -> Iterator[Callable[[str], str]]:
    """``make(prefix) -> dsn``: creates a uniquely named empty database; all dropped afterwards."""
    created: list[str] = []

    def make(prefix: str) -> str:
        # Lower case and short: PostgreSQL folds unquoted names and cuts them at 63 bytes.
        safe_prefix = "".join(c for c in prefix.lower() if c.isalnum() or c == "_")[:40]
        dbname = f"{safe_prefix or 'dca'}_{uuid.uuid4().hex[:12]}"
        admin = psycopg2.connect(postgres_server_dsn)
        try:
            admin.autocommit = True  # CREATE DATABASE refuses to run inside a transaction
            with admin.cursor() as cursor:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        finally:
            admin.close()
        created.append(dbname)
        return dsn_for_database(postgres_server_dsn, dbname)

    yield make

    if created:
        admin = psycopg2.connect(postgres_server_dsn)
        try:
            admin.autocommit = True
            with admin.cursor() as cursor:
                for dbname in created:
                    cursor.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(dbname)
                        )
                    )
        finally:
            admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty ledger URL on SQLite and on the real PostgreSQL (the test runs twice)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    make = request.getfixturevalue("fresh_pg_database")
    return make("ledger").replace("postgresql://", "postgresql+psycopg2://", 1)


@pytest.fixture
def ledger(ledger_url: str):  # type: ignore[no-untyped-def]
    """A migrated :class:`LedgerResource` on SQLite and on PostgreSQL (parametrized)."""
    from dca_pipeline.ledger.database import LedgerResource, ledger_engine

    resource = LedgerResource(url=ledger_url)
    resource.engine()
    yield resource
    # Close pooled connections so PostgreSQL can drop the database at teardown.
    ledger_engine(ledger_url).dispose()
