"""The real `dca-pipeline` admin CLI (in-process, plus one run of the console script)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dca_pipeline_tests.admin.conftest import ALICE_KEY, R1_KEY, R2_KEY, SECRETS, dump

NEW_KEY = "carol-invoice-key-5555555555555555"

#: (what is wrong, argv, stdin, a phrase the one-line error must contain). The seeded ledger
#: has alice (flow, has an allocation line), bob (fixed 150.00), deposits d1 (confirmed,
#: corrected by d1-c1) and d2 (pending), commission r1 7000 / r2 3000, an event on 2025-06-01.
INVALID_COMMANDS = [
    (
        "duplicate client",
        [
            "clients",
            "add",
            "alice",
            "--user-id",
            "u",
            "--wallet-id",
            "w-x",
            "--invoice-key-env",
            "NEW_KEY",
        ],
        "",
        "already exists",
    ),
    (
        "wallet of another client",
        [
            "clients",
            "add",
            "carol",
            "--user-id",
            "u",
            "--wallet-id",
            "w-bob",
            "--invoice-key-env",
            "NEW_KEY",
        ],
        "",
        "already the wallet of client 'bob'",
    ),
    (
        "fixed client without limit",
        [
            "clients",
            "add",
            "carol",
            "--user-id",
            "u",
            "--wallet-id",
            "w-c",
            "--mode",
            "fixed",
            "--invoice-key-env",
            "NEW_KEY",
        ],
        "",
        "needs a daily limit",
    ),
    (
        "new client limit above max",
        [
            "clients",
            "add",
            "carol",
            "--user-id",
            "u",
            "--wallet-id",
            "w-c",
            "--mode",
            "fixed",
            "--limit",
            "2000.01",
            "--invoice-key-env",
            "NEW_KEY",
        ],
        "",
        "system maximum",
    ),
    (
        "invoice key on argv",
        [
            "clients",
            "add",
            "carol",
            "--user-id",
            "u",
            "--wallet-id",
            "w-c",
            "--invoice-key",
            NEW_KEY,
        ],
        "",
        "never accepted on the command line",
    ),
    (
        "invoice key on argv with =",
        [
            "clients",
            "add",
            "carol",
            "--user-id",
            "u",
            "--wallet-id",
            "w-c",
            f"--invoice-key={NEW_KEY}",
        ],
        "",
        "never accepted on the command line",
    ),
    (
        "key env var not set",
        [
            "clients",
            "add",
            "carol",
            "--user-id",
            "u",
            "--wallet-id",
            "w-c",
            "--invoice-key-env",
            "DCA_TEST_UNSET_VAR",
        ],
        "",
        "is not set",
    ),
    (
        "empty key on stdin",
        ["clients", "add", "carol", "--user-id", "u", "--wallet-id", "w-c", "--invoice-key-stdin"],
        "\n",
        "no invoice key on stdin",
    ),
    (
        "malformed key",
        ["clients", "add", "carol", "--user-id", "u", "--wallet-id", "w-c", "--invoice-key-stdin"],
        "short\n",
        "invoice key of client 'carol'",
    ),
    (
        "bad client id",
        [
            "clients",
            "add",
            "car ol",
            "--user-id",
            "u",
            "--wallet-id",
            "w-c",
            "--invoice-key-env",
            "NEW_KEY",
        ],
        "",
        "client id 'car ol' is invalid",
    ),
    ("limit above max", ["clients", "set-limit", "bob", "2000.01"], "", "system maximum 2000.00"),
    ("limit on a flow client", ["clients", "set-limit", "alice", "100"], "", "flow mode"),
    ("limit of three decimals", ["clients", "set-limit", "bob", "12.345"], "", "at most 2"),
    ("same mode", ["clients", "set-mode", "bob", "fixed", "--limit", "10"], "", "already in"),
    (
        "flow with a limit",
        ["clients", "set-mode", "bob", "flow", "--limit", "10"],
        "",
        "no daily limit",
    ),
    ("unknown mode", ["clients", "set-mode", "bob", "turbo"], "", "invalid choice"),
    ("resume an active client", ["clients", "resume", "alice"], "", "not paused"),
    ("pause an unknown client", ["clients", "pause", "zed"], "", "no client 'zed'"),
    (
        "time without offset",
        ["clients", "pause", "alice", "--effective", "2030-01-01T09:00"],
        "",
        "no UTC offset",
    ),
    (
        "change inside allocated history",
        ["clients", "pause", "alice", "--effective", "2025-06-01T09:00-06:00"],
        "",
        "allocated history",
    ),
    (
        "wallet change after allocation",
        ["clients", "set-wallet", "alice", "--wallet-id", "w-new", "--invoice-key-env", "NEW_KEY"],
        "",
        "allocation lines",
    ),
    ("deposit of three decimals", ["deposits", "add", "alice", "12.345"], "", "at most 2"),
    ("negative deposit", ["deposits", "add", "alice", "-5.00"], "", "must be positive"),
    ("deposit for unknown client", ["deposits", "add", "zed", "5"], "", "no client 'zed'"),
    ("duplicate deposit id", ["deposits", "add", "alice", "5", "--id", "d1"], "", "already exists"),
    ("re-confirm", ["deposits", "confirm", "d1"], "", "already confirmed"),
    ("confirm unknown", ["deposits", "confirm", "d9"], "", "no deposit 'd9'"),
    (
        "confirm in the future",
        ["deposits", "confirm", "d2", "--at", "2999-01-01T00:00Z"],
        "",
        "in the future",
    ),
    (
        "correct a pending deposit",
        ["deposits", "correct", "d2", "-1", "--reason", "x"],
        "",
        "pending",
    ),
    (
        "correct a correction",
        ["deposits", "correct", "d1-c1", "1", "--reason", "x"],
        "",
        "is a correction",
    ),
    (
        "correction below zero",
        ["deposits", "correct", "d1", "-9000.00", "--reason", "x"],
        "",
        "would become -10.00",
    ),
    (
        "correction beyond the balance",
        ["deposits", "correct", "d1", "-7190.01", "--reason", "x"],
        "",
        "has 7190.00 left; a correction of -7190.01 would make it negative",
    ),
    ("zero correction", ["deposits", "correct", "d1", "0", "--reason", "x"], "", "non-zero"),
    ("correction without reason", ["deposits", "correct", "d1", "5"], "", "--reason"),
    (
        "commission ≠ 10000",
        [
            "commission",
            "set",
            "--recipient",
            "r1",
            "w-r1",
            "7000",
            "--recipient",
            "r2",
            "w-r2",
            "2999",
            "--invoice-key-env",
            "r1=R1",
            "--invoice-key-env",
            "r2=R2",
        ],
        "",
        "sum to 9999, not exactly 10000",
    ),
    (
        "duplicate recipient",
        [
            "commission",
            "set",
            "--recipient",
            "r1",
            "w-r1",
            "7000",
            "--recipient",
            "r1",
            "w-r2",
            "3000",
            "--invoice-keys-stdin",
        ],
        f"r1 {R1_KEY}\n",
        "recipient ids must be unique",
    ),
    (
        "recipient without key",
        [
            "commission",
            "set",
            "--recipient",
            "r1",
            "w-r1",
            "7000",
            "--recipient",
            "r2",
            "w-r2",
            "3000",
            "--invoice-key-env",
            "r1=R1",
        ],
        "",
        "no invoice key for recipient 'r2'",
    ),
    (
        "fractional basis points",
        ["commission", "set", "--recipient", "r1", "w-r1", "10000.0", "--invoice-key-env", "r1=R1"],
        "",
        "whole number",
    ),
    (
        "zero basis points",
        [
            "commission",
            "set",
            "--recipient",
            "r1",
            "w-r1",
            "10000",
            "--recipient",
            "r2",
            "w-r2",
            "0",
            "--invoice-keys-stdin",
        ],
        f"r1 {R1_KEY}\nr2 {R2_KEY}\n",
        "1..10000",
    ),
    (
        "key for a stranger",
        ["commission", "set", "--recipient", "r1", "w-r1", "10000", "--invoice-keys-stdin"],
        f"r1 {R1_KEY}\nr9 {R2_KEY}\n",
        "'r9', which is no --recipient",
    ),
    ("unknown option", ["clients", "list", "--bogus"], "", "unrecognized arguments: --bogus"),
    ("unknown action", ["deposits", "delete", "d1"], "", "invalid choice"),
    ("missing action", ["commission"], "", "required"),
    ("invoice key for list", ["clients", "list", "--invoice-key-stdin"], "", "unrecognized"),
]


@pytest.fixture
def keys_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEW_KEY", NEW_KEY)
    monkeypatch.setenv("R1", R1_KEY)
    monkeypatch.setenv("R2", R2_KEY)
    monkeypatch.delenv("DCA_TEST_UNSET_VAR", raising=False)


def test_every_invalid_command_is_one_line_exit_2_and_changes_nothing(
    seeded,
    cli,
    keys_in_env,  # type: ignore[no-untyped-def]
) -> None:
    assert len({what for what, *_ in INVALID_COMMANDS}) >= 12
    before = dump(seeded)
    failures = []
    for what, argv, stdin, phrase in INVALID_COMMANDS:
        result = cli(*argv, stdin=stdin)
        lines = result.err.splitlines()
        problems = []
        if result.code != 2:
            problems.append(f"exit {result.code}")
        if len(lines) != 1 or not result.err.endswith("\n"):
            problems.append(f"stderr is not one line: {result.err!r}")
        elif phrase not in lines[0]:
            problems.append(f"{phrase!r} not in {lines[0]!r}")
        if result.out:
            problems.append(f"stdout {result.out!r}")
        if any(key in result.err + result.out for key in (*SECRETS, NEW_KEY)):
            problems.append("a secret was printed")
        if dump(seeded) != before:
            problems.append("the ledger changed")
            before = dump(seeded)
        if problems:
            failures.append(f"{what}: {'; '.join(problems)}")
    assert failures == [], "\n".join(failures)


def test_admin_workflow_with_json_output_and_no_secret_anywhere(ledger, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ALICE_KEY", ALICE_KEY)
    monkeypatch.setenv("R1", R1_KEY)
    outputs = []

    def ok(*argv: str, stdin: str = "") -> str:
        result = cli(*argv, stdin=stdin)
        assert (result.code, result.err) == (0, ""), (argv, result)
        outputs.append(result.out)
        return result.out

    def ok_json(*argv: str, stdin: str = ""):  # type: ignore[no-untyped-def]
        return json.loads(ok(*argv, "--json", stdin=stdin))

    added = ok_json(
        "clients",
        "add",
        "alice",
        "--user-id",
        "u-a",
        "--wallet-id",
        "w-a",
        "--name",
        "Alice",
        "--invoice-key-env",
        "ALICE_KEY",
    )
    assert added["client_id"] == "alice" and added["invoice_key"] == "********"
    assert added["settings"]["mode"] == "flow"
    ok(
        "clients",
        "add",
        "bob",
        "--user-id",
        "u-b",
        "--wallet-id",
        "w-b",
        "--mode",
        "fixed",
        "--limit",
        "150",
        "--invoice-key-stdin",
        stdin=NEW_KEY + "\n",
    )
    deposit = ok_json("deposits", "add", "alice", "9000.00", "--id", "d1")
    assert (deposit["status"], deposit["amount_cents"], deposit["amount_gtq"]) == (
        "pending",
        900_000,
        "9000.00",
    )
    confirmed = ok_json("deposits", "confirm", "d1")
    assert confirmed["status"] == "confirmed" and confirmed["confirmed_at"].endswith("Z")
    correction = ok_json(
        "deposits", "correct", "d1", "-50.25", "--reason", "miscount", "--id", "d1-fix"
    )
    assert (correction["kind"], correction["amount_cents"], correction["corrects_deposit_id"]) == (
        "correction",
        -5_025,
        "d1",
    )
    ok("deposits", "add", "bob", "10", "--id", "d2", "--confirm")
    listed = ok_json("clients", "list")
    balances = {c["client_id"]: c["balance"]["remaining_cents"] for c in listed}
    assert balances == {"alice": 900_000 - 5_025, "bob": 1_000}
    assert [c["invoice_key"] for c in listed] == ["********", "********"]
    ok("clients", "set-limit", "bob", "2000.00")
    ok("clients", "pause", "bob", "--effective", "2999-01-01T00:00:00-06:00", "--note", "trip")
    shown = ok_json("clients", "show", "bob")
    assert [h["daily_limit_cents"] for h in shown["history"]] == [15_000, 200_000, 200_000]
    assert shown["next_change"]["status"] == "paused"
    commission = ok_json(
        "commission",
        "set",
        "--recipient",
        "r1",
        "w-r1",
        "7000",
        "--recipient",
        "r2",
        "w-a",
        "3000",
        "--invoice-key-env",
        "r1=R1",
        "--invoice-key-env",
        "r2=ALICE_KEY",
    )
    assert [(r["recipient_id"], r["basis_points"]) for r in commission["recipients"]] == [
        ("r1", 7000),
        ("r2", 3000),
    ]
    assert ok_json("commission", "show")["version_id"] == commission["version_id"]
    assert len(ok_json("commission", "show", "--all")) == 1
    status = ok_json("status")
    assert (status["clients"], status["confirmed_cents"], status["pending_deposits"]) == (
        2,
        900_000 - 5_025 + 1_000,
        0,
    )
    assert len(ok_json("deposits", "list", "--client", "alice")) == 2
    # Human-readable forms of the same commands.
    assert "alice" in ok("clients", "list") and "8949.75" in ok("status")
    assert "d1-fix" in ok("deposits", "list") and "7000" in ok("commission", "show")
    assert "********" in ok("clients", "show", "alice")
    printed = "\n".join(outputs)
    assert not [key for key in (ALICE_KEY, R1_KEY, NEW_KEY) if key in printed]


def test_the_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("dca-pipeline")
    command = [str(script)] if script.exists() else [shutil.which("dca-pipeline") or "dca-pipeline"]
    env = os.environ | {
        "DCA_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "SMOKE_KEY": ALICE_KEY,
    }
    added = subprocess.run(
        [
            *command,
            "clients",
            "add",
            "alice",
            "--user-id",
            "u",
            "--wallet-id",
            "w",
            "--invoice-key-env",
            "SMOKE_KEY",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    status = subprocess.run(
        [*command, "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["clients"] == 1
    assert ALICE_KEY not in added.stdout + added.stderr + status.stdout


def test_an_unreachable_ledger_is_one_line_exit_1_without_the_url(capsys) -> None:  # type: ignore[no-untyped-def]
    from dca_pipeline.cli import main

    url = "postgresql+psycopg2://admin:hunter2pw@127.0.0.1:1/nowhere"
    assert main(["status", "--ledger-url", url]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "hunter2pw" not in err and "cannot open" in err
