"""Every ``DCA_*`` setting of the pipeline, in one typed, frozen :class:`Config` (no Dagster).

:func:`load_config` reads an environment once: each field names its variable
(``Config.variable("settle_minutes") == "DCA_SETTLE_MINUTES"``), an empty or unset variable
means the field's default, and a bad value raises :class:`ConfigError` with one line naming the
variable (``DCA_SETTLE_MINUTES='abc': expected a whole number >= 0``). :func:`config` is the
cached one for ``os.environ``: parsed once, and again only when a ``DCA_*`` variable changes
(tests set variables; the demo sets them before loading the definitions).
``docs/configuration.md`` and ``deploy/systemd/dca-pipeline.env.example`` list exactly these
variables (``dca_pipeline_tests/frontdoor/test_deploy.py``).

Secrets (:class:`Secret`: the ledger URL, the Lamassu key/passphrase/DSN, the LNbits URL and
keys, the alert webhook and Nostr key) keep their variable's name next to the value, which never
shows in ``repr``. Dagster resources bind them as ``dg.EnvVar(secret.name)``, so the UI shows
the name, never the value.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dca_pipeline.domain.money import MoneyParseError, format_cents, parse_cents
from dca_pipeline.domain.rules import BusinessRules

DEFAULT_LEDGER_URL = "sqlite:///.dca/ledger.sqlite"
DEFAULT_LAMASSU_FOLDER = "data/sample/lamassu"
LAMASSU_SOURCES = ("folder", "ssh", "postgres")
#: The one boolean parser's words (case-insensitive).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A setting with a bad value; the message is one line and never holds a secret."""


@dataclass(frozen=True)
class Secret:
    """A secret setting: its variable's name and (hidden from ``repr``) its value, if set."""

    name: str
    value: str | None = field(default=None, repr=False)

    @property
    def is_set(self) -> bool:
        return self.value is not None

    def __bool__(self) -> bool:
        return self.is_set

    def __repr__(self) -> str:
        return f"Secret({self.name}, {'set' if self.is_set else 'unset'})"


# --------------------------------------------------------------------------- parsers
# Each takes (variable name, stripped non-empty text) and returns the field's value.
Parser = Callable[[str, str], Any]


def _bad(name: str, text: str, expected: str) -> ConfigError:
    return ConfigError(f"{name}={text!r}: expected {expected}")


