"""A live tick's cost against the ledger's age: one new business day on a young and an old ledger.

    .venv/bin/python -m bench.tick_age [--ledger sqlite|postgres|both] [--old-days 365]
        [--young-days 1] [--per-day 50] [--flow 80] [--fixed 20] [--ticks 3]

Each ledger is seeded like ``bench.allocation`` (validated rows written straight into the ledger,
``--flow`` + ``--fixed`` clients, ``--per-day`` cash-outs a day) and allocated up to its age in
one backfill (not timed). Then ``--ticks`` new days are allocated one at a time, each exactly as
the ``allocations`` asset body does it (``allocate_range`` over the day with the configured
start, the money checks, the range summary and the balances; no Dagster run around it), and
each is re-run once more (the no-op tick of a sensor that finds nothing new). Reported: median
time of the new-day and the no-op ticks per ledger, and the ratio old / young (goal ≤ 1.5×),
SQLite and PostgreSQL side by side in one run. PostgreSQL ledgers are ANALYZEd after the
backfill (as autovacuum would after a bulk load).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from bench.allocation import RULES, counts, fresh_ledger, seed
from dca_pipeline.defs.allocate.checks import evaluate_money_checks
from dca_pipeline.ledger import allocations as al

FIRST = date(2025, 1, 1)
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _tick(engine, day: date) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    outcome = al.allocate_range(engine, RULES, day, day, now=NOW, settle_minutes=15,
                                start_day=FIRST)
    with engine.connect() as c:
        al.range_summary(c, day, day)
        balances = al.client_balances(c)
    checks = list(evaluate_money_checks(engine, day, day, outcome, now=NOW, run_id=None,
                                        balances=balances))
    elapsed = time.perf_counter() - started
    # Every blocking money check passes (the WARN reports, e.g. the first day's skipped fixed
    # run, are expected business).
    assert outcome.reproduced and all(
        r.passed for r in checks if r.severity == dg.AssetCheckSeverity.ERROR
    )
    return elapsed


def measure(kind: str, age: int, ticks: int, per_day: int, flow: int, fixed: int
            ) -> tuple[float, float, int]:
    """(median new-day tick, median no-op tick, lines in the ledger at the end)."""
    with fresh_ledger(kind) as ledger:
        seed(ledger, FIRST, age + ticks, per_day, flow, fixed)
        engine = ledger.engine()
        built = time.perf_counter()
        al.allocate_range(engine, RULES, FIRST,
                          FIRST + timedelta(days=age - 1), now=NOW, settle_minutes=15,
                          start_day=FIRST)
        built = time.perf_counter() - built
        if kind == "postgres":
            # What autovacuum does after a bulk load on a real server: without statistics the
            # planner takes the young table's seq scans for the old one's index lookups.
            with engine.connect() as c:
                c.exec_driver_sql("ANALYZE")
                c.commit()
        new, again = [], []
        for k in range(ticks):
            day = FIRST + timedelta(days=age + k)
            new.append(_tick(engine, day))
            again.append(_tick(engine, day))
        lines = counts(ledger)[1]
        print(f"  {kind:8s} age {age:4d} d: built in {built:6.1f} s, {lines:9,} lines; "
              f"new-day tick median {statistics.median(new) * 1000:7.1f} ms, "
              f"no-op tick {statistics.median(again) * 1000:7.1f} ms")
        return statistics.median(new), statistics.median(again), lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ledger", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--old-days", type=int, default=365)
    p.add_argument("--young-days", type=int, default=1)
    p.add_argument("--per-day", type=int, default=50)
    p.add_argument("--flow", type=int, default=80)
    p.add_argument("--fixed", type=int, default=20)
    p.add_argument("--ticks", type=int, default=3)
    args = p.parse_args()
    kinds = ["sqlite", "postgres"] if args.ledger == "both" else [args.ledger]
    print(f"one new day of {args.per_day} cash-outs, {args.flow} flow + {args.fixed} fixed "
          f"clients; ledgers {args.young_days} and {args.old_days} days old")
    rows = []
    for kind in kinds:
        young = measure(kind, args.young_days, args.ticks, args.per_day, args.flow, args.fixed)
        old = measure(kind, args.old_days, args.ticks, args.per_day, args.flow, args.fixed)
        rows.append((kind, young, old))
    print()
    for kind, young, old in rows:
        ratio_new, ratio_noop = old[0] / young[0], old[1] / young[1]
        verdict = "OK" if ratio_new <= 1.5 else "MISSED"
        print(f"{kind:8s} new-day tick {old[0] * 1000:7.1f} ms at {args.old_days} d vs "
              f"{young[0] * 1000:7.1f} ms at {args.young_days} d: {ratio_new:4.2f}×  "
              f"(goal ≤ 1.5×: {verdict}); no-op tick {ratio_noop:4.2f}×")


if __name__ == "__main__":
    main()
