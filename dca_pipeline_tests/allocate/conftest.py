"""Allocation-stage fixtures: a seeded ledger on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

#: Far after every seeded cash-out, so everything has settled.
LATER = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def engine(ledger):  # type: ignore[no-untyped-def]
    return ledger.engine()
