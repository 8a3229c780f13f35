"""Allocation throughput: validated rows landed in the ledger → allocation lines in the ledger.

    .venv/bin/python -m bench.allocation [--ledger sqlite|postgres] [--day-cash-outs 1000]
        [--day-clients 500] [--backfill-days 365] [--backfill-cash-outs 50]
        [--backfill-clients 100] [--skip-per-partition]

1. **One business day**: ``--day-cash-outs`` cash-outs × ``--day-clients`` flow clients, every
   client eligible for every cash-out (each pair is a real line). Timed twice: the plain writer
   (:func:`dca_pipeline.ledger.allocations.allocate_range`), and the Dagster asset materialized
   in-process (run start, checks and metadata included). Goal ≤ 5 s.
2. **Backfill**: ``--backfill-days`` days of ``--backfill-cash-outs`` cash-outs and
   ``--backfill-clients`` clients (80 % flow, 20 % fixed), materialized as ONE run (a range, as
   a UI backfill does with ``BackfillPolicy.single_run``) and as one run per partition, each on a
   fresh ledger and the same kind of Dagster instance (``--instance sqlite``: on disk, like the
   default, or in memory with ``--instance ephemeral``). Both must produce the same ledger
   (checked). Goals: one run ≤ 60 s, ≥ 10× faster.

3. **The admin path** (``--cli-sample K``): one ``dagster asset materialize --partition-range``
   process for the whole backfill, against K ``--partition`` processes (one per day, a process
   each, as Dagster's run launcher starts one per run), extrapolated to every day.

PostgreSQL: ``--ledger postgres`` creates and drops a throwaway database on
``DCA_TEST_PG_DSN`` (default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg2
import sqlalchemy as sa

from dca_pipeline.defs.allocate.assets import allocations
from dca_pipeline.defs.settings import BusinessSettings
from dca_pipeline.domain.rules import BusinessRules
from dca_pipeline.ledger import allocations as al
from dca_pipeline.ledger import schema as s
from dca_pipeline.ledger.database import LedgerResource, ledger_engine
from dca_pipeline_tests.allocate.seeding import (
    add_cash_outs,
    add_client,
    cash_out_row,
    commission,
    deposit,
)

RULES = BusinessRules()
SINCE = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
PG_DSN = os.environ.get("DCA_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def fresh_ledger(kind: str) -> Iterator[LedgerResource]:
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="bench-ledger-")
        url = f"sqlite:///{folder}/ledger.sqlite"
        try:
            yield LedgerResource(url=url)
        finally:
            ledger_engine(url).dispose()
            shutil.rmtree(folder, ignore_errors=True)
        return
    name = f"bench_alloc_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_DSN)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://", 1)
    url = f"{base}/{name}"
    try:
        yield LedgerResource(url=url)
    finally:
        ledger_engine(url).dispose()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def seed(
    ledger: LedgerResource, first: date, days: int, per_day: int, flow: int, fixed: int,
    seed: int = 3,
) -> None:
    rng = random.Random(seed)
    with ledger.engine().begin() as c:
        commission(c, {"operator": 7000, "partner": 3000}, SINCE)
        for i in range(flow):
            add_client(c, f"flow-{i:04d}", effective_at=SINCE)
            # Large balances: every flow client takes part in every cash-out.
            deposit(c, f"d-flow-{i}", f"flow-{i:04d}", rng.randint(10**9, 10**10), SINCE)
        for i in range(fixed):
            cid = f"fixed-{i:04d}"
            add_client(c, cid, mode="fixed", daily_limit_cents=rng.choice([5_000, 20_000]),
                       effective_at=SINCE)
            deposit(c, f"d-{cid}", cid, rng.randint(10**6, 10**7), SINCE)
        # Early on the first day, so its fixed run (09:00) has a reference rate (§5); on the
        # day before it would be a day the sequence must allocate first (§4a).
        rows = [cash_out_row("tx-eve", RULES.day_start_utc(first) + timedelta(minutes=30),
                             100_000, 13_000_000)]
        for d in range(days):
            start = RULES.day_start_utc(first + timedelta(days=d))
            for k in range(per_day):
                fiat = rng.randint(1, 400) * 500
                rows.append(cash_out_row(
                    f"tx-{d:03d}-{k:04d}", start + timedelta(seconds=rng.randint(0, 86_399)),
                    fiat, fiat * rng.randint(120, 140)))
        for i in range(0, len(rows), 5000):
            add_cash_outs(c, rows[i : i + 5000])


def counts(ledger: LedgerResource) -> tuple[int, int]:
    with ledger.engine().connect() as c:
        return tuple(  # type: ignore[return-value]
            c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (s.allocation_events, s.allocation_lines)
        )


def materialize(ledger: LedgerResource, instance: dg.DagsterInstance, first: date,
                last: date) -> None:
    result = dg.materialize(
        [allocations],
        resources={"ledger": ledger, "settings": BusinessSettings()},
        instance=instance,
        tags={"dagster/asset_partition_range_start": first.isoformat(),
              "dagster/asset_partition_range_end": last.isoformat()},
        raise_on_error=False,
    )
    if not result.success:
        raise SystemExit(f"materialization {first}..{last} failed")


@contextmanager
def dagster_instance(kind: str) -> Iterator[dg.DagsterInstance]:
    """``ephemeral`` (in memory) or ``sqlite`` (run/event storage on disk, the embedded default)."""
    if kind == "ephemeral":
        yield dg.DagsterInstance.ephemeral()
        return
    with tempfile.TemporaryDirectory(prefix="bench-dagster-") as home:
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        with dg.DagsterInstance.from_config(home) as instance:
            yield instance


def bench_day(kind: str, cash_outs: int, clients: int, instance_kind: str) -> None:
    day = date(2025, 3, 3)
    print(f"\n== one business day: {cash_outs} cash-outs × {clients} flow clients ({kind})")
    with fresh_ledger(kind) as ledger:
        seed(ledger, day, 1, cash_outs, clients, 0)
        t = time.perf_counter()
        out = al.allocate_range(ledger.engine(), RULES, day, day, now=NOW, settle_minutes=15)
        writer = time.perf_counter() - t
        n_events, n_lines = counts(ledger)
        t = time.perf_counter()
        again = al.allocate_range(ledger.engine(), RULES, day, day, now=NOW, settle_minutes=15)
        verify = time.perf_counter() - t
        assert again.events_written == 0 and again.reproduced
    print(f"writer (allocate_range): {writer:6.2f} s  {n_events} events, {n_lines} lines "
          f"({n_lines / writer:,.0f} lines/s)  goal ≤ 5 s: {'OK' if writer <= 5 else 'MISSED'}")
    print(f"re-run (recompute + compare, writes nothing): {verify:6.2f} s")
    with fresh_ledger(kind) as ledger, dagster_instance(instance_kind) as instance:
        seed(ledger, day, 1, cash_outs, clients, 0)
        t = time.perf_counter()
        materialize(ledger, instance, day, day)
        asset = time.perf_counter() - t
        assert counts(ledger) == (n_events, n_lines)
    print(f"Dagster asset, in-process run (checks + metadata): {asset:6.2f} s  "
          f"goal ≤ 5 s: {'OK' if asset <= 5 else 'MISSED'}")
    assert out.lines_written == n_lines


def bench_backfill(
    kind: str, days: int, per_day: int, clients: int, per_partition: bool, instance_kind: str
) -> None:
    first = date(2025, 1, 1)
    last = first + timedelta(days=days - 1)
    flow, fixed = clients * 4 // 5, clients - clients * 4 // 5
    print(f"\n== backfill {first}..{last}: {days} days × {per_day} cash-outs, {flow} flow + "
          f"{fixed} fixed clients ({kind} ledger, {instance_kind} Dagster instance)")
    with fresh_ledger(kind) as ledger, dagster_instance(instance_kind) as instance:
        seed(ledger, first, days, per_day, flow, fixed)
        t = time.perf_counter()
        materialize(ledger, instance, first, last)
        one_run = time.perf_counter() - t
        result = counts(ledger)
        with ledger.engine().connect() as c:
            one_run_lines = al.ledger_lines_in_order(c, first, last)
        assert len(instance.get_run_records()) == 1
    print(f"one run (single_run backfill): {one_run:6.2f} s  {result[0]} events, {result[1]} "
          f"lines  goal ≤ 60 s: {'OK' if one_run <= 60 else 'MISSED'}")
    if not per_partition:
        return
    with fresh_ledger(kind) as ledger, dagster_instance(instance_kind) as instance:
        seed(ledger, first, days, per_day, flow, fixed)
        t = time.perf_counter()
        for d in range(days):
            day = first + timedelta(days=d)
            materialize(ledger, instance, day, day)
        many = time.perf_counter() - t
        with ledger.engine().connect() as c:
            assert al.ledger_lines_in_order(c, first, last) == one_run_lines
        assert len(instance.get_run_records()) == days
    ratio = many / one_run
    print(f"one run per partition ({days} runs): {many:6.2f} s  → one run is {ratio:.1f}× faster "
          f"(goal ≥ 10×: {'OK' if ratio >= 10 else 'MISSED'})")


def _cli(ledger: LedgerResource, home: str, partition_args: list[str]) -> float:
    """One `dagster asset materialize` process (what an admin or a per-partition run costs)."""
    root = Path(__file__).resolve().parents[1]
    env = {"PATH": os.environ.get("PATH", ""), "DAGSTER_HOME": home, "DCA_LEDGER_URL": ledger.url,
           "HOME": os.environ.get("HOME", "/root")}
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
               "-m", "dca_pipeline.definitions", "--select",
               "flow_allocations,fixed_allocations,commission_splits,client_balances",
               *partition_args]
    t = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"dagster asset materialize failed: {done.stderr[-1500:]}")
    return elapsed


def bench_cli(kind: str, days: int, per_day: int, clients: int, sample: int) -> None:
    first = date(2025, 1, 1)
    last = first + timedelta(days=days - 1)
    flow, fixed = clients * 4 // 5, clients - clients * 4 // 5
    print(f"\n== the admin path: `dagster asset materialize` processes, {days} days "
          f"({kind} ledger, SQLite Dagster instance on disk = the embedded default)")
    yaml = (Path(__file__).resolve().parents[1] / "dagster.yaml").read_text()
    with fresh_ledger(kind) as ledger, tempfile.TemporaryDirectory() as home:
        Path(home, "dagster.yaml").write_text(yaml)
        seed(ledger, first, days, per_day, flow, fixed)
        one = _cli(ledger, home, ["--partition-range", f"{first}...{last}"])
    print(f"--partition-range (one run): {one:6.2f} s")
    with fresh_ledger(kind) as ledger, tempfile.TemporaryDirectory() as home:
        Path(home, "dagster.yaml").write_text(yaml)
        seed(ledger, first, days, per_day, flow, fixed)
        times = [_cli(ledger, home, ["--partition", str(first + timedelta(days=d))])
                 for d in range(sample)]
    mean = sum(times) / len(times)
    total = mean * days
    print(f"--partition per day: {mean:5.2f} s each (mean of the first {sample} days) → "
          f"{days} runs ≈ {total:,.0f} s (extrapolated) → one run is {total / one:.1f}× faster "
          f"(goal ≥ 10×: {'OK' if total / one >= 10 else 'MISSED'})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ledger", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--day-cash-outs", type=int, default=1000)
    p.add_argument("--day-clients", type=int, default=500)
    p.add_argument("--backfill-days", type=int, default=365)
    p.add_argument("--backfill-cash-outs", type=int, default=50)
    p.add_argument("--backfill-clients", type=int, default=100)
    p.add_argument("--instance", choices=["ephemeral", "sqlite"], default="ephemeral",
                   help="Dagster instance for the in-process runs (the same for both sides)")
    p.add_argument("--skip-day", action="store_true")
    p.add_argument("--skip-backfill", action="store_true")
    p.add_argument("--skip-per-partition", action="store_true")
    p.add_argument("--cli-sample", type=int, default=0,
                   help="also time the CLI path: one --partition-range process vs this many "
                        "--partition processes (extrapolated to every day)")
    args = p.parse_args()
    if not args.skip_day:
        bench_day(args.ledger, args.day_cash_outs, args.day_clients, args.instance)
    if not args.skip_backfill:
        bench_backfill(args.ledger, args.backfill_days, args.backfill_cash_outs,
                       args.backfill_clients, not args.skip_per_partition, args.instance)
    if args.cli_sample:
        bench_cli(args.ledger, args.backfill_days, args.backfill_cash_outs, args.backfill_clients,
                  args.cli_sample)


if __name__ == "__main__":
    main()
