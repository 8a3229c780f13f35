"""The pipeline end to end with the Dagster INSTANCE on real PostgreSQL (dagster-postgres).

The instance is ``deploy/dagster.postgres.yaml`` itself, copied into a throwaway
``DAGSTER_HOME`` with ``DAGSTER_PG_URL`` pointing at a fresh database; the ledger is a second
fresh PostgreSQL database, seeded with the sample's clients (one LNbits wallet each) through the
admin API, and Lamassu is the folder source on the bundled sample. The pipeline runs in a fresh
process (the code location reads its ``DCA_*`` settings when imported), exactly as
``dca-pipeline demo --once`` runs it. The test then reads the run records, events and check
evaluations back from PostgreSQL, and the payouts (real LNbits FakeWallet payments) back from
the PostgreSQL ledger and from LNbits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa

from dca_pipeline.demo.seed import (
    SAMPLE_FIRST_DAY,
    SAMPLE_LAST_DAY,
    copy_sample_lamassu,
    seed_ledger,
)
from dca_pipeline.demo.wallets import DemoLNbits, start_demo_lnbits
from dca_pipeline.ledger.database import ledger_engine

pytestmark = [pytest.mark.postgres, pytest.mark.dagster, pytest.mark.lnbits, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DAYS = 7  # 2025-06-01..07


def psycopg2_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg2://", 1)


def test_the_pipeline_runs_end_to_end_on_a_dagster_postgres_instance(
    fresh_pg_database: Callable[[str], str], tmp_path: Path
) -> None:
    dagster_dsn = fresh_pg_database("dagster")
    ledger_url = psycopg2_url(fresh_pg_database("ledger"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    lamassu = copy_sample_lamassu(tmp_path / "lamassu")
    lnbits = start_demo_lnbits(tmp_path / "lnbits")
    try:
        seed_ledger(ledger_url, lnbits.demo_wallets())
        run_and_verify(tmp_path, home, dagster_dsn, ledger_url, lamassu, lnbits)
    finally:
        lnbits.stop()
        ledger_engine(ledger_url).dispose()


def run_and_verify(
    tmp_path: Path,
    home: Path,
    dagster_dsn: str,
    ledger_url: str,
    lamassu: Path,
    lnbits: DemoLNbits,
) -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DAGSTER_", "DCA_", "LAMASSU_"))
    }
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": psycopg2_url(dagster_dsn),
            "DCA_DAGSTER_LOG_DIR": str(tmp_path / "compute_logs"),
            "DCA_LEDGER_URL": ledger_url,
            "DCA_LAMASSU_SOURCE": "folder",
            "DCA_LAMASSU_FOLDER": str(lamassu),
            **lnbits.environment(),
        }
    )
    report = tmp_path / "outcomes.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dca_pipeline.demo.runner",
            "--first-day",
            SAMPLE_FIRST_DAY,
            "--last-day",
            SAMPLE_LAST_DAY,
            "--json",
            str(report),
        ],  # fmt: skip
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.exists(), result.stderr[-4000:]
    outcomes = json.loads(report.read_text())["outcomes"]
    partitioned = json.loads(report.read_text())["partitioned"]
    ran = [o for o in outcomes if o["run_id"]]
    assert ran, "the pipeline defines nothing to run"
    for outcome in outcomes:
        assert outcome["success"], (outcome, result.stderr[-4000:])
        assert not [c for c in outcome["checks"] if not c["passed"]], outcome
    assert result.returncode == 0, result.stderr[-4000:]

    # Everything the runs did is recorded in Dagster's PostgreSQL database.
    with psycopg2.connect(dagster_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT run_id, status FROM runs")
        runs = dict(cursor.fetchall())
        assert {o["run_id"]: "SUCCESS" for o in ran} == runs

        cursor.execute(
            "SELECT asset_key, count(*) FROM event_logs "
            "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY asset_key"
        )
        materialized = {json.loads(key)[-1]: n for key, n in cursor.fetchall()}  # key: '["name"]'
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_CHECK_EVALUATION'"
        )
        (check_evaluations,) = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM runs WHERE run_body LIKE %s", ("%partition_range%",))
        (range_runs,) = cursor.fetchone()
    connection.close()

    expected = {
        name: count
        for o in ran
        for name, count in ((k.split("/")[-1], n) for k, n in o["materializations"].items())
    }
    assert materialized == expected
    assert check_evaluations == sum(len(o["checks"]) for o in ran)

    if partitioned:
        # The sample week went through as ONE run (single-run backfill) tagged with its range.
        assert range_runs == 1
        for name in partitioned:
            assert materialized.get(name.split("/")[-1]) == SAMPLE_DAYS, (name, materialized)

    # The payouts were real LNbits payments, recorded in the PostgreSQL ledger.
    with ledger_engine(ledger_url).connect() as ledger:
        paid = dict(
            ledger.execute(
                sa.text("SELECT recipient_id, sats FROM payouts WHERE status = 'paid'")
            ).all()
        )
        (unpaid,) = ledger.execute(
            sa.text("SELECT count(*) FROM payouts WHERE status <> 'paid'")
        ).one()
    assert paid and unpaid == 0
    balances = lnbits.balances_sats()
    for party, sats in paid.items():
        assert balances[party] == sats, (party, balances)
    assert balances["(source)"] == lnbits.funded_sats - sum(paid.values())
