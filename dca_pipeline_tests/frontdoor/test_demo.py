"""`dca-pipeline demo --once` from an empty directory, as CI and a new operator run it.

The real thing: the console script in a subprocess, the embedded-default Dagster instance
(SQLite under the demo's DAGSTER_HOME), a SQLite ledger, the folder source on the bundled
sample, and a real LNbits FakeWallet (``.lnbits-venv`` is built by ``scripts/bootstrap.sh``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dca_pipeline.demo.wallets import lnbits_available

pytestmark = [pytest.mark.slow, pytest.mark.dagster]

DCA_PIPELINE = str(Path(sys.executable).parent / "dca-pipeline")


def run_demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DAGSTER_", "DCA_", "LAMASSU_", "LNBITS_"))
    }
    return subprocess.run(
        [DCA_PIPELINE, "demo", "--once", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def dagster_runs(workdir: Path) -> list[tuple[str, str]]:
    """(run_id, status) from the demo's embedded SQLite instance."""
    with sqlite3.connect(workdir / "dagster_home" / "history" / "runs.db") as db:
        return list(db.execute("SELECT run_id, status FROM runs"))


def summary_section(output: str, title: str) -> str:
    match = re.search(rf"=== {re.escape(title)}.*?(?=\n===|\nDone in|\Z)", output, re.S)
    assert match, f"no '{title}' section in:\n{output}"
    return match.group(0)


@pytest.mark.lnbits
def test_demo_once_runs_the_whole_pipeline_and_pays_through_lnbits(tmp_path: Path) -> None:
    assert lnbits_available(), "run `bash scripts/bootstrap.sh` (builds .lnbits-venv)"
    result = run_demo(tmp_path)
    output = result.stdout
    assert result.returncode == 0, output[-6000:] + result.stderr[-4000:]
    assert "DRY RUN" not in output

    workdir = tmp_path / ".dca" / "demo"
    runs = dagster_runs(workdir)
    assert runs and all(status == "SUCCESS" for _, status in runs), runs

    checks = summary_section(output, "Asset checks")
    passed, failed = map(int, re.search(r"(\d+) passed, (\d+) failed", checks).groups())
    assert passed > 0 and failed == 0, checks

    allocations = summary_section(output, "Allocations (ledger)")
    allocated_sats = int(re.search(r"allocated to clients: .* = (\d+) sats", allocations)[1])
    assert allocated_sats > 0, allocations

    # Real LNbits payments: every payout is paid, each wallet holds exactly its payout, and the
    # source wallet paid exactly their sum.
    payouts = summary_section(output, "Payouts")
    rows = re.findall(r"^  (\S+)\s+(client|commission)\s+(\d+) sats\s+(.+)$", payouts, re.M)
    assert rows and all(status == "paid" for *_, status in rows), payouts
    paid = {recipient: int(sats) for recipient, _, sats, _ in rows}
    balances = {k: int(v) for k, v in re.findall(r"^\s{4}(\S+)\s+(\d+)$", payouts, re.M)}
    for recipient, sats in paid.items():
        assert balances[recipient] == sats, (recipient, payouts)
    funded = int(re.search(r"funded with (\d+) sats", output)[1])
    assert balances["(source)"] == funded - sum(paid.values()), payouts


def test_demo_dry_run_says_so_loudly_and_pays_nothing(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--dry-run", "--workdir", "demo-state")
    output = result.stdout
    assert result.returncode == 0, output[-6000:] + result.stderr[-4000:]
    assert "DRY RUN (--dry-run given): payouts are planned and recorded, NOTHING IS PAID." in output
    assert "LNbits balances" not in output
    payouts = summary_section(output, "Payouts")
    assert re.search(r"^  \S+\s+client\s+\d+ sats  planned \(dry run\)$", payouts, re.M), payouts
    assert "NOTHING WAS PAID" in payouts
    assert not (tmp_path / "demo-state" / "lnbits").exists()
    assert dagster_runs(tmp_path / "demo-state")


def test_demo_refuses_to_wipe_a_folder_it_did_not_create(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    result = run_demo(tmp_path, "--dry-run", "--workdir", "precious")
    assert result.returncode != 0
    assert "is not a demo folder" in result.stdout + result.stderr
    assert (precious / "keep.txt").read_text() == "mine"
