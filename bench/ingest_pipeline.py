"""Ingest throughput: fetch + land + validate over SSH and over Postgres, and validation per 1 M.

    .venv/bin/python -m bench.ingest_pipeline [--rows 100000] [--validation-rows 1000000]

1. Generates ``--rows`` cash-outs (with their actions and cash-ins) in a fresh Lamassu
   database and starts a throwaway sshd on loopback.
2. For each source (direct read-only Postgres, then SSH + psql), into a fresh SQLite ledger
   (the embedded default), times the three stages the ingest assets run: fetch the window's
   three exports (``fetch_tables``: one connection), land them (one transaction), and
   validate the landed cash-outs (read back, ``validate_cash_outs``, store validated rows and
   quarantine). Both ledgers must end up identical. Reported: rows/s and SSH/PG ratios.
3. Validation alone on ``--validation-rows`` cash-outs (the generated ones repeated with
   fresh ids): the whole ``validate_cash_outs``, the pandera steps inside it, and, as the
   baseline measured in the same run, the exact row-wise reference on a sample.

Loopback hides network latency and bandwidth: on a real link the SSH figure is an upper bound.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from bench.ingest_sources import postgres_and_ssh_sources
from dca_pipeline.defs.settings import BusinessSettings
from dca_pipeline.demo.lamassu_generator import create_lamassu_database, drop_database, generate
from dca_pipeline.lamassu.csv_io import read_export
from dca_pipeline.lamassu.models import ValidatedCashOut
from dca_pipeline.lamassu.validation import (
    _fast_candidates,
    _rule_failures,
    validate_cash_outs,
    validate_cash_outs_rowwise,
)
from dca_pipeline.ledger import landing
from dca_pipeline.ledger.database import LedgerResource, ledger_engine
from dca_pipeline.ledger.schema import lamassu_raw_rows, validated_cash_outs
from dca_pipeline.sources import (
    FetchWindow,
    LamassuSource,
    LamassuTable,
    fetch_tables,
)
from harness.sshd import start_sshd

DEFAULT_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def run_pipeline(source: LamassuSource, window: FetchWindow, ledger: LedgerResource) -> dict:
    """The work of one ingest run over ``window``, stage by stage (seconds)."""
    rules = BusinessSettings().rules()
    timings: dict[str, float] = {}
    began = time.perf_counter()
    exports = fetch_tables(source, window)
    timings["fetch"] = time.perf_counter() - began

    began = time.perf_counter()
    frames = {t: read_export(exports[t], t.value) for t in LamassuTable}
    now = datetime.now(UTC)
    with ledger.begin() as connection:
        for table in LamassuTable:
            landing.land_export(connection, table.value, frames[table], rules=rules, now=now)
    timings["land"] = time.perf_counter() - began

    began = time.perf_counter()
    with ledger.begin() as connection:
        cash_outs, hashes = landing.landed_cash_outs(connection, window.start, window.end)
        actions = landing.landed_actions(connection, window.start)
        result = validate_cash_outs(cash_outs, actions, rules=rules, now=now)
        landing.store_validation(
            connection, result.valid, result.quarantine, hashes, rules=rules, now=now
        )
    timings["validate"] = time.perf_counter() - began
    timings["rows"] = sum(len(f) for f in frames.values())
    timings["cash_outs"] = len(frames[LamassuTable.CASH_OUT_TXS])
    timings["valid"] = len(result.valid)
    return timings


def ledger_digest(ledger: LedgerResource) -> tuple:
    with ledger.begin() as connection:
        raw = connection.execute(
            sa.select(lamassu_raw_rows.c.source_table, lamassu_raw_rows.c.id,
                      lamassu_raw_rows.c.row_sha256).order_by("source_table", "id")
        ).all()  # fmt: skip
        valid = connection.execute(
            sa.select(validated_cash_outs.c.id, validated_cash_outs.c.principal_sats,
                      validated_cash_outs.c.eligible).order_by("id")
        ).all()  # fmt: skip
    return tuple(raw), tuple(valid)


def bench_sources(args: argparse.Namespace) -> None:
    days = max(1, args.rows // args.per_day)
    per_day = max(1, args.rows // days)
    dbname = f"bench_ingest_{os.getpid()}"
    dsn = create_lamassu_database(args.admin_dsn, dbname)
    try:
        began = time.perf_counter()
        summary = generate(dsn, start=date(2025, 1, 6), days=days, cash_outs_per_day=per_day,
                           seed=args.seed)  # fmt: skip
        print(f"generated {summary.cash_outs} cash-outs, {summary.cash_out_actions} actions, "
              f"{summary.cash_ins} cash-ins in {time.perf_counter() - began:.1f} s")
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as workdir:
            sshd = start_sshd(Path(workdir) / "sshd")
            try:
                sources = postgres_and_ssh_sources(dsn, dbname, sshd)
                results, digests = {}, {}
                for name, source in sources.items():
                    url = f"sqlite:///{Path(workdir) / name}.sqlite"
                    ledger = LedgerResource(url=url)
                    ledger.engine()
                    results[name] = run_pipeline(source, summary.window, ledger)
                    digests[name] = ledger_digest(ledger)
                    ledger_engine(url).dispose()
                fetch_only = {}
                for name, source in sources.items():  # best of 3 for the fetch alone
                    best = float("inf")
                    for _ in range(3):
                        began = time.perf_counter()
                        fetch_tables(source, summary.window)
                        best = min(best, time.perf_counter() - began)
                    fetch_only[name] = best
            finally:
                sshd.stop()
    finally:
        drop_database(args.admin_dsn, dbname)
    if digests["postgres"] != digests["ssh"]:
        raise SystemExit("the SSH and Postgres ledgers differ")

    pg, ssh = results["postgres"], results["ssh"]
    rows, cash_outs = pg["rows"], pg["cash_outs"]
    print(f"\nfetch + land + validate of {cash_outs:,} cash-outs ({rows:,} rows in 3 tables), "
          "SQLite ledger:")  # fmt: skip
    print(f"{'stage':<10}{'PG s':>9}{'SSH s':>9}{'SSH/PG':>8}")
    for stage in ("fetch", "land", "validate"):
        print(f"{stage:<10}{pg[stage]:>9.2f}{ssh[stage]:>9.2f}{ssh[stage] / pg[stage]:>8.2f}")
    total = {n: r["fetch"] + r["land"] + r["validate"] for n, r in results.items()}
    print(f"{'total':<10}{total['postgres']:>9.2f}{total['ssh']:>9.2f}"
          f"{total['ssh'] / total['postgres']:>8.2f}")
    for name in ("postgres", "ssh"):
        print(f"{name}: {cash_outs / total[name]:,.0f} cash-outs/s, {rows / total[name]:,.0f} "
              "rows/s end to end")  # fmt: skip
    pg_fetch, ssh_fetch = fetch_only["postgres"], fetch_only["ssh"]
    print(f"fetch alone (best of 3, one connection for the 3 tables): PG {pg_fetch:.2f} s, "
          f"SSH {ssh_fetch:.2f} s, SSH/PG {ssh_fetch / pg_fetch:.2f}")


def bench_validation(args: argparse.Namespace) -> None:
    sample = Path(__file__).parents[1] / "data" / "sample" / "lamassu" / "cash_out_txs.csv"
    base = read_export(sample, "cash_out_txs")
    n = args.validation_rows
    big = pd.concat([base] * -(-n // len(base)), ignore_index=True).iloc[:n].copy()
    big["id"] = [str(uuid.UUID(int=i, version=4)) for i in range(n)]
    big = big.sort_values("id", ignore_index=True)  # exports come ORDER BY id
    rules = BusinessSettings().rules()
    now = datetime.now(UTC)

    def best(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
        return min(times)

    result = validate_cash_outs(big, None, rules=rules, now=now)
    assert result.rowwise_rows == 0 and len(result.valid) == n
    whole = best(lambda: validate_cash_outs(big, None, rules=rules, now=now))
    ok, parsed = _fast_candidates(big, pd.Series([], dtype="datetime64[ns, UTC]"), rules, now)
    rows = np.flatnonzero(ok)
    rules_step = best(lambda: _rule_failures(parsed, rows))
    output_step = best(lambda: ValidatedCashOut.validate(result.valid, lazy=True))
    k = min(n, args.rowwise_rows)
    rowwise = best(lambda: validate_cash_outs_rowwise(big.iloc[:k], None, rules=rules, now=now),
                   repeat=1)  # fmt: skip
    per_million = 1_000_000 / n
    print(f"\nvalidation of {n:,} canonical cash-outs (per 1 M rows):")
    print(f"  validate_cash_outs, everything     {whole * per_million:6.2f} s  "
          f"({n / whole:,.0f} rows/s)")
    print(f"  pandera LamassuCashOut (§8 rules)  {rules_step * per_million:6.2f} s  "
          f"({n / rules_step:,.0f} rows/s)")
    print(f"  pandera ValidatedCashOut (output)  {output_step * per_million:6.2f} s  "
          f"({n / output_step:,.0f} rows/s)")
    print(f"  row-wise reference ({k:,} rows)    {rowwise * 1_000_000 / k:6.2f} s  "
          f"({k / rowwise:,.0f} rows/s)")
    print(f"  speed-up vectorized / row-wise      {(rowwise / k) / (whole / n):6.1f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="cash-outs to generate")
    parser.add_argument("--per-day", type=int, default=1000)
    parser.add_argument("--validation-rows", type=int, default=1_000_000)
    parser.add_argument("--rowwise-rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--admin-dsn", default=DEFAULT_ADMIN_DSN)
    parser.add_argument("--skip-sources", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_sources:
        bench_sources(args)
    bench_validation(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
