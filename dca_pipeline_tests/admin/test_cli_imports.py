"""The admin commands import neither Dagster nor pandas (an admin command starts in well under
a second; ``bench/cli_startup.py`` measures it)."""

from __future__ import annotations

import os
import subprocess
import sys

HEAVY = ("dagster", "pandas")
KEY = "admin-test-invoice-key-0123456789"
COMMANDS = [
    ["status", "--json"],
    ["status"],
    ["clients", "add", "alice", "--user-id", "u-alice", "--wallet-id", "w-alice",
     "--invoice-key-env", "DCA_TEST_KEY"],
    ["clients", "list"],
    ["clients", "show", "alice", "--json"],
    ["clients", "set-mode", "alice", "fixed", "--limit", "200.00"],
    ["deposits", "add", "alice", "9000.00", "--confirm"],
    ["deposits", "list"],
    ["commission", "set", "--recipient", "operator", "w-op", "10000",
     "--invoice-key-env", "operator=DCA_TEST_KEY"],
    ["commission", "show"],
    ["payouts", "status"],
    ["payouts", "pause", "--reason", "test"],
    ["payouts", "resume"],
    ["payouts", "retry", "po-none"],
    ["allocations", "issues"],
    ["allocations", "issues", "--json"],
]
CHILD = f"""
import sys
from dca_pipeline.cli import main

url = sys.argv[1]
for argv in {COMMANDS!r}:
    try:
        code = main([*argv, "--ledger-url", url])
    except SystemExit as exc:
        code = exc.code
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {set(HEAVY)!r})
    print("RESULT", " ".join(argv), code, ",".join(loaded) or "-", file=sys.stderr)
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DCA_")} | {
        "DCA_TEST_KEY": KEY
    }


def test_admin_commands_import_neither_dagster_nor_pandas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    run = subprocess.run(
        [sys.executable, "-c", CHILD, url], capture_output=True, text=True, env=_env(),
        timeout=120,
    )
    results = [line.split(" ")[1:] for line in run.stderr.splitlines() if line.startswith("RESULT")]
    assert len(results) == len(COMMANDS), run.stderr
    codes = {" ".join(r[:-2]): int(r[-2]) for r in results}
    # They ran (retrying an unknown payout is a refusal: 1).
    assert codes.pop("payouts retry po-none") == 1, run.stderr
    assert set(codes.values()) == {0}, run.stderr
    assert [r for r in results if r[-1] != "-"] == [], run.stderr


def test_status_json_under_importtime_loads_neither(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dca_pipeline.cli", "status", "--json",
         "--ledger-url", url],
        capture_output=True, text=True, env=_env(), timeout=120, check=True,
    )
    modules = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()
               if line.startswith("import time:")}
    assert "dca_pipeline.ledger.admin" in modules  # the scan itself works
    assert {m.split(".")[0] for m in modules} & set(HEAVY) == set()
