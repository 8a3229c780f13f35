"""`dca-pipeline demo --once` from an empty directory, as CI and a new operator run it.

The real thing: the console script in a subprocess, the embedded-default Dagster instance
(SQLite under the demo's DAGSTER_HOME), a SQLite ledger, the folder source on the bundled
sample, and a real LNbits FakeWallet (``.lnbits-venv`` is built by ``scripts/bootstrap.sh``).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dca_pipeline.demo.processes import free_loopback_port
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


def test_demo_refuses_to_wipe_a_folder_it_did_not_create(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    result = run_demo(tmp_path, "--dry-run", "--workdir", "precious")
    assert result.returncode != 0
    assert "is not a demo folder" in result.stdout + result.stderr
    assert (precious / "keep.txt").read_text() == "mine"


def listening_addresses(port: int) -> set[str]:
    """IPv4/IPv6 addresses with a socket LISTENing on ``port`` (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            if len(address) == 8:  # IPv4, little-endian
                found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
            else:
                found.add("::" if set(address) == {"0"} else address)
    return found


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_dry_run_serves_the_ui_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """The interactive demo as a dry run: it says so loudly and pays nothing; then `dagster dev`
    answers on loopback only, and SIGINT (Ctrl-C) to the demo stops it with its whole process
    group (webserver, daemon, code server): no orphans."""
    port = free_loopback_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DAGSTER_", "DCA_", "LAMASSU_", "LNBITS_"))
    }
    log = tmp_path / "demo.log"
    log_file = log.open("w")
    demo = subprocess.Popen(
        [
            "env",
            "--default-signal=INT,TERM",
            DCA_PIPELINE,
            "demo",
            "--dry-run",
            "--port",
            str(port),
            "--workdir",
            "demo-state",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pgid = None
    try:
        # A file, not a pipe: dagster dev shares the demo's stdout and must never block on it.
        deadline = time.monotonic() + 300
        while pgid is None and demo.poll() is None and time.monotonic() < deadline:
            if match := re.search(r"dagster dev: process group (\d+)", log.read_text()):
                pgid = int(match[1])
            time.sleep(0.5)
        output = log.read_text()
        assert pgid, output[-4000:]
        assert f"Dagster UI: http://127.0.0.1:{port}/asset-groups" in output
        assert "DRY RUN (--dry-run given): payouts are planned and recorded, NOTHING IS PAID." in (
            output
        )
        payouts = summary_section(output, "Payouts")
        assert re.search(r"^  \S+\s+client\s+\d+ sats  planned \(dry run\)$", payouts, re.M)
        assert "NOTHING WAS PAID" in payouts and "LNbits balances" not in output
        assert not (tmp_path / "demo-state" / "lnbits").exists()
        runs = dagster_runs(tmp_path / "demo-state")
        assert runs and all(status == "SUCCESS" for _, status in runs), runs
        page = httpx.get(f"http://127.0.0.1:{port}/asset-groups", timeout=30)
        assert page.status_code == 200
        assert listening_addresses(port) == {"127.0.0.1"}

        os.kill(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not group_alive(pgid), "dagster dev left processes behind"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=10)
        if pgid and group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
        log_file.close()
