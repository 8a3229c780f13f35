"""Real components for the source tests: an OpenSSH server and generated Lamassu databases."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from dca_pipeline.demo.lamassu_generator import (
    GeneratedSummary,
    create_lamassu_database,
    drop_database,
    generate,
)
from dca_pipeline.sources import PostgresLamassuSource, SshLamassuSource
from harness.sshd import SshdHandle, start_sshd

ADMIN_DSN = os.environ.get(
    "DCA_TEST_PG_ADMIN_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
FIXTURE_START = date(2025, 6, 9)
FIXTURE_SEED = 20250609


@dataclass(frozen=True)
class LamassuDatabase:
    dbname: str
    dsn: str
    summary: GeneratedSummary


def unique_dbname(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdHandle]:
    handle = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield handle
    finally:
        handle.stop()


def _make_database(prefix: str, **generate_args: object) -> Iterator[LamassuDatabase]:
    dbname = unique_dbname(prefix)
    dsn = create_lamassu_database(ADMIN_DSN, dbname)
    try:
        summary = generate(dsn, **generate_args)  # type: ignore[arg-type]
        yield LamassuDatabase(dbname, dsn, summary)
    finally:
        drop_database(ADMIN_DSN, dbname)


@pytest.fixture(scope="module")
def lamassu_db() -> Iterator[LamassuDatabase]:
    """Three business days, 40 cash-outs a day; read-only by convention (tests must not write)."""
    yield from _make_database(
        "lamassu_src", start=FIXTURE_START, days=3, cash_outs_per_day=40, seed=FIXTURE_SEED
    )


@pytest.fixture
def mutable_lamassu_db() -> Iterator[LamassuDatabase]:
    """A small database of the test's own, for tests that change rows."""
    yield from _make_database(
        "lamassu_mut", start=FIXTURE_START, days=2, cash_outs_per_day=40, seed=FIXTURE_SEED + 1
    )


def ssh_source_for(sshd: SshdHandle, dbname: str, **overrides: object) -> SshLamassuSource:
    """An SSH source that logs into the test sshd and runs psql against the local server."""
    settings: dict[str, object] = {
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "private_key": sshd.client_private_key_pem,
        "known_host_key": sshd.known_host_line,
        "database": dbname,
        "db_user": "postgres",
        "db_host": "127.0.0.1",
        "db_port": 5432,
        "connect_timeout_s": 10.0,
        "command_timeout_s": 60.0,
    }
    settings.update(overrides)
    return SshLamassuSource(**settings)  # type: ignore[arg-type]


@pytest.fixture
def make_ssh_source(sshd: SshdHandle) -> Callable[..., SshLamassuSource]:
    def make(dbname: str, **overrides: object) -> SshLamassuSource:
        return ssh_source_for(sshd, dbname, **overrides)

    return make


@pytest.fixture
def pg_source(lamassu_db: LamassuDatabase) -> PostgresLamassuSource:
    return PostgresLamassuSource(dsn=lamassu_db.dsn)


def write_executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path
