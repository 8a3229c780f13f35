"""The sources work as Dagster resources whose secrets come from EnvVar at run time."""

from __future__ import annotations

import dagster as dg
import pytest

from dca_pipeline.sources import LamassuTable, PostgresLamassuSource, SshLamassuSource
from dca_pipeline_tests.sources.conftest import LamassuDatabase
from harness.sshd import SshdHandle


def test_sources_resolve_envvar_secrets_inside_a_run(
    lamassu_db: LamassuDatabase, sshd: SshdHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LAMASSU_PG_DSN", lamassu_db.dsn)
    monkeypatch.setenv("TEST_LAMASSU_SSH_KEY", sshd.client_private_key_pem)
    monkeypatch.setenv("TEST_LAMASSU_SSH_HOST_KEY", sshd.known_host_line)
    window = lamassu_db.summary.window

    @dg.asset
    def both_sources_agree(
        postgres: PostgresLamassuSource, ssh: SshLamassuSource
    ) -> dg.MaterializeResult:
        via_pg = postgres.fetch_csv(LamassuTable.CASH_OUT_TXS, window)
        via_ssh = ssh.fetch_csv(LamassuTable.CASH_OUT_TXS, window)
        assert via_pg == via_ssh
        return dg.MaterializeResult(metadata={"bytes": len(via_pg), "source": ssh.describe()})

    ssh = SshLamassuSource(
        host=sshd.host, port=sshd.port, username=sshd.username,
        private_key=dg.EnvVar("TEST_LAMASSU_SSH_KEY"),
        known_host_key=dg.EnvVar("TEST_LAMASSU_SSH_HOST_KEY"),
        database=lamassu_db.dbname, db_user="postgres", db_host="127.0.0.1", db_port=5432,
    )  # fmt: skip
    assert "BEGIN" not in repr(ssh)
    result = dg.materialize(
        [both_sources_agree],
        resources={"postgres": PostgresLamassuSource(dsn=dg.EnvVar("TEST_LAMASSU_PG_DSN")),
                   "ssh": ssh},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("both_sources_agree")
    assert materialization.metadata["bytes"].value > 0
    assert "PRIVATE KEY" not in str(materialization.metadata)
