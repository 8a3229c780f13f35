"""The ``lamassu`` resource is chosen by DCA_LAMASSU_SOURCE; secrets stay EnvVar names."""

from __future__ import annotations

import pytest

from dca_pipeline.defs.ingest.resources import DEFAULT_FOLDER, lamassu_from_env
from dca_pipeline.sources import FolderLamassuSource, PostgresLamassuSource, SshLamassuSource


def test_folder_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCA_LAMASSU_SOURCE", raising=False)
    monkeypatch.delenv("DCA_LAMASSU_FOLDER", raising=False)
    source = lamassu_from_env()
    assert isinstance(source, FolderLamassuSource) and source.directory == DEFAULT_FOLDER
    monkeypatch.setenv("DCA_LAMASSU_FOLDER", "/srv/exports")
    assert lamassu_from_env().directory == "/srv/exports"


def test_ssh_and_postgres_take_their_secrets_from_envvars(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DCA_LAMASSU_SOURCE", "ssh")
    monkeypatch.setenv("DCA_LAMASSU_SSH_HOST", "lamassu.example")
    monkeypatch.setenv("DCA_LAMASSU_SSH_USER", "dca")
    monkeypatch.setenv("DCA_LAMASSU_SSH_PRIVATE_KEY", "-----BEGIN OPENSSH PRIVATE KEY----- s3cret")
    monkeypatch.setenv("DCA_LAMASSU_SSH_KNOWN_HOST", "lamassu.example ssh-ed25519 AAAA")
    monkeypatch.setenv("DCA_LAMASSU_DB_PORT", "5433")
    ssh = lamassu_from_env()
    assert isinstance(ssh, SshLamassuSource)
    assert ssh.host == "lamassu.example" and ssh.db_port == 5433 and ssh.port == 22
    assert "s3cret" not in repr(ssh)

    monkeypatch.setenv("DCA_LAMASSU_SOURCE", "Postgres")
    monkeypatch.setenv("DCA_LAMASSU_PG_DSN", "host=db password=hunter2")
    pg = lamassu_from_env()
    assert isinstance(pg, PostgresLamassuSource) and "hunter2" not in repr(pg)


def test_an_unknown_source_kind_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCA_LAMASSU_SOURCE", "ftp")
    with pytest.raises(ValueError, match="folder, ssh, postgres"):
        lamassu_from_env()
