"""Business settings as a Dagster resource, and the one daily partitioning of the pipeline.

Non-secret settings come from ``DCA_*`` environment variables with the contract's defaults, read
once when the code location loads (the partition calendar must be known then). They show in the
UI as resource configuration, which is what an operator wants to see.
"""

from __future__ import annotations

import os
from datetime import time

import dagster as dg

from dca_pipeline.domain.money import parse_cents
from dca_pipeline.domain.rules import BusinessRules

DEFAULT_START_DATE = "2025-01-01"


def env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


class BusinessSettings(dg.ConfigurableResource):
    """business-rules §2/§5 settings; see README "Configuration" for the env variables."""

    timezone: str = "America/Guatemala"
    currency: str = "GTQ"
    confirmed_only: bool = False
    fixed_run_time: str = "09:00"
    max_daily_gtq: str = "2000.00"
    #: Every fetch re-reads this much history: Lamassu rows change for ~24 h (§2).
    overlap_hours: int = 48
    #: Cash-outs younger than this are not allocated yet, so a row that becomes eligible a few
    #: seconds late (dispense_confirmed arrives after the dispense) is still allocated in order.
    settle_minutes: int = 15

    def rules(self) -> BusinessRules:
        return BusinessRules(
            timezone=self.timezone,
            currency=self.currency,
            confirmed_only=self.confirmed_only,
            fixed_run_time=time.fromisoformat(self.fixed_run_time),
            max_daily_cents=parse_cents(self.max_daily_gtq),
        )


def settings_from_env() -> BusinessSettings:
    return BusinessSettings(
        timezone=env("DCA_TIMEZONE", "America/Guatemala"),
        currency=env("DCA_CURRENCY", "GTQ"),
        confirmed_only=env("DCA_CONFIRMED_ONLY", "false").lower() in ("1", "true", "yes"),
        fixed_run_time=env("DCA_FIXED_RUN_TIME", "09:00"),
        max_daily_gtq=env("DCA_MAX_DAILY_GTQ", "2000.00"),
        overlap_hours=int(env("DCA_OVERLAP_HOURS", "48")),
        settle_minutes=int(env("DCA_SETTLE_MINUTES", "15")),
    )


#: Daily partitions are business days in the configured zone (§2). end_offset=1 makes the
#: current, still-running business day a partition, so live operation can materialize it.
business_days = dg.DailyPartitionsDefinition(
    start_date=env("DCA_START_DATE", DEFAULT_START_DATE),
    timezone=env("DCA_TIMEZONE", "America/Guatemala"),
    end_offset=1,
)
