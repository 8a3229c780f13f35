"""`dca-pipeline lamassu-fixture`: a generated Lamassu database and/or its CSV export folder."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from dca_pipeline.cli.arguments import iso_day

DEFAULT_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def _dbname(text: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", text):
        raise argparse.ArgumentTypeError(
            f"database name must be lowercase letters, digits and _ (max 63): {text!r}"
        )
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "lamassu-fixture",
        help="create a realistic, deterministic Lamassu database and/or export its CSVs",
        description=(
            "Create a PostgreSQL database with the Lamassu v10.0.3 schema, fill it with "
            "--days business days of generated cash-outs and cash-ins (same --seed, same rows), "
            "and/or write cash_out_txs.csv, cash_out_actions.csv and cash_in_txs.csv (the exact "
            "bytes the SSH and Postgres sources fetch) to --export-dir."
        ),
    )
    p.add_argument("--admin-dsn", default=DEFAULT_ADMIN_DSN,
                   help="libpq DSN of a role that may CREATE DATABASE (default: %(default)s)")
    p.add_argument("--dbname", type=_dbname, required=True,
                   help="database to create (or export from)")
    p.add_argument("--days", type=_positive, default=7)
    p.add_argument("--per-day", type=int, default=40, help="cash-outs per business day")
    p.add_argument("--cash-ins-per-day", type=int, default=None,
                   help="default: half of --per-day")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=iso_day, default=date(2025, 6, 9), metavar="YYYY-MM-DD")
    p.add_argument("--export-dir", type=Path, help="write the three CSV exports here")
    p.add_argument("--export-only", action="store_true",
                   help="do not create the database; export an existing one")
    p.add_argument("--replace", action="store_true",
                   help="drop the database first if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that `dca-pipeline --help` does not pay for psycopg2/Dagster.
    from dca_pipeline.demo.lamassu_generator import (
        GUATEMALA,
        create_lamassu_database,
        drop_database,
        dsn_for_database,
        export_folder,
        generate,
    )
    from dca_pipeline.sources.base import FetchWindow

    if args.export_only:
        if args.export_dir is None:
            print("lamassu-fixture: --export-only needs --export-dir", file=sys.stderr)
            return 2
        dsn = dsn_for_database(args.admin_dsn, args.dbname)
    else:
        if args.replace:
            drop_database(args.admin_dsn, args.dbname)
        dsn = create_lamassu_database(args.admin_dsn, args.dbname)
        summary = generate(
            dsn, start=args.start, days=args.days, cash_outs_per_day=args.per_day,
            seed=args.seed, cash_ins_per_day=args.cash_ins_per_day,
        )
        print(
            f"created {args.dbname}: {summary.cash_outs} cash-outs "
            f"({len(summary.eligible_cash_out_ids)} eligible), {summary.cash_out_actions} "
            f"actions, {summary.cash_ins} cash-ins"
        )
    if args.export_dir is not None:
        first = datetime.combine(args.start, time(0), GUATEMALA).astimezone(UTC)
        window = FetchWindow(first, first + timedelta(days=args.days))
        for table, path in export_folder(dsn, args.export_dir, window).items():
            print(f"wrote {table}: {path}")
    return 0
