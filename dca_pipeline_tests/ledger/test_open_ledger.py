"""One way to open the ledger: ``open_ledger(url=None)`` — one engine per URL, migrated once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from dca_pipeline.ledger import admin, database
from dca_pipeline.ledger.database import (
    alembic_config,
    ledger_engine,
    migrate,
    migration_heads,
    open_ledger,
)
from dca_pipeline.ledger.resource import LedgerResource


def _stored(engine: sa.Engine) -> set[str]:
    with engine.connect() as c:
        return set(c.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def test_the_heads_read_from_the_files_are_alembics() -> None:
    script = ScriptDirectory.from_config(alembic_config(None))  # type: ignore[arg-type]
    assert migration_heads() == frozenset(script.get_heads())


def test_one_migrated_engine_per_url_migrated_once(ledger_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine = open_ledger(ledger_url)
    try:
        assert _stored(engine) == migration_heads()
        assert open_ledger(ledger_url) is engine is ledger_engine(ledger_url)
        # Every caller goes through it: the resource, the admin API (URL or resource).
        assert LedgerResource(url=ledger_url).engine() is engine
        assert admin._engine(ledger_url) is engine
        assert admin._engine(LedgerResource(url=ledger_url)) is engine
        monkeypatch.setattr(database, "migrate", lambda *_: pytest.fail("migrated twice"))
        open_ledger(ledger_url)
    finally:
        engine.dispose()


def test_an_older_ledger_is_brought_to_the_heads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    migrate(ledger_engine(url), "0001")
    assert _stored(ledger_engine(url)) == {"0001"}
    assert _stored(open_ledger(url)) == migration_heads()


def test_no_url_means_dca_ledger_url(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'from-env.sqlite'}"
    monkeypatch.setenv("DCA_LEDGER_URL", url)
    assert open_ledger() is ledger_engine(url)
    assert open_ledger("  ") is ledger_engine(url)
    ledger_engine(url).dispose()


def test_no_url_and_no_dca_ledger_url_means_the_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # In a child process: the default is relative to the working directory.
    env = {k: v for k, v in os.environ.items() if k != "DCA_LEDGER_URL"}
    code = "from dca_pipeline.ledger.database import open_ledger; print(open_ledger().url)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        check=True,
    )
    assert out.stdout.strip() == "sqlite:///.dca/ledger.sqlite"
    assert (tmp_path / ".dca" / "ledger.sqlite").exists()


def test_the_database_module_imports_neither_dagster_nor_alembic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    migrate(ledger_engine(url))
    ledger_engine(url).dispose()
    code = (
        "import sys\n"
        "from dca_pipeline.ledger.database import open_ledger\n"
        f"open_ledger({url!r})\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'alembic', 'pandas'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
