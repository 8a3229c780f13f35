"""The ``lamassu`` resource: where Lamassu rows come from, chosen by the environment.

Environment variables (read when the code location loads; secrets only by name, through
``dg.EnvVar``, so their values never reach the UI, logs or metadata):

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

import os

import dagster as dg

from dca_pipeline.defs.settings import env
from dca_pipeline.sources import FolderLamassuSource, PostgresLamassuSource, SshLamassuSource

DEFAULT_FOLDER = "data/sample/lamassu"
SOURCE_KINDS = ("folder", "ssh", "postgres")


def _optional(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def lamassu_from_env() -> dg.ConfigurableResource:
    """The configured Lamassu source (see the module docstring for the variables)."""
    kind = env("DCA_LAMASSU_SOURCE", "folder").lower()
    if kind == "folder":
        return FolderLamassuSource(directory=env("DCA_LAMASSU_FOLDER", DEFAULT_FOLDER))
    if kind == "ssh":
        port = _optional("DCA_LAMASSU_DB_PORT")
        return SshLamassuSource(
            host=env("DCA_LAMASSU_SSH_HOST", ""),
            port=int(env("DCA_LAMASSU_SSH_PORT", "22")),
            username=env("DCA_LAMASSU_SSH_USER", ""),
            private_key=dg.EnvVar("DCA_LAMASSU_SSH_PRIVATE_KEY"),
            private_key_passphrase=(
                dg.EnvVar("DCA_LAMASSU_SSH_PRIVATE_KEY_PASSPHRASE")
                if _optional("DCA_LAMASSU_SSH_PRIVATE_KEY_PASSPHRASE")
                else None
            ),
            known_host_key=env("DCA_LAMASSU_SSH_KNOWN_HOST", ""),
            database=env("DCA_LAMASSU_DB_NAME", "lamassu"),
            db_user=_optional("DCA_LAMASSU_DB_USER"),
            db_host=_optional("DCA_LAMASSU_DB_HOST"),
            db_port=int(port) if port else None,
        )
    if kind == "postgres":
        return PostgresLamassuSource(dsn=dg.EnvVar("DCA_LAMASSU_PG_DSN"))
    raise ValueError(f"DCA_LAMASSU_SOURCE must be one of {', '.join(SOURCE_KINDS)}, not {kind!r}")


defs = dg.Definitions(resources={"lamassu": lamassu_from_env()})
