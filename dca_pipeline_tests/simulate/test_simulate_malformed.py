"""`simulate` on malformed input: quarantined rows (exit 0) and refused files (exit 2, one line).

Each kind is its own test id. Quarantined rows never stop the rest of the batch; refused files
change nothing (no output directory is written).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dca_pipeline_tests.simulate.test_simulate import TX_A, TX_B, Workspace, tx

GOOD_SECOND = dict(
    id=TX_B, created="2025-06-09 20:00:00+00", confirmed_at="2025-06-09 20:10:00+00"
)

# (test id, row overrides for a second, bad cash-out, words the quarantine reason must contain)
QUARANTINED = [
    ("fiat_not_whole_centavos", {"fiat": "100.005"}, "centavo"),
    ("fiat_unparseable", {"fiat": "1,000.00"}, "fiat"),
    ("fiat_negative", {"fiat": "-100.00000"}, "negative"),
    ("crypto_atoms_not_whole", {"crypto_atoms": "1300.5"}, "crypto_atoms"),
    ("crypto_atoms_unparseable", {"crypto_atoms": "12e5"}, "crypto_atoms"),
    ("fiat_code_other_currency", {"fiat_code": "USD"}, "fiat_code"),
    ("commission_not_below_one", {"commission_percentage": "1.00000"}, "commission"),
    ("discount_above_100", {"discount": "101"}, "discount"),
    ("created_unparseable", {"created": "yesterday"}, "created"),
    (
        "confirmed_at_without_offset",
        {"confirmed_at": "2025-06-09 20:10:00"},
        "confirmed_at",
    ),
    (
        "event_time_in_future",
        {"created": "2999-01-01 00:00:00+00", "confirmed_at": ""},
        "future",
    ),
    ("status_not_lamassu", {"status": "paid"}, "status"),
    ("boolean_not_t_or_f", {"dispense": "yes"}, "dispense"),
    ("id_missing", {"id": ""}, "id"),
]


@pytest.mark.parametrize(
    ("overrides", "words"),
    [q[1:] for q in QUARANTINED],
    ids=[q[0] for q in QUARANTINED],
)
def test_bad_row_is_quarantined_and_the_rest_proceeds(
    ws: Workspace, overrides: dict[str, str], words: str
) -> None:
    ws.cash_outs = [tx(), tx(**{**GOOD_SECOND, **overrides})]
    assert ws.run() == 0
    quarantine = ws.read("quarantine.csv")[1:]
    assert len(quarantine) == 1, quarantine
    assert words.lower() in quarantine[0][1].lower()
    # The good cash-out (example A) is still allocated exactly.
    assert ws.read("allocation_lines.csv")[1][1:] == [
        TX_A,
        "flow",
        "A",
        "180000",
        "232916",
    ]


def test_same_id_twice_with_different_content_quarantines_every_copy(
    ws: Workspace,
) -> None:
    ws.cash_outs = [tx(), tx(fiat="1000.00000"), tx(**GOOD_SECOND)]
    assert ws.run() == 0
    quarantined = [row[0] for row in ws.read("quarantine.csv")[1:]]
    assert quarantined == [TX_A, TX_A]
    assert {row[1] for row in ws.read("allocation_lines.csv")[1:]} == {TX_B}


def test_identical_duplicate_rows_count_once(ws: Workspace) -> None:
    ws.cash_outs = [tx(), tx()]
    assert ws.run() == 0
    assert ws.read("quarantine.csv")[1:] == []
    assert [row[4] for row in ws.read("allocation_lines.csv")[1:3]] == [
        "180000",
        "20000",
    ]


def edit(
    attr: str, fn: Callable[[list[dict[str, str]]], None]
) -> Callable[[Workspace], None]:
    return lambda ws: fn(getattr(ws, attr))


# (test id, mutation of the workspace, words the one-line error must contain)
REFUSED = [
    (
        "clients_bad_mode",
        edit("clients", lambda rows: rows[0].update(mode="monthly")),
        "mode",
    ),
    (
        "clients_duplicate_id",
        edit("clients", lambda rows: rows.append(dict(rows[0]))),
        "twice",
    ),
    (
        "clients_fixed_without_limit",
        edit("clients", lambda rows: rows[0].update(mode="fixed")),
        "daily_limit",
    ),
    (
        "clients_limit_above_system_max",
        edit(
            "clients", lambda rows: rows[0].update(mode="fixed", daily_limit="2000.01")
        ),
        "maximum",
    ),
    (
        "deposits_unknown_client",
        edit("deposits", lambda rows: rows[0].update(client_id="Z")),
        "unknown",
    ),
    (
        "deposits_fractional_centavo",
        edit("deposits", lambda rows: rows[0].update(amount="10.001")),
        "amount",
    ),
    (
        "deposits_zero_amount",
        edit("deposits", lambda rows: rows[0].update(amount="0.00")),
        "positive",
    ),
    (
        "deposits_confirmed_without_time",
        edit("deposits", lambda rows: rows[0].update(confirmed_at="")),
        "confirmed_at",
    ),
    (
        "deposits_naive_timestamp",
        edit("deposits", lambda rows: rows[0].update(confirmed_at="2025-06-01 12:00")),
        "confirmed_at",
    ),
    (
        "deposits_bad_status",
        edit("deposits", lambda rows: rows[0].update(status="maybe")),
        "status",
    ),
    (
        "commission_not_10000",
        edit("commission", lambda rows: rows[0].update(basis_points="6999")),
        "10000",
    ),
    (
        "commission_duplicate_recipient",
        edit("commission", lambda rows: rows[1].update(recipient_id="r1")),
        "unique",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "words"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_bad_admin_file_is_refused_with_one_line(
    ws: Workspace,
    capsys: pytest.CaptureFixture[str],
    mutate: Callable[[Workspace], None],
    words: str,
) -> None:
    mutate(ws)
    assert ws.run() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert words.lower() in err.lower()
    assert not (ws.root / "out").exists()


@pytest.mark.parametrize(
    "column", ["fiat", "crypto_atoms", "dispense_confirmed", "created"]
)
def test_cash_out_file_missing_a_required_column_is_refused(
    ws: Workspace, capsys: pytest.CaptureFixture[str], column: str
) -> None:
    ws.columns.remove(column)
    assert ws.run() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and column in err
    assert not (ws.root / "out").exists()


@pytest.mark.parametrize(
    "content",
    [b"\x89PNG\r\n\x1a\n\x00\x00binary", b"", b'id,fiat\n"unterminated'],
    ids=["binary_file", "empty_file", "broken_quoting"],
)
def test_cash_out_file_that_is_not_csv_is_refused(
    ws: Workspace, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    ws.raw_cash_out_file = content
    assert ws.run() == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (ws.root / "out").exists()


def test_period_from_after_to_is_refused(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws.period = ("2025-06-10", "2025-06-09")
    assert ws.run() == 2
    assert "--from" in capsys.readouterr().err
