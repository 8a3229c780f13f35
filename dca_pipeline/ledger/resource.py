"""The ledger as a Dagster resource (the only Dagster module of ``ledger/``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from dca_pipeline.config import DEFAULT_LEDGER_URL
from dca_pipeline.ledger.database import open_ledger
from dca_pipeline.sources.base import SecretMaskingMixin


class LedgerResource(SecretMaskingMixin, dg.ConfigurableResource):
    """The ledger database. Set ``url`` from ``EnvVar("DCA_LEDGER_URL")`` in production."""

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"url"})

    url: str = Field(
        default=DEFAULT_LEDGER_URL,
        description="SQLAlchemy URL of the ledger (may hold a password: use an EnvVar).",
    )

    def engine(self) -> sa.Engine:
        """:func:`~dca_pipeline.ledger.database.open_ledger` of ``url`` (migrated once)."""
        return open_ledger(self.url)

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """One transaction: committed on success, rolled back on any exception."""
        with self.engine().begin() as connection:
            yield connection
