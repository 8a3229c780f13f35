"""The allocation sequence in the ledger (business-rules §4a): its numbering and its end.

Events are numbered 1, 2, 3 … in the order the single allocation writer appends them; the
state before event k is the sum of the lines of the events numbered below k.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dca_pipeline.ledger import schema as s


def next_seq() -> Any:
    """SQL for the next sequence number (for writers that insert one event at a time)."""
    e = s.allocation_events
    return sa.select(sa.func.coalesce(sa.func.max(e.c.seq), 0) + 1).scalar_subquery()


def last_seq(c: sa.Connection) -> int:
    """The number of the last event in the sequence (0 for an empty ledger)."""
    e = s.allocation_events
    return int(c.execute(sa.select(sa.func.coalesce(sa.func.max(e.c.seq), 0))).scalar_one())
