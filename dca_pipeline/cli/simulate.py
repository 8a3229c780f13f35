"""`dca-pipeline simulate`: the offline audit command (business-rules §10)."""

from __future__ import annotations

import argparse
import sys
from datetime import time
from pathlib import Path

from dca_pipeline.cli.arguments import iso_day

EXIT_REFUSED = 2


def _clock(text: str) -> time:
    try:
        parsed = time.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a time of day (HH:MM): {text!r}"
        ) from exc
    return parsed


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="recompute allocations for a period from plain CSV exports (no ledger, no LNbits)",
        description=(
            "Validate Lamassu cash-outs and allocate them to clients exactly as the pipeline "
            "would, from an empty ledger. Writes allocation_lines.csv, balances.csv and "
            "quarantine.csv to --out."
        ),
    )
    p.add_argument(
        "--cash-outs", type=Path, required=True, help="cash_out_txs.csv (psql CSV)"
    )
    p.add_argument(
        "--cash-out-actions", type=Path, help="cash_out_actions.csv (dispense times)"
    )
    p.add_argument("--clients", type=Path, required=True)
    p.add_argument("--deposits", type=Path, required=True)
    p.add_argument(
        "--commission", type=Path, help="commission recipients (basis points)"
    )
    p.add_argument(
        "--from", dest="first_day", type=iso_day, required=True, metavar="YYYY-MM-DD"
    )
    p.add_argument(
        "--to", dest="last_day", type=iso_day, required=True, metavar="YYYY-MM-DD"
    )
    p.add_argument("--timezone", default="America/Guatemala")
    p.add_argument("--fixed-run-time", type=_clock, default=time(9, 0), metavar="HH:MM")
    p.add_argument("--max-daily", default="2000.00", metavar="GTQ")
    p.add_argument("--currency", default="GTQ")
    p.add_argument("--confirmed-only", action="store_true")
    p.add_argument("--out", type=Path, required=True, metavar="OUTDIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `dca-pipeline --help` should not pay for pandas.
    from dca_pipeline.domain.money import MoneyParseError, parse_cents
    from dca_pipeline.domain.rules import BusinessRules
    from dca_pipeline.simulate import REFUSALS, SimulationInputs, simulate

    try:
        rules = BusinessRules(
            timezone=args.timezone,
            currency=args.currency,
            confirmed_only=args.confirmed_only,
            fixed_run_time=args.fixed_run_time,
            max_daily_cents=parse_cents(args.max_daily),
        )
    except (MoneyParseError, ValueError, KeyError) as exc:
        print(f"dca-pipeline simulate: error: bad setting: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    inputs = SimulationInputs(
        cash_outs=args.cash_outs,
        cash_out_actions=args.cash_out_actions,
        clients=args.clients,
        deposits=args.deposits,
        commission=args.commission,
        first_day=args.first_day,
        last_day=args.last_day,
    )
    try:
        outcome = simulate(inputs, rules, args.out)
    except REFUSALS as exc:
        reason = " ".join(str(exc).split())  # always one line
        print(f"dca-pipeline simulate: error: {reason}", file=sys.stderr)
        return EXIT_REFUSED
    print(
        f"allocated {outcome.cash_outs_allocated} cash-outs to {outcome.clients} clients: "
        f"{outcome.lines_written} lines, {outcome.quarantined} quarantined -> {args.out}"
    )
    return 0
