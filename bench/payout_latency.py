"""(b) Latency from a new dispensed cash-out at the Lamassu source to the client's LNbits balance.

    .venv/bin/python -m bench.payout_latency [--samples 3]

Everything real and live: ``dagster dev`` (webserver + daemon) with the ingest sensor
(``lamassu_live_ingest``), the allocation sensor (``allocation_live_sensor``) and the payout
sensor (``payout_sensor``) switched on, a real LNbits (FakeWallet) with the demo's wallets, the
demo's clients and deposits in a fresh SQLite ledger, and the folder Lamassu source (a CSV
export directory; appending a row is the "insert"). Each sample appends one dispensed, confirmed
cash-out (now) and polls the flow client ``ana``'s LNbits balance until it moves.
Settle time is 0 (``DCA_SETTLE_MINUTES``; production's default 15 holds a new cash-out back
for 15 minutes on purpose) and the ingest tick is 5 s; the allocation and payout sensors tick
every 30 s (their defaults), and every run goes through the daemon's queue. With settle time 0
the ingest run also allocates (one run, then the payout run).

Before the first sample the bench warms up (``--warmup``, on by default): it waits until every
sensor has ticked and no run has been in flight for 35 s, so the first sample does not include
the chain's start (the ingest sensor's first tick always requests a run, the first run
launches are the slowest). A long-running deployment is in that state; the report says whether
the warm-up was used and how long it took.

Each insert comes after a random pause of 0–30 s (seeded, ``--seed``): inserting right after the
previous payout would always land at the same phase of the 30 s payout sensor and hide its
spread. ``--pause-max 0`` times back-to-back inserts as before.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from dca_pipeline.defs.allocate.automation import MIN_INTERVAL_SECONDS as allocation_interval
from dca_pipeline.defs.payout.sensors import MIN_INTERVAL_SECONDS as payout_interval
from dca_pipeline.demo import seed, servers, wallets
from dca_pipeline.demo.processes import free_loopback_port
from harness.lamassu_folder import append_dispensed_cash_out

TIMEZONE = "America/Guatemala"
SENSORS = ("lamassu_live_ingest", "allocation_live_sensor", "payout_sensor")
IN_FLIGHT_RUNS = """
query InFlight {
  runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]}) {
    ... on Runs { results { runId } }
  }
}
"""
SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { ticks(limit: 1) { status } } }
  }
}
"""
QUIET_S = 35  # longer than the slowest sensor interval (30 s)
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}
"""
TIMEOUT_S = 600  # per sample


def dequeue_interval() -> int:
    """The run queue's poll interval of the repository's dagster.yaml (Dagster's default 5)."""
    config = yaml.safe_load((servers.REPO_ROOT / "dagster.yaml").read_text())
    return int(config["run_coordinator"].get("config", {}).get("dequeue_interval_seconds", 5))


def empty_source(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in seed.LAMASSU_FILES:
        with (seed.SAMPLE_DIR / "lamassu" / name).open() as f:
            (folder / name).write_text(f.readline())


def append_cash_out(folder: Path, index: int) -> None:
    """One dispensed, confirmed BTC cash-out of 100.00 GTQ happening now."""
    append_dispensed_cash_out(
        folder, templates=seed.SAMPLE_DIR / "lamassu", at=datetime.now(UTC), index=index
    )


def _selector(name: str) -> dict[str, str]:
    return {
        "repositoryLocationName": servers.LOCATION_NAME,
        "repositoryName": "__repository__",
        "sensorName": name,
    }


def warm_up(url: str) -> float:
    """Wait until every sensor ticked and no run was in flight for QUIET_S; seconds taken."""
    started = time.monotonic()
    quiet_since: float | None = None
    while time.monotonic() - started < TIMEOUT_S:
        ticked = all(
            servers.graphql(url, SENSOR_TICKS, {"selector": _selector(name)})["sensorOrError"][
                "sensorState"
            ]["ticks"]
            for name in SENSORS
        )
        runs = servers.graphql(url, IN_FLIGHT_RUNS)["runsOrError"]["results"]
        now = time.monotonic()
        if not ticked or runs:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= QUIET_S:
            return now - started
        time.sleep(1)
    raise RuntimeError(f"the chain did not settle within {TIMEOUT_S} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--pause-max", type=float, default=30.0)  # float-ok: seconds
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false",
        help="time the first sample right after the sensors are switched on",
    )  # fmt: skip
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="payout-latency-"))
    today = datetime.now(ZoneInfo(TIMEZONE)).date().isoformat()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(workdir / "home"),
        "DCA_LEDGER_URL": f"sqlite:///{workdir / 'ledger.sqlite'}",
        "DCA_LAMASSU_SOURCE": "folder",
        "DCA_LAMASSU_FOLDER": str(workdir / "lamassu"),
        "DCA_START_DATE": today,
        "DCA_TIMEZONE": TIMEZONE,
        "DCA_SETTLE_MINUTES": "0",
        "DCA_INGEST_INTERVAL_SECONDS": "5",
        "DCA_FIXED_RUN_TIME": "23:59",  # no fixed run (no reference rate yet) during the bench
        "DCA_PAYOUT_RETRY_MINUTES": "60",
    }
    (workdir / "home").mkdir()
    shutil.copyfile(servers.REPO_ROOT / "dagster.yaml", workdir / "home" / "dagster.yaml")
    empty_source(workdir / "lamassu")
    lnbits = wallets.start_demo_lnbits(workdir / "lnbits")
    env.update(lnbits.environment())
    os.environ.update({k: v for k, v in env.items() if k.startswith("DCA_")})
    seed.seed_ledger(env["DCA_LEDGER_URL"], lnbits.demo_wallets())
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    dev = servers.start_dagster_dev(port, env=env, log_path=workdir / "dagster.log")
    latencies: list[float] = []
    try:
        started = time.monotonic()
        servers.wait_for_code_location(url, dev)
        print(f"dagster dev loaded in {time.monotonic() - started:.1f} s; workdir {workdir}")
        for name in SENSORS:
            answer = servers.graphql(url, START_SENSOR, {"selector": _selector(name)})
            if answer["startSensor"]["__typename"] != "Sensor":
                raise RuntimeError(f"cannot start {name}: {answer}")
        if args.warmup:
            print(f"warm-up (sensors ticked, no run in flight for {QUIET_S} s): "
                  f"{warm_up(url):.1f} s, not timed")  # fmt: skip
        ana = lnbits.wallets["ana"]
        pauses = random.Random(args.seed)
        for index in range(args.samples):
            time.sleep(pauses.uniform(0, args.pause_max))
            before = lnbits.server.balance_msat(ana)
            append_cash_out(workdir / "lamassu", index)
            inserted = time.monotonic()
            while lnbits.server.balance_msat(ana) == before:
                if time.monotonic() - inserted > TIMEOUT_S:
                    raise RuntimeError(f"no payout after {TIMEOUT_S} s; see {workdir}")
                time.sleep(0.5)
            latencies.append(time.monotonic() - inserted)
            print(f"sample {index + 1}: {latencies[-1]:.1f} s")
    finally:
        dev.stop()
        lnbits.stop()
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(
        f"(b) insert -> client balance: n={len(latencies)}, "
        f"median {statistics.median(latencies):.1f} s, p95 {p95:.1f} s, max {ordered[-1]:.1f} s "
        "(goal p95 <= 60 s; the prior system polled hourly)"
    )
    print(
        f"settings: DCA_SETTLE_MINUTES={env['DCA_SETTLE_MINUTES']}, "
        f"DCA_INGEST_INTERVAL_SECONDS={env['DCA_INGEST_INTERVAL_SECONDS']}, allocation sensor "
        f"{allocation_interval} s, payout sensor {payout_interval} s, run queue dequeue every "
        f"{dequeue_interval()} s, warm-up {'on' if args.warmup else 'off'}, random pause "
        f"0-{args.pause_max:g} s before each insert (seed {args.seed})"
    )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
