"""The ``lamassu`` resource: where Lamassu rows come from, chosen by the environment.

Environment variables (:mod:`dca_pipeline.config`, read when the code location loads; secrets
only by name, through ``dg.EnvVar``, so their values never reach the UI, logs or metadata):

``DCA_LAMASSU_SOURCE``
    ``folder`` (default), ``ssh`` or ``postgres``.
``DCA_LAMASSU_FOLDER``
    folder source: directory holding ``cash_out_txs.csv``, ``cash_out_actions.csv`` and
    ``cash_in_txs.csv`` (psql CSV exports); default ``data/sample/lamassu`` (relative to the
    working directory, the repository root under ``dagster dev``).
``DCA_LAMASSU_SSH_HOST``, ``DCA_LAMASSU_SSH_PORT`` (default 22), ``DCA_LAMASSU_SSH_USER``
    ssh source: the Lamassu server and the login user.
``DCA_LAMASSU_SSH_PRIVATE_KEY`` (secret)
    ssh source: the private key as PEM/OpenSSH text (Ed25519, ECDSA or RSA), never a path.
``DCA_LAMASSU_SSH_PRIVATE_KEY_PASSPHRASE`` (secret, optional)
    ssh source: passphrase of an encrypted private key.
``DCA_LAMASSU_SSH_KNOWN_HOST``
    ssh source: the pinned host key, a ``known_hosts`` line (``[host]:port ssh-ed25519 AAAA…``)
    or ``ssh-ed25519 AAAA…``; any other key is refused (get it with ``ssh-keyscan`` and check
    its fingerprint on the server's console).
``DCA_LAMASSU_DB_NAME`` (default ``lamassu``), ``DCA_LAMASSU_DB_USER``, ``DCA_LAMASSU_DB_HOST``,
``DCA_LAMASSU_DB_PORT``
    ssh source: how ``psql`` on the server reaches the database (unset: its local socket as the
    SSH user).
``DCA_LAMASSU_PG_DSN`` (secret)
    postgres source: libpq DSN of a SELECT-only role (see :mod:`dca_pipeline.sources.postgres`
    for the GRANTs), e.g. ``host=lamassu.example dbname=lamassu user=dca_reader password=…
    sslmode=verify-full``.
"""

from __future__ import annotations

import dagster as dg

from dca_pipeline.config import DEFAULT_LAMASSU_FOLDER, LAMASSU_SOURCES, Config, config
from dca_pipeline.sources import FolderLamassuSource, PostgresLamassuSource, SshLamassuSource

DEFAULT_FOLDER = DEFAULT_LAMASSU_FOLDER
SOURCE_KINDS = LAMASSU_SOURCES


def lamassu_from_env(settings: Config | None = None) -> dg.ConfigurableResource:
    """The configured Lamassu source (see the module docstring for the variables)."""
    settings = settings or config()
    kind = settings.lamassu_source
    if kind == "folder":
        return FolderLamassuSource(directory=settings.lamassu_folder)
    if kind == "ssh":
        passphrase = settings.lamassu_ssh_private_key_passphrase
        return SshLamassuSource(
            host=settings.lamassu_ssh_host,
            port=settings.lamassu_ssh_port,
            username=settings.lamassu_ssh_user,
            private_key=dg.EnvVar(settings.lamassu_ssh_private_key.name),
            private_key_passphrase=dg.EnvVar(passphrase.name) if passphrase else None,
            known_host_key=settings.lamassu_ssh_known_host,
            database=settings.lamassu_db_name,
            db_user=settings.lamassu_db_user,
            db_host=settings.lamassu_db_host,
            db_port=settings.lamassu_db_port,
        )
    # config() accepts only LAMASSU_SOURCES
    return PostgresLamassuSource(dsn=dg.EnvVar(settings.lamassu_pg_dsn.name))


defs = dg.Definitions(resources={"lamassu": lamassu_from_env()})
