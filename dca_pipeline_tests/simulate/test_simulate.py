"""`dca-pipeline simulate` end to end through the real CLI (business-rules §10)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from dca_pipeline.cli import main

COLUMNS = [
    "id",
    "device_id",
    "to_address",
    "crypto_atoms",
    "crypto_code",
    "fiat",
    "fiat_code",
    "status",
    "dispense",
    "notified",
    "redeem",
    "phone",
    "error",
    "created",
    "confirmed_at",
    "dispense_confirmed",
    "commission_percentage",
    "raw_ticker_price",
    "discount",
    "some_future_column",
]
DEVICE = "a" * 64
TX_A = "2d4fa2cf-4c9a-4b5e-9d43-6c7f0f0b2a11"
TX_B = "7b1e5b9a-1f3c-4d2e-8a6b-0e9d8c7b6a55"


def tx(**overrides: str) -> dict[str, str]:
    """Example A of §9 as Lamassu exports it: 2000 GTQ, 266,800 sats, 3 %, no discount."""
    row = {
        "id": TX_A,
        "device_id": DEVICE,
        "to_address": "bc1qexample",
        "crypto_atoms": "266800",
        "crypto_code": "BTC",
        "fiat": "2000.00000",
        "fiat_code": "GTQ",
        "status": "confirmed",
        "dispense": "t",
        "notified": "f",
        "redeem": "f",
        "phone": "",
        "error": "",
        "created": "2025-06-09 19:12:42.040933+00",
        "confirmed_at": "2025-06-09 19:26:10+00",
        "dispense_confirmed": "t",
        "commission_percentage": "0.03000",
        "raw_ticker_price": "794090.00000",
        "discount": "",
        "some_future_column": "x",
    }
    row.update(overrides)
    return row


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=header, lineterminator="\n", extrasaction="ignore"
        )
        writer.writeheader()
        writer.writerows(rows)
    return path


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cash_outs = [tx()]
        self.actions = [
            {
                "id": "1",
                "tx_id": TX_A,
                "action": "provisionAddress",
                "created": "2025-06-09 19:12:43+00",
            },
            {
                "id": "2",
                "tx_id": TX_A,
                "action": "dispense",
                "created": "2025-06-09 19:27:01.5+00",
            },
        ]
        self.clients = [
            {
                "client_id": "A",
                "mode": "flow",
                "status": "active",
                "daily_limit": "",
                "wallet_id": "wa",
            },
            {
                "client_id": "B",
                "mode": "flow",
                "status": "active",
                "daily_limit": "",
                "wallet_id": "wb",
            },
        ]
        self.deposits = [
            {
                "deposit_id": "d1",
                "client_id": "A",
                "amount": "9000.00",
                "status": "confirmed",
                "confirmed_at": "2025-06-01 12:00:00+00",
            },
            {
                "deposit_id": "d2",
                "client_id": "B",
                "amount": "1000.00",
                "status": "confirmed",
                "confirmed_at": "2025-06-01 12:00:00+00",
            },
            {
                "deposit_id": "d3",
                "client_id": "B",
                "amount": "50.00",
                "status": "pending",
                "confirmed_at": "",
            },
        ]
        self.commission = [
            {"recipient_id": "r1", "wallet_id": "w1", "basis_points": "7000"},
            {"recipient_id": "r2", "wallet_id": "w2", "basis_points": "3000"},
        ]
        self.extra_args: list[str] = []
        self.period = ("2025-06-09", "2025-06-09")
        self.columns = list(COLUMNS)
        self.raw_cash_out_file: bytes | None = (
            None  # replaces the CSV, for not-CSV tests
        )

    def run(self, out: str = "out") -> int:
        r = self.root
        write_csv(r / "cash_out_txs.csv", self.columns, self.cash_outs)
        if self.raw_cash_out_file is not None:
            (r / "cash_out_txs.csv").write_bytes(self.raw_cash_out_file)
        write_csv(
            r / "cash_out_actions.csv",
            ["id", "tx_id", "action", "created"],
            self.actions,
        )
        write_csv(
            r / "clients.csv",
            ["client_id", "mode", "status", "daily_limit", "wallet_id"],
            self.clients,
        )
        write_csv(
            r / "deposits.csv",
            ["deposit_id", "client_id", "amount", "status", "confirmed_at"],
            self.deposits,
        )
        write_csv(
            r / "commission.csv",
            ["recipient_id", "wallet_id", "basis_points"],
            self.commission,
        )
        return main(
            [
                "simulate",
                "--cash-outs",
                str(r / "cash_out_txs.csv"),
                "--cash-out-actions",
                str(r / "cash_out_actions.csv"),
                "--clients",
                str(r / "clients.csv"),
                "--deposits",
                str(r / "deposits.csv"),
                "--commission",
                str(r / "commission.csv"),
                "--from",
                self.period[0],
                "--to",
                self.period[1],
                "--out",
                str(r / out),
                *self.extra_args,
            ]
        )

    def read(self, name: str, out: str = "out") -> list[list[str]]:
        with (self.root / out / name).open(newline="") as handle:
            return list(csv.reader(handle))


def test_example_a_end_to_end(ws: Workspace) -> None:
    assert ws.run() == 0
    assert ws.read("allocation_lines.csv") == [
        ["seq", "source_id", "kind", "recipient_id", "fiat_cents", "sats"],
        ["1", TX_A, "flow", "A", "180000", "232916"],
        ["2", TX_A, "flow", "B", "20000", "25880"],
        ["3", TX_A, "commission", "r1", "0", "5603"],
        ["4", TX_A, "commission", "r2", "0", "2401"],
    ]
    # Pending deposits don't count: B's 50.00 stays out of the balance.
    assert ws.read("balances.csv") == [
        ["client_id", "remaining_cents"],
        ["A", "720000"],
        ["B", "80000"],
    ]
    assert ws.read("quarantine.csv") == [["source_id", "reason"]]


def test_example_e_fixed_rate_from_a_cash_out_outside_the_period(ws: Workspace) -> None:
    ws.clients = [
        {
            "client_id": "F",
            "mode": "fixed",
            "status": "active",
            "daily_limit": "150.00",
            "wallet_id": "wf",
        }
    ]
    ws.deposits = [
        {
            "deposit_id": "d1",
            "client_id": "F",
            "amount": "100.00",
            "status": "confirmed",
            "confirmed_at": "2025-06-01 12:00:00+00",
        }
    ]
    ws.period = (
        "2025-06-10",
        "2025-06-10",
    )  # TX_A (06-09) is outside: only its rate is used
    assert ws.run() == 0
    assert ws.read("allocation_lines.csv")[1:] == [
        ["1", "fixed:2025-06-10", "fixed", "F", "10000", "12939"]
    ]
    assert ws.read("balances.csv")[1:] == [["F", "0"]]


def test_fixed_run_with_no_known_rate_is_skipped_and_the_rest_goes_on(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ws.run("flow-only") == 0
    ws.clients.append(
        {
            "client_id": "F",
            "mode": "fixed",
            "status": "active",
            "daily_limit": "150.00",
            "wallet_id": "wf",
        }
    )
    ws.deposits.append(
        {
            "deposit_id": "d9",
            "client_id": "F",
            "amount": "100.00",
            "status": "confirmed",
            "confirmed_at": "2025-06-01 12:00:00+00",
        }
    )
    ws.period = ("2025-06-09", "2025-06-10")
    capsys.readouterr()
    # The fixed run of 06-09 is at 15:00 UTC, before the only cash-out (19:27 UTC): skipped.
    # The one of 06-10 has that cash-out's rate and pays F.
    assert ws.run() == 0
    assert capsys.readouterr().err == ""
    assert ws.read("skipped_fixed_runs.csv") == [
        ["source_id", "reason"],
        [
            "fixed:2025-06-09",
            "no reference rate: no eligible cash-out before 2025-06-09T15:00:00+00:00",
        ],
    ]
    lines = ws.read("allocation_lines.csv")
    # The cash-out is split among the flow clients exactly as without F.
    assert lines[:5] == ws.read("allocation_lines.csv", "flow-only")
    assert lines[5:] == [["5", "fixed:2025-06-10", "fixed", "F", "10000", "12939"]]
    assert ws.read("balances.csv") == [
        ["client_id", "remaining_cents"],
        ["A", "720000"],
        ["B", "80000"],
        ["F", "0"],
    ]
    assert ws.read("quarantine.csv") == [["source_id", "reason"]]


def test_skipped_fixed_runs_are_listed_in_processing_order(ws: Workspace) -> None:
    ws.cash_outs = []
    ws.actions = []
    ws.clients = [
        {
            "client_id": "F",
            "mode": "fixed",
            "status": "active",
            "daily_limit": "1.00",
            "wallet_id": "wf",
        }
    ]
    ws.deposits = [
        {
            "deposit_id": "d1",
            "client_id": "F",
            "amount": "100.00",
            "status": "confirmed",
            "confirmed_at": "2025-06-01 12:00:00+00",
        }
    ]
    ws.period = ("2025-06-09", "2025-06-11")
    assert ws.run() == 0
    assert [row[0] for row in ws.read("skipped_fixed_runs.csv")] == [
        "source_id",
        "fixed:2025-06-09",
        "fixed:2025-06-10",
        "fixed:2025-06-11",
    ]
    assert ws.read("allocation_lines.csv") == [
        ["seq", "source_id", "kind", "recipient_id", "fiat_cents", "sats"]
    ]
    assert ws.read("balances.csv")[1:] == [["F", "10000"]]


def test_skipped_fixed_runs_file_is_written_even_when_nothing_is_skipped(
    ws: Workspace,
) -> None:
    assert ws.run() == 0
    assert (ws.root / "out" / "skipped_fixed_runs.csv").read_bytes() == b"source_id,reason\n"
    assert not [p for p in (ws.root / "out").iterdir() if p.name.startswith(".")]


def test_outputs_are_byte_identical_across_runs_and_input_order(ws: Workspace) -> None:
    ws.cash_outs = [
        tx(
            id=f"00000000-0000-4000-8000-{i:012d}",
            created=f"2025-06-09 {10 + i % 8}:00:00+00",
            confirmed_at="",
            fiat=f"{100 * (1 + i % 7)}.00000",
            crypto_atoms=str(13_000 * (1 + i % 7) + i),
        )
        for i in range(40)
    ]
    ws.actions = []
    assert ws.run("first") == 0
    assert ws.run("second") == 0
    random.Random(3).shuffle(ws.cash_outs)
    ws.clients.reverse()
    ws.deposits.reverse()
    assert ws.run("shuffled") == 0
    for name in (
        "allocation_lines.csv",
        "balances.csv",
        "quarantine.csv",
        "skipped_fixed_runs.csv",
    ):
        first = (ws.root / "first" / name).read_bytes()
        assert first == (ws.root / "second" / name).read_bytes()
        assert first == (ws.root / "shuffled" / name).read_bytes()
    assert len(ws.read("allocation_lines.csv", "first")) > 40
