"""Business settings as a Dagster resource, and the one daily partitioning of the pipeline.

Non-secret settings come from :func:`dca_pipeline.config.config` (the ``DCA_*`` variables with
the contract's defaults), read once when the code location loads (the partition calendar must
be known then). They show in the UI as resource configuration, which is what an operator wants
to see.
"""

from __future__ import annotations

from datetime import time

import dagster as dg

from dca_pipeline.config import Config, config
from dca_pipeline.domain.money import parse_cents
from dca_pipeline.domain.rules import BusinessRules

DEFAULT_START_DATE = Config().start_date.isoformat()


class BusinessSettings(dg.ConfigurableResource):
    """business-rules §2/§5 settings; docs/configuration.md has the variables."""

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


def settings_from_env(settings: Config | None = None) -> BusinessSettings:
    """The resource of ``settings`` (default: :func:`config`)."""
    settings = settings or config()
    return BusinessSettings(
        timezone=settings.timezone,
        currency=settings.currency,
        confirmed_only=settings.confirmed_only,
        fixed_run_time=settings.fixed_run_time_text,
        max_daily_gtq=settings.max_daily_gtq,
        overlap_hours=settings.overlap_hours,
        settle_minutes=settings.settle_minutes,
    )


#: Daily partitions are business days in the configured zone (§2). end_offset=1 makes the
#: current, still-running business day a partition, so live operation can materialize it.
business_days = dg.DailyPartitionsDefinition(
    start_date=config().start_date.isoformat(),
    timezone=config().timezone,
    end_offset=1,
)
