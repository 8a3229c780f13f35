"""`dca-pipeline allocations issues|acknowledge|plan`: what allocation reported, and a dry run.

Allocation never stops for odd Lamassu data (business-rules §4a): a late, revoked, changed,
moved or skipped event is appended to the ledger's sequence and stored once as a **report**
(an ``allocation_issues`` row, a WARN check, one alert). Reports never hold payouts;
acknowledging one (``acknowledge ID --note``) is optional bookkeeping that clears its WARN check
and never changes a line. Only a ``mismatch`` (a replay of the stored sequence that does not
reproduce the ledger: an edited or corrupt ledger) fails a blocking check, and it closes by
itself once a replay reproduces.

- ``issues``: open reports and mismatches (``--all``: acknowledged and closed ones too;
  ``--kind K``: only that kind), with kind, business day, id and detail;
- ``acknowledge ID --note "…"``: record a decision on one open issue;
- ``plan --from D --to D``: what the next allocation run over [D, D] would append, computed
  from the ledger and nothing written (§4a "Dry run"): like the Dagster run, due means settled
  and landed (``lamassu_fetches``), and the stored events of the days are replayed first. Exit 2
  with one line on stderr when the run would refuse or its replay differs.

Settings come from :func:`dca_pipeline.config.config`, as in the Dagster code location
(``DCA_TIMEZONE``, ``DCA_CURRENCY``, ``DCA_CONFIRMED_ONLY``, ``DCA_FIXED_RUN_TIME``,
``DCA_MAX_DAILY_GTQ``, ``DCA_SETTLE_MINUTES``, ``DCA_START_DATE``); the ledger is opened with
:func:`dca_pipeline.ledger.database.open_ledger`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

EXIT_FAILED = 1
EXIT_REFUSED = 2
ISSUE_KINDS = ("mismatch", "late", "revoked", "changed", "moved", "skipped")


def _engine(url: str | None):  # type: ignore[no-untyped-def]
    from dca_pipeline.ledger.database import open_ledger

    return open_ledger(url)


def _guarded(
    handler: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """A failing database is one line on stderr and exit 1 (never the URL, which may hold a
    password)."""

    def run(args: argparse.Namespace) -> int:
        import sqlalchemy as sa

        try:
            return handler(args)
        except sa.exc.SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None)
            print(f"error: the ledger failed ({type(orig or exc).__name__}); nothing was "
                  "changed", file=sys.stderr)
            return EXIT_FAILED

    return run


# --------------------------------------------------------------------------- issues
def _issue_rows(c: Any, *, include_closed: bool, kinds: list[str] | None) -> list[Any]:
    import sqlalchemy as sa

    from dca_pipeline.ledger import schema as s

    i = s.allocation_issues
    query = sa.select(i)
    if not include_closed:
        query = query.where(i.c.closed_at.is_(None))
    if kinds:
        query = query.where(i.c.kind.in_(kinds))
    return list(c.execute(query.order_by(i.c.business_day, i.c.issue_id)).all())


def _issues(args: argparse.Namespace) -> int:
    with _engine(args.ledger_url).connect() as c:
        rows = _issue_rows(c, include_closed=args.all, kinds=args.kind)
    if args.json:
        print(json.dumps([
            {"issue_id": r.issue_id, "kind": r.kind, "business_day": r.business_day.isoformat(),
             "source_id": r.source_id, "detected_at": r.detected_at.isoformat(),
             "detail": r.detail, "open": r.closed_at is None,
             "closed_at": r.closed_at.isoformat() if r.closed_at else None,
             "resolution": r.resolution}
            for r in rows
        ], indent=2))
        return 0
    if not rows:
        what = "allocation issues" if args.all else "open allocation issues"
        print(f"no {what}" + (f" of kind {', '.join(args.kind)}" if args.kind else ""))
    for r in rows:
        state = "" if r.closed_at is None else f"  [closed: {r.resolution}]"
        print(f"#{r.issue_id} {r.kind} {r.business_day} {r.source_id}{state}")
        print("    " + r.detail.replace("\n", "\n    "))
    return 0


def _acknowledge(args: argparse.Namespace) -> int:
    from dca_pipeline.ledger.allocations import acknowledge_issue

    try:
        acknowledge_issue(_engine(args.ledger_url), args.issue_id, note=args.note,
                          now=datetime.now(UTC))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"issue {args.issue_id} acknowledged; the allocation lines are unchanged")
    return 0


# --------------------------------------------------------------------------- plan
def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _settings() -> tuple[Any, int, date]:
    """(rules, settle minutes, start day) of :func:`config`, as the code location reads them;
    read at call time, so the start day follows DCA_START_DATE."""
    from dca_pipeline.config import config

    settings = config()
    return settings.rules(), settings.settle_minutes, settings.start_date


def _event_json(event: Any) -> dict[str, Any]:
    fiat, principal, commission = event.totals()
    return {
        "seq": event.seq, "event_id": event.event_id, "kind": event.kind,
        "cash_out_id": event.cash_out_id, "event_time": event.event_time.isoformat(),
        "as_of": event.as_of.isoformat(), "business_day": event.business_day.isoformat(),
        "late": event.late, "fiat_cents": fiat, "principal_sats": principal,
        "commission_sats": commission,
        "lines": [
            {"kind": kind, "recipient_id": recipient, "fiat_cents": f, "sats": sats}
            for kind, recipient, f, sats in event.line_tuples()
        ],
    }


def _plan(args: argparse.Namespace) -> int:
    from dca_pipeline.domain.money import format_cents
    from dca_pipeline.domain.sequence import RunPlan
    from dca_pipeline.ledger import allocations as al

    if args.first > args.last:
        print(f"error: --from {args.first} is after --to {args.last}", file=sys.stderr)
        return EXIT_REFUSED
    rules, settle, start = _settings()
    engine = _engine(args.ledger_url)
    now = datetime.now(UTC)
    try:
        # The run itself, without the writing: the same landed bound, replay and plan.
        outcome = al.allocate_range(
            engine, rules, args.first, args.last, now=now, settle_minutes=settle,
            start_day=start, only_landed=True, dry_run=True,
        )
    except al.AllocationRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if outcome.mismatches:
        print(f"refused: replaying {args.first}…{args.last} does not reproduce the ledger "
              f"({len(outcome.mismatches)} difference(s), first: {outcome.mismatches[0]}); "
              "the run would write nothing and open a mismatch", file=sys.stderr)
        return EXIT_REFUSED
    plan = outcome.plan or RunPlan()
    if plan.refusal:
        print(f"refused: {plan.refusal}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        print(json.dumps({
            "first_day": args.first.isoformat(), "last_day": args.last.isoformat(),
            "now": now.isoformat(), "settle_minutes": settle, "start_day": start.isoformat(),
            "events": [_event_json(e) for e in plan.events],
            "reports": [
                {"kind": r.kind, "source_id": r.source_id, "cash_out_id": r.cash_out_id,
                 "business_day": r.business_day.isoformat(), "fiat_cents": r.fiat_cents,
                 "sats": r.sats, "detail": r.detail}
                for r in plan.reports
            ],
            "pending": plan.pending,
        }, indent=2))
        return 0
    print(f"dry run of {args.first}…{args.last} at {now.isoformat()} (settle {settle} min, "
          f"start {start}, {rules.currency}): nothing is written")
    if plan.events:
        print(f"{'SEQ':>6}  {'KIND':<13} {'EVENT':<28} {'DAY':<10} {'FIAT':>12} "
              f"{'SATS':>12}  LATE")
    for e in plan.events:
        fiat, principal, _ = e.totals()
        print(f"{e.seq:>6}  {e.kind:<13} {e.event_id:<28} {e.business_day.isoformat():<10} "
              f"{format_cents(fiat):>12} {principal:>12}  {'late' if e.late else '-'}")
    for r in plan.reports:
        print(f"report {r.kind} {r.source_id} ({r.business_day}): {r.detail}")
    print(f"total: {len(plan.events)} event(s) would be appended, {len(plan.reports)} report(s), "
          f"{plan.pending} cash-out(s) of these days not settled yet")
    return 0


# --------------------------------------------------------------------------- parser
def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--ledger-url", help="SQLAlchemy URL of the ledger (default: $DCA_LEDGER_URL)"
    )
    parser = subparsers.add_parser(
        "allocations",
        help="allocation reports and mismatches, optional acknowledgements, a dry run",
        description="Reports (late, revoked, changed, moved, skipped) never hold payouts; "
        "acknowledging one is optional bookkeeping. Only a mismatch blocks.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    issues = actions.add_parser(
        "issues", parents=[common],
        help="list open reports and mismatches (kind, day, id, detail)",
    )
    issues.add_argument("--all", action="store_true",
                        help="include acknowledged and closed issues")
    issues.add_argument("--kind", action="append", choices=ISSUE_KINDS, metavar="K",
                        help=f"only this kind (repeatable): {', '.join(ISSUE_KINDS)}")
    issues.add_argument("--json", action="store_true", help="machine-readable output")
    issues.set_defaults(func=_guarded(_issues))
    ack = actions.add_parser(
        "acknowledge", parents=[common],
        help="record a decision on an open issue (optional; lines never change)",
    )
    ack.add_argument("issue_id", type=int)
    ack.add_argument("--note", required=True, help="what was decided, and by whom")
    ack.set_defaults(func=_guarded(_acknowledge))
    plan = actions.add_parser(
        "plan", parents=[common],
        help="dry run: what the next allocation run over the days would append (writes nothing)",
    )
    plan.add_argument("--from", dest="first", type=_day, required=True, metavar="YYYY-MM-DD",
                      help="first business day of the run")
    plan.add_argument("--to", dest="last", type=_day, required=True, metavar="YYYY-MM-DD",
                      help="last business day of the run")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(func=_guarded(_plan))
