"""``dca_pipeline.config``: one typed settings object, one boolean parser, one-line errors."""

from __future__ import annotations

from datetime import date, time

import pytest

from dca_pipeline.cli import main
from dca_pipeline.config import (
    DEFAULT_LEDGER_URL,
    Config,
    ConfigError,
    Secret,
    config,
    load_config,
    parse_bool,
)
from dca_pipeline.domain.rules import BusinessRules


def test_unset_and_empty_mean_the_defaults() -> None:
    defaults = load_config({})
    assert defaults == Config() == load_config({name: "  " for name in Config.variables().values()})
    assert defaults.rules() == BusinessRules()
    assert defaults.resolved_ledger_url() == DEFAULT_LEDGER_URL
    assert (defaults.fixed_run_time_text, defaults.max_daily_gtq) == ("09:00", "2000.00")


def test_values_are_typed() -> None:
    settings = load_config({
        "DCA_FIXED_RUN_TIME": "07:30", "DCA_MAX_DAILY_GTQ": "2500.5",
        "DCA_START_DATE": "2025-06-01",
        "DCA_SETTLE_MINUTES": "0", "DCA_LAMASSU_SOURCE": "Postgres", "DCA_LAMASSU_DB_PORT": "5433",
        "DCA_ALERT_NOSTR_RELAYS": " wss://a , ,wss://b ", "DCA_CONFIRMED_ONLY": "YES",
    })
    assert settings.fixed_run_time == time(7, 30) and settings.max_daily_cents == 250_050
    assert settings.start_date == date(2025, 6, 1) and settings.settle_minutes == 0
    assert settings.lamassu_source == "postgres" and settings.lamassu_db_port == 5433
    assert settings.alert_nostr_relays == ("wss://a", "wss://b") and settings.confirmed_only


@pytest.mark.parametrize(
    ("text", "value"),
    [(w, True) for w in ("1", "true", "True", "YES", "on")]
    + [(w, False) for w in ("0", "false", "No", "OFF")],
)
def test_one_boolean_parser(text: str, value: bool) -> None:
    assert parse_bool("DCA_X", text) is value
    for name in ("DCA_CONFIRMED_ONLY", "DCA_PAYOUTS_PAUSED", "DCA_PAYOUTS_DRY_RUN"):
        field = next(f for f, env in Config.variables().items() if env == name)
        assert getattr(load_config({name: text}), field) is value


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("DCA_SETTLE_MINUTES", "abc", "a whole number >= 0"),
        ("DCA_OVERLAP_HOURS", "-1", "a whole number >= 0"),
        ("DCA_INGEST_INTERVAL_SECONDS", "0", "a whole number >= 1"),
        ("DCA_LAMASSU_SSH_PORT", "22x", "a whole number >= 1"),
        ("DCA_MAX_DAILY_GTQ", "12.345", "a GTQ amount with at most 2 decimals"),
        ("DCA_MAX_DAILY_GTQ", "0", "a positive GTQ amount"),
        ("DCA_TIMEZONE", "Mars/Olympus", "an IANA time zone"),
        ("DCA_FIXED_RUN_TIME", "9am", "a local time of day HH:MM"),
        ("DCA_START_DATE", "2025-13-01", "a date YYYY-MM-DD"),
        ("DCA_LAMASSU_SOURCE", "ftp", "one of folder, ssh, postgres"),
        ("DCA_PAYOUTS_PAUSED", "maybe", "true or false"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name: str, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({name: text})
    message = str(raised.value)
    assert message.startswith(f"{name}={text!r}: expected ") and expected in message
    assert "\n" not in message


def test_secrets_keep_their_name_and_never_show_their_value() -> None:
    settings = load_config({
        "DCA_LEDGER_URL": "postgresql+psycopg2://dca:hunter2@db/ledger",
        "DCA_LNBITS_SOURCE_ADMIN_KEY": "adminkey0123456789abcdef",
    })
    assert settings.ledger_url == Secret("DCA_LEDGER_URL", settings.ledger_url.value)
    assert settings.resolved_ledger_url().endswith("hunter2@db/ledger")
    assert settings.lnbits_source_admin_key.name == "DCA_LNBITS_SOURCE_ADMIN_KEY"
    assert not settings.lnbits_source_invoice_key.is_set
    shown = repr(settings)
    assert "hunter2" not in shown and "adminkey" not in shown
    assert "Secret(DCA_LEDGER_URL, set)" in shown
    assert "Secret(DCA_LNBITS_SOURCE_INVOICE_KEY, unset)" in shown
    assert {"DCA_LEDGER_URL", "DCA_LAMASSU_PG_DSN"} <= Config.secret_variables()


def test_config_is_read_once_per_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCA_SETTLE_MINUTES", "7")
    first = config()
    assert first is config() and first.settle_minutes == 7
    monkeypatch.setenv("DCA_SETTLE_MINUTES", "8")
    assert config().settle_minutes == 8


def test_the_cli_reports_a_bad_setting_in_one_line(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DCA_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    monkeypatch.setenv("DCA_SETTLE_MINUTES", "abc")
    for argv in (["status"], ["payouts", "status"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.strip().endswith("error: DCA_SETTLE_MINUTES='abc': expected a whole number >= 0")
        assert err.count("\n") == 1
