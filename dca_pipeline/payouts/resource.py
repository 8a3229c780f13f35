"""LNbits as a Dagster resource (the only Dagster module of ``payouts/``): the server and the
payout source wallet, building the plain :class:`~dca_pipeline.payouts.lnbits.LNbitsClient`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import httpx
from pydantic import Field

from dca_pipeline.payouts.lnbits import LNbitsClient


class LNbitsResource(dg.ConfigurableResource):
    """The LNbits server and the payout source wallet.

    Dagster shows resource configuration in its UI: set both keys with
    ``dg.EnvVar("DCA_LNBITS_SOURCE_ADMIN_KEY")`` / ``dg.EnvVar("DCA_LNBITS_SOURCE_INVOICE_KEY")``
    so only the variable's name is shown; the fields are also hidden from ``repr``.
    """

    base_url: str = Field(description="LNbits base URL, e.g. https://lnbits.example.com")
    source_admin_key: str = Field(
        repr=False, description="Source wallet admin key (spends). Secret: use an EnvVar."
    )
    source_invoice_key: str = Field(
        repr=False, description="Source wallet invoice key (reads). Secret: use an EnvVar."
    )
    timeout_s: float = Field(  # float-ok: seconds
        default=10.0, gt=0, description="Per-request timeout in seconds."
    )
    max_attempts: int = Field(
        default=4, ge=1, description="Attempts per request for connection errors, 429 and 5xx."
    )
    backoff_s: float = Field(  # float-ok: seconds
        default=0.5, ge=0, description="First retry delay in seconds; doubles per attempt."
    )

    def build_client(self, transport: httpx.BaseTransport | None = None) -> LNbitsClient:
        return LNbitsClient(
            self.base_url,
            self.source_admin_key,
            self.source_invoice_key,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            backoff_s=self.backoff_s,
            transport=transport,
        )

    @contextmanager
    def client(self) -> Iterator[LNbitsClient]:
        """One keep-alive client for a whole payout run; closed on exit."""
        lnbits = self.build_client()
        try:
            yield lnbits
        finally:
            lnbits.close()
