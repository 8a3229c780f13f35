"""`dca-pipeline allocations issues|acknowledge`: what re-materializing found, and decisions.

An open issue (a recomputation that differs from the ledger, a late cash-out, an allocated
cash-out Lamassu later marked errored) keeps the blocking money checks red, so nothing is paid.
``acknowledge`` records the operator's decision on one issue; the allocation lines are never
changed by it (a correction is a compensating entry, made separately).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime


def _engine(url: str | None):  # type: ignore[no-untyped-def]
    from dca_pipeline.ledger.database import DEFAULT_LEDGER_URL, LedgerResource

    return LedgerResource(
        url=url or os.environ.get("DCA_LEDGER_URL", "").strip() or DEFAULT_LEDGER_URL
    ).engine()


def _issues(args: argparse.Namespace) -> int:
    from dca_pipeline.ledger.allocations import open_issues

    with _engine(args.ledger_url).connect() as c:
        rows = open_issues(c)
    if args.json:
        print(json.dumps([
            {"issue_id": r.issue_id, "kind": r.kind, "business_day": r.business_day.isoformat(),
             "source_id": r.source_id, "detected_at": r.detected_at.isoformat(),
             "detail": r.detail}
            for r in rows
        ], indent=2))
        return 0
    if not rows:
        print("no open allocation issues")
    for r in rows:
        print(f"#{r.issue_id} {r.kind} {r.business_day} {r.source_id}")
        print("    " + r.detail.replace("\n", "\n    "))
    return 0


def _acknowledge(args: argparse.Namespace) -> int:
    from dca_pipeline.ledger.allocations import acknowledge_issue

    try:
        acknowledge_issue(_engine(args.ledger_url), args.issue_id, note=args.note,
                          now=datetime.now(UTC))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"issue {args.issue_id} acknowledged; the allocation lines are unchanged")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--ledger-url", help="SQLAlchemy URL of the ledger (default: $DCA_LEDGER_URL)"
    )
    parser = subparsers.add_parser(
        "allocations", help="open allocation issues; acknowledge an operator decision"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    issues = actions.add_parser("issues", parents=[common], help="list open issues")
    issues.add_argument("--json", action="store_true", help="machine-readable output")
    issues.set_defaults(func=_issues)
    ack = actions.add_parser(
        "acknowledge", parents=[common], help="record a decision; the issue stops blocking"
    )
    ack.add_argument("issue_id", type=int)
    ack.add_argument("--note", required=True, help="what was decided, and by whom")
    ack.set_defaults(func=_acknowledge)
