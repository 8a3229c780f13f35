"""System-wide business settings (business-rules §2, §5), with the contract's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_MAX_DAILY_CENTS = 200_000  # 2000.00 GTQ


@dataclass(frozen=True)
class BusinessRules:
    timezone: str = "America/Guatemala"
    currency: str = "GTQ"
    #: Narrow eligible statuses to 'confirmed' only (no 0-conf cash-outs).
    confirmed_only: bool = False
    fixed_run_time: time = time(9, 0)
    max_daily_cents: int = DEFAULT_MAX_DAILY_CENTS

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone
        if self.max_daily_cents <= 0:
            raise ValueError("max_daily_cents must be positive")
        if self.fixed_run_time.tzinfo is not None:
            raise ValueError("fixed_run_time is a local wall-clock time (no tzinfo)")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def business_day(self, instant: datetime) -> date:
        """The local date of an aware instant: the daily partition it belongs to."""
        if instant.tzinfo is None:
            raise ValueError("business_day needs an aware datetime")
        return instant.astimezone(self.zone).date()

    def day_start_utc(self, day: date) -> datetime:
        return datetime.combine(day, time(0), self.zone).astimezone(UTC)

    def day_window_utc(self, day: date) -> tuple[datetime, datetime]:
        """[start, end) of a business day in UTC."""
        return self.day_start_utc(day), self.day_start_utc(day + timedelta(days=1))

    def fixed_run_at(self, day: date) -> datetime:
        """The UTC instant of the fixed-mode run of business day ``day``."""
        return datetime.combine(day, self.fixed_run_time, self.zone).astimezone(UTC)
