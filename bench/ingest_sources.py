"""Lamassu fetch throughput: the same window over SSH (real sshd + psql) and direct Postgres.

    .venv/bin/python -m bench.ingest_sources [--rows 100000] [--repeat 3]

Generates ``--rows`` cash-outs (plus their actions and half as many cash-ins) in a fresh
database, starts a throwaway sshd on loopback, and times the fetch of all three tables through
each source. Both sources must return identical bytes, so the bench also proves it measured the
same work. Reported: rows/s per source and table, and SSH time / Postgres time. Loopback hides
network latency and bandwidth, so on a real link the SSH figure is an upper bound.

``fetch_timings`` is the reusable part: landing and validation stages can wrap it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from dca_pipeline.demo.lamassu_generator import (
    create_lamassu_database,
    drop_database,
    generate,
)
from dca_pipeline.sources import (
    FetchWindow,
    LamassuSource,
    LamassuTable,
    PostgresLamassuSource,
    SshLamassuSource,
)
from harness.sshd import SshdHandle, start_sshd

DEFAULT_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@dataclass(frozen=True)
class FetchTiming:
    source: str
    table: LamassuTable
    seconds: float  # best of the repeats
    rows: int
    size_bytes: int
    data: bytes

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def postgres_and_ssh_sources(dsn: str, dbname: str, sshd: SshdHandle) -> dict[str, LamassuSource]:
    """The same Lamassu database read directly and through the loopback sshd (psql there)."""
    return {
        "postgres": PostgresLamassuSource(dsn=dsn),
        "ssh": SshLamassuSource(
            host=sshd.host, port=sshd.port, username=sshd.username,
            private_key=sshd.client_private_key_pem,
            known_host_key=sshd.known_host_line, database=dbname,
            db_user="postgres", db_host="127.0.0.1", db_port=5432,
        ),
    }  # fmt: skip


def fetch_timings(
    sources: Mapping[str, LamassuSource],
    window: FetchWindow,
    tables: Iterable[LamassuTable] = tuple(LamassuTable),
    repeat: int = 3,
) -> list[FetchTiming]:
    """Best-of-``repeat`` wall time of ``fetch_csv`` for every source × table."""
    timings = []
    for table in tables:
        for name, source in sources.items():
            best, data = float("inf"), b""
            for _ in range(repeat):
                began = time.perf_counter()
                data = source.fetch_csv(table, window)
                best = min(best, time.perf_counter() - began)
            rows = data.count(b"\n") - 1  # header; generated text fields hold no newlines
            timings.append(FetchTiming(name, table, best, rows, len(data), data))
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="cash-outs to generate")
    parser.add_argument("--per-day", type=int, default=1000, help="cash-outs per business day")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--admin-dsn", default=DEFAULT_ADMIN_DSN)
    args = parser.parse_args(argv)

    days = max(1, args.rows // args.per_day)
    per_day = max(1, args.rows // days)
    dbname = f"bench_lamassu_{os.getpid()}"
    dsn = create_lamassu_database(args.admin_dsn, dbname)
    try:
        began = time.perf_counter()
        summary = generate(dsn, start=date(2025, 1, 6), days=days, cash_outs_per_day=per_day,
                           seed=args.seed)
        print(f"generated {summary.cash_outs} cash-outs, {summary.cash_out_actions} actions, "
              f"{summary.cash_ins} cash-ins in {time.perf_counter() - began:.1f} s")
        with tempfile.TemporaryDirectory(prefix="bench-sshd-") as workdir:
            sshd = start_sshd(Path(workdir))
            try:
                sources = postgres_and_ssh_sources(dsn, dbname, sshd)
                timings = fetch_timings(sources, summary.window, repeat=args.repeat)
            finally:
                sshd.stop()
    finally:
        drop_database(args.admin_dsn, dbname)

    by_key = {(t.source, t.table): t for t in timings}
    print(f"{'table':<18}{'rows':>9}{'MB':>8}{'PG rows/s':>13}{'SSH rows/s':>13}{'SSH/PG':>8}")
    total = {"postgres": 0.0, "ssh": 0.0}
    total_rows = 0
    for table in LamassuTable:
        pg, ssh = by_key["postgres", table], by_key["ssh", table]
        if pg.data != ssh.data:
            raise SystemExit(f"{table}: SSH and Postgres exports differ")
        total["postgres"] += pg.seconds
        total["ssh"] += ssh.seconds
        total_rows += pg.rows
        print(f"{table.value:<18}{pg.rows:>9}{pg.size_bytes / 1e6:>8.1f}"
              f"{pg.rows_per_second:>13,.0f}{ssh.rows_per_second:>13,.0f}"
              f"{ssh.seconds / pg.seconds:>8.2f}")
    print(f"{'all three':<18}{total_rows:>9}{'':>8}{total_rows / total['postgres']:>13,.0f}"
          f"{total_rows / total['ssh']:>13,.0f}{total['ssh'] / total['postgres']:>8.2f}")
    print(f"(best of {args.repeat}; SSH includes connect + key exchange + psql start per table)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
