"""Reading psql CSV exports (``COPY … TO STDOUT WITH (FORMAT csv, HEADER)``) exactly.

Every value stays text (None for an empty field = NULL); parsing is validation's job. A file
that is not such an export is refused as a whole with a one-line reason and nothing changes.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from dca_pipeline.lamassu.columns import REQUIRED_COLUMNS


class ExportRefused(ValueError):
    """A whole export refused (not CSV, missing columns, corrupt); the message is one line."""


def read_export(data: bytes | Path, table: str, *, name: str | None = None) -> pd.DataFrame:
    label = name or (data.name if isinstance(data, Path) else table)
    try:
        raw = data.read_bytes() if isinstance(data, Path) else data
    except OSError as exc:
        raise ExportRefused(f"{label}: cannot read: {exc.strerror}") from exc
    if b"\x00" in raw:
        raise ExportRefused(f"{label}: not a CSV export (binary content)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExportRefused(f"{label}: not UTF-8 text") from exc
    if not text.strip():
        raise ExportRefused(f"{label}: empty file (no header row)")
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise ExportRefused(f"{label}: not valid CSV: {exc}") from exc
    header, body = rows[0], rows[1:]
    if len(set(header)) != len(header):
        raise ExportRefused(f"{label}: duplicate column names in the header")
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ExportRefused(
                f"{label}: line {number} has {len(row)} fields, the header has {len(header)}"
            )
    missing = [c for c in REQUIRED_COLUMNS.get(table, ()) if c not in header]
    if missing:
        raise ExportRefused(f"{label}: missing required column(s): {', '.join(missing)}")
    frame = pd.DataFrame(body, columns=header, dtype=object)
    return frame.where(frame != "", None)
