"""Lamassu exports already on disk: ``<directory>/<table>.csv``.

The folder holds files written by :func:`dca_pipeline.demo.lamassu_generator.export_folder`
or by an operator running the same ``COPY`` (the bytes the SSH source downloads). Such a file
was exported for *some* window that this source cannot know, so :meth:`fetch_csv` returns the
whole file: it may contain rows outside the requested window, and the downstream reader
filters by window. It never returns fewer rows than the file holds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg

from dca_pipeline.sources.base import FetchWindow, LamassuTable, SourceError


class FolderLamassuSource(dg.ConfigurableResource):
    """Reads ``<directory>/<table>.csv`` (may hold more rows than the window; see module doc)."""

    directory: str

    def path_for(self, table: LamassuTable) -> Path:
        return Path(self.directory) / f"{LamassuTable(table).value}.csv"

    def fingerprint(self, window: FetchWindow) -> str:
        """Digest of the three files (they are small exports): changes when any byte does."""
        digest = hashlib.sha256()
        for table in LamassuTable:
            digest.update(self.fetch_csv(table, window))
            digest.update(b"\0")
        return digest.hexdigest()

    def describe(self) -> str:
        return f"folder {self.directory}"

    def fetch_csv(self, table: LamassuTable, window: FetchWindow) -> bytes:
        path = self.path_for(table)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise SourceError(f"no Lamassu export for {table}: {path} does not exist") from None
        except OSError as exc:
            raise SourceError(f"cannot read the Lamassu export {path}: {exc.strerror}") from None
