"""Where Lamassu rows come from: SSH (paramiko + psql COPY), read-only Postgres, a folder.

Every source returns, for a table and a window, the exact bytes of
``COPY (SELECT <explicit columns> ...) TO STDOUT WITH (FORMAT csv, HEADER)`` (TimeZone=UTC),
so one parser (``dca_pipeline.lamassu``) reads them all.
"""

from dca_pipeline.sources.base import (
    AuthenticationError,
    FetchWindow,
    HostKeyError,
    LamassuSource,
    LamassuTable,
    RemoteCommandError,
    SourceError,
    TransferError,
    fetch_tables,
)
from dca_pipeline.sources.folder import FolderLamassuSource
from dca_pipeline.sources.postgres import PostgresLamassuSource
from dca_pipeline.sources.queries import COLUMNS, export_sql
from dca_pipeline.sources.ssh import SshLamassuSource

__all__ = [
    "COLUMNS",
    "AuthenticationError",
    "FetchWindow",
    "FolderLamassuSource",
    "HostKeyError",
    "LamassuSource",
    "LamassuTable",
    "PostgresLamassuSource",
    "RemoteCommandError",
    "SourceError",
    "SshLamassuSource",
    "TransferError",
    "export_sql",
    "fetch_tables",
]