def parse_bool(name: str, text: str) -> bool:
    """The one boolean parser: 1/true/yes/on or 0/false/no/off, any case."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _bad(name, text, "true or false (also 1/0, yes/no, on/off)")


def _integer(minimum: int) -> Parser:
    def parse(name: str, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise _bad(name, text, f"a whole number >= {minimum}") from None
        if value < minimum:
            raise _bad(name, text, f"a whole number >= {minimum}")
        return value

    return parse


def _text(_name: str, text: str) -> str:
    return text


def _zone(name: str, text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise _bad(name, text, "an IANA time zone such as America/Guatemala") from None
    return text


def _clock(name: str, text: str) -> time:
    try:
        value = time.fromisoformat(text)
    except ValueError:
        raise _bad(name, text, "a local time of day HH:MM") from None
    if value.tzinfo is not None:
        raise _bad(name, text, "a local time of day HH:MM (no UTC offset)")
    return value


def _day(name: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _bad(name, text, "a date YYYY-MM-DD") from None


def _positive_gtq(name: str, text: str) -> int:
    try:
        cents = parse_cents(text)
    except MoneyParseError:
        raise _bad(name, text, "a GTQ amount with at most 2 decimals") from None
    if cents <= 0:
        raise _bad(name, text, "a positive GTQ amount")
    return cents


def _source(name: str, text: str) -> str:
    kind = text.lower()
    if kind not in LAMASSU_SOURCES:
        raise _bad(name, text, f"one of {', '.join(LAMASSU_SOURCES)}")
    return kind


def _csv(_name: str, text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _setting(name: str, parse: Parser, default: Any) -> Any:
    return field(default=default, metadata={"env": name, "parse": parse})


def _secret(name: str) -> Any:
    return field(default=Secret(name), metadata={"env": name, "parse": None})


# --------------------------------------------------------------------------- the settings
@dataclass(frozen=True)
class Config:
    """The pipeline's settings (docs/configuration.md has each one's meaning)."""

    # ledger and business rules (business-rules §2, §5)
    ledger_url: Secret = _secret("DCA_LEDGER_URL")
    timezone: str = _setting("DCA_TIMEZONE", _zone, "America/Guatemala")
    currency: str = _setting("DCA_CURRENCY", _text, "GTQ")
    confirmed_only: bool = _setting("DCA_CONFIRMED_ONLY", parse_bool, False)
    fixed_run_time: time = _setting("DCA_FIXED_RUN_TIME", _clock, time(9, 0))
    max_daily_cents: int = _setting("DCA_MAX_DAILY_GTQ", _positive_gtq, 200_000)
    overlap_hours: int = _setting("DCA_OVERLAP_HOURS", _integer(0), 48)
    settle_minutes: int = _setting("DCA_SETTLE_MINUTES", _integer(0), 15)
    start_date: date = _setting("DCA_START_DATE", _day, date(2025, 1, 1))
    # Lamassu source
    lamassu_source: str = _setting("DCA_LAMASSU_SOURCE", _source, "folder")
    lamassu_folder: str = _setting("DCA_LAMASSU_FOLDER", _text, DEFAULT_LAMASSU_FOLDER)
    lamassu_ssh_host: str = _setting("DCA_LAMASSU_SSH_HOST", _text, "")
    lamassu_ssh_port: int = _setting("DCA_LAMASSU_SSH_PORT", _integer(1), 22)
    lamassu_ssh_user: str = _setting("DCA_LAMASSU_SSH_USER", _text, "")
    lamassu_ssh_private_key: Secret = _secret("DCA_LAMASSU_SSH_PRIVATE_KEY")
    lamassu_ssh_private_key_passphrase: Secret = _secret("DCA_LAMASSU_SSH_PRIVATE_KEY_PASSPHRASE")
    lamassu_ssh_known_host: str = _setting("DCA_LAMASSU_SSH_KNOWN_HOST", _text, "")
    lamassu_db_name: str = _setting("DCA_LAMASSU_DB_NAME", _text, "lamassu")
    lamassu_db_user: str | None = _setting("DCA_LAMASSU_DB_USER", _text, None)
    lamassu_db_host: str | None = _setting("DCA_LAMASSU_DB_HOST", _text, None)
    lamassu_db_port: int | None = _setting("DCA_LAMASSU_DB_PORT", _integer(1), None)
    lamassu_pg_dsn: Secret = _secret("DCA_LAMASSU_PG_DSN")
    ingest_interval_seconds: int = _setting("DCA_INGEST_INTERVAL_SECONDS", _integer(1), 30)
    ingest_refresh_minutes: int = _setting("DCA_INGEST_REFRESH_MINUTES", _integer(0), 15)
    # payouts (LNbits)
    lnbits_url: Secret = _secret("DCA_LNBITS_URL")
    lnbits_source_admin_key: Secret = _secret("DCA_LNBITS_SOURCE_ADMIN_KEY")
    lnbits_source_invoice_key: Secret = _secret("DCA_LNBITS_SOURCE_INVOICE_KEY")
    payouts_paused: bool = _setting("DCA_PAYOUTS_PAUSED", parse_bool, False)
    payouts_dry_run: bool = _setting("DCA_PAYOUTS_DRY_RUN", parse_bool, False)
    payout_retry_minutes: int = _setting("DCA_PAYOUT_RETRY_MINUTES", _integer(0), 15)
    # alerts
    alert_webhook_url: Secret = _secret("DCA_ALERT_WEBHOOK_URL")
    alert_nostr_secret_key: Secret = _secret("DCA_ALERT_NOSTR_SECRET_KEY")
    alert_nostr_relays: tuple[str, ...] = _setting("DCA_ALERT_NOSTR_RELAYS", _csv, ())
    alert_nostr_recipients: tuple[str, ...] = _setting("DCA_ALERT_NOSTR_RECIPIENTS", _csv, ())

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name → environment variable, in declaration order."""
        return {f.name: f.metadata["env"] for f in dataclasses.fields(cls)}

    @classmethod
    def variable(cls, field_name: str) -> str:
        return cls.variables()[field_name]

    @classmethod
    def secret_variables(cls) -> frozenset[str]:
        return frozenset(
            f.metadata["env"] for f in dataclasses.fields(cls) if f.metadata["parse"] is None
        )

    def resolved_ledger_url(self) -> str:
        """``DCA_LEDGER_URL``, else the embedded SQLite default."""
        return self.ledger_url.value.strip() if self.ledger_url.value else DEFAULT_LEDGER_URL

    @property
    def max_daily_gtq(self) -> str:
        return format_cents(self.max_daily_cents)

    @property
    def fixed_run_time_text(self) -> str:
        """``09:00`` (seconds only when set)."""
        timespec = "minutes" if self.fixed_run_time.second == 0 else "seconds"
        return self.fixed_run_time.isoformat(timespec=timespec)

    @property
    def nostr_alerts_on(self) -> bool:
        """Nostr alerts need all three: the sender key, relays and recipients."""
        return bool(
            self.alert_nostr_secret_key and self.alert_nostr_relays and self.alert_nostr_recipients
        )

    def rules(self) -> BusinessRules:
        return BusinessRules(
            timezone=self.timezone,
            currency=self.currency,
            confirmed_only=self.confirmed_only,
            fixed_run_time=self.fixed_run_time,
            max_daily_cents=self.max_daily_cents,
        )


def load_config(environ: Mapping[str, str] = os.environ) -> Config:
    """Read and check every setting of ``environ``; :class:`ConfigError` on the first bad one."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Config):
        name, parse = f.metadata["env"], f.metadata["parse"]
        raw = environ.get(name, "")
        text = raw.strip()
        if not text:
            continue  # unset or empty: the default
        values[f.name] = Secret(name, raw) if parse is None else parse(name, text)
    return Config(**values)


def config() -> Config:
    """The settings of ``os.environ``, parsed once per distinct set of ``DCA_*`` values."""
    return _config_of(tuple(sorted(
        (name, value) for name, value in os.environ.items() if name.startswith("DCA_")
    )))


@functools.lru_cache(maxsize=16)
def _config_of(items: tuple[tuple[str, str], ...]) -> Config:
    return load_config(dict(items))
